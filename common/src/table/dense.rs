//! Dense-probe rows (`dense/<unit>.a<n>.parquet`, merged into `report/dense.parquet`): one per
//! (representation, target, test image), science-2.md §D.

use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{read_rows, write_rows};
use crate::error::DataError;

/// One test image's score on one target of one representation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseRow {
    /// Representation key (an unreduced `none` representation).
    pub representation: String,
    /// Target name.
    pub target: String,
    /// `mask` or `continuous`.
    pub kind: String,
    /// The test image (stimulus name).
    pub stimulus: String,
    /// Mask: foreground Dice of the predicted mask at full resolution; continuous: NaN.
    pub dice: f64,
    /// Mask: background Dice; continuous: NaN.
    pub dice_background: f64,
    /// Mask: the Dice of predicting all foreground (the baseline); continuous: NaN.
    pub all_foreground_dice: f64,
    /// Continuous: Spearman ρ over all pixels (NaN for a constant prediction); mask: NaN.
    pub spearman: f64,
    /// Continuous: Pearson r over all pixels; mask: NaN.
    pub pearson: f64,
    /// Continuous: RMSE over all pixels; mask: NaN.
    pub rmse: f64,
    /// Training images the probe was fitted on.
    pub n_train: u32,
    /// Token grid height h and width w (the prediction's resolution).
    pub grid: Vec<u32>,
    /// For the first [`STRIP_IMAGES`] test images (else empty): the per-token prediction (a
    /// mask's logit difference), `h × w` row-major, for the report's strips.
    pub prediction: Vec<f64>,
    /// The label's block means on the same grid (empty as `prediction`).
    pub label: Vec<f64>,
}

/// Test images per (representation, target) whose prediction and label the rows carry.
pub const STRIP_IMAGES: usize = 3;

impl DenseRow {
    /// The primary score: Dice for a mask, Spearman ρ for a continuous map.
    pub fn score(&self) -> f64 {
        if self.kind == "mask" {
            self.dice
        } else {
            self.spearman
        }
    }
}

/// Writes dense rows as one record batch.
pub fn write_dense_rows(file: &mut File, path: &Path, rows: &[DenseRow]) -> Result<(), DataError> {
    write_rows(file, path, rows)
}

/// Reads every dense row of a file.
pub fn read_dense_rows(path: &Path) -> Result<Vec<DenseRow>, DataError> {
    read_rows(path, "a dense-rows file")
}
