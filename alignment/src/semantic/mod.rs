//! The semantic lens (science-2.md §L, seed 003): how well object descriptors (one row per object,
//! e.g. a tap's `mask_mean`) keep their class, under five distances, and whether that survives a
//! transform. Pure, deterministic functions of matrices and labels; no I/O.
//!
//! - [`DistanceMatrix`]: the N × N distances of a descriptor set ([`Distance::SEMANTIC`]: cosine,
//!   Euclidean, L1, L∞, correlation; equal to scipy's `cdist`), and [`cross_distances`] between
//!   two sets; [`Distances`] holds them whole within a byte budget and computes them in row
//!   blocks beyond it ([`BlockedDistances`]); every score reads rows through [`DistanceRows`]
//!   (module `pass`), so blocked and held distances give identical scores;
//! - [`scores`]: leave-one-out 1-NN and 5-NN class accuracy, mAP@R, same- vs different-class AUC,
//!   inter/intra mean-distance ratio and silhouette, each a [`Score`] with its chance level and a
//!   bootstrap CI (module `scores`, where every rule is stated);
//! - [`drift`], [`mean_inter_class_distance`], [`cross_retrieval`]: invariance of transformed
//!   descriptors against the untransformed set;
//! - [`ablation`]: single taps, then greedy forward selection of z-scored concatenations;
//! - [`drift_by_gap`], [`reidentification`]: consistency of an object across video frames.
//!
//! **Same-image rule:** every neighbour- or pair-based score (k-NN, mAP@R, AUC, ratio, the
//! inter-class mean of drift, class top-1 of cross-retrieval) ignores pairs of objects from the
//! same image, so that context shared inside an image cannot pass for class semantics; only the
//! silhouette keeps all pairs (it is scikit-learn's definition).

mod ablation;
mod distance;
mod invariance;
mod items;
mod pairs;
mod pass;
mod score;
mod scores;
#[cfg(test)]
mod tests;
mod video;

pub use self::ablation::{ablation, Ablation, AblationStep};
pub use self::distance::{
    cross_distances, pair_distance, BlockedDistances, DistanceMatrix, DistanceRows, Distances,
};
pub use self::invariance::{cross_retrieval, drift, mean_inter_class_distance, CrossRetrieval};
pub use self::items::Items;
pub use self::pairs::{inter_intra_ratio, pair_auc, silhouette};
pub use self::score::{Score, SemanticConfig};
pub use self::scores::{knn_accuracy, map_at_r, scores, SemanticScores};
pub use self::video::{drift_by_gap, reidentification, GapDrift, Track};

/// numpy's linear quantile, shared with the direction bootstrap.
pub(crate) use self::score::quantile;

#[allow(unused_imports)] // for the doc links above
use crate::odd_one_out::Distance;
