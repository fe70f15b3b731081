//! `[analysis.alignment]`: odd-one-out alignment of each representation with human triplet
//! judgements (science.md B2, paper 001): odd-one-out accuracy per distance, the paper's
//! linear-probe alignment, and ridge regression onto a human embedding.
//!
//! Stage one only: plain values and the existence of the files. The plan (coordinator) reads
//! the triplets and the embedding, resolves them against the stimuli and refuses bad entries.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// `[analysis.alignment]`; absent = no alignment units.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlignmentSection {
    /// Triplet file (relative to the spec): one triplet per line, three fields, the
    /// human-chosen odd one out in field 2 (the third).
    pub triplets: PathBuf,
    /// What the triplet fields hold: concept `indices` or concept `names`.
    #[serde(default)]
    pub triplet_entries: TripletEntries,
    /// Whether the triplet file's first line is a header.
    #[serde(default)]
    pub triplet_header: bool,
    /// Field delimiter of the triplet file: one ASCII character (`","`, `"\t"`, `" "`).
    #[serde(default = "default_delimiter")]
    pub triplet_delimiter: String,
    /// A list of concept names, one per line (relative to the spec): triplet indices are
    /// 0-based lines of this file (e.g. THINGS' 1,854 concepts), matched to stimuli by name.
    /// Unset: indices are 0-based rows of `stimuli.file`.
    #[serde(default)]
    pub index_list: Option<PathBuf>,
    /// What the triplets are, in words, printed in the report.
    #[serde(default)]
    pub description: Option<String>,
    /// Distances of the odd-one-out accuracy: `cosine`, `euclidean`, `dot`.
    #[serde(default = "default_distances")]
    pub distances: Vec<AlignmentDistance>,
    /// Seed of the linear probe (folds, weights, batches) and the embedding-regression folds.
    #[serde(default)]
    pub seed: u64,
    /// Run the paper's linear-probe alignment (one unit per representation and fold).
    #[serde(default)]
    pub linear_probe: bool,
    /// Linear probe: folds over concepts.
    #[serde(default = "default_probe_folds")]
    pub probe_folds: usize,
    /// Linear probe: λ of the penalty λ‖W‖_F (the norm itself, not its square).
    #[serde(default = "default_lambda")]
    pub lambda: f64,
    /// Linear probe: Adam learning rate.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Linear probe: triplets per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Linear probe: most epochs.
    #[serde(default = "default_max_epochs")]
    pub max_epochs: usize,
    /// Linear probe: epochs without improvement before stopping.
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Linear probe: least decrease of the monitored loss that counts as an improvement.
    #[serde(default = "default_min_delta")]
    pub min_delta: f64,
    /// Linear probe: largest global L2 norm of the gradient (`inf` disables clipping).
    #[serde(default = "default_max_grad_norm")]
    pub max_grad_norm: f64,
    /// Linear probe: the loss early stopping watches.
    #[serde(default)]
    pub early_stopping: EarlyStoppingChoice,
    /// Linear probe: share of the training triplets held out when
    /// `early_stopping = "validation_loss"`.
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
    /// A human embedding (relative to the spec): CSV with a header, one row per concept, the
    /// key column `embedding_key` and one numeric column per dimension.
    #[serde(default)]
    pub embedding: Option<PathBuf>,
    /// Column of `embedding` holding the concept names.
    #[serde(default = "default_embedding_key")]
    pub embedding_key: String,
    /// Embedding regression: folds over concepts.
    #[serde(default = "default_embedding_folds")]
    pub embedding_folds: usize,
    /// Embedding regression: candidate ridge penalties, chosen per dimension by efficient
    /// leave-one-out.
    #[serde(default = "default_embedding_alphas")]
    pub embedding_alphas: Vec<f64>,
}

/// What a triplet file's fields hold.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TripletEntries {
    /// 0-based concept indices.
    #[default]
    Indices,
    /// Concept names, matched exactly to the stimulus names.
    Names,
}

/// A distance between two concept representations.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AlignmentDistance {
    /// 1 − cosine similarity (the paper's default).
    Cosine,
    /// Euclidean distance.
    Euclidean,
    /// Negative dot product (the linear probe's similarity).
    Dot,
}

impl AlignmentDistance {
    /// The name used in specs and reports.
    pub fn name(self) -> &'static str {
        match self {
            AlignmentDistance::Cosine => "cosine",
            AlignmentDistance::Euclidean => "euclidean",
            AlignmentDistance::Dot => "dot",
        }
    }
}

