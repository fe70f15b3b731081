//! Unit descriptors: what a worker must do for one unit of work. The coordinator sends them as
//! JSON in a lease, with inputs already resolved to committed files.
//!
//! A *representation* is one tap pooled one way (e.g. `text.3/mean`); it is the N × D matrix a
//! probe fits on.

use serde::{Deserialize, Serialize};

use crate::settings::{EvaluateSettings, GridSettings, LinearProbeSettings, ProbeSettings};
use crate::spec::{Conditioning, Pooling};

/// One representation of the stimuli.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Representation {
    /// Tap by module name, e.g. `text.3`.
    pub tap: String,
    /// Token pooling or spatial reduction.
    pub pooling: Pooling,
    /// Generation mode: the 0-based sampler step k (U-Net taps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// Real-image mode: the noise level in % (U-Net taps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<u32>,
    /// Real-image mode: the conditioning text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditioning: Option<Conditioning>,
}

impl Representation {
    /// A text-encoder (or step-independent) representation.
    pub fn text(tap: impl Into<String>, pooling: Pooling) -> Representation {
        Representation { tap: tap.into(), pooling, step: None, noise: None, conditioning: None }
    }

    /// The key used in files and reports, e.g. `text.3/mean`, `mid_block/flatten/k49`,
    /// `up_blocks.1/mean/n20/empty`.
    pub fn key(&self) -> String {
        let mut key = format!("{}/{}", self.tap, self.pooling.name());
        if let Some(k) = self.step {
            key.push_str(&format!("/k{k}"));
        }
        if let Some(n) = self.noise {
            key.push_str(&format!("/n{n}"));
        }
        if let Some(c) = self.conditioning {
            key.push('/');
            key.push_str(c.name());
        }
        key
    }
}

/// A unit of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UnitSpec {
    /// Run the model on a shard of stimuli and record every representation.
    Capture(CaptureUnit),
    /// Fit probes for one representation on a block of folds.
    Probe(ProbeUnit),
    /// The P × α grid of one representation on fold 0 (paper Fig. 5).
    Grid(GridUnit),
    /// Odd-one-out alignment of one representation (`[analysis.alignment]`).
    Alignment(AlignmentUnit),
}

/// A shard of stimuli to run through the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureUnit {
    /// Shard number.
    pub shard: usize,
    /// First stimulus index (into the dataset).
    pub start: usize,
    /// One past the last stimulus index.
    pub end: usize,
    /// Representations to record, in row-group order.
    pub representations: Vec<Representation>,
}

/// Probes of one representation over a block of folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeUnit {
    /// The representation.
    pub representation: Representation,
    /// Fold indices (0-based, of `settings.folds`).
    pub folds: Vec<usize>,
    /// What the probes run with, resolved by the plan (part of the unit id).
    pub settings: ProbeSettings,
    /// Capture outputs to read, relative to the run directory, in shard order. Filled in by
    /// the coordinator when the unit is leased (the committed attempt of each capture unit).
    #[serde(default)]
    pub inputs: Vec<String>,
}

/// The P × α grid of one representation on one fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridUnit {
    /// The representation.
    pub representation: Representation,
    /// The fold (0-based, of `settings.folds`).
    pub fold: usize,
    /// What the grid runs with, resolved by the plan (part of the unit id).
    pub settings: GridSettings,
    /// Capture outputs to read, as for [`ProbeUnit::inputs`].
    #[serde(default)]
    pub inputs: Vec<String>,
}

/// Alignment analyses of one representation: either every cheap analysis (odd-one-out accuracy
/// per distance, the embedding regression) or one fold of the linear probe, which trains a
/// D × D map and is the expensive part, so its folds are separate units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignmentUnit {
    /// The representation.
    pub representation: Representation,
    /// What the unit computes.
    pub task: AlignmentTask,
    /// Capture outputs to read, as for [`ProbeUnit::inputs`].
    #[serde(default)]
    pub inputs: Vec<String>,
}

/// The part of the alignment analyses one unit computes, with the settings it runs with
/// (resolved by the plan; part of the unit id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlignmentTask {
    /// Odd-one-out accuracy for every distance, and the embedding regression if asked for.
    Evaluate(EvaluateSettings),
    /// One fold of the linear-probe alignment.
    LinearProbe {
        /// 0-based fold (of `settings.folds`).
        fold: usize,
        /// The probe's settings.
        settings: LinearProbeSettings,
    },
}

/// The committed capture outputs a probe, grid or alignment unit reads, in shard order: written
/// once by the coordinator to `manifests/inputs-<hash>.json` (`RunLayout::inputs_manifest`) and
/// named by the lease, which then carries no inputs itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputsManifest {
    /// One entry per committed capture unit, in plan order.
    pub inputs: Vec<ManifestInput>,
}

/// One committed capture output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestInput {
    /// The capture unit's id.
    pub unit: String,
    /// Its committed output, relative to the run directory.
    pub path: String,
    /// blake3 of that file, hex.
    pub checksum: String,
}

impl InputsManifest {
    /// Reads a manifest file.
    pub fn read(path: &std::path::Path) -> Result<InputsManifest, crate::error::DataError> {
        let bytes = std::fs::read(path)
            .map_err(|e| crate::error::DataError::Io { path: path.to_path_buf(), source: e })?;
        serde_json::from_slice(&bytes).map_err(|e| crate::error::DataError::Table {
            path: path.to_path_buf(),
            message: format!("not an inputs manifest: {e}"),
        })
    }
}

impl UnitSpec {
    /// The run-directory subfolder of this kind's outputs.
    pub fn output_dir(&self) -> &'static str {
        match self {
            UnitSpec::Capture(_) => "features",
            UnitSpec::Probe(_) | UnitSpec::Grid(_) => "probes",
            UnitSpec::Alignment(_) => "alignment",
        }
    }
    /// Dependency stage: a unit runs only when every unit of a lower stage is committed.
    pub fn stage(&self) -> u32 {
        match self {
            UnitSpec::Capture(_) => 0,
            UnitSpec::Probe(_) | UnitSpec::Grid(_) | UnitSpec::Alignment(_) => 1,
        }
    }
    /// The capture outputs a stage-1 unit reads, for the coordinator to fill in at lease time
    /// (probe, grid and alignment units read capture outputs).
    pub fn feature_inputs(&mut self) -> Option<&mut Vec<String>> {
        match self {
            UnitSpec::Capture(_) => None,
            UnitSpec::Probe(p) => Some(&mut p.inputs),
            UnitSpec::Grid(g) => Some(&mut g.inputs),
            UnitSpec::Alignment(a) => Some(&mut a.inputs),
        }
    }
    /// The representation a stage-1 unit analyses.
    pub fn representation(&self) -> Option<&Representation> {
        match self {
            UnitSpec::Capture(_) => None,
            UnitSpec::Probe(p) => Some(&p.representation),
            UnitSpec::Grid(g) => Some(&g.representation),
            UnitSpec::Alignment(a) => Some(&a.representation),
        }
    }
    /// Short kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            UnitSpec::Capture(_) => "capture",
            UnitSpec::Probe(_) => "probe",
            UnitSpec::Grid(_) => "grid",
            UnitSpec::Alignment(_) => "alignment",
        }
    }
}
