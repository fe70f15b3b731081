//! Stage two of the spec (ripgrep's high args): the resolved plan. Locates the model, reads the
//! dataset, expands taps × poolings into representations and the grid into units with stable
//! content-hash ids. `diffprobe plan` is exactly this path with nothing launched.

use std::path::Path;

use common::error::SpecError;
use common::ids::{UnitId, UnitKind};
use common::settings::Contrasts;
use common::spec::{
    AlignmentSection, CaptureMode, Conditioning, ImageTransform, JobSpec, ModelKind, StorageDtype,
};
use common::stimuli::{AlignmentInputs, Dataset};
use common::unit::{
    AlignmentTask, AlignmentUnit, CaptureUnit, GridUnit, ProbeUnit, Representation, UnitSpec,
};
use serde::Serialize;

use self::analyses::{dense_representations, dense_units, direction_units, semantic_units};

/// Everything a run needs, derived from the spec.
pub(crate) struct Plan {
    pub(crate) spec: JobSpec,
    pub(crate) dataset: Dataset,
    pub(crate) representations: Vec<(Representation, usize)>,
    /// The resolved triplets and embedding of `[analysis.alignment]`, if the spec has it.
    pub(crate) alignment: Option<AlignmentInputs>,
    pub(crate) units: Vec<(UnitId, UnitSpec)>,
}

/// Sizes and work of a plan, for `diffprobe plan`.
#[derive(Debug, Serialize)]
pub(crate) struct Estimate {
    pub(crate) stimuli: usize,
    pub(crate) dropped_stimuli: usize,
    pub(crate) attributes: usize,
    pub(crate) representations: usize,
    pub(crate) capture_units: usize,
    pub(crate) probe_units: usize,
    pub(crate) alignment_units: usize,
    pub(crate) direction_units: usize,
    pub(crate) dense_units: usize,
    /// Capture units through the weight-permuted U-Net (the dense control).
    pub(crate) control_capture_units: usize,
    pub(crate) semantic_units: usize,
    pub(crate) triplets: usize,
    pub(crate) feature_bytes: u64,
    pub(crate) probe_bytes: u64,
    pub(crate) forward_passes: usize,
    pub(crate) eigendecompositions: usize,
    pub(crate) permutation_fits: u64,
}

impl Plan {
    /// Builds the plan for a loaded spec. `spec_file` names the spec in error messages.
    pub(crate) fn build(spec: JobSpec, spec_file: &str) -> anyhow::Result<Plan> {
        let dataset = Dataset::load(&spec, spec_file)?;
        let taps = worker::capture::available_taps(&spec.model, &spec.capture).map_err(|e| {
            SpecError::new(spec_file, "model.path", format!("cannot read the model: {e}"))
        })?;
        let mut representations = Vec::new();
        for pattern in &spec.capture.taps {
            let matched: Vec<_> =
                taps.iter().filter(|t| glob_match::glob_match(pattern, &t.name)).collect();
            if matched.is_empty() {
                let valid: Vec<&str> = taps.iter().map(|t| t.name.as_str()).collect();
                let msg =
                    format!("no tap matches {pattern:?}; valid taps are {}", valid.join(", "));
                return Err(SpecError::new(spec_file, "capture.taps", msg).into());
            }
            for tap in matched {
                for rep in tap_representations(&spec, tap) {
                    let dim = tap.dim(rep.pooling);
                    if !representations.iter().any(|(r, _)| r == &rep) {
                        representations.push((rep, dim));
                    }
                }
            }
        }
        if spec.model.kind == ModelKind::Sd && spec.capture.mode == CaptureMode::Image {
            check_images(&spec, &dataset, spec_file)?;
        }
        let alignment = crate::alignment::resolve(&spec, spec_file, &dataset)?;
        let contrasts = crate::directions::resolve(&spec, spec_file, &dataset)?;
        let channels = taps.iter().map(|t| (t.name.clone(), t.channels)).collect();
        let dense = crate::dense::resolve(&spec, spec_file, &dataset, channels)?;
        let positions: Vec<(String, usize)> =
            taps.iter().filter_map(|t| Some((t.name.clone(), t.positions?))).collect();
        let semantic = crate::semantic::resolve(&spec, spec_file, &dataset, &positions)?;
        let inputs = AnalysisInputs {
            alignment: alignment.as_ref(),
            contrasts: contrasts.as_ref(),
            dense: dense.as_ref(),
            semantic: semantic.as_ref(),
        };
        let units = units(&spec, &dataset, &representations, inputs, spec_file)?;
        Ok(Plan { spec, dataset, representations, alignment, units })
    }

