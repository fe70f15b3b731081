//! Prompt-direction rows (`directions/<unit>.a<n>.parquet`, merged into
//! `report/directions.parquet`) and cluster rows (`clusters/…`, merged into
//! `report/clusters.parquet`), science-2.md §H.

use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{read_rows, write_rows};
use crate::error::DataError;

/// The `analysis` values of the directions table.
pub mod direction_analysis {
    /// β(q) = cos(d(q | b), a) of a query along an axis.
    pub const BIAS: &str = "bias";
    /// cos(d(D | b), d(c | b)) of a descriptor with a concept.
    pub const RANKING: &str = "ranking";
}

/// One bias (query × axis) or one ranked descriptor (descriptor × concept) of a representation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionsRow {
    /// Representation key (the replicate mean's; the rows come from its replicates).
    pub representation: String,
    /// `bias` or `ranking` ([`direction_analysis`]).
    pub analysis: String,
    /// Bias: the axis name; ranking: the concept (stimulus name).
    pub reference: String,
    /// Bias: the query; ranking: the descriptor (stimulus names).
    pub prompt: String,
    /// Bias: the query's category (empty = none); ranking: empty.
    pub category: String,
    /// Ranking: 1 = the descriptor closest to the concept; bias: 0.
    pub rank: u32,
    /// β, or the descriptor's cosine with the concept.
    pub value: f64,
    /// 2.5 % bootstrap quantile over replicates (NaN without a bootstrap).
    pub ci_low: f64,
    /// 97.5 % bootstrap quantile.
    pub ci_high: f64,
    /// Bias: the projection of d(q | b) on the unit axis; ranking: NaN.
    pub projection: f64,
    /// Bias: 2.5 % bootstrap quantile of the projection; ranking: NaN.
    pub projection_ci_low: f64,
    /// Bias: 97.5 % bootstrap quantile of the projection; ranking: NaN.
    pub projection_ci_high: f64,
    /// Bias: the query's reference rate from the contrasts file (NaN = none); ranking: NaN.
    pub reference_rate: f64,
    /// Replicates R the directions averaged.
    pub replicates: u32,
}

/// One clustering of the query prompts of a representation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRow {
    /// Representation key (the replicate mean's).
    pub representation: String,
    /// `kmeans` or `agglomerative`.
    pub method: String,
    /// What was clustered: `direction` or `mean`.
    pub space: String,
    /// Clusters k.
    pub k: u32,
    /// PCA components kept before clustering (0 = none).
    pub pca: u32,
    /// Adjusted Rand index against the categories (NaN when a query has none).
    pub ari: f64,
    /// Normalised mutual information against the categories (NaN as `ari`).
    pub nmi: f64,
    /// Purity against the categories (NaN as `ari`).
    pub purity: f64,
    /// Cosine silhouette of the clusters (NaN unless 2 ≤ clusters ≤ N − 1).
    pub silhouette: f64,
    /// k-means inertia (NaN for agglomerative).
    pub inertia: f64,
    /// The queries, in contrasts-file order.
    pub prompts: Vec<String>,
    /// Their categories.
    pub categories: Vec<String>,
    /// Their cluster labels.
    pub labels: Vec<u32>,
    /// Their first principal-component score (of the clustered vectors), for a map.
    pub x: Vec<f64>,
    /// Their second principal-component score.
    pub y: Vec<f64>,
}

/// Writes directions rows as one record batch.
pub fn write_direction_rows(
    file: &mut File,
    path: &Path,
    rows: &[DirectionsRow],
) -> Result<(), DataError> {
    write_rows(file, path, rows)
}

/// Reads every directions row of a file.
pub fn read_direction_rows(path: &Path) -> Result<Vec<DirectionsRow>, DataError> {
    read_rows(path, "a directions-rows file")
}

/// Writes cluster rows as one record batch.
pub fn write_cluster_rows(
    file: &mut File,
    path: &Path,
    rows: &[ClusterRow],
) -> Result<(), DataError> {
    write_rows(file, path, rows)
}

/// Reads every cluster row of a file.
pub fn read_cluster_rows(path: &Path) -> Result<Vec<ClusterRow>, DataError> {
    read_rows(path, "a cluster-rows file")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows round-trip through Parquet, NaN and empty lists included, and a file of the other
    /// table is refused by name.
    #[test]
    fn rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let d = DirectionsRow {
            representation: "mid_block/mean/k1".into(),
            analysis: direction_analysis::RANKING.into(),
            reference: "nurse".into(),
            prompt: "kind".into(),
            category: String::new(),
            rank: 1,
            value: 0.25,
            ci_low: f64::NAN,
            ci_high: 0.5,
            projection: f64::NAN,
            projection_ci_low: f64::NAN,
            projection_ci_high: f64::NAN,
            reference_rate: f64::NAN,
            replicates: 4,
        };
        let path = dir.path().join("d.parquet");
        let mut f = File::create(&path).unwrap();
        write_direction_rows(&mut f, &path, std::slice::from_ref(&d)).unwrap();
        let back = read_direction_rows(&path).unwrap();
        assert_eq!(format!("{back:?}"), format!("{:?}", vec![d]));
        let c = ClusterRow {
            representation: "mid_block/mean/k1".into(),
            method: "kmeans".into(),
            space: "direction".into(),
            k: 2,
            pca: 0,
            ari: 1.0,
            nmi: 1.0,
            purity: 1.0,
            silhouette: f64::NAN,
            inertia: 0.5,
            prompts: vec!["a".into(), "b".into()],
            categories: vec![String::new(), "x".into()],
            labels: vec![0, 1],
            x: vec![],
            y: vec![0.0, 1.0],
        };
        let path2 = dir.path().join("c.parquet");
        let mut f = File::create(&path2).unwrap();
        write_cluster_rows(&mut f, &path2, std::slice::from_ref(&c)).unwrap();
        assert_eq!(format!("{:?}", read_cluster_rows(&path2).unwrap()), format!("{:?}", vec![c]));
        let e = read_cluster_rows(&path).unwrap_err().to_string();
        assert!(e.contains("not a cluster-rows file"), "{e}");
    }
}
