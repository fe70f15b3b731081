//! Resolved library settings: what a stage-1 unit runs with, as one value. The plan resolves
//! them once from the spec (the `*_settings` methods here, the only place a spec key becomes a
//! library setting) and embeds them in the unit ([`crate::unit`]); the unit id hashes the unit,
//! so it hashes exactly what the worker runs, and the worker converts them field for field into
//! the library's config (`worker/src/settings.rs`, the one conversion per library type) without
//! reading `spec.toml`.
//!
//! Field names and meanings are the libraries' (`probe::ProbeConfig`,
//! `alignment::LinearProbeConfig`, `alignment::EmbeddingRegressionConfig`); every field of
//! those configs has one here, so no library default fills in a value the id did not see.
//! Settings without a spec key are the pipeline's fixed choices, resolved here.

use serde::{Deserialize, Serialize};

use crate::spec::{
    AlignmentDistance, AlignmentSection, AttributeProbeSection, ClusterSpace, ClustersSection,
    DenseTargetKind, DirectionsSection, EarlyStoppingChoice, ProbePrecision, SemanticDistance,
};

/// An attribute-probe unit's settings (`probe::ProbeConfig` plus the K-fold split).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSettings {
    /// Folds K of the seeded split over stimuli (`probe::kfold`).
    pub folds: usize,
    /// Upper bound on PCA components P.
    pub n_components: usize,
    /// Fixed ridge penalty α (when `alpha_grid` is empty).
    pub alpha: f64,
    /// Candidate α per attribute; empty = `alpha`.
    pub alpha_grid: Vec<f64>,
    /// 0 = α by exact leave-one-out, k ≥ 2 = inner k-fold.
    pub alpha_inner_folds: usize,
    /// Permutations B; 0 disables the test.
    pub n_permutations: usize,
    /// Seed of the split and the permutations.
    pub seed: u64,
    /// What the permutation test permutes.
    pub permute: Permute,
    /// Z-score features on the training rows.
    pub zscore: bool,
    /// Choose α again for every permutation.
    pub reselect_alpha_in_permutations: bool,
    /// Arithmetic of the Gram matrix and the permutation refits.
    pub precision: ProbePrecision,
}

/// The settings of a spec that sets no `[analysis.attribute_probe]` key (not a second set of
/// defaults: the spec's).
impl Default for ProbeSettings {
    fn default() -> Self {
        AttributeProbeSection::default().probe_settings()
    }
}

/// The permutation scheme (`probe::Permute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permute {
    /// Training targets, a stream per fold.
    TrainingPerFold,
    /// The whole pool, one stream for every fold.
    Pool,
}

/// A grid unit's settings (`probe::hyper_grid` on one fold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridSettings {
    /// Folds K of the seeded split (the grid runs on fold 0 of it).
    pub folds: usize,
    /// Seed of the split.
    pub seed: u64,
    /// PCA sizes P.
    pub components: Vec<usize>,
    /// Ridge penalties α.
    pub alphas: Vec<f64>,
    /// Z-score features on the training rows.
    pub zscore: bool,
}

/// An alignment `Evaluate` unit's settings: odd-one-out accuracy per distance and, when the
/// spec names an embedding, the embedding regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluateSettings {
    /// Distances of the odd-one-out accuracy, in report order.
    pub distances: Vec<AlignmentDistance>,
    /// The embedding regression; `None` when the spec names no embedding.
    pub regression: Option<RegressionSettings>,
}

/// Embedding-regression settings (`alignment::EmbeddingRegressionConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionSettings {
    /// Folds over concepts.
    pub folds: usize,
    /// Seed of the folds.
    pub seed: u64,
    /// Candidate ridge penalties.
    pub alphas: Vec<f64>,
    /// Z-score features on the training concepts.
    pub zscore: bool,
    /// Distance of the odd-one-out evaluation of the predicted embedding.
    pub distance: AlignmentDistance,
}