/// The loss the linear probe's early stopping watches.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EarlyStoppingChoice {
    /// The test fold's loss, as the paper's reference code does.
    #[default]
    TestLoss,
    /// The loss on a held-out share (`validation_fraction`) of the training triplets.
    ValidationLoss,
}

fn default_delimiter() -> String {
    ",".into()
}
fn default_distances() -> Vec<AlignmentDistance> {
    vec![AlignmentDistance::Cosine]
}
fn default_probe_folds() -> usize {
    3
}
fn default_lambda() -> f64 {
    0.1
}
fn default_learning_rate() -> f64 {
    1e-4
}
fn default_batch_size() -> usize {
    256
}
fn default_max_epochs() -> usize {
    100
}
fn default_patience() -> usize {
    5
}
fn default_min_delta() -> f64 {
    1e-4
}
fn default_max_grad_norm() -> f64 {
    1.0
}
fn default_validation_fraction() -> f64 {
    0.1
}
fn default_embedding_key() -> String {
    "word".into()
}
fn default_embedding_folds() -> usize {
    5
}
fn default_embedding_alphas() -> Vec<f64> {
    (-2..=5).map(|e| 10f64.powi(e)).collect()
}

impl AlignmentSection {
    /// The triplet delimiter as a byte (validated to be one ASCII character).
    pub fn delimiter_byte(&self) -> u8 {
        self.triplet_delimiter.as_bytes().first().copied().unwrap_or(b',')
    }

    pub(super) fn resolve_paths(&mut self, join: &dyn Fn(&mut PathBuf)) {
        join(&mut self.triplets);
        if let Some(p) = &mut self.index_list {
            join(p);
        }
        if let Some(p) = &mut self.embedding {
            join(p);
        }
    }

    pub(super) fn validate(&self, file: &str) -> Result<(), SpecError> {
        const S: &str = "analysis.alignment";
        let err = |key: &str, msg: String| Err(SpecError::new(file, format!("{S}.{key}"), msg));
        let files: [(&str, Option<&Path>); 3] = [
            ("triplets", Some(self.triplets.as_path())),
            ("index_list", self.index_list.as_deref()),
            ("embedding", self.embedding.as_deref()),
        ];
        for (key, path) in files {
            if let Some(path) = path {
                if !path.is_file() {
                    return err(key, format!("{} does not exist or is not a file", path.display()));
                }
            }
        }
        let d = &self.triplet_delimiter;
        if d.len() != 1 || !d.is_ascii() || d == "\"" || d == "#" || d == "\n" || d == "\r" {
            return err(
                "triplet_delimiter",
                format!(
                    "expected one ASCII character such as \",\", \"\\t\" or \" \", found {d:?}"
                ),
            );
        }
        if self.distances.is_empty() {
            return err("distances", "expected at least one of cosine, euclidean, dot".into());
        }
        for (i, a) in self.distances.iter().enumerate() {
            if self.distances[..i].contains(a) {
                return err("distances", format!("{:?} is listed twice", a.name()));
            }
        }
        for (key, folds) in
            [("probe_folds", self.probe_folds), ("embedding_folds", self.embedding_folds)]
        {
            if folds < 2 {
                return err(key, format!("expected at least 2, found {folds}"));
            }
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return err("lambda", format!("expected a number ≥ 0, found {}", self.lambda));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return err(
                "learning_rate",
                format!("expected a positive number, found {}", self.learning_rate),
            );
        }
        for (key, v) in [
            ("batch_size", self.batch_size),
            ("max_epochs", self.max_epochs),
            ("patience", self.patience),
        ] {
            if v == 0 {
                return err(key, "expected at least 1, found 0".into());
            }
        }
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return err("min_delta", format!("expected a number ≥ 0, found {}", self.min_delta));
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm <= 0.0 {
            return err(
                "max_grad_norm",
                format!(
                    "expected a positive number (inf disables clipping), found {}",
                    self.max_grad_norm
                ),
            );
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return err(
                "validation_fraction",
                format!(
                    "expected a number strictly between 0 and 1, found {}",
                    self.validation_fraction
                ),
            );
        }
        if self.embedding_key.trim().is_empty() {
            return err("embedding_key", "expected a column name, found an empty string".into());
        }
        if self.embedding_alphas.is_empty() {
            return err("embedding_alphas", "expected at least one penalty".into());
        }
        if let Some(bad) = self.embedding_alphas.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return err("embedding_alphas", format!("expected positive numbers, found {bad}"));
        }
        Ok(())
    }
}
