//! Unit descriptors: what a worker must do for one unit of work. The coordinator sends them as
//! JSON in a lease, with inputs already resolved to committed files.
//!
//! A *representation* is one tap pooled one way (e.g. `text.3/mean`); it is the N × D matrix a
//! probe fits on.

use serde::{Deserialize, Serialize};

use crate::settings::{EvaluateSettings, GridSettings, LinearProbeSettings, ProbeSettings};
use crate::spec::{Conditioning, ImageTransform, Pooling};

mod analyses;
pub use analyses::{ClustersUnit, DenseUnit, DirectionsUnit, SemanticUnit};

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
    /// Generation mode with `capture.generate.keep_replicates`: one replicate's row (0-based)
    /// rather than the mean over replicates (U-Net taps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicate: Option<u32>,
    /// Captured through the weight-permuted U-Net of this seed (`[analysis.dense_probe]`'s
    /// `control = "permute_weights"`) rather than the model's own weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permuted: Option<u64>,
    /// Real-image mode: the image and its mask seen through this transform
    /// (`capture.image.transforms`) rather than as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<ImageTransform>,
    /// Real-image mode with `capture.image.denoise_steps`: recorded after this many DDIM steps
    /// from the noise level (img2img; 0 is the noised image's own pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denoised: Option<u32>,
}

impl Representation {
    /// A text-encoder (or step-independent) representation.
    pub fn text(tap: impl Into<String>, pooling: Pooling) -> Representation {
        Representation {
            tap: tap.into(),
            pooling,
            step: None,
            noise: None,
            conditioning: None,
            replicate: None,
            permuted: None,
            transform: None,
            denoised: None,
        }
    }

    /// The key used in files and reports, e.g. `text.3/mean`, `mid_block/flatten/k49`,
    /// `up_blocks.1/mean/n20/empty` (the [`Display`](std::fmt::Display) form, which
    /// [`FromStr`](std::str::FromStr) parses back).
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// The replicate-mean representation this one is a replicate of (itself when it is a mean).
    pub fn mean(&self) -> Representation {
        Representation { replicate: None, ..self.clone() }
    }

    /// This representation captured through the U-Net whose weights are permuted with `seed`.
    pub fn of_permuted(&self, seed: u64) -> Representation {
        Representation { permuted: Some(seed), ..self.clone() }
    }

    /// Replicate `r` of this representation.
    pub fn of_replicate(&self, r: u32) -> Representation {
        Representation { replicate: Some(r), ..self.clone() }
    }

    /// The permutation, step, noise level, conditioning and replicate part of the key (`k49`,
    /// `n20/empty`, `k3/r1`, `p7/n20/empty`; empty for a text-encoder representation): what
    /// tells apart the representations of one tap and pooling.
    pub fn context(&self) -> String {
        let mut parts = Vec::new();
        if let Some(seed) = self.permuted {
            parts.push(format!("p{seed}"));
        }
        if let Some(k) = self.step {
            parts.push(format!("k{k}"));
        }
        if let Some(n) = self.noise {
            parts.push(format!("n{n}"));
        }
        if let Some(c) = self.conditioning {
            parts.push(c.name().to_string());
        }
        if let Some(r) = self.replicate {
            parts.push(format!("r{r}"));
        }
        if let Some(d) = self.denoised {
            parts.push(format!("d{d}"));
        }
        if let Some(t) = self.transform {
            parts.push(format!("t:{t}"));
        }
        parts.join("/")
    }
}

impl std::fmt::Display for Representation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tap, self.pooling.name())?;
        let context = self.context();
        if !context.is_empty() {
            write!(f, "/{context}")?;
        }
        Ok(())
    }
}

/// Text that is not a representation key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a representation key: {0:?} (expected <tap>/<pooling>[/p<seed>][/k<step>][/n<noise>][/<conditioning>][/r<replicate>][/d<steps>][/t:<transform>])")]
pub struct RepresentationKeyError(pub String);

impl std::str::FromStr for Representation {
    type Err = RepresentationKeyError;

    /// Parses a key from the right: the optional replicate, conditioning, noise level, step and
    /// permutation seed, then the pooling; what is left is the tap, which may itself contain `/`.
    fn from_str(key: &str) -> Result<Representation, RepresentationKeyError> {
        let bad = || RepresentationKeyError(key.to_string());
        let mut segments: Vec<&str> = key.split('/').collect();
        let transform = match segments.last().and_then(|s| s.strip_prefix("t:")) {
            Some(t) => {
                let t = t.parse::<ImageTransform>().map_err(|_| bad())?;
                segments.pop();
                Some(t)
            }
            None => None,
        };
        let denoised = numbered(&mut segments, 'd');
        let replicate = numbered(&mut segments, 'r');
        let conditioning = match segments.last().and_then(|s| by_name::<Conditioning>(s)) {
            Some(c) => {
                segments.pop();
                Some(c)
            }
            None => None,
        };
        let noise = numbered(&mut segments, 'n');
        let step = numbered(&mut segments, 'k');
        let permuted = numbered(&mut segments, 'p');
        let pooling = segments.pop().and_then(by_name::<Pooling>).ok_or_else(bad)?;
        let tap = segments.join("/");
        if tap.is_empty() {
            return Err(bad());
        }
        Ok(Representation {
            tap,
            pooling,
            step,
            noise,
            conditioning,
            replicate,
            permuted,
            transform,
            denoised,
        })
    }
}

/// A unit-like enum variant by its serde name (the name `Pooling::name` and
/// `Conditioning::name` write; the round-trip test holds them together).
fn by_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    use serde::de::IntoDeserializer;
    let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        name.into_deserializer();
    T::deserialize(de).ok()
}