    pub(crate) fn estimate(&self) -> Estimate {
        let n = self.dataset.len();
        let j = self.dataset.attributes.len();
        let p = &self.spec.analysis.attribute_probe;
        let width: usize = self.representations.iter().map(|(_, d)| d).sum();
        let bytes_per = match self.spec.capture.dtype {
            StorageDtype::F32 => 4,
            StorageDtype::F16 => 2,
        };
        let reps = self.representations.iter().filter(|(r, _)| r.replicate.is_none()).count();
        let count = |k: UnitKind| self.units.iter().filter(|(_, u)| u.kind() == k).count();
        Estimate {
            stimuli: n,
            dropped_stimuli: self.dataset.dropped.len(),
            attributes: j,
            representations: self.representations.len(),
            capture_units: count(UnitKind::Capture),
            probe_units: count(UnitKind::Probe) + count(UnitKind::Grid),
            alignment_units: count(UnitKind::Alignment),
            direction_units: count(UnitKind::Directions) + count(UnitKind::Clusters),
            dense_units: count(UnitKind::Dense),
            control_capture_units: self.control_capture_units(),
            semantic_units: count(UnitKind::Semantic),
            triplets: self.alignment.as_ref().map_or(0, |a| a.triplets.len()),
            feature_bytes: (n * width * bytes_per + n * self.representations.len() * 8) as u64
                + self.control_feature_values() * bytes_per as u64,
            // Per (rep, attribute, fold): null RMSEs plus predictions and indices for its test rows.
            probe_bytes: (reps * j * (p.folds * (p.permutations * 8 + 64)) + reps * j * n * 12)
                as u64,
            forward_passes: n * self.passes_per_stimulus() * (1 + usize::from(self.has_control())),
            eigendecompositions: reps * p.folds,
            permutation_fits: (reps * j * p.folds) as u64 * p.permutations as u64,
        }
    }
}

/// The representations of one tap: its poolings × the capture contexts that apply to it.
fn tap_representations(spec: &JobSpec, tap: &worker::capture::TapInfo) -> Vec<Representation> {
    let c = &spec.capture;
    if tap.is_text() {
        let pools = c.text_poolings(spec.model.kind);
        return pools.into_iter().map(|p| Representation::text(tap.name.clone(), p)).collect();
    }
    // Only U-Net taps of `sd` models reach here; the spec validated the step selection.
    type Context =
        (Option<usize>, Option<u32>, Option<Conditioning>, Option<ImageTransform>, Option<u32>);
    let mut contexts: Vec<Context> = Vec::new();
    match c.mode {
        CaptureMode::Generate => {
            let steps = c.generate.record_steps.resolve(c.generate.steps).unwrap_or_default();
            contexts.extend(steps.into_iter().map(|k| (Some(k), None, None, None, None)));
        }
        CaptureMode::Image => {
            // The untransformed image first, then each transform's.
            let transforms =
                std::iter::once(None).chain(c.image.transforms.iter().map(|&t| Some(t)));
            let steps: Vec<Option<u32>> = match c.image.denoise_steps.as_slice() {
                [] => vec![None],
                some => some.iter().map(|&d| Some(d)).collect(),
            };
            for transform in transforms {
                for &n in &c.image.noise_levels {
                    for &cd in &c.image.conditioning {
                        let with = |&d: &Option<u32>| (None, Some(n), Some(cd), transform, d);
                        contexts.extend(steps.iter().map(with));
                    }
                }
            }
        }
    }
    let replicates = match (c.mode, c.generate.keep_replicates) {
        (CaptureMode::Generate, true) => c.generate.replicates as u32,
        _ => 0,
    };
    let mut reps = Vec::new();
    for (step, noise, conditioning, transform, denoised) in contexts {
        for pooling in c.unet_poolings(&tap.name) {
            let tap = tap.name.clone();
            let mean = Representation {
                tap,
                pooling,
                step,
                noise,
                conditioning,
                replicate: None,
                permuted: None,
                transform,
                denoised,
            };
            reps.extend((0..replicates).map(|r| mean.of_replicate(r)));
            reps.push(mean);
        }
    }
    reps
}

