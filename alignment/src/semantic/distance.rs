//! Distances between descriptor rows, as scipy's `cdist` computes them: `cosine` (1 − cos),
//! `euclidean`, `cityblock` (L1), `chebyshev` (L∞), `correlation` (cosine of the rows centred on
//! their own means) and, for completeness, the odd-one-out's `dot` (−a·b).
//!
//! **Degenerate rows:** a zero row (cosine) or a constant row (correlation) has similarity 0 with
//! any other row (distance 1), as scikit-learn's `cosine_distances` does, instead of scipy's NaN.
//! **Identical rows** are at distance exactly 0 under every distance except `dot` (so the drift of
//! an unchanged descriptor is exactly 0, not a rounding residue of 1 − x·x/‖x‖²), and cosine and
//! correlation distances are clipped to [0, 2].
//!
//! The matrix is dense (N² values): the scores need whole rows of it. Blocking for sets that do not
//! fit in memory is the caller's (through [`cross_distances`] on row blocks).

use crate::matrix::Matrix;
use crate::odd_one_out::Distance;

/// The distance between two rows of equal length.
pub fn pair_distance<T: Copy + Into<f64>>(x: &[T], y: &[T], distance: Distance) -> f64 {
    let a: Vec<f64> = x.iter().map(|&v| v.into()).collect();
    let b: Vec<f64> = y.iter().map(|&v| v.into()).collect();
    let (pa, pb) = (Prepared::new(a, distance), Prepared::new(b, distance));
    between(&pa, &pb, distance)
}

/// A symmetric N × N distance matrix with a zero diagonal.
#[derive(Debug, Clone, PartialEq)]
pub struct DistanceMatrix {
    n: usize,
    values: Vec<f64>,
}

impl DistanceMatrix {
    /// The distances between all rows of `features` under `distance`.
    pub fn new<T: Copy + Into<f64>>(features: &Matrix<'_, T>, distance: Distance) -> Self {
        let rows = prepare(features, distance);
        let n = rows.len();
        let mut values = vec![0.0; n * n];
        for i in 0..n {
            for j in i + 1..n {
                let d = between(&rows[i], &rows[j], distance);
                values[i * n + j] = d;
                values[j * n + i] = d;
            }
        }
        Self { n, values }
    }

    /// Number of rows (items).
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the matrix has no rows (never, for one built from a [`Matrix`]).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The distances from item `i` to every item (panics if `i ≥ len`).
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.n..(i + 1) * self.n]
    }

    /// The row-major N × N values.
    pub fn values(&self) -> &[f64] {
        &self.values
    }
}

/// The `queries.rows() × gallery.rows()` row-major distances between two sets of equal width
/// (`None` when the widths differ).
pub fn cross_distances<T: Copy + Into<f64>>(
    queries: &Matrix<'_, T>,
    gallery: &Matrix<'_, T>,
    distance: Distance,
) -> Option<Vec<f64>> {
    if queries.cols() != gallery.cols() {
        return None;
    }
    let (q, g) = (prepare(queries, distance), prepare(gallery, distance));
    Some(q.iter().flat_map(|a| g.iter().map(move |b| between(a, b, distance))).collect())
}

/// A row converted to `f64` (centred for correlation) with its norm where the distance needs one.
struct Prepared {
    raw: Vec<f64>,
    values: Vec<f64>,
    norm: f64,
}

impl Prepared {
    fn new(raw: Vec<f64>, distance: Distance) -> Self {
        let values = match distance {
            Distance::Correlation => {
                let mean = raw.iter().sum::<f64>() / raw.len() as f64;
                raw.iter().map(|v| v - mean).collect()
            }
            _ => raw.clone(),
        };
        let norm = match distance {
            Distance::Cosine | Distance::Correlation => dot(&values, &values).sqrt(),
            _ => 0.0,
        };
        Self { raw, values, norm }
    }
}

fn prepare<T: Copy + Into<f64>>(m: &Matrix<'_, T>, distance: Distance) -> Vec<Prepared> {
    (0..m.rows())
        .map(|i| Prepared::new(m.row(i).iter().map(|&v| v.into()).collect(), distance))
        .collect()
}

fn between(a: &Prepared, b: &Prepared, distance: Distance) -> f64 {
    if distance != Distance::NegDot && a.raw == b.raw {
        return 0.0;
    }
    let (x, y) = (&a.values, &b.values);
    match distance {
        Distance::Cosine | Distance::Correlation if a.norm == 0.0 || b.norm == 0.0 => 1.0,
        // Rounding can leave 1 − cos a hair outside [0, 2]; scipy clips it the same way.
        Distance::Cosine | Distance::Correlation => {
            (1.0 - dot(x, y) / (a.norm * b.norm)).clamp(0.0, 2.0)
        }
        Distance::Euclidean => x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)).sum::<f64>().sqrt(),
        Distance::L1 => x.iter().zip(y).map(|(p, q)| (p - q).abs()).sum(),
        Distance::LInf => x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max),
        Distance::NegDot => -dot(x, y),
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}
