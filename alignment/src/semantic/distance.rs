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
//! The scores read distances a row at a time through [`DistanceRows`]: a [`DistanceMatrix`]
//! holds all N² values; [`Distances::new`] holds them only up to a byte budget and otherwise
//! computes them again for each pass, a block of rows at a time ([`BlockedDistances`]), so that
//! sets whose N² matrix does not fit in memory are scored all the same. Every distance is the
//! same arithmetic either way (and `between(a, b)` equals `between(b, a)` bit for bit), so the
//! two give identical scores.

use crate::matrix::Matrix;
use crate::odd_one_out::Distance;

/// The distance between two rows of equal length.
pub fn pair_distance<T: Copy + Into<f64>>(x: &[T], y: &[T], distance: Distance) -> f64 {
    let a: Vec<f64> = x.iter().map(|&v| v.into()).collect();
    let b: Vec<f64> = y.iter().map(|&v| v.into()).collect();
    let (pa, pb) = (Prepared::new(a, distance), Prepared::new(b, distance));
    between(&pa, &pb, distance)
}

/// Bytes of rows one tile of [`DistanceMatrix::new`] holds (two tiles fit a typical L2).
const TILE_BYTES: usize = 256 * 1024;

/// Distances read row by row: what every score needs of a distance matrix.
pub trait DistanceRows {
    /// Number of rows (items).
    fn len(&self) -> usize;

    /// Whether there are no rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `visit(i, row_i)` for every row `i` in order, `row_i` the distances from item `i`
    /// to every item (zero at `i`).
    fn for_each_row(&self, visit: &mut dyn FnMut(usize, &[f64]));
}

impl DistanceRows for DistanceMatrix {
    fn len(&self) -> usize {
        self.n
    }

    fn for_each_row(&self, visit: &mut dyn FnMut(usize, &[f64])) {
        for i in 0..self.n {
            visit(i, self.row(i));
        }
    }
}

/// The distances of a set computed again on every pass, `block` rows at a time, so that no more
/// than `block × N` values are held.
pub struct BlockedDistances {
    rows: Vec<Prepared>,
    distance: Distance,
    block: usize,
}

impl BlockedDistances {
    /// The distances between all rows of `features`, computed `block` rows at a time (at least 1).
    pub fn new<T: Copy + Into<f64>>(
        features: &Matrix<'_, T>,
        distance: Distance,
        block: usize,
    ) -> Self {
        Self { rows: prepare(features, distance), distance, block: block.max(1) }
    }

    /// Rows per block.
    pub fn block(&self) -> usize {
        self.block
    }
}

impl DistanceRows for BlockedDistances {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn for_each_row(&self, visit: &mut dyn FnMut(usize, &[f64])) {
        let n = self.rows.len();
        let cols = self.rows.first().map_or(1, |r| r.values.len().max(1));
        let tile = (TILE_BYTES / (8 * cols)).clamp(1, 64);
        let mut values = vec![0.0; self.block.min(n) * n];
        for start in (0..n).step_by(self.block) {
            let end = (start + self.block).min(n);
            // Column tiles outside, the block's rows inside: a tile of rows stays in cache.
            for bj in (0..n).step_by(tile) {
                for i in start..end {
                    let end_j = (bj + tile).min(n);
                    let out = &mut values[(i - start) * n + bj..(i - start) * n + end_j];
                    for (v, j) in out.iter_mut().zip(bj..end_j) {
                        *v = if i == j {
                            0.0
                        } else {
                            between(&self.rows[i], &self.rows[j], self.distance)
                        };
                    }
                }
            }
            for i in start..end {
                visit(i, &values[(i - start) * n..(i - start + 1) * n]);
            }
        }
    }
}

/// A set's distances, held whole when the N × N matrix fits in a byte budget and computed in
/// row blocks within it otherwise.
pub enum Distances {
    /// The whole matrix.
    Held(DistanceMatrix),
    /// Row blocks, computed on each pass.
    Blocked(BlockedDistances),
}

impl Distances {
    /// The distances between all rows of `features`, holding at most about `max_bytes` of them.
    pub fn new<T: Copy + Into<f64>>(
        features: &Matrix<'_, T>,
        distance: Distance,
        max_bytes: usize,
    ) -> Self {
        let n = features.rows();
        if n.saturating_mul(n).saturating_mul(8) <= max_bytes {
            Self::Held(DistanceMatrix::new(features, distance))
        } else {
            Self::Blocked(BlockedDistances::new(features, distance, max_bytes / (8 * n.max(1))))
        }
    }
}