/// Pops the last segment if it is `prefix` followed by a number (`k49`, `n20`).
fn numbered<T: std::str::FromStr>(segments: &mut Vec<&str>, prefix: char) -> Option<T> {
    let value = segments.last()?.strip_prefix(prefix)?;
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parsed = value.parse().ok()?;
    segments.pop();
    Some(parsed)
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
    /// Biases and descriptor rankings of one representation's replicates
    /// (`[analysis.directions]`).
    Directions(DirectionsUnit),
    /// Concept clusters of one representation's replicates (`[analysis.clusters]`).
    Clusters(ClustersUnit),
    /// Dense probes of one unreduced representation (`[analysis.dense_probe]`).
    Dense(DenseUnit),
    /// Class semantics of one representation (`[analysis.semantic]`).
    Semantic(SemanticUnit),
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
        self.kind().output_dir()
    }
    /// Dependency stage: a unit runs only when every unit of a lower stage is committed.
    pub fn stage(&self) -> u32 {
        match self {
            UnitSpec::Capture(_) => 0,
            UnitSpec::Probe(_)
            | UnitSpec::Grid(_)
            | UnitSpec::Alignment(_)
            | UnitSpec::Directions(_)
            | UnitSpec::Clusters(_)
            | UnitSpec::Dense(_)
            | UnitSpec::Semantic(_) => 1,
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
            UnitSpec::Directions(d) => Some(&mut d.inputs),
            UnitSpec::Clusters(c) => Some(&mut c.inputs),
            UnitSpec::Dense(d) => Some(&mut d.inputs),
            UnitSpec::Semantic(s) => Some(&mut s.inputs),
        }
    }
    /// The representation a stage-1 unit analyses.
    pub fn representation(&self) -> Option<&Representation> {
        match self {
            UnitSpec::Capture(_) => None,
            UnitSpec::Probe(p) => Some(&p.representation),
            UnitSpec::Grid(g) => Some(&g.representation),
            UnitSpec::Alignment(a) => Some(&a.representation),
            UnitSpec::Directions(d) => Some(&d.representation),
            UnitSpec::Clusters(c) => Some(&c.representation),
            UnitSpec::Dense(d) => Some(&d.representation),
            UnitSpec::Semantic(s) => Some(&s.representation),
        }
    }
    /// The unit's kind.
    pub fn kind(&self) -> crate::ids::UnitKind {
        match self {
            UnitSpec::Capture(_) => crate::ids::UnitKind::Capture,
            UnitSpec::Probe(_) => crate::ids::UnitKind::Probe,
            UnitSpec::Grid(_) => crate::ids::UnitKind::Grid,
            UnitSpec::Alignment(_) => crate::ids::UnitKind::Alignment,
            UnitSpec::Directions(_) => crate::ids::UnitKind::Directions,
            UnitSpec::Clusters(_) => crate::ids::UnitKind::Clusters,
            UnitSpec::Dense(_) => crate::ids::UnitKind::Dense,
            UnitSpec::Semantic(_) => crate::ids::UnitKind::Semantic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Would catch a key format changed on one side only: every pooling, with and without a
    /// step, noise level and conditioning, and taps that contain `/` or look like a pooling,
    /// parses back from its key to the same representation.
    #[test]
    fn representation_keys_parse_back() {
        let poolings = [
            Pooling::Cls,
            Pooling::Mean,
            Pooling::Eos,
            Pooling::Flatten,
            Pooling::Max,
            Pooling::None,
            Pooling::MaskMean,
        ];
        let taps = [
            "text.3",
            "mid_block",
            "up_blocks.1/attentions.0",
            "a/mean",
            "k3",
            "n/empty",
            "r2",
            "p1",
        ];
        for tap in taps {
            for pooling in poolings {
                for step in [None, Some(0), Some(49)] {
                    for noise in [None, Some(20)] {
                        for conditioning in
                            [None, Some(Conditioning::Empty), Some(Conditioning::Prompt)]
                        {
                            for (replicate, permuted, transform) in [
                                (None, None, None),
                                (Some(0), None, None),
                                (Some(7), Some(0), None),
                                (None, Some(5), Some(ImageTransform::Shift(8, -8))),
                                (None, None, Some(ImageTransform::Rot90)),
                            ] {
                                let r = Representation {
                                    tap: tap.into(),
                                    pooling,
                                    step,
                                    noise,
                                    conditioning,
                                    replicate,
                                    permuted,
                                    transform,
                                    denoised: transform.map(|_| 3),
                                };
                                let parsed = r.key().parse::<Representation>();
                                assert_eq!(parsed, Ok(r.clone()), "{}", r.key());
                            }
                        }
                    }
                }
            }
        }
        let unet = Representation {
            step: Some(49),
            ..Representation::text("mid_block", Pooling::Flatten)
        };
        assert_eq!(unet.key(), "mid_block/flatten/k49");
        assert_eq!(unet.context(), "k49");
        assert_eq!(unet.of_replicate(3).key(), "mid_block/flatten/k49/r3");
        assert_eq!(unet.of_replicate(3).mean(), unet);
        assert_eq!(unet.of_permuted(7).key(), "mid_block/flatten/p7/k49");
        let turned = Representation { transform: Some(ImageTransform::Rot90), ..unet.clone() };
        assert_eq!(turned.key(), "mid_block/flatten/k49/t:rot90");
        let later = Representation { denoised: Some(2), ..turned };
        assert_eq!(later.key(), "mid_block/flatten/k49/d2/t:rot90");
        for bad in ["", "text.3", "text.3/avg", "/mean", "text.3/mean/x1", "a/mean/t:rot45"] {
            assert_eq!(bad.parse::<Representation>(), Err(RepresentationKeyError(bad.into())));
        }
    }
}