/// With `capture.image.objects`: every stimulus is an object of the table whose image and mask
/// exist and have the run's size (headers only).
fn check_objects(
    spec: &JobSpec,
    data: &Dataset,
    spec_file: &str,
    path: &Path,
    (height, width): (usize, usize),
) -> Result<(), SpecError> {
    let err = |m: String| SpecError::new(spec_file, "capture.image.objects", m);
    let table = worker::capture::ObjectTable::read(path).map_err(err)?;
    let image = &spec.capture.image;
    let masks = image.masks.as_deref().expect("validated: objects need masks");
    for s in &data.stimuli {
        let o = table
            .get(s)
            .ok_or_else(|| err(format!("{}: no row for stimulus {s:?}", path.display())))?;
        worker::capture::check_image(&image.folder, &o.image, height, width).map_err(err)?;
        match &o.mask {
            worker::capture::MaskSource::File(file) => {
                let p = masks.join(file);
                let (w, h) = ::image::image_dimensions(&p)
                    .map_err(|e| err(format!("{}: {e}", p.display())))?;
                if (h as usize, w as usize) != (height, width) {
                    return Err(err(format!("{}: mask is {w}×{h} px", p.display())));
                }
            }
            worker::capture::MaskSource::Value(_) => {
                worker::capture::check_image(masks, &o.image, height, width).map_err(err)?;
            }
        }
    }
    Ok(())
}

/// Real-image mode: every stimulus has an image of the run's size (headers only).
fn check_images(spec: &JobSpec, data: &Dataset, spec_file: &str) -> Result<(), SpecError> {
    let size = worker::capture::image_size(&spec.model, &spec.capture)
        .map_err(|e| SpecError::new(spec_file, "capture.image", e.to_string()))?;
    let image = &spec.capture.image;
    if let Some(path) = &image.objects {
        return check_objects(spec, data, spec_file, path, size);
    }
    let folders = [
        ("capture.image.folder", Some(&image.folder)),
        ("capture.image.masks", image.masks.as_ref()),
    ];
    for (key, folder) in folders {
        let Some(folder) = folder else { continue };
        for name in &data.stimuli {
            worker::capture::check_image(folder, name, size.0, size.1)
                .map_err(|e| SpecError::new(spec_file, key, e))?;
        }
    }
    Ok(())
}

impl Plan {
    /// Capture units through a weight-permuted U-Net (the dense control).
    fn control_capture_units(&self) -> usize {
        let permuted = |u: &UnitSpec| match u {
            UnitSpec::Capture(c) => c.representations.iter().any(|r| r.permuted.is_some()),
            _ => false,
        };
        self.units.iter().filter(|(_, u)| permuted(u)).count()
    }

    fn has_control(&self) -> bool {
        self.control_capture_units() > 0
    }

    /// Feature values the weight-permuted control's capture units write.
    fn control_feature_values(&self) -> u64 {
        let width = |r: &Representation| {
            let own = Representation { permuted: None, ..r.clone() };
            self.representations.iter().find(|(x, _)| *x == own).map_or(0, |(_, d)| *d)
        };
        let mut values = 0;
        for (_, unit) in &self.units {
            let UnitSpec::Capture(c) = unit else { continue };
            let per: usize =
                c.representations.iter().filter(|r| r.permuted.is_some()).map(width).sum();
            values += ((c.end - c.start) * per) as u64;
        }
        values
    }

    /// Model forward passes per stimulus: one text pass, plus the U-Net passes of `sd` runs.
    fn passes_per_stimulus(&self) -> usize {
        let c = &self.spec.capture;
        let unet = self.representations.iter().any(|(r, _)| r.step.is_some() || r.noise.is_some());
        if !unet {
            return 1;
        }
        match c.mode {
            CaptureMode::Generate => {
                let last = self.representations.iter().filter_map(|(r, _)| r.step).max();
                1 + c.generate.replicates * (last.unwrap_or(0) + 1)
            }
            // Objects sharing an image share its passes: this counts one image per stimulus.
            CaptureMode::Image => {
                let views = 1 + c.image.transforms.len();
                let chain = 1 + c.image.denoise_steps.iter().max().copied().unwrap_or(0) as usize;
                1 + views * c.image.noise_levels.len() * c.image.conditioning.len() * chain
            }
        }
    }
}

/// What identifies the model in capture unit ids: its files' content (configs) and size
/// (weights), not its path, and the compute dtype, which changes the activations. The dtype is
/// left out when it is `f32`, so the ids of `f32` runs are those of versions before it was
/// hashed.
#[derive(Serialize)]
struct ModelIdentity {
    kind: common::spec::ModelKind,
    config: String,
    weights_bytes: u64,
    #[serde(skip_serializing_if = "is_f32")]
    dtype: StorageDtype,
    /// The merged LoRAs: each file's fingerprint and its scale, in merge order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    loras: Vec<(String, f64)>,
    /// The content fingerprint of `capture.image.objects`, which decides each stimulus's image
    /// and mask (the path alone is in `[capture]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    objects: Option<String>,
}