/// Linear-probe alignment settings (`alignment::LinearProbeConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearProbeSettings {
    /// Folds over concepts.
    pub folds: usize,
    /// Seed of the folds, weights, batches and validation split.
    pub seed: u64,
    /// λ of the penalty λ‖W‖_F.
    pub lambda: f64,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Triplets per batch.
    pub batch_size: usize,
    /// Most epochs.
    pub max_epochs: usize,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Least decrease of the monitored loss that counts.
    pub min_delta: f64,
    /// Largest global gradient norm (`inf`: no clipping).
    pub max_grad_norm: f64,
    /// Standard deviation of the initial W.
    pub init_std: f64,
    /// Initial value of every entry of b.
    pub init_bias: f64,
    /// The loss early stopping watches.
    pub early_stopping: EarlyStopping,
}

/// The loss early stopping watches (`alignment::EarlyStopping`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EarlyStopping {
    /// The test fold's loss.
    TestLoss,
    /// The loss on a held-out share of the training triplets.
    ValidationLoss {
        /// The share held out.
        fraction: f64,
    },
}

impl AttributeProbeSection {
    /// The probe units' settings. The permutation scheme and α reselection have no spec key:
    /// the pipeline tests per fold with the α chosen for the observed targets.
    pub fn probe_settings(&self) -> ProbeSettings {
        ProbeSettings {
            folds: self.folds,
            n_components: self.components,
            alpha: self.alpha,
            alpha_grid: self.alphas.clone(),
            alpha_inner_folds: self.alpha_inner_folds,
            n_permutations: self.permutations,
            seed: self.seed,
            permute: Permute::TrainingPerFold,
            zscore: self.zscore,
            reselect_alpha_in_permutations: false,
            precision: self.precision,
        }
    }

    /// The grid units' settings, or `None` when the spec asks for no grid.
    pub fn grid_settings(&self) -> Option<GridSettings> {
        (!self.grid_components.is_empty()).then(|| GridSettings {
            folds: self.folds,
            seed: self.seed,
            components: self.grid_components.clone(),
            alphas: self.grid_alphas.clone(),
            zscore: self.zscore,
        })
    }
}

impl AlignmentSection {
    /// The `Evaluate` unit's settings. The regression's distance is the first of `distances`;
    /// it does not z-score (no spec key).
    pub fn evaluate_settings(&self) -> EvaluateSettings {
        let regression = self.embedding.as_ref().map(|_| RegressionSettings {
            folds: self.embedding_folds,
            seed: self.seed,
            alphas: self.embedding_alphas.clone(),
            zscore: false,
            distance: self.distances[0],
        });
        EvaluateSettings { distances: self.distances.clone(), regression }
    }

    /// The linear-probe units' settings, or `None` when the spec does not ask for the probe.
    /// The initialisation has no spec key: the paper's (W ~ N(0, 1e-3²), b = 1e-3).
    pub fn linear_probe_settings(&self) -> Option<LinearProbeSettings> {
        self.linear_probe.then_some(LinearProbeSettings {
            folds: self.probe_folds,
            seed: self.seed,
            lambda: self.lambda,
            learning_rate: self.learning_rate,
            batch_size: self.batch_size,
            max_epochs: self.max_epochs,
            patience: self.patience,
            min_delta: self.min_delta,
            max_grad_norm: self.max_grad_norm,
            init_std: 1e-3,
            init_bias: 1e-3,
            early_stopping: match self.early_stopping {
                EarlyStoppingChoice::TestLoss => EarlyStopping::TestLoss,
                EarlyStoppingChoice::ValidationLoss => {
                    EarlyStopping::ValidationLoss { fraction: self.validation_fraction }
                }
            },
        })
    }
}

/// The prompts of `[analysis.directions]`' contrasts file as dataset rows, resolved by the plan
/// (`coordinator/src/directions.rs`); the roles are the file's (`spec::DirectionsSection`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contrasts {
    /// The neutral prompt b.
    pub base: usize,
    /// The axes, in file order.
    pub axes: Vec<ContrastAxis>,
    /// The query prompts, in file order.
    pub queries: Vec<usize>,
    /// Each query's category (empty = none).
    pub categories: Vec<String>,
    /// Each query's reference rate (the file's optional `reference` column, e.g. a labour
    /// statistic), correlated with β in the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Option<f64>>,
    /// The descriptors, in file order.
    pub descriptors: Vec<usize>,
    /// The concepts the descriptors are ranked against, in file order.
    pub concepts: Vec<usize>,
}

