//! The job spec: what a sweep computes. API boundary: users write it; `jobs/README.md` documents
//! every key. Stage one of two (ripgrep's low/high args): layering and validation of plain values,
//! no model or data I/O. The plan (coordinator) does the I/O.
//!
//! Layers, later wins: the TOML file ← `DIFFPROBE_SECTION__KEY` environment variables ←
//! `--set section.key=value`. Unknown keys, wrong types and impossible values are errors that
//! name the file (or layer), the key path and what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::error::SpecError;

mod alignment;
mod diffusion;
pub use alignment::{AlignmentDistance, AlignmentSection, EarlyStoppingChoice, TripletEntries};
pub use diffusion::{
    CaptureMode, Conditioning, GenerateSection, GuidanceRecord, ImageSection, NoiseSeeding,
    SamplerKind, StepSelection,
};

/// A whole job spec, with paths resolved against the spec file's directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// `[job]`
    pub job: JobSection,
    /// `[model]`
    pub model: ModelSection,
    /// `[stimuli]`
    pub stimuli: StimuliSection,
    /// `[targets]`
    pub targets: TargetsSection,
    /// `[capture]`
    #[serde(default)]
    pub capture: CaptureSection,
    /// `[analysis]`
    #[serde(default)]
    pub analysis: AnalysisSection,
    /// `[sweep]`
    #[serde(default)]
    pub sweep: SweepSection,
    /// `[slurm]`
    #[serde(default)]
    pub slurm: SlurmSection,
}

/// `[job]`: the run's name and where its directory goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// Run name; the run directory is `output_dir/name`. Letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Parent of run directories (default `runs`, relative to the current directory).
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// Marks a null control (e.g. a model with random weights): the report then checks that
    /// its probes are significant at about the nominal rate.
    #[serde(default)]
    pub null_control: bool,
}

/// `[model]`: which model to capture from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model family: `bert` (a BERT-family text encoder alone) or `sd` (Stable Diffusion 1.x /
    /// 2.x in the diffusers layout).
    pub kind: ModelKind,
    /// The model folder (relative to the spec): `config.json`, `model.safetensors` and
    /// `tokenizer.json` for `bert`; `unet/`, `text_encoder/`, `tokenizer/`, `vae/` and
    /// `scheduler/` for `sd`.
    pub path: PathBuf,
    /// `cpu`, `cuda`, or `auto` (CUDA when built with it and a GPU is present).
    #[serde(default)]
    pub device: DeviceChoice,
    /// Compute dtype on the device: `f32` (default) or `f16` (GPU inference).
    #[serde(default)]
    pub dtype: StorageDtype,
    /// `sd` only: LoRA files merged into the U-Net and the text encoder as they load, in order
    /// (diffusers/PEFT or kohya layout; a key that matches no layer is an error naming it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lora: Vec<LoraEntry>,
}

/// One `model.lora` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoraEntry {
    /// The `.safetensors` file (relative to the spec).
    pub path: PathBuf,
    /// Merge strength s in `W + s·(alpha/r)·B·A` (default 1: as trained; 0 leaves the model).
    #[serde(default = "default_lora_scale")]
    pub scale: f64,
}

fn default_lora_scale() -> f64 {
    1.0
}

/// Model families diffprobe can capture from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A BERT-family text encoder (BERT, MiniLM, …) in the Hugging Face layout.
    Bert,
    /// Stable Diffusion 1.x / 2.x (U-Net, CLIP text encoder, VAE) in the diffusers layout.
    Sd,
}

/// Where workers compute.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// CUDA if available, else CPU.
    #[default]
    Auto,
    /// Always the CPU.
    Cpu,
    /// A CUDA GPU; an error if there is none.
    Cuda,
}

/// `[stimuli]`: the list of stimuli (words, concepts, prompts).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StimuliSection {
    /// CSV file with a header row (relative to the spec).
    pub file: PathBuf,
    /// Column holding the stimulus names.
    #[serde(default = "default_word")]
    pub column: String,
    /// Text given to the model; `{stimulus}` is replaced by the stimulus name.
    #[serde(default = "default_template")]
    pub template: String,
}

/// `[targets]`: the human ratings the probes predict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetsSection {
    /// CSV file with a header row (relative to the spec).
    pub file: PathBuf,
    /// Column that matches the stimulus names.
    #[serde(default = "default_word")]
    pub key: String,
    /// Rating column → attribute name.
    pub columns: BTreeMap<String, String>,
    /// Attribute name → group (e.g. `perceptual`); attributes not listed have no group.
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
    /// What to do with a stimulus whose rating is missing or not a number.
    #[serde(default)]
    pub missing: MissingPolicy,
}

