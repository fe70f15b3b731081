//! The report's own tables (`report/rmse.parquet`, `significance.parquet`, `summary.parquet`,
//! `entanglement.parquet`), defined here beside the unit outputs they are merged from, so that a
//! reader (pandas, polars, DuckDB, a later `diffprobe`) finds every schema of the run directory
//! in one module. The coordinator fills them from its report model; every column is required
//! (a value a cell lacks is NaN, as in the unit outputs), so nullability never depends on the
//! data.

use std::fs::File;
use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{read_rows, write_rows};
use crate::error::DataError;

/// A row type of one report table, written to `report/<FILE>`.
pub trait ReportTable: Serialize + DeserializeOwned {
    /// The table's file name under `report/`.
    const FILE: &'static str;
}

/// Writes a report table as one record batch.
pub fn write_report_table<T: ReportTable>(
    file: &mut File,
    path: &Path,
    rows: &[T],
) -> Result<(), DataError> {
    write_rows(file, path, rows)
}

/// Reads every row of a report table.
pub fn read_report_table<T: ReportTable>(path: &Path) -> Result<Vec<T>, DataError> {
    read_rows(path, T::FILE)
}

/// `rmse.parquet`: one row per (representation, attribute): held-out RMSE pooled over folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RmseRow {
    /// Representation key.
    pub representation: String,
    /// Attribute name.
    pub attribute: String,
    /// The attribute's group (empty without groups).
    pub group: String,
    /// Held-out RMSE, pooled over folds.
    pub rmse: f64,
    /// Standard error of the RMSE over folds.
    pub rmse_se_folds: f64,
    /// Held-out RMSE of each fold.
    pub rmse_fold: Vec<f64>,
    /// RMSE of predicting each fold's training mean.
    pub baseline_rmse: f64,
    /// `1 − rmse / baseline_rmse`.
    pub relative_reduction: f64,
    /// Pearson r within folds (each fold's mean removed), pooled.
    pub pearson_r: f64,
    /// Pearson r of each fold.
    pub pearson_r_fold: Vec<f64>,
    /// Effective degrees of freedom of the fit (mean over folds).
    pub effective_df: f64,
    /// PCA components used.
    pub n_components: u32,
    /// Ridge penalty of each fold.
    pub alpha_fold: Vec<f64>,
}

impl ReportTable for RmseRow {
    const FILE: &'static str = "rmse.parquet";
}

/// `significance.parquet`: one row per (representation, attribute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignificanceRow {
    /// Representation key.
    pub representation: String,
    /// Attribute name.
    pub attribute: String,
    /// The attribute's group (empty without groups).
    pub group: String,
    /// The permutation p-value of each fold.
    pub p_fold: Vec<f64>,
    /// The largest per-fold p-value.
    pub p_max: f64,
    /// Every fold's p below the significance level.
    pub significant_all_folds: bool,
    /// Benjamini–Hochberg q-value of `p_max`.
    pub q_bh: f64,
}

impl ReportTable for SignificanceRow {
    const FILE: &'static str = "significance.parquet";
}

/// `summary.parquet`: one row per (representation, attribute group; `all` for every attribute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryTableRow {
    /// Representation key.
    pub representation: String,
    /// The attribute's group (empty without groups).
    pub group: String,
    /// Attributes in the group.
    pub n_attributes: u32,
    /// Mean RMSE over the attributes.
    pub mean_rmse: f64,
    /// Its standard error over the attributes.
    pub se_rmse: f64,
    /// Mean relative RMSE reduction.
    pub mean_relative_reduction: f64,
    /// Its standard error over the attributes.
    pub se_relative_reduction: f64,
    /// Mean Pearson r.
    pub mean_pearson_r: f64,
    /// Percentage of attributes significant in every fold.
    pub pct_significant: f64,
    /// Accuracy of identifying a stimulus from its predicted ratings.
    pub identification_accuracy: f64,
    /// Change in the attribute correlation structure, predictions against ratings.
    pub corr_structure_delta: f64,
    /// Effective degrees of freedom of the fit (mean over folds).
    pub effective_df: f64,
    /// The fit is shrunk to the training mean (effective df below the threshold).
    pub shrunk_to_mean: bool,
}

impl ReportTable for SummaryTableRow {
    const FILE: &'static str = "summary.parquet";
}

/// `entanglement.parquet`: one row per (representation, attribute pair).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntanglementRow {
    /// Representation key.
    pub representation: String,
    /// First attribute of the pair.
    pub attribute_a: String,
    /// Second attribute of the pair.
    pub attribute_b: String,
    /// Correlation of the two attributes' ratings within folds.
    pub human_r: f64,
    /// Correlation of their out-of-fold predictions within folds.
    pub model_r: f64,
    /// `|model_r| − |human_r|`.
    pub abs_delta: f64,
}

impl ReportTable for EntanglementRow {
    const FILE: &'static str = "entanglement.parquet";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: ReportTable + PartialEq + std::fmt::Debug>(rows: Vec<T>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(T::FILE);
        crate::fs::write_atomic(&path, |f| write_report_table(f, &path, &rows)).unwrap();
        assert_eq!(read_report_table::<T>(&path).unwrap(), rows);
        // Nullability is the type's, never the data's: no report column is nullable.
        let schema = super::super::schema_of::<T>();
        assert!(schema.fields().iter().all(|f| !f.is_nullable()), "{}", T::FILE);
    }

    #[test]
    fn report_tables_round_trip_with_nan_and_empty_lists() {
        round_trip(vec![RmseRow {
            representation: "text.1/mean".into(),
            attribute: "Visual".into(),
            group: String::new(),
            rmse: 0.5,
            rmse_se_folds: 0.1,
            rmse_fold: vec![0.4, 0.6],
            baseline_rmse: 1.0,
            relative_reduction: 0.5,
            pearson_r: 0.8,
            pearson_r_fold: vec![],
            effective_df: 3.0,
            n_components: 4,
            alpha_fold: vec![150.0, 150.0],
        }]);
        round_trip(vec![SignificanceRow {
            representation: "r".into(),
            attribute: "a".into(),
            group: "g".into(),
            p_fold: vec![0.01, 0.2],
            p_max: 0.2,
            significant_all_folds: false,
            q_bh: 0.3,
        }]);
        round_trip::<SummaryTableRow>(vec![]);
        round_trip(vec![EntanglementRow {
            representation: "r".into(),
            attribute_a: "a".into(),
            attribute_b: "b".into(),
            human_r: 0.1,
            model_r: -0.3,
            abs_delta: 0.2,
        }]);
    }
}