/// One axis of a contrasts file: a = d(positive | base) − d(negative | base).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContrastAxis {
    /// The axis name (the file's label).
    pub name: String,
    /// The `axis+` prompt x.
    pub positive: usize,
    /// The `axis-` prompt y.
    pub negative: usize,
}

/// A directions unit's settings (`alignment::directions::DirectionsConfig` and its prompts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionsSettings {
    /// The prompts and their roles.
    pub contrasts: Contrasts,
    /// Bootstrap resamples over replicates (0 = no CI).
    pub bootstrap: usize,
    /// Seed of the resamples.
    pub seed: u64,
}

/// A clusters unit's settings (`alignment::directions::KMeansConfig`, the agglomerative
/// clustering's k, and what is clustered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// The neutral prompt b of the directions.
    pub base: usize,
    /// The query prompts clustered.
    pub queries: Vec<usize>,
    /// Each query's category (empty = none), the truth of ARI, NMI and purity.
    pub categories: Vec<String>,
    /// Directions or means.
    pub space: ClusterSpace,
    /// Clusters k (resolved: never 0).
    pub k: usize,
    /// PCA components kept before clustering (0 = none).
    pub pca: usize,
    /// k-means++ restarts.
    pub restarts: usize,
    /// Lloyd iterations per restart, at most.
    pub max_iter: usize,
    /// Seed of the restarts.
    pub seed: u64,
}

impl DirectionsSection {
    /// The directions units' settings for resolved `contrasts`.
    pub fn directions_settings(&self, contrasts: Contrasts) -> DirectionsSettings {
        DirectionsSettings { contrasts, bootstrap: self.bootstrap, seed: self.seed }
    }
}

impl ClustersSection {
    /// The clusters units' settings for resolved `contrasts`; k = 0 becomes the number of
    /// distinct query categories (at least 2).
    pub fn cluster_settings(&self, contrasts: &Contrasts) -> ClusterSettings {
        let mut distinct: Vec<&String> = contrasts.categories.iter().collect();
        distinct.sort();
        distinct.dedup();
        let k = if self.k == 0 { distinct.len().max(2) } else { self.k };
        ClusterSettings {
            base: contrasts.base,
            queries: contrasts.queries.clone(),
            categories: contrasts.categories.clone(),
            space: self.space,
            k,
            pca: self.pca,
            restarts: self.restarts,
            max_iter: self.max_iter,
            seed: self.seed,
        }
    }
}

/// One target of a dense unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenseTarget {
    /// The target's name (the label files' suffix).
    pub name: String,
    /// Mask or continuous.
    pub kind: DenseTargetKind,
}

/// A dense unit's settings (`probe::dense`'s ridge α and `LogisticConfig`), its split and the
/// fingerprint of the label files it reads, resolved by the plan (`coordinator/src/dense.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseSettings {
    /// The targets, in name order.
    pub targets: Vec<DenseTarget>,
    /// Training stimuli (dataset rows), ascending.
    pub train: Vec<usize>,
    /// Test stimuli (dataset rows), ascending.
    pub test: Vec<usize>,
    /// Ridge α on the per-token objective.
    pub alpha: f64,
    /// Logistic L2 λ on the per-token objective.
    pub l2: f64,
    /// Label files are `{stimulus}.r0.{target}.*` (generation) rather than `{stimulus}.{target}.*`.
    pub generated: bool,
    /// blake3 of every label file read (names and bytes): new labels are new units.
    pub labels_fingerprint: String,
    /// `fit = "paper"`: the paper's Adam training instead of the closed form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper: Option<PaperFit>,
}

/// The paper's training of the dense probes (`analysis.dense_probe.fit = "paper"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperFit {
    /// Epochs over the training images.
    pub epochs: usize,
    /// Images per Adam step.
    pub batch: usize,
    /// Adam's learning rate per target, in `DenseSettings::targets` order.
    pub learning_rates: Vec<f64>,
    /// Seed of the initial weights and the batch order.
    pub seed: u64,
}

