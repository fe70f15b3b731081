//! k-means (squared Euclidean; on L2-normalised rows it is spherical k-means up to the centroid
//! norm): Lloyd's algorithm as scikit-learn's `KMeans(algorithm="lloyd", tol=0)` runs it, from
//! given centroids ([`kmeans_from`]) or from greedy k-means++ seeds with restarts ([`kmeans`]).
//!
//! **Lloyd (scikit-learn's order):** assign every point to its nearest centroid (ties to the lower
//! index), move each centroid to the mean of its points; an empty cluster takes the point farthest
//! from its assigned centroid (which leaves its old cluster); stop when the labels repeat, when no
//! centroid moved, or after `max_iter` passes (then the labels are reassigned to the last
//! centroids). The inertia is Σ ‖x − c(x)‖².
//!
//! **k-means++:** scikit-learn's greedy variant: the first seed uniform, then each further seed
//! the best (least potential) of 2 + ⌊ln k⌋ candidates drawn with probability ∝ D². Restart i uses
//! `rng::Stream::KMeans` at `(seed, i)`; the run of least inertia is kept (the first on ties).

use rand::RngCore;

use crate::error::AlignmentError;
use crate::matrix::Matrix;
use crate::rng::{below, stream, uniform, Stream};

use super::replicates::dot;

/// Settings of [`kmeans`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KMeansConfig {
    /// Number of clusters.
    pub k: usize,
    /// Seeded k-means++ restarts (at least 1); the least inertia is kept.
    pub restarts: usize,
    /// Most Lloyd passes per run.
    pub max_iter: usize,
    /// The seed of the k-means++ draws.
    pub seed: u64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        Self { k: 8, restarts: 10, max_iter: 300, seed: 0 }
    }
}

/// A partition of the points with its centroids.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// Per point, its cluster (the index of its centroid).
    pub labels: Vec<usize>,
    /// The k × dim centroids, row-major.
    pub centers: Vec<f64>,
    /// Σ ‖x − c(x)‖².
    pub inertia: f64,
    /// Lloyd passes run.
    pub iterations: usize,
}