fn is_f32(dtype: &StorageDtype) -> bool {
    *dtype == StorageDtype::F32
}

impl ModelIdentity {
    fn new(
        model: &common::spec::ModelSection,
        config: String,
        weights_bytes: u64,
        loras: Vec<(String, f64)>,
    ) -> Self {
        ModelIdentity {
            kind: model.kind,
            config,
            weights_bytes,
            dtype: model.dtype,
            loras,
            objects: None,
        }
    }
}

fn model_identity(spec: &JobSpec, spec_file: &str) -> Result<ModelIdentity, SpecError> {
    let dir = &spec.model.path;
    let (configs, weights): (&[&str], &[&str]) = match spec.model.kind {
        ModelKind::Bert => (&["config.json"], &["model.safetensors"]),
        ModelKind::Sd => (
            &[
                "unet/config.json",
                "text_encoder/config.json",
                "vae/config.json",
                "scheduler/scheduler_config.json",
            ],
            &["unet", "text_encoder", "vae"],
        ),
    };
    let missing = |name: &str, e: std::io::Error| {
        SpecError::new(spec_file, "model.path", format!("{}: {e}", dir.join(name).display()))
    };
    let mut config = Vec::new();
    for name in configs {
        config.extend(std::fs::read(dir.join(name)).map_err(|e| missing(name, e))?);
    }
    let mut weights_bytes = 0;
    for name in weights {
        weights_bytes += weight_bytes(&dir.join(name)).map_err(|e| missing(name, e))?;
    }
    // A LoRA is hashed whole (tens of MB): retraining it under the same name must change ids.
    let mut loras = Vec::new();
    for (i, lora) in spec.model.lora.iter().enumerate() {
        let bytes = std::fs::read(&lora.path).map_err(|e| {
            let field = format!("model.lora[{i}].path");
            SpecError::new(spec_file, &field, format!("{}: {e}", lora.path.display()))
        })?;
        loras.push((common::ids::fingerprint(&bytes), lora.scale));
    }
    let config = common::ids::fingerprint(&config);
    let mut identity = ModelIdentity::new(&spec.model, config, weights_bytes, loras);
    if let Some(path) =
        spec.capture.image.objects.as_ref().filter(|_| spec.capture.mode == CaptureMode::Image)
    {
        let bytes = std::fs::read(path).map_err(|e| {
            SpecError::new(spec_file, "capture.image.objects", format!("{}: {e}", path.display()))
        })?;
        identity.objects = Some(common::ids::fingerprint(&bytes));
    }
    Ok(identity)
}