/// Policy for stimuli with missing ratings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    /// Drop the stimulus from the whole sweep (every attribute is fitted on the same stimuli and
    /// folds); the plan reports how many were dropped.
    #[default]
    DropStimulus,
    /// Refuse to run, naming the first missing cell.
    Error,
}

/// `[capture]`: what is recorded from the model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    /// Taps by module name: `text.{l}` (0 = embeddings), `text.final`, and for `sd` the
    /// diffusers U-Net module names (`mid_block`, `up_blocks.1.attentions.0`, `out`, …); globs
    /// allowed (`text.*`, `up_blocks.*`).
    #[serde(default = "default_taps")]
    pub taps: Vec<String>,
    /// Token poolings of text taps, each giving its own representation: `cls`, `mean`, `eos`.
    /// Empty = the model's default (`cls`, `mean` for `bert`; `eos` for `sd`).
    #[serde(default)]
    pub pooling: Vec<Pooling>,
    /// Reductions of U-Net taps, each its own representation: `mean`, `max` (over H×W),
    /// `flatten`, `none` (token-major, unreduced). Empty = `flatten` for `mid_block` and `out`,
    /// `mean` for the others.
    #[serde(default)]
    pub unet_pooling: Vec<Pooling>,
    /// `sd` only: `generate` (text-to-image) or `image` (real images).
    #[serde(default)]
    pub mode: CaptureMode,
    /// `sd` generation settings.
    #[serde(default)]
    pub generate: GenerateSection,
    /// `sd` real-image settings.
    #[serde(default)]
    pub image: ImageSection,
    /// Stimuli per forward pass.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Storage dtype of features: `f32` or `f16`.
    #[serde(default)]
    pub dtype: StorageDtype,
    /// Seed for any randomness in capture (none for text encoders; kept for reproducibility).
    #[serde(default)]
    pub seed: u64,
    /// Longest token sequence; longer stimuli are an error (never silently truncated).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
}

/// How token states become one vector per stimulus.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The first token (`[CLS]`).
    Cls,
    /// Mean over non-padding tokens (special tokens included, as sentence-transformers does).
    Mean,
    /// The last non-padding token (end-of-text).
    Eos,
    /// A U-Net tap flattened as laid out (C × H × W).
    Flatten,
    /// The maximum over H × W (or tokens), per channel.
    Max,
    /// Unreduced, token-major (H·W × C), for dense probes.
    None,
    /// Real-image mode: the mean over positions weighted by the stimulus's object mask,
    /// area-downsampled to the tap's resolution.
    MaskMean,
}

impl Pooling {
    /// The name used in representation keys.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
            Pooling::Eos => "eos",
            Pooling::Flatten => "flatten",
            Pooling::Max => "max",
            Pooling::None => "none",
            Pooling::MaskMean => "mask_mean",
        }
    }

    /// Whether this pooling applies to token sequences of a text encoder.
    pub fn is_text(self) -> bool {
        matches!(self, Pooling::Cls | Pooling::Mean | Pooling::Eos)
    }

    /// Whether this pooling applies to U-Net taps.
    pub fn is_unet(self) -> bool {
        matches!(
            self,
            Pooling::Mean | Pooling::Max | Pooling::Flatten | Pooling::None | Pooling::MaskMean
        )
    }
}

/// Storage dtype of captured features.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StorageDtype {
    /// 32-bit float.
    #[default]
    F32,
    /// 16-bit float (half the bytes; probes compute in f64 regardless).
    F16,
}

/// `[analysis]`: which analyses run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSection {
    /// `[analysis.attribute_probe]` (science.md B1).
    #[serde(default)]
    pub attribute_probe: AttributeProbeSection,
    /// `[analysis.alignment]` (science.md B2); absent = no alignment units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<AlignmentSection>,
}