/// A semantic unit's settings (`alignment::semantic::SemanticConfig`, the distances) and its
/// objects as dataset rows with class and image indices, resolved by the plan
/// (`coordinator/src/semantic.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SemanticSettings {
    /// The objects' dataset rows, in objects-file order.
    pub items: Vec<usize>,
    /// Each object's class (index into `class_names`).
    pub classes: Vec<usize>,
    /// Class names, in order of first appearance.
    pub class_names: Vec<String>,
    /// Each object's image (objects of one image are never neighbours).
    pub images: Vec<usize>,
    /// The distances, each its own result.
    pub distances: Vec<SemanticDistance>,
    /// Bootstrap replicates per CI.
    pub bootstrap: usize,
    /// Label permutations of the k-NN chance.
    pub permutations: usize,
    /// Seed of both.
    pub seed: u64,
    /// Each object's place in a video (objects-file order), when the objects file has
    /// `instance`, `video` and `frame`; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<Option<ObjectTrack>>,
    /// The frame gaps of the video drift (with tracks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frame_gaps: Vec<i64>,
    /// The largest distance matrix a unit holds whole, in bytes (beyond it, row blocks within
    /// it). Left out of the unit at its default so that ids made before it stay.
    #[serde(default = "default_max_matrix_bytes", skip_serializing_if = "is_default_max_matrix")]
    pub max_matrix_bytes: u64,
    /// Each object's mask coverage (mask weight over the frame's pixels, objects-file order),
    /// when the run has masks: at a tap of P positions an object with coverage · P < 1 is under
    /// one token and dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coverage: Vec<f64>,
    /// The positions P of each U-Net tap at the run's size (tap name, P), with `coverage`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tap_positions: Vec<(String, usize)>,
}

impl SemanticSettings {
    /// Whether object `i` (objects-file order) covers at least one token at every tap of
    /// `blocks` (true without coverage or for a tap of unknown size).
    pub fn covers_a_token(&self, i: usize, blocks: &[&str]) -> bool {
        let Some(&c) = self.coverage.get(i) else { return true };
        blocks.iter().all(|b| {
            self.tap_positions
                .iter()
                .find(|(t, _)| t == b)
                .is_none_or(|&(_, p)| c * p as f64 >= 1.0 - 1e-9)
        })
    }
}

/// `analysis.semantic.max_matrix_gib`'s default, 16 GiB, in bytes.
pub const DEFAULT_MAX_MATRIX_BYTES: u64 = 16 << 30;

fn default_max_matrix_bytes() -> u64 {
    DEFAULT_MAX_MATRIX_BYTES
}

fn is_default_max_matrix(bytes: &u64) -> bool {
    *bytes == DEFAULT_MAX_MATRIX_BYTES
}

/// Where an object sits in a video: its instance, video (indices) and frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectTrack {
    /// The object across frames (an index; instances are named within their video).
    pub instance: usize,
    /// The video (an index).
    pub video: usize,
    /// The frame number.
    pub frame: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object of coverage c is under one token of a P-position tap when c · P < 1; one of
    /// exactly one token is kept; a tap of unknown size drops nothing.
    #[test]
    fn objects_under_one_token_are_found_per_tap() {
        let s = SemanticSettings {
            items: vec![0, 1, 2],
            classes: vec![0, 1, 0],
            class_names: vec!["a".into(), "b".into()],
            images: vec![0, 1, 2],
            distances: Vec::new(),
            bootstrap: 0,
            permutations: 0,
            seed: 0,
            tracks: Vec::new(),
            frame_gaps: Vec::new(),
            max_matrix_bytes: DEFAULT_MAX_MATRIX_BYTES,
            // 64 × 64 frames: 16, 64 and 4096 pixels.
            coverage: vec![16.0 / 4096.0, 64.0 / 4096.0, 1.0],
            tap_positions: vec![("fine".into(), 256), ("coarse".into(), 64)],
        };
        let kept =
            |taps: &[&str]| (0..3).filter(|&i| s.covers_a_token(i, taps)).collect::<Vec<_>>();
        assert_eq!(kept(&["fine"]), [0, 1, 2]);
        assert_eq!(kept(&["coarse"]), [1, 2]);
        assert_eq!(kept(&["fine", "coarse"]), [1, 2]);
        assert_eq!(kept(&["unknown"]), [0, 1, 2]);
    }
}
