//! Agreement of a clustering with given categories, and its silhouette, as scikit-learn computes
//! them (labels are any integers; only equality matters, so a permutation changes nothing):
//!
//! - [`adjusted_rand_index`]: `adjusted_rand_score` (from the pair confusion counts, exactly in
//!   integers; 1 when the partitions are equal, ≈ 0 for independent ones);
//! - [`normalized_mutual_info`]: `normalized_mutual_info_score` with the arithmetic mean of the
//!   entropies (its default; 1 when both have a single cluster, 0 when the MI is 0);
//! - [`purity`]: Σ over clusters of the largest category count, over N;
//! - [`cosine_silhouette`]: `silhouette_score(metric="cosine")`, the semantic lens's silhouette on
//!   the cosine distance matrix.

use crate::error::AlignmentError;
use crate::matrix::Matrix;
use crate::odd_one_out::Distance;
use crate::semantic::{silhouette, DistanceMatrix, Items, SemanticConfig};

use super::agglomerative::by_first_appearance;

/// The contingency table n_ij (true class i, predicted cluster j) and its margins.
struct Contingency {
    table: Vec<Vec<u64>>,
    rows: Vec<u64>,
    cols: Vec<u64>,
    n: u64,
}

impl Contingency {
    fn new(truth: &[usize], predicted: &[usize]) -> Result<Self, AlignmentError> {
        if truth.len() != predicted.len() {
            let (truth, predicted) = (truth.len(), predicted.len());
            return Err(AlignmentError::LabelMismatch { truth, predicted });
        }
        let (t, p) = (by_first_appearance(truth), by_first_appearance(predicted));
        let (r, c) = (t.iter().max().map_or(0, |m| m + 1), p.iter().max().map_or(0, |m| m + 1));
        let mut table = vec![vec![0u64; c]; r];
        t.iter().zip(&p).for_each(|(&i, &j)| table[i][j] += 1);
        let rows = table.iter().map(|row| row.iter().sum()).collect();
        let cols = (0..c).map(|j| table.iter().map(|row| row[j]).sum()).collect();
        Ok(Self { table, rows, cols, n: truth.len() as u64 })
    }
}

/// scikit-learn's `adjusted_rand_score(truth, predicted)`.
///
/// # Errors
/// [`AlignmentError::LabelMismatch`] if the lengths differ.
pub fn adjusted_rand_index(truth: &[usize], predicted: &[usize]) -> Result<f64, AlignmentError> {
    let ct = Contingency::new(truth, predicted)?;
    // scikit-learn's pair_confusion_matrix (ordered pairs), in exact integers.
    let sq = |v: &[u64]| v.iter().map(|&x| i128::from(x) * i128::from(x)).sum::<i128>();
    let sum_squares: i128 = ct.table.iter().map(|row| sq(row)).sum();
    let n = i128::from(ct.n);
    let tp = sum_squares - n;
    let fp = sq(&ct.cols) - sum_squares;
    let fn_ = sq(&ct.rows) - sum_squares;
    let tn = n * n - fp - fn_ - sum_squares;
    if fn_ == 0 && fp == 0 {
        return Ok(1.0);
    }
    let num = 2 * (tp * tn - fn_ * fp);
    let den = (tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn);
    Ok(num as f64 / den as f64)
}

/// scikit-learn's `normalized_mutual_info_score(truth, predicted)` (arithmetic mean).
///
/// # Errors
/// [`AlignmentError::LabelMismatch`] if the lengths differ.
pub fn normalized_mutual_info(truth: &[usize], predicted: &[usize]) -> Result<f64, AlignmentError> {
    let ct = Contingency::new(truth, predicted)?;
    if ct.rows.len() == ct.cols.len() && ct.rows.len() <= 1 {
        return Ok(1.0);
    }
    let mi = mutual_info(&ct);
    if mi == 0.0 {
        return Ok(0.0);
    }
    let normalizer = 0.5 * (entropy(&ct.rows) + entropy(&ct.cols));
    Ok(mi / normalizer.max(f64::EPSILON))
}

/// scikit-learn's `mutual_info_score` from the contingency table (natural logarithm).
fn mutual_info(ct: &Contingency) -> f64 {
    if ct.rows.len() == 1 || ct.cols.len() == 1 {
        return 0.0;
    }
    let total = ct.n as f64;
    let (sum_rows, sum_cols) = (total.ln(), total.ln());
    let mut mi = 0.0;
    for (i, row) in ct.table.iter().enumerate() {
        for (j, &nij) in row.iter().enumerate().filter(|(_, &v)| v > 0) {
            let p = nij as f64 / total;
            let outer = ct.rows[i] as f64 * ct.cols[j] as f64;
            let term =
                p * ((nij as f64).ln() - total.ln()) + p * (-outer.ln() + sum_rows + sum_cols);
            mi += if term.abs() < f64::EPSILON { 0.0 } else { term };
        }
    }
    mi.max(0.0)
}

/// The entropy of a labelling from its class counts.
fn entropy(counts: &[u64]) -> f64 {
    let total: f64 = counts.iter().map(|&c| c as f64).sum();
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| (c as f64 / total) * ((c as f64).ln() - total.ln()))
        .sum::<f64>()
}

/// Σ over predicted clusters of the count of their most frequent true class, over N.
///
/// # Errors
/// [`AlignmentError::LabelMismatch`] if the lengths differ.
pub fn purity(truth: &[usize], predicted: &[usize]) -> Result<f64, AlignmentError> {
    let ct = Contingency::new(truth, predicted)?;
    let hits: u64 =
        (0..ct.cols.len()).map(|j| ct.table.iter().map(|row| row[j]).max().unwrap_or(0)).sum();
    Ok(hits as f64 / ct.n.max(1) as f64)
}

/// scikit-learn's `silhouette_score(points, labels, metric="cosine")`.
///
/// # Errors
/// [`AlignmentError::LabelCount`] if there is not one label per row,
/// [`AlignmentError::NotScorable`] unless there are 2 to N − 1 clusters.
pub fn cosine_silhouette<T: Copy + Into<f64>>(
    points: &Matrix<'_, T>,
    labels: &[usize],
) -> Result<f64, AlignmentError> {
    let images: Vec<usize> = (0..labels.len()).collect();
    let items = Items::new(labels, &images)?;
    let dm = DistanceMatrix::new(points, Distance::Cosine);
    let config = SemanticConfig { bootstrap: 0, permutations: 0, seed: 0 };
    Ok(silhouette(&dm, &items, &config)?.value)
}
