//! `[analysis]` and `[analysis.attribute_probe]`: which analyses run, and the attribute probe's
//! settings (science.md B1). The alignment section lives in `alignment.rs`.

use serde::{Deserialize, Serialize};

use super::{
    AlignmentSection, ClustersSection, DenseProbeSection, DirectionsSection, SemanticSection,
};

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
    /// `[analysis.directions]` (science-2.md §H); absent = no direction units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directions: Option<DirectionsSection>,
    /// `[analysis.dense_probe]` (science-2.md §D); absent = no dense units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_probe: Option<DenseProbeSection>,
    /// `[analysis.semantic]` (science-2.md §L); absent = no semantic units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic: Option<SemanticSection>,
    /// `[analysis.clusters]` (science-2.md §H); absent = no cluster units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<ClustersSection>,
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