/// k-means++ with `config.restarts` seeded restarts, each refined by Lloyd (module doc).
///
/// # Errors
/// [`AlignmentError::ClusterCount`] unless 1 ≤ k ≤ points, [`AlignmentError::Config`] if
/// `restarts` is 0.
pub fn kmeans(
    points: &Matrix<'_, f64>,
    config: &KMeansConfig,
) -> Result<Clustering, AlignmentError> {
    check_k(config.k, points.rows())?;
    if config.restarts == 0 {
        let problem = "must be at least 1".into();
        return Err(AlignmentError::Config { setting: "restarts", problem });
    }
    let mut best: Option<Clustering> = None;
    for restart in 0..config.restarts {
        let mut rng = stream(Stream::KMeans, config.seed, restart);
        let seeds = plus_plus(points, config.k, &mut rng);
        let run = lloyd(points, seeds, config.max_iter);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    Ok(best.expect("at least one restart"))
}

/// Lloyd's algorithm from the given k × dim centroids (module doc), as scikit-learn's
/// `KMeans(init=C0, n_init=1, algorithm="lloyd", tol=0)`.
///
/// # Errors
/// [`AlignmentError::WidthMismatch`] if the centroids' width differs from the points',
/// [`AlignmentError::ClusterCount`] unless 1 ≤ k ≤ points.
pub fn kmeans_from(
    points: &Matrix<'_, f64>,
    initial: &Matrix<'_, f64>,
    max_iter: usize,
) -> Result<Clustering, AlignmentError> {
    if initial.cols() != points.cols() {
        let (what, cols, want) = (initial.what(), initial.cols(), points.cols());
        return Err(AlignmentError::WidthMismatch { what, cols, want });
    }
    check_k(initial.rows(), points.rows())?;
    Ok(lloyd(points, initial.values().to_vec(), max_iter))
}

fn check_k(k: usize, points: usize) -> Result<(), AlignmentError> {
    if k == 0 || k > points {
        return Err(AlignmentError::ClusterCount { k, points });
    }
    Ok(())
}

fn lloyd(points: &Matrix<'_, f64>, mut centers: Vec<f64>, max_iter: usize) -> Clustering {
    let mut previous: Vec<usize> = Vec::new();
    let mut labels = Vec::new();
    let (mut iterations, mut converged) = (0, false);
    while iterations < max_iter {
        iterations += 1;
        labels = assign(points, &centers);
        let moved = update(points, &labels, &centers);
        let shift: f64 = moved.iter().zip(&centers).map(|(a, b)| (a - b) * (a - b)).sum();
        centers = moved;
        if labels == previous {
            converged = true;
            break;
        }
        if shift <= 0.0 {
            break;
        }
        previous.clone_from(&labels);
    }
    if !converged {
        labels = assign(points, &centers);
    }
    let inertia = (0..points.rows())
        .map(|i| squared(points.row(i), center(&centers, points.cols(), labels[i])))
        .sum();
    Clustering { labels, centers, inertia, iterations }
}

/// Per point, the index of its nearest centroid (the lower index on ties).
fn assign(points: &Matrix<'_, f64>, centers: &[f64]) -> Vec<usize> {
    let d = points.cols();
    let k = centers.len() / d;
    (0..points.rows())
        .map(|i| {
            let x = points.row(i);
            (0..k)
                .map(|c| squared(x, center(centers, d, c)))
                .enumerate()
                .fold((0, f64::INFINITY), |best, (c, v)| if v < best.1 { (c, v) } else { best })
                .0
        })
        .collect()
}

/// The means of the clusters, empty clusters relocated to the farthest points (module doc).
fn update(points: &Matrix<'_, f64>, labels: &[usize], old: &[f64]) -> Vec<f64> {
    let d = points.cols();
    let k = old.len() / d;
    let mut sums = vec![0.0; k * d];
    let mut counts = vec![0.0; k];
    for (i, &l) in labels.iter().enumerate() {
        sums[l * d..(l + 1) * d].iter_mut().zip(points.row(i)).for_each(|(s, v)| *s += v);
        counts[l] += 1.0;
    }
    let empty: Vec<usize> = (0..k).filter(|&c| counts[c] == 0.0).collect();
    if !empty.is_empty() {
        let mut far: Vec<usize> = (0..labels.len()).collect();
        let dist: Vec<f64> =
            far.iter().map(|&i| squared(points.row(i), center(old, d, labels[i]))).collect();
        far.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]));
        for (&c, &i) in empty.iter().zip(&far) {
            let from = labels[i];
            for (j, &v) in points.row(i).iter().enumerate() {
                sums[from * d + j] -= v;
                sums[c * d + j] = v;
            }
            counts[from] -= 1.0;
            counts[c] = 1.0;
        }
    }
    for c in 0..k {
        if counts[c] > 0.0 {
            sums[c * d..(c + 1) * d].iter_mut().for_each(|s| *s /= counts[c]);
        }
    }
    sums
}

/// Greedy k-means++ seeds, k × dim row-major (module doc).
fn plus_plus(points: &Matrix<'_, f64>, k: usize, rng: &mut impl RngCore) -> Vec<f64> {
    let n = points.rows();
    let trials = 2 + (k as f64).ln() as usize;
    let first = below(rng, n);
    let mut centers = points.row(first).to_vec();
    let mut closest: Vec<f64> = (0..n).map(|i| squared(points.row(i), points.row(first))).collect();
    for _ in 1..k {
        let potential: f64 = closest.iter().sum();
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let candidate = draw(&closest, uniform(rng) * potential);
            let dist: Vec<f64> = (0..n)
                .map(|i| closest[i].min(squared(points.row(i), points.row(candidate))))
                .collect();
            let pot: f64 = dist.iter().sum();
            if best.as_ref().is_none_or(|b| pot < b.0) {
                best = Some((pot, candidate, dist));
            }
        }
        let (_, chosen, dist) = best.expect("at least two trials");
        centers.extend_from_slice(points.row(chosen));
        closest = dist;
    }
    centers
}

/// The first index whose cumulative weight exceeds `target` (the last one if none does).
fn draw(weights: &[f64], target: f64) -> usize {
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if acc > target {
            return i;
        }
    }
    weights.len() - 1
}

fn center(centers: &[f64], d: usize, c: usize) -> &[f64] {
    &centers[c * d..(c + 1) * d]
}

fn squared(a: &[f64], b: &[f64]) -> f64 {
    let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    dot(&diff, &diff)
}
