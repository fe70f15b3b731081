//! `[analysis.semantic]`: the semantic lens (science-2.md §L, seed 003; no code or full text of
//! the seed is public, so §L is this tool's definition): how well each representation keeps an
//! object's class, by leave-one-out k-NN accuracy, mAP@R, same- vs different-class AUC, the
//! inter/intra distance ratio and the silhouette, each with its chance level and a bootstrap CI,
//! under several distances (`alignment::semantic`).
//!
//! **Objects file:** a CSV with the header `stimulus,class` and an optional `image` column: one
//! object per stimulus (in real-image mode, the stimulus's image with its mask from
//! `capture.image.masks` and `unet_pooling = ["mask_mean"]`); objects that share an `image` are
//! never each other's neighbours. Stimuli not listed are not scored. An object whose mask covers
//! less than one token of a tap (its mask weight · the tap's positions < the frame's pixels) is
//! dropped from that tap's units and counted (`dropped_under_one_token`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// `[analysis.semantic]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SemanticSection {
    /// The objects file (relative to the spec; module doc).
    pub objects: PathBuf,
    /// Distances, each its own result: `cosine`, `euclidean`, `l1`, `linf`, `correlation`.
    #[serde(default = "default_distances")]
    pub distances: Vec<SemanticDistance>,
    /// Bootstrap replicates over query objects per CI (0: no CI).
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Label permutations of the k-NN chance level.
    #[serde(default = "default_permutations")]
    pub permutations: usize,
    /// Seed of the bootstrap and the permutations.
    #[serde(default)]
    pub seed: u64,
    /// The layer ablation: per context, each tap alone, then greedy forward selection of
    /// z-scored concatenations, scored by 1-NN accuracy (needs at least two taps).
    #[serde(default = "default_ablation")]
    pub ablation: bool,
    /// Frame gaps Δτ of the video drift (objects with `instance`, `video` and `frame`).
    #[serde(default = "default_frame_gaps")]
    pub frame_gaps: Vec<i64>,
    /// The largest N × N distance matrix (f64) a semantic unit holds whole, in GiB; a larger set's
    /// distances are computed again for each pass over them, in blocks of rows within this size
    /// (the scores are the same either way).
    #[serde(default = "default_max_matrix_gib")]
    pub max_matrix_gib: f64,
}

fn default_max_matrix_gib() -> f64 {
    16.0
}

fn default_frame_gaps() -> Vec<i64> {
    vec![1, 2, 5, 10, 20, 40]
}

fn default_ablation() -> bool {
    true
}

/// A distance of the semantic lens.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SemanticDistance {
    /// 1 − cosine similarity.
    Cosine,
    /// Euclidean distance.
    Euclidean,
    /// Σ|a − b| (scipy's `cityblock`).
    L1,
    /// max|a − b| (scipy's `chebyshev`).
    Linf,
    /// 1 − Pearson correlation of the two vectors (scipy's `correlation`).
    Correlation,
}

impl SemanticDistance {
    /// The name used in specs and reports.
    pub fn name(self) -> &'static str {
        match self {
            SemanticDistance::Cosine => "cosine",
            SemanticDistance::Euclidean => "euclidean",
            SemanticDistance::L1 => "l1",
            SemanticDistance::Linf => "linf",
            SemanticDistance::Correlation => "correlation",
        }
    }
}

fn default_distances() -> Vec<SemanticDistance> {
    use SemanticDistance::*;
    vec![Cosine, Euclidean, L1, Linf, Correlation]
}

fn default_bootstrap() -> usize {
    1000
}

fn default_permutations() -> usize {
    200
}

impl SemanticSection {
    pub(super) fn resolve_paths(&mut self, join: &dyn Fn(&mut PathBuf)) {
        join(&mut self.objects);
    }

    pub(super) fn validate(&self, file: &str) -> Result<(), SpecError> {
        let err = |key: &str, msg: String| {
            Err(SpecError::new(file, format!("analysis.semantic.{key}"), msg))
        };
        if !self.objects.is_file() {
            return err("objects", format!("{} is not a file", self.objects.display()));
        }
        if self.distances.is_empty() {
            return err("distances", "expected at least one distance".into());
        }
        let mut seen = self.distances.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.distances.len() {
            return err("distances", "a distance is listed twice".into());
        }
        Ok(())
    }
}
