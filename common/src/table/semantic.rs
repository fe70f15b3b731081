//! Semantic-lens rows (`semantic/<unit>.a<n>.parquet`, merged into `report/semantic.parquet`):
//! one per (representation, distance, score), science-2.md §L.

use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{read_rows, write_rows};
use crate::error::DataError;

/// One score of one representation under one distance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SemanticRow {
    /// Representation key.
    pub representation: String,
    /// `cosine`, `euclidean`, `l1`, `linf` or `correlation`.
    pub distance: String,
    /// `knn1`, `knn5`, `map_at_r`, `auc`, `ratio` or `silhouette`.
    pub score: String,
    /// The score.
    pub value: f64,
    /// Its chance level (module docs of `alignment::semantic`).
    pub chance: f64,
    /// Bootstrap standard error (NaN without a bootstrap).
    pub se: f64,
    /// 2.5 % bootstrap quantile.
    pub ci_low: f64,
    /// 97.5 % bootstrap quantile.
    pub ci_high: f64,
    /// Objects scored.
    pub n: u32,
}

/// Writes semantic rows as one record batch.
pub fn write_semantic_rows(
    file: &mut File,
    path: &Path,
    rows: &[SemanticRow],
) -> Result<(), DataError> {
    write_rows(file, path, rows)
}

/// Reads every semantic row of a file.
pub fn read_semantic_rows(path: &Path) -> Result<Vec<SemanticRow>, DataError> {
    read_rows(path, "a semantic-rows file")
}