impl DistanceRows for Distances {
    fn len(&self) -> usize {
        match self {
            Self::Held(m) => m.len(),
            Self::Blocked(b) => b.len(),
        }
    }

    fn for_each_row(&self, visit: &mut dyn FnMut(usize, &[f64])) {
        match self {
            Self::Held(m) => m.for_each_row(visit),
            Self::Blocked(b) => b.for_each_row(visit),
        }
    }
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
        // Tiles of rows small enough to stay in cache while every pair of two tiles is done:
        // the distances are memory-bound otherwise. The same arithmetic per pair.
        let tile = (TILE_BYTES / (8 * features.cols().max(1))).clamp(1, 64);
        for bi in (0..n).step_by(tile) {
            for bj in (bi..n).step_by(tile) {
                for i in bi..(bi + tile).min(n) {
                    for j in bj.max(i + 1)..(bj + tile).min(n) {
                        let d = between(&rows[i], &rows[j], distance);
                        values[i * n + j] = d;
                        values[j * n + i] = d;
                    }
                }
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
    let mut out = Vec::with_capacity(queries.rows() * gallery.rows());
    for_each_cross_row(queries, gallery, distance, &mut |_, row| out.extend_from_slice(row))
        .then_some(out)
}

/// Calls `visit(i, row_i)` for every query `i`, `row_i` its distances to every gallery row, one
/// row held at a time; `false` (and no call) when the widths differ.
pub(crate) fn for_each_cross_row<T: Copy + Into<f64>>(
    queries: &Matrix<'_, T>,
    gallery: &Matrix<'_, T>,
    distance: Distance,
    visit: &mut dyn FnMut(usize, &[f64]),
) -> bool {
    if queries.cols() != gallery.cols() {
        return false;
    }
    let g = prepare(gallery, distance);
    let mut row = vec![0.0; g.len()];
    for i in 0..queries.rows() {
        let a = Prepared::new(queries.row(i).iter().map(|&v| v.into()).collect(), distance);
        row.iter_mut().zip(&g).for_each(|(out, b)| *out = between(&a, b, distance));
        visit(i, &row);
    }
    true
}

/// A row converted to `f64` (centred for correlation) with its norm where the distance needs one,
/// and a cheap fingerprint of the raw row so that identical rows are found without comparing
/// every pair in full.
struct Prepared {
    raw: Vec<f64>,
    values: Vec<f64>,
    norm: f64,
    fingerprint: (f64, f64),
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
        let fingerprint = (raw.iter().sum(), raw.iter().map(|v| v * v).sum());
        Self { raw, values, norm, fingerprint }
    }
}

fn prepare<T: Copy + Into<f64>>(m: &Matrix<'_, T>, distance: Distance) -> Vec<Prepared> {
    (0..m.rows())
        .map(|i| Prepared::new(m.row(i).iter().map(|&v| v.into()).collect(), distance))
        .collect()
}

fn between(a: &Prepared, b: &Prepared, distance: Distance) -> f64 {
    if distance != Distance::NegDot && a.fingerprint == b.fingerprint && a.raw == b.raw {
        return 0.0;
    }
    let (x, y) = (&a.values, &b.values);
    match distance {
        Distance::Cosine | Distance::Correlation if a.norm == 0.0 || b.norm == 0.0 => 1.0,
        // Rounding can leave 1 − cos a hair outside [0, 2]; scipy clips it the same way.
        Distance::Cosine | Distance::Correlation => {
            (1.0 - dot(x, y) / (a.norm * b.norm)).clamp(0.0, 2.0)
        }
        Distance::Euclidean => sum8(x, y, |p, q| (p - q) * (p - q)).sqrt(),
        Distance::L1 => sum8(x, y, |p, q| (p - q).abs()),
        Distance::LInf => max8(x, y),
        Distance::NegDot => -dot(x, y),
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    sum8(a, b, |p, q| p * q)
}

/// `max |a_i − b_i|` with eight running maxima (exact: a maximum does not depend on order).
fn max8(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0_f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail =
        ca.remainder().iter().zip(cb.remainder()).fold(0.0, |m, (p, q)| f64::max(m, (p - q).abs()));
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] = acc[k].max((x[k] - y[k]).abs());
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

/// `Σ f(a_i, b_i)` with eight running sums, so the loop vectorises (the order of the sum differs
/// from a plain fold in the last bits only).
fn sum8(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0.0; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(&p, &q)| f(p, q)).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += f(x[k], y[k]);
        }
    }
    acc.iter().sum::<f64>() + tail
}
