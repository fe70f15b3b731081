//! Stage two of the spec (ripgrep's high args): the resolved plan. Locates the model, reads the
//! dataset, expands taps × poolings into representations and the grid into units with stable
//! content-hash ids. `diffprobe plan` is exactly this path with nothing launched.

use std::path::Path;

use common::error::SpecError;
use common::ids::UnitId;
use common::spec::{JobSpec, StorageDtype};
use common::stimuli::Dataset;
use common::unit::{CaptureUnit, ProbeUnit, Representation, UnitSpec};
use serde::Serialize;

/// Everything a run needs, derived from the spec.
pub(crate) struct Plan {
    pub(crate) spec: JobSpec,
    pub(crate) dataset: Dataset,
    pub(crate) representations: Vec<(Representation, usize)>,
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
        let taps = worker::capture::available_taps(&spec.model).map_err(|e| {
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
                for &pooling in &spec.capture.pooling {
                    let rep = Representation { tap: tap.name.clone(), pooling };
                    if !representations.iter().any(|(r, _)| r == &rep) {
                        representations.push((rep, tap.dim));
                    }
                }
            }
        }
        let units = units(&spec, &dataset, &representations, spec_file)?;
        Ok(Plan { spec, dataset, representations, units })
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
        let reps = self.representations.len();
        let count = |k: &str| self.units.iter().filter(|(_, u)| u.kind() == k).count();
        Estimate {
            stimuli: n,
            dropped_stimuli: self.dataset.dropped.len(),
            attributes: j,
            representations: reps,
            capture_units: count("capture"),
            probe_units: count("probe") + count("grid"),
            feature_bytes: (n * width * bytes_per + n * reps * 8) as u64,
            // Per (rep, attribute, fold): null RMSEs plus predictions and indices for its test rows.
            probe_bytes: (reps * j * (p.folds * (p.permutations * 8 + 64)) + reps * j * n * 12)
                as u64,
            forward_passes: n,
            eigendecompositions: reps * p.folds,
            permutation_fits: (reps * j * p.folds) as u64 * p.permutations as u64,
        }
    }
}

#[derive(Serialize)]
struct ModelIdentity {
    kind: common::spec::ModelKind,
    config: String,
    weights_bytes: u64,
}

fn model_identity(spec: &JobSpec, spec_file: &str) -> Result<ModelIdentity, SpecError> {
    let dir = &spec.model.path;
    let missing = |name: &str, e: std::io::Error| {
        SpecError::new(spec_file, "model.path", format!("{}: {e}", dir.join(name).display()))
    };
    let config = std::fs::read(dir.join("config.json")).map_err(|e| missing("config.json", e))?;
    let weights_bytes = std::fs::metadata(dir.join("model.safetensors"))
        .map_err(|e| missing("model.safetensors", e))?
        .len();
    Ok(ModelIdentity {
        kind: spec.model.kind,
        config: common::ids::fingerprint(&config),
        weights_bytes,
    })
}

fn units(
    spec: &JobSpec,
    data: &Dataset,
    reps: &[(Representation, usize)],
    spec_file: &str,
) -> anyhow::Result<Vec<(UnitId, UnitSpec)>> {
    let model = model_identity(spec, spec_file)?;
    let reps_only: Vec<Representation> = reps.iter().map(|(r, _)| r.clone()).collect();
    let mut units = Vec::new();
    let mut capture_ids = Vec::new();
    let per = spec.sweep.stimuli_per_unit;
    for (shard, start) in (0..data.len()).step_by(per).enumerate() {
        let end = (start + per).min(data.len());
        let unit = CaptureUnit { shard, start, end, representations: reps_only.clone() };
        let id = UnitId::of("capture", &(&model, &spec.capture, &data.texts[start..end], &unit));
        capture_ids.push(id.clone());
        units.push((id, UnitSpec::Capture(unit)));
    }
    let analysis = &spec.analysis.attribute_probe;
    let fingerprint = data.fingerprint();
    let folds: Vec<usize> = (0..analysis.folds).collect();
    for rep in &reps_only {
        for block in folds.chunks(spec.sweep.folds_per_unit) {
            let unit = ProbeUnit {
                representation: rep.clone(),
                folds: block.to_vec(),
                inputs: Vec::new(),
            };
            let id = UnitId::of("probe", &(analysis, &fingerprint, &capture_ids, &unit));
            units.push((id, UnitSpec::Probe(unit)));
        }
        if !analysis.grid_components.is_empty() {
            // The paper's Fig. 5: the grid on one fold (fold 0).
            let unit =
                ProbeUnit { representation: rep.clone(), folds: vec![0], inputs: Vec::new() };
            let id = UnitId::of("grid", &(analysis, &fingerprint, &capture_ids, &unit));
            units.push((id, UnitSpec::Grid(unit)));
        }
    }
    Ok(units)
}

/// Loads the spec given on the command line, with env and `--set` layers.
pub(crate) fn load_spec(path: &Path, sets: &[String]) -> anyhow::Result<JobSpec> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    Ok(JobSpec::load(path, &env, sets)?)
}
