//! Agglomerative clustering with cosine distance and average linkage, cut at k clusters, as
//! scikit-learn's `AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average")`
//! (scipy's `linkage(method="average", metric="cosine")` cut after N − k merges).
//!
//! **Algorithm:** start from singletons at the crate's cosine distances (scipy's `pdist`, a zero
//! row at distance 1); repeatedly merge the closest pair of clusters (the first in row-major order
//! on ties) and update the distances by Lance–Williams, d(k, i ∪ j) = (n_i d(k, i) + n_j d(k, j))
//! / (n_i + n_j), which is the mean pairwise distance. O(N³) time, O(N²) memory: meant for
//! hundreds of prompts, not millions of points.
//!
//! **Labels** are numbered by first appearance (point 0's cluster is 0), so two runs that find the
//! same partition give equal labels; compare with another implementation up to a permutation.

use crate::error::AlignmentError;
use crate::matrix::Matrix;
use crate::odd_one_out::Distance;
use crate::semantic::DistanceMatrix;

/// The labels of the k clusters of average-linkage cosine clustering (module doc).
///
/// # Errors
/// [`AlignmentError::ClusterCount`] unless 1 ≤ k ≤ points.
pub fn agglomerative_cosine<T: Copy + Into<f64>>(
    points: &Matrix<'_, T>,
    k: usize,
) -> Result<Vec<usize>, AlignmentError> {
    let n = points.rows();
    if k == 0 || k > n {
        return Err(AlignmentError::ClusterCount { k, points: n });
    }
    let mut dist = DistanceMatrix::new(points, Distance::Cosine).values().to_vec();
    let mut size = vec![1.0; n];
    let mut active: Vec<usize> = (0..n).collect();
    let mut owner: Vec<usize> = (0..n).collect();
    while active.len() > k {
        let (a, b) = closest_pair(&dist, n, &active);
        let (i, j) = (active[a], active[b]);
        for &m in &active {
            if m != i && m != j {
                let v =
                    (size[i] * dist[i * n + m] + size[j] * dist[j * n + m]) / (size[i] + size[j]);
                dist[i * n + m] = v;
                dist[m * n + i] = v;
            }
        }
        size[i] += size[j];
        owner.iter_mut().filter(|o| **o == j).for_each(|o| *o = i);
        active.remove(b);
    }
    Ok(by_first_appearance(&owner))
}

/// Positions (a < b) in `active` of the closest pair.
fn closest_pair(dist: &[f64], n: usize, active: &[usize]) -> (usize, usize) {
    let mut best = (0, 1, f64::INFINITY);
    for (a, &i) in active.iter().enumerate() {
        for (b, &j) in active.iter().enumerate().skip(a + 1) {
            if dist[i * n + j] < best.2 {
                best = (a, b, dist[i * n + j]);
            }
        }
    }
    (best.0, best.1)
}

/// Relabels any labelling 0, 1, … in order of first appearance.
pub(crate) fn by_first_appearance(labels: &[usize]) -> Vec<usize> {
    let mut seen: Vec<usize> = Vec::new();
    labels
        .iter()
        .map(|l| match seen.iter().position(|s| s == l) {
            Some(p) => p,
            None => {
                seen.push(*l);
                seen.len() - 1
            }
        })
        .collect()
}
