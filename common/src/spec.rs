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
mod analysis;
mod dense;
mod diffusion;
mod directions;
mod layers;
mod semantic;
mod sweep;
mod transform;
mod validate;
pub use alignment::{AlignmentDistance, AlignmentSection, EarlyStoppingChoice, TripletEntries};
pub use analysis::{AnalysisSection, AttributeProbeSection, ProbePrecision};
pub use dense::{DenseControl, DenseFit, DenseProbeSection, DenseTargetKind};
pub use diffusion::{
    CaptureMode, Conditioning, GenerateSection, GuidanceRecord, ImageSection, NoiseSeeding,
    SamplerKind, StepSelection,
};
pub use directions::{ClusterSpace, ClustersSection, DirectionsSection};
use layers::{env_provider, figment_error, insert_path, parse_set, Layer, ENV_LAYER, SET_LAYER};
pub use semantic::{SemanticDistance, SemanticSection};
pub use sweep::{SlurmSection, SweepSection};
pub use transform::ImageTransform;

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
        if let Some(objects) = &mut self.capture.image.objects {
            join(objects);
        }
        if let Some(a) = &mut self.analysis.alignment {
            a.resolve_paths(&join);
        }
        if let Some(d) = &mut self.analysis.directions {
            d.resolve_paths(&join);
        }
        if let Some(d) = &mut self.analysis.dense_probe {
            d.resolve_paths(&join);
        }
        if let Some(s) = &mut self.analysis.semantic {
            s.resolve_paths(&join);
        }
    }
}

fn positive(file: &str, key: &str, v: usize) -> Result<(), SpecError> {
    if v == 0 {
        return Err(SpecError::new(file, key, "expected at least 1, found 0"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
