//! Probe rows (`probes/<unit>.a<n>.parquet`): one row per (representation, attribute, fold) with
//! the fold's RMSE, baseline, Pearson r, permutation p, the null RMSEs and the out-of-fold
//! predictions. Grid rows (a grid unit's output and the merged `report/grid.parquet`): one row
//! per cell of a representation's hyper-parameter grid.

use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{read_rows, write_rows};
use crate::error::DataError;

/// One probe result: a (representation, attribute, fold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    /// Representation key.
    pub representation: String,
    /// Attribute index into `dataset.json`'s attributes.
    pub attribute: u32,
    /// Attribute name.
    pub attribute_name: String,
    /// Fold index.
    pub fold: u32,
    /// PCA components used.
    pub n_components: u32,
    /// Ridge penalty used (fixed, or chosen by leave-one-out from the spec's grid).
    pub alpha: f64,
    /// Held-out RMSE.
    pub rmse: f64,
    /// Held-out RMSE of predicting the training mean.
    pub baseline_rmse: f64,
    /// Pearson r between predictions and ratings within the fold.
    pub pearson_r: f64,
    /// Permutation p-value.
    pub p_value: f64,
    /// Effective degrees of freedom of the fit, `Σ λ_p / (λ_p + α)` over the retained
    /// components (`probe::effective_df`); below about 1 the fit is shrunk to the mean.
    pub effective_df: f64,
    /// Held-out RMSE of each permutation, in permutation order.
    pub null_rmse: Vec<f64>,
    /// Test stimulus indices.
    pub test_indices: Vec<u32>,
    /// Out-of-fold predictions, aligned with `test_indices`.
    pub predictions: Vec<f64>,
}

/// Writes probe rows as one record batch.
pub fn write_probe_rows(file: &mut File, path: &Path, rows: &[ProbeRow]) -> Result<(), DataError> {
    write_rows(file, path, rows)
}

/// Reads every probe row of a file.
pub fn read_probe_rows(path: &Path) -> Result<Vec<ProbeRow>, DataError> {
    read_rows(path, "a probe-rows file")
}

/// One cell of the hyper-parameter grid of a representation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridRow {
    /// Representation key.
    pub representation: String,
    /// Fold the grid was computed on.
    pub fold: u32,
    /// PCA size asked for.
    pub components: u32,
    /// PCA size used (capped by training size, width and rank).
    pub n_components: u32,
    /// Ridge penalty.
    pub alpha: f64,
    /// Held-out RMSE averaged over attributes.
    pub mean_rmse: f64,
}

/// Writes grid rows (a grid unit's output, and the merged `report/grid.parquet`).
pub fn write_grid_rows(file: &mut File, path: &Path, rows: &[GridRow]) -> Result<(), DataError> {
    write_rows(file, path, rows)
}

/// Reads grid rows.
pub fn read_grid_rows(path: &Path) -> Result<Vec<GridRow>, DataError> {
    read_rows(path, "a grid file")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::golden;

    fn probe_rows() -> Vec<ProbeRow> {
        let row = ProbeRow {
            representation: "text.2/cls".into(),
            attribute: 1,
            attribute_name: "visual".into(),
            fold: 3,
            n_components: 120,
            alpha: 150.0,
            rmse: 0.5,
            baseline_rmse: 0.7,
            pearson_r: 0.4,
            p_value: 0.001,
            effective_df: 0.2,
            null_rmse: vec![0.7, 0.71],
            test_indices: vec![1, 9],
            predictions: vec![2.5, 3.5],
        };
        vec![row.clone(), ProbeRow { fold: 4, null_rmse: vec![], pearson_r: f64::NAN, ..row }]
    }

    fn grid_rows() -> Vec<GridRow> {
        let cell = |components, n_components, alpha, mean_rmse| GridRow {
            representation: "text.1/mean".into(),
            fold: 0,
            components,
            n_components,
            alpha,
            mean_rmse,
        };
        vec![cell(2, 2, 1.0, 0.5), cell(64, 9, 1000.0, 0.75)]
    }

    #[test]
    fn probe_rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let rows = probe_rows();
        crate::fs::write_atomic(&path, |f| write_probe_rows(f, &path, &rows)).unwrap();
        let back = read_probe_rows(&path).unwrap();
        // NaN != NaN: compare the one NaN by its bits, the rest as rows.
        assert!(back[1].pearson_r.is_nan());
        let fix = |mut r: Vec<ProbeRow>| {
            r[1].pearson_r = 0.0;
            r
        };
        assert_eq!(fix(back), fix(rows));
    }

    #[test]
    fn probe_rows_match_the_golden_file() {
        let back = read_probe_rows(&golden::path("probe.parquet")).unwrap();
        assert_eq!(format!("{back:?}"), format!("{:?}", probe_rows()));
        golden::assert_writes_same_bytes("probe.parquet", |f, p| {
            write_probe_rows(f, p, &probe_rows())
        });
    }

    #[test]
    fn grid_rows_round_trip_and_match_the_golden_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.parquet");
        crate::fs::write_atomic(&path, |f| write_grid_rows(f, &path, &grid_rows())).unwrap();
        assert_eq!(read_grid_rows(&path).unwrap(), grid_rows());
        assert_eq!(read_grid_rows(&golden::path("grid.parquet")).unwrap(), grid_rows());
        golden::assert_writes_same_bytes("grid.parquet", |f, p| {
            write_grid_rows(f, p, &grid_rows())
        });
        let e = read_probe_rows(&path).unwrap_err().to_string();
        assert!(e.contains("not a probe-rows file"), "{e}");
    }
}