/// `[analysis.attribute_probe]`: PCA + ridge probes with permutation tests.
///
/// Every key is optional: a missing one takes its value from [`Default`], the one place the
/// defaults are written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeProbeSection {
    /// Number of cross-validation folds over stimuli (K).
    pub folds: usize,
    /// PCA components kept (P), capped at training size − 1.
    pub components: usize,
    /// Ridge penalty α.
    pub alpha: f64,
    /// A grid of α: when not empty, each attribute's α is chosen per fold from it by exact
    /// leave-one-out on the training rows (replacing `alpha`), and reported.
    pub alphas: Vec<f64>,
    /// How α is chosen from `alphas`: 0 = exact leave-one-out (default), k ≥ 2 = k-fold inner
    /// cross-validation over the training rows (seeded).
    pub alpha_inner_folds: usize,
    /// The hyper-parameter grid report (paper Fig. 5): PCA sizes P to try on fold 0, with
    /// `grid_alphas`; both empty (default) = no grid.
    pub grid_components: Vec<usize>,
    /// The α values of the hyper-parameter grid report.
    pub grid_alphas: Vec<f64>,
    /// Permutations per (representation, fold) (B), each reordering every attribute; 0 disables
    /// the test.
    pub permutations: usize,
    /// Seed of the fold shuffle and the permutations.
    pub seed: u64,
    /// Z-score features on the training rows before PCA.
    pub zscore: bool,
    /// Arithmetic of the Gram matrix and the permutation refits (`f64` default, `f32`).
    pub precision: ProbePrecision,
}

/// `analysis.attribute_probe.precision`: the arithmetic of the probe's two large products.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProbePrecision {
    /// `f64` throughout (agrees with scikit-learn to 1e-6).
    #[default]
    F64,
    /// `f32` Gram matrix and permutation refits; everything else `f64`.
    F32,
}

/// `[sweep]`: how work is cut into units and supervised.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    /// Stimuli per capture unit.
    #[serde(default = "default_stimuli_per_unit")]
    pub stimuli_per_unit: usize,
    /// Folds per probe unit.
    #[serde(default = "default_folds_per_unit")]
    pub folds_per_unit: usize,
    /// Seconds a lease lives without a heartbeat.
    #[serde(default = "default_ttl")]
    pub lease_ttl_s: f64,
    /// Seconds between worker heartbeats.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_s: f64,
    /// Failed attempts before a unit is quarantined.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Base of the exponential retry backoff, seconds.
    #[serde(default = "default_backoff")]
    pub retry_backoff_s: f64,
}

/// `[slurm]`: sbatch settings for `--launcher slurm` (validated now, used by the Slurm launcher).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlurmSection {
    /// `--partition`.
    #[serde(default)]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default)]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default)]
    pub qos: Option<String>,
    /// `--time`, e.g. `01:00:00`, `2-00:00:00` or minutes.
    #[serde(default = "default_slurm_time")]
    pub time: String,
    /// `--gres`, e.g. `gpu:1`.
    #[serde(default)]
    pub gres: Option<String>,
    /// `--cpus-per-task`.
    #[serde(default = "default_cpus")]
    pub cpus_per_task: u32,
    /// `--mem`, e.g. `16G`.
    #[serde(default)]
    pub mem: Option<String>,
    /// Array throttle (`%N`): tasks running at once.
    #[serde(default)]
    pub array_parallelism: Option<u32>,
    /// `--signal`: warning signal before the time limit, e.g. `B:USR1@120`.
    #[serde(default = "default_signal")]
    pub signal: String,
    /// Extra `#SBATCH` lines, verbatim (without the `#SBATCH` prefix).
    #[serde(default)]
    pub extra: Vec<String>,
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("runs")
}
fn default_word() -> String {
    "word".into()
}
fn default_template() -> String {
    "{stimulus}".into()
}
fn default_taps() -> Vec<String> {
    vec!["text.*".into()]
}
fn default_batch() -> usize {
    64
}
fn default_max_tokens() -> usize {
    128
}
fn default_stimuli_per_unit() -> usize {
    250
}
fn default_folds_per_unit() -> usize {
    5
}
fn default_ttl() -> f64 {
    30.0
}
fn default_heartbeat() -> f64 {
    5.0
}
fn default_max_attempts() -> u32 {
    3
}
fn default_backoff() -> f64 {
    2.0
}
fn default_slurm_time() -> String {
    "01:00:00".into()
}
fn default_cpus() -> u32 {
    4
}
fn default_signal() -> String {
    "B:USR1@120".into()
}