/// Size of a weights file, or of the `.safetensors` files in a folder.
fn weight_bytes(path: &Path) -> std::io::Result<u64> {
    if path.is_file() {
        return Ok(std::fs::metadata(path)?.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "safetensors") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// The plan-time inputs of the analyses that have them.
#[derive(Clone, Copy, Default)]
struct AnalysisInputs<'a> {
    alignment: Option<&'a AlignmentInputs>,
    contrasts: Option<&'a Contrasts>,
    dense: Option<&'a crate::dense::DenseInputs>,
    semantic: Option<&'a common::settings::SemanticSettings>,
}

fn units(
    spec: &JobSpec,
    data: &Dataset,
    reps: &[(Representation, usize)],
    inputs: AnalysisInputs<'_>,
    spec_file: &str,
) -> anyhow::Result<Vec<(UnitId, UnitSpec)>> {
    let model = model_identity(spec, spec_file)?;
    let reps: Vec<Representation> = reps.iter().map(|(r, _)| r.clone()).collect();
    Ok(resolve_units(spec, &model, data, &reps, inputs))
}

/// The units of a plan and their ids, without I/O. Stage-1 units carry the settings they run
/// with, resolved here once from the spec (`common::settings`); their id hashes the unit, so
/// it hashes exactly what the worker runs, and nothing else of the spec.
fn resolve_units(
    spec: &JobSpec,
    model: &ModelIdentity,
    data: &Dataset,
    reps: &[Representation],
    inputs: AnalysisInputs<'_>,
) -> Vec<(UnitId, UnitSpec)> {
    let (mut units, captures) = capture_units(spec, model, data, reps);
    let fingerprint = data.fingerprint();
    let probe = spec.analysis.attribute_probe.probe_settings();
    let grid = spec.analysis.attribute_probe.grid_settings();
    let folds: Vec<usize> = (0..probe.folds).collect();
    let alignment = match (&spec.analysis.alignment, inputs.alignment) {
        (Some(section), Some(inputs)) => Some((alignment_tasks(section), inputs.fingerprint())),
        _ => None,
    };
    // Per-replicate rows serve analyses over replicates; probes fit on their mean.
    for rep in reps.iter().filter(|r| r.replicate.is_none()) {
        for block in folds.chunks(spec.sweep.folds_per_unit) {
            let unit = ProbeUnit {
                representation: rep.clone(),
                folds: block.to_vec(),
                settings: probe.clone(),
                inputs: Vec::new(),
            };
            let id = UnitId::of("probe", &(&fingerprint, &captures, &unit));
            units.push((id, UnitSpec::Probe(unit)));
        }
        if let Some(settings) = &grid {
            // The paper's Fig. 5: the grid on one fold (fold 0).
            let unit = GridUnit {
                representation: rep.clone(),
                fold: 0,
                settings: settings.clone(),
                inputs: Vec::new(),
            };
            let id = UnitId::of("grid", &(&fingerprint, &captures, &unit));
            units.push((id, UnitSpec::Grid(unit)));
        }
        if let Some((tasks, inputs_fingerprint)) = &alignment {
            // The triplets and the embedding enter the id through their content fingerprint.
            for task in tasks {
                let unit = AlignmentUnit {
                    representation: rep.clone(),
                    task: task.clone(),
                    inputs: Vec::new(),
                };
                let id =
                    UnitId::of("alignment", &(&fingerprint, inputs_fingerprint, &captures, &unit));
                units.push((id, UnitSpec::Alignment(unit)));
            }
        }
    }
    if let Some(contrasts) = inputs.contrasts {
        let ids = (&fingerprint, &captures);
        units.extend(direction_units(spec, reps, contrasts, ids));
    }
    if let Some(dense) = inputs.dense {
        let probed: Vec<Representation> = dense_representations(reps, dense).cloned().collect();
        units.extend(dense_units(&probed, dense, (&fingerprint, &captures)));
        if let Some(seed) = dense.control {
            let control: Vec<Representation> = probed.iter().map(|r| r.of_permuted(seed)).collect();
            let (capture_units, control_captures) = capture_units(spec, model, data, &control);
            units.extend(capture_units);
            units.extend(dense_units(&control, dense, (&fingerprint, &control_captures)));
        }
    }
    if let Some(settings) = inputs.semantic {
        let ablation = spec.analysis.semantic.as_ref().is_some_and(|s| s.ablation);
        units.extend(semantic_units(reps, settings, ablation, (&fingerprint, &captures)));
    }
    units
}

/// The capture units of `reps`, one per shard of stimuli, and the hash of their ids: every
/// stage-1 unit depends on all of them, so their ids are hashed once and planning costs capture
/// units + stage-1 units, not their product (10⁵ × 9·10⁵ at full scale).
fn capture_units(
    spec: &JobSpec,
    model: &ModelIdentity,
    data: &Dataset,
    reps: &[Representation],
) -> (Vec<(UnitId, UnitSpec)>, UnitId) {
    let mut units = Vec::new();
    let per = spec.sweep.stimuli_per_unit;
    for (shard, start) in (0..data.len()).step_by(per).enumerate() {
        let end = (start + per).min(data.len());
        let unit = CaptureUnit { shard, start, end, representations: reps.to_vec() };
        let id = UnitId::of("capture", &(model, &spec.capture, &data.texts[start..end], &unit));
        units.push((id, UnitSpec::Capture(unit)));
    }
    let ids: Vec<&UnitId> = units.iter().map(|(id, _)| id).collect();
    let captures = UnitId::of("captures", &ids);
    (units, captures)
}

/// The alignment units of one representation: the cheap analyses in one unit, then one unit
/// per fold of the linear probe (each trains a D × D map: the expensive part, and the part a
/// GPU worker helps with), so the folds run in parallel and a failed fold retries alone. Each
/// carries only its own settings: changing the linear probe's λ re-runs only the probe units,
/// changing the distances only the evaluate units.
fn alignment_tasks(a: &AlignmentSection) -> Vec<AlignmentTask> {
    let mut tasks = vec![AlignmentTask::Evaluate(a.evaluate_settings())];
    if let Some(settings) = a.linear_probe_settings() {
        tasks.extend(
            (0..settings.folds)
                .map(|fold| AlignmentTask::LinearProbe { fold, settings: settings.clone() }),
        );
    }
    tasks
}

/// Loads the spec given on the command line, with env and `--set` layers.
pub(crate) fn load_spec(path: &Path, sets: &[String]) -> anyhow::Result<JobSpec> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    Ok(JobSpec::load(path, &env, sets)?)
}

mod analyses;
pub(crate) mod print;
#[cfg(test)]
mod tests;
