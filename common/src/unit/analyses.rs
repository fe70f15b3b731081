//! The units of the analyses beyond the attribute probe and alignment: prompt directions and
//! clusters (science-2.md §H), dense probes (§D) and the semantic lens (§L). Each reads one
//! representation's capture rows (`inputs`, filled in at lease time) and carries the settings
//! the plan resolved for it.

use serde::{Deserialize, Serialize};

use super::Representation;
use crate::settings::{ClusterSettings, DenseSettings, DirectionsSettings, SemanticSettings};

/// The directions of one replicate-mean representation, read from its per-replicate rows
/// (`representation.of_replicate(r)` for r < `replicates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionsUnit {
    /// The representation (its replicate mean; the unit reads the replicates).
    pub representation: Representation,
    /// Replicates R.
    pub replicates: usize,
    /// What the unit runs with, resolved by the plan (part of the unit id).
    pub settings: DirectionsSettings,
    /// Capture outputs to read, as for [`ProbeUnit::inputs`](super::ProbeUnit::inputs).
    #[serde(default)]
    pub inputs: Vec<String>,
}

/// The concept clusters of one replicate-mean representation, as [`DirectionsUnit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClustersUnit {
    /// The representation (its replicate mean; the unit reads the replicates).
    pub representation: Representation,
    /// Replicates R.
    pub replicates: usize,
    /// What the unit runs with, resolved by the plan (part of the unit id).
    pub settings: ClusterSettings,
    /// Capture outputs to read, as for [`ProbeUnit::inputs`](super::ProbeUnit::inputs).
    #[serde(default)]
    pub inputs: Vec<String>,
}

/// Dense probes of one unreduced (`none`) U-Net representation: every target fitted on the
/// training images and scored on each test image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseUnit {
    /// The representation (`tokens × channels` per stimulus, token-major).
    pub representation: Representation,
    /// Channels C of a token.
    pub channels: usize,
    /// What the unit runs with, resolved by the plan (part of the unit id).
    pub settings: DenseSettings,
    /// Capture outputs to read, as for [`ProbeUnit::inputs`](super::ProbeUnit::inputs).
    #[serde(default)]
    pub inputs: Vec<String>,
}

/// The semantic-lens scores of one representation, per distance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SemanticUnit {
    /// The representation.
    pub representation: Representation,
    /// The layer ablation over these representations (one context, every tap; `representation`
    /// is the first) instead of the scores of one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ablation: Vec<Representation>,
    /// What the unit runs with, resolved by the plan (part of the unit id).
    pub settings: SemanticSettings,
    /// Capture outputs to read, as for [`ProbeUnit::inputs`](super::ProbeUnit::inputs).
    #[serde(default)]
    pub inputs: Vec<String>,
}