impl CaptureSection {
    /// The text poolings in effect: `pooling`, or the model's default when it is empty.
    pub fn text_poolings(&self, kind: ModelKind) -> Vec<Pooling> {
        match (self.pooling.is_empty(), kind) {
            (false, _) => self.pooling.clone(),
            (true, ModelKind::Bert) => vec![Pooling::Cls, Pooling::Mean],
            (true, ModelKind::Sd) => vec![Pooling::Eos],
        }
    }

    /// The U-Net reductions in effect for `tap`: `unet_pooling`, or the tap's default.
    pub fn unet_poolings(&self, tap: &str) -> Vec<Pooling> {
        if !self.unet_pooling.is_empty() {
            self.unet_pooling.clone()
        } else if tap == "mid_block" || tap == "out" {
            vec![Pooling::Flatten]
        } else {
            vec![Pooling::Mean]
        }
    }
}

impl Default for CaptureSection {
    fn default() -> Self {
        CaptureSection {
            taps: default_taps(),
            pooling: Vec::new(),
            unet_pooling: Vec::new(),
            mode: CaptureMode::default(),
            generate: GenerateSection::default(),
            image: ImageSection::default(),
            batch_size: default_batch(),
            dtype: StorageDtype::default(),
            seed: 0,
            max_tokens: default_max_tokens(),
        }
    }
}
impl Default for AttributeProbeSection {
    fn default() -> Self {
        AttributeProbeSection {
            folds: 10,
            components: 120,
            alpha: 150.0,
            alphas: Vec::new(),
            alpha_inner_folds: 0,
            grid_components: Vec::new(),
            grid_alphas: Vec::new(),
            permutations: 1000,
            seed: 0,
            zscore: false,
            precision: ProbePrecision::F64,
        }
    }
}
impl Default for SweepSection {
    fn default() -> Self {
        SweepSection {
            stimuli_per_unit: default_stimuli_per_unit(),
            folds_per_unit: default_folds_per_unit(),
            lease_ttl_s: default_ttl(),
            heartbeat_s: default_heartbeat(),
            max_attempts: default_max_attempts(),
            retry_backoff_s: default_backoff(),
        }
    }
}
impl Default for SlurmSection {
    fn default() -> Self {
        SlurmSection {
            partition: None,
            account: None,
            qos: None,
            time: default_slurm_time(),
            gres: None,
            cpus_per_task: default_cpus(),
            mem: None,
            array_parallelism: None,
            signal: default_signal(),
            extra: Vec::new(),
        }
    }
}

impl JobSpec {
    /// Loads a spec: the TOML file, then `DIFFPROBE_SECTION__KEY` variables from `env`, then
    /// `--set key=value` overrides; validates it and resolves relative paths against the file's
    /// directory.
    pub fn load(
        file: &Path,
        env: &[(String, String)],
        sets: &[String],
    ) -> Result<JobSpec, SpecError> {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(file)
            .map_err(|e| SpecError::new(&shown, "(file)", format!("cannot read spec: {e}")))?;
        let mut figment = Figment::from(Toml::string(&text));
        // Which layer set each overridden key, so validation errors name it instead of the file.
        let mut overridden: Vec<(String, &'static str)> = Vec::new();
        let env_layer = env_provider(env);
        overridden.extend(env_layer.keys.iter().map(|k| (k.clone(), ENV_LAYER)));
        figment = figment.merge(env_layer);
        for set in sets {
            let (key, value) = parse_set(set)?;
            let mut dict = figment::value::Dict::new();
            let path: Vec<String> = key.split('.').map(str::to_string).collect();
            insert_path(&mut dict, &path, value);
            overridden.push((key.clone(), SET_LAYER));
            figment = figment.merge(Layer { name: SET_LAYER, keys: vec![key], dict });
        }
        let mut spec: JobSpec = figment.extract().map_err(|e| figment_error(&shown, e))?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        spec.resolve_paths(&base);
        spec.validate(&shown).map_err(|mut e| {
            let from = overridden.iter().rev().find(|(k, _)| {
                *k == e.key
                    || e.key.starts_with(&format!("{k}."))
                    || k.starts_with(&format!("{}.", e.key))
            });
            if let Some((_, layer)) = from {
                e.file = (*layer).to_string();
            }
            e
        })?;
        Ok(spec)
    }

    /// Parses an already resolved spec (the run directory's `spec.toml`), without layering.
    pub fn from_resolved_toml(file: &Path) -> Result<JobSpec, SpecError> {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(file)
            .map_err(|e| SpecError::new(&shown, "(file)", format!("cannot read spec: {e}")))?;
        let spec: JobSpec = toml::from_str(&text)
            .map_err(|e| SpecError::new(&shown, "(file)", e.message().to_string()))?;
        spec.validate(&shown)?;
        Ok(spec)
    }

    /// The resolved spec as TOML, as written to the run directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a spec serialises to TOML")
    }

    /// The run directory of this job.
    pub fn run_dir(&self) -> PathBuf {
        self.job.output_dir.join(&self.job.name)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.model.path);
        for lora in &mut self.model.lora {
            join(&mut lora.path);
        }
        join(&mut self.stimuli.file);
        join(&mut self.targets.file);
        join(&mut self.capture.image.folder);
        if let Some(masks) = &mut self.capture.image.masks {
            join(masks);
        }
        if let Some(a) = &mut self.analysis.alignment {
            a.resolve_paths(&join);
        }
    }

    fn validate_lora(&self, file: &str) -> Result<(), SpecError> {
        for (i, lora) in self.model.lora.iter().enumerate() {
            let err = |key: &str, msg: String| {
                Err(SpecError::new(file, format!("model.lora[{i}].{key}"), msg))
            };
            if self.model.kind != ModelKind::Sd {
                return err("path", "LoRA merging is for `kind = \"sd\"` models".into());
            }
            if !lora.path.is_file() {
                return err("path", format!("{} is not a file", lora.path.display()));
            }
            if !lora.scale.is_finite() {
                return err("scale", format!("expected a finite number, found {}", lora.scale));
            }
        }
        Ok(())
    }

    fn validate(&self, file: &str) -> Result<(), SpecError> {
        let err = |key: &str, msg: String| Err(SpecError::new(file, key, msg));
        let name = &self.job.name;
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || name.starts_with('.')
        {
            return err(
                "job.name",
                format!("expected letters, digits, '-', '_' or '.', found {name:?}"),
            );
        }
        for (key, path) in [
            ("model.path", &self.model.path),
            ("stimuli.file", &self.stimuli.file),
            ("targets.file", &self.targets.file),
        ] {
            if !path.exists() {
                return err(key, format!("{} does not exist", path.display()));
            }
        }
        self.validate_lora(file)?;
        if !self.stimuli.template.contains("{stimulus}") {
            return err("stimuli.template", "expected a template containing {stimulus}".into());
        }
        if self.targets.columns.is_empty() {
            return err("targets.columns", "expected at least one rating column".into());
        }
        let attributes: Vec<&String> = self.targets.columns.values().collect();
        let mut seen = std::collections::BTreeSet::new();
        for a in &attributes {
            if !seen.insert(a) {
                return err("targets.columns", format!("attribute {a:?} is named twice"));
            }
        }
        for attr in self.targets.groups.keys() {
            if !seen.contains(&attr) {
                return err(
                    &format!("targets.groups.{attr}"),
                    format!("no attribute {attr:?}; attributes are {attributes:?}"),
                );
            }
        }
        let c = &self.capture;
        if c.taps.is_empty() {
            return err("capture.taps", "expected at least one tap".into());
        }
        if let Some(bad) = c.pooling.iter().find(|p| !p.is_text()) {
            return err(
                "capture.pooling",
                format!("{:?} is not a text pooling; expected cls, mean or eos", bad.name()),
            );
        }
        if let Some(bad) = c.unet_pooling.iter().find(|p| !p.is_unet()) {
            return err(
                "capture.unet_pooling",
                format!(
                    "{:?} is not a U-Net pooling; expected mean, max, flatten, none or mask_mean",
                    bad.name()
                ),
            );
        }
        let masked = c.unet_pooling.contains(&Pooling::MaskMean);
        if masked && (c.mode != CaptureMode::Image || c.image.masks.is_none()) {
            return err(
                "capture.unet_pooling",
                "mask_mean needs mode = \"image\" and capture.image.masks (a folder of masks)"
                    .into(),
            );
        }
        if self.model.kind == ModelKind::Sd {
            match c.mode {
                CaptureMode::Generate => c.generate.validate(file)?,
                CaptureMode::Image => c.image.validate(file)?,
            }
        } else if c.mode == CaptureMode::Image || !c.unet_pooling.is_empty() {
            let key =
                if c.mode == CaptureMode::Image { "capture.mode" } else { "capture.unet_pooling" };
            return err(key, "needs model.kind = \"sd\"".into());
        }
        positive(file, "capture.batch_size", c.batch_size)?;
        positive(file, "capture.max_tokens", c.max_tokens)?;
        let p = &self.analysis.attribute_probe;
        if p.folds < 2 {
            return err(
                "analysis.attribute_probe.folds",
                format!("expected at least 2, found {}", p.folds),
            );
        }
        positive(file, "analysis.attribute_probe.components", p.components)?;
        if !(p.alpha.is_finite() && p.alpha > 0.0) {
            return err(
                "analysis.attribute_probe.alpha",
                format!("expected a positive number, found {}", p.alpha),
            );
        }
        if let Some(bad) = p.alphas.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return err(
                "analysis.attribute_probe.alphas",
                format!("expected positive numbers, found {bad}"),
            );
        }
        if let Some(bad) = p.grid_alphas.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return err(
                "analysis.attribute_probe.grid_alphas",
                format!("expected positive numbers, found {bad}"),
            );
        }
        if p.alpha_inner_folds == 1 {
            return err(
                "analysis.attribute_probe.alpha_inner_folds",
                "expected 0 (leave-one-out) or at least 2, found 1".into(),
            );
        }
        if p.grid_components.contains(&0) {
            return err(
                "analysis.attribute_probe.grid_components",
                "expected sizes of at least 1, found 0".into(),
            );
        }
        if p.grid_components.is_empty() != p.grid_alphas.is_empty() {
            return err(
                "analysis.attribute_probe.grid_components",
                "expected both grid_components and grid_alphas, or neither".into(),
            );
        }
        if let Some(a) = &self.analysis.alignment {
            a.validate(file)?;
        }
        let s = &self.sweep;
        positive(file, "sweep.stimuli_per_unit", s.stimuli_per_unit)?;
        positive(file, "sweep.folds_per_unit", s.folds_per_unit)?;
        positive(file, "sweep.max_attempts", s.max_attempts as usize)?;
        for (key, v) in [
            ("sweep.lease_ttl_s", s.lease_ttl_s),
            ("sweep.heartbeat_s", s.heartbeat_s),
            ("sweep.retry_backoff_s", s.retry_backoff_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return err(key, format!("expected a positive number of seconds, found {v}"));
            }
        }
        if s.heartbeat_s * 2.0 > s.lease_ttl_s {
            return err(
                "sweep.heartbeat_s",
                format!(
                    "expected at most half of sweep.lease_ttl_s ({}), found {}",
                    s.lease_ttl_s, s.heartbeat_s
                ),
            );
        }
        self.slurm.validate(file)
    }
}

impl SlurmSection {
    fn validate(&self, file: &str) -> Result<(), SpecError> {
        let err = |key: &str, msg: String| Err(SpecError::new(file, key, msg));
        if !valid_slurm_time(&self.time) {
            return err(
                "slurm.time",
                format!("expected minutes, HH:MM:SS or D-HH:MM:SS, found {:?}", self.time),
            );
        }
        if let Some(mem) = &self.mem {
            let digits = mem.trim_end_matches(['K', 'M', 'G', 'T']);
            if digits.is_empty()
                || !digits.chars().all(|c| c.is_ascii_digit())
                || digits.len() + 1 < mem.len()
            {
                return err(
                    "slurm.mem",
                    format!("expected a size like 16G or 4000M, found {mem:?}"),
                );
            }
        }
        positive(file, "slurm.cpus_per_task", self.cpus_per_task as usize)?;
        if self.array_parallelism == Some(0) {
            return err("slurm.array_parallelism", "expected at least 1, found 0".into());
        }
        let sig_ok = self.signal.split_once('@').is_some_and(|(sig, secs)| {
            let sig = sig.strip_prefix("B:").unwrap_or(sig);
            !sig.is_empty()
                && sig.chars().all(|c| c.is_ascii_alphanumeric())
                && secs.parse::<u32>().is_ok()
        });
        if !sig_ok {
            return err(
                "slurm.signal",
                format!("expected [B:]SIGNAL@SECONDS like B:USR1@120, found {:?}", self.signal),
            );
        }
        for (i, line) in self.extra.iter().enumerate() {
            if line.contains('\n') || !line.starts_with("--") {
                return err(
                    &format!("slurm.extra[{i}]"),
                    format!("expected one sbatch option starting with --, found {line:?}"),
                );
            }
        }
        Ok(())
    }
}

fn valid_slurm_time(t: &str) -> bool {
    let all_digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    if days.is_some_and(|d| !all_digits(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    parts.len() <= 3 && parts.iter().all(|p| all_digits(p))
}

fn positive(file: &str, key: &str, v: usize) -> Result<(), SpecError> {
    if v == 0 {
        return Err(SpecError::new(file, key, "expected at least 1, found 0"));
    }
    Ok(())
}

/// `DIFFPROBE_SECTION__KEY=value` variables. Only names with a `__` section separator are spec
/// keys, so `DIFFPROBE_TOKEN` and other plain variables never leak into the spec.
fn env_provider(env: &[(String, String)]) -> Layer {
    let mut root = figment::value::Dict::new();
    let mut keys = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("DIFFPROBE_") else { continue };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        keys.push(path.join("."));
        insert_path(&mut root, &path, parse_value(value));
    }
    Layer { name: ENV_LAYER, keys, dict: root }
}

/// Source name, in errors, of values from `DIFFPROBE_SECTION__KEY` variables.
const ENV_LAYER: &str = "environment";
/// Source name, in errors, of values from `--set`.
const SET_LAYER: &str = "--set";

/// An override layer with a name, so figment tags its values and errors say where a bad value
/// came from (figment's `Serialized` names itself by Rust type).
struct Layer {
    name: &'static str,
    /// Dotted keys this layer sets.
    keys: Vec<String>,
    dict: figment::value::Dict,
}

impl figment::Provider for Layer {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.name)
    }
    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.dict.clone()))
    }
}

fn insert_path(dict: &mut figment::value::Dict, path: &[String], value: figment::value::Value) {
    use figment::value::{Dict, Value};
    if path.len() == 1 {
        dict.insert(path[0].clone(), value);
        return;
    }
    let entry = dict.entry(path[0].clone()).or_insert_with(|| Value::from(Dict::new()));
    if let Value::Dict(_, inner) = entry {
        insert_path(inner, &path[1..], value);
    }
}

/// Parses `key.path=value`; the value is read as TOML (number, bool, array, string) and falls
/// back to a plain string.
fn parse_set(set: &str) -> Result<(String, figment::value::Value), SpecError> {
    let Some((key, value)) = set.split_once('=') else {
        return Err(SpecError::new("--set", set, "expected key.path=value"));
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(SpecError::new(
            "--set",
            key,
            "expected a dotted key path like analysis.attribute_probe.alpha",
        ));
    }
    Ok((key.to_string(), parse_value(value.trim())))
}

fn parse_value(raw: &str) -> figment::value::Value {
    #[derive(Deserialize)]
    struct Holder {
        v: figment::value::Value,
    }
    match toml::from_str::<toml::Value>(&format!("v = {raw}")) {
        // No spec key is a TOML date or time: `01:00:00` (slurm.time) stays a string.
        Ok(t) if matches!(t.get("v"), Some(toml::Value::Datetime(_))) => raw.into(),
        _ => toml::from_str::<Holder>(&format!("v = {raw}"))
            .map(|h| h.v)
            .unwrap_or_else(|_| raw.into()),
    }
}

fn figment_error(file: &str, e: figment::Error) -> SpecError {
    let from_layer = match &e.metadata {
        Some(m) if m.name == ENV_LAYER || m.name == SET_LAYER => Some(m.name.to_string()),
        _ => None,
    };
    let source = from_layer.clone().unwrap_or_else(|| file.to_string());
    let mut key = e.path.join(".");
    // figment's path already ends with the offending field for some kinds; append it only if not.
    let mut with_field = |field: &str| {
        if e.path.last().map(String::as_str) != Some(field) {
            key = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
        }
    };
    let message = match &e.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            with_field(field);
            format!("unknown key, expected one of: {}", expected.join(", "))
        }
        figment::error::Kind::MissingField(field) => {
            with_field(field);
            "missing key".to_string()
        }
        figment::error::Kind::InvalidType(actual, expected) => {
            let hint = if from_layer.is_some() && expected == "a string" {
                " (the value is read as TOML; put it in double quotes to pass a string)"
            } else {
                ""
            };
            format!("expected {expected}, found {actual}{hint}")
        }
        figment::error::Kind::UnknownVariant(found, expected) => {
            format!("unknown value {found:?}, expected one of: {}", expected.join(", "))
        }
        other => other.to_string(),
    };
    SpecError::new(source, if key.is_empty() { "(top level)".into() } else { key }, message)
}

#[cfg(test)]
mod tests;
