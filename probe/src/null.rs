//! The permutation null of one fold: `B` permutations of the stimuli's targets, refitted through
//! the fold's fixed ridge maps, scored on the test fold.
//!
//! One permutation reorders the targets of every attribute at once (as scikit-learn's
//! `permutation_test_score` permutes a multi-output `y`): each attribute's test is exact on its
//! own, one shuffle serves all `J` columns, and the permuted columns of all attributes go through
//! one matrix product. Permutations are generated in chunks of columns so memory stays bounded
//! whatever `B` and `J`; the refit products run in `f64` or `f32` ([`Element`]), the RMSEs are
//! accumulated in `f64`.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

use crate::rng;

/// A real scalar the refit products can run in (`f64`, or `f32` for twice the throughput).
pub(crate) trait Element:
    faer::traits::ComplexField + faer::traits::Conjugate<Canonical = Self> + Copy + Into<f64>
{
    /// The nearest value of this type.
    fn of(v: f64) -> Self;
}

impl Element for f64 {
    fn of(v: f64) -> Self {
        v
    }
}

impl Element for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
}

/// Target elements generated per chunk (2 MB in `f64`: the chunk stays in cache between its
/// generation and its product, and nothing large is allocated per fold).
const CHUNK_ELEMENTS: usize = 1 << 18;

/// What is permuted, and the stimuli involved.
pub(crate) struct NullDesign<'a> {
    /// Targets, `n × j` row-major over all stimuli.
    pub(crate) y: &'a [f64],
    /// Number of attributes.
    pub(crate) j: usize,
    /// Training stimuli.
    pub(crate) train: &'a [usize],
    /// Test stimuli.
    pub(crate) test: &'a [usize],
    /// Training means of the observed targets, one per attribute.
    pub(crate) means: &'a [f64],
    /// The observed training targets minus their means, `n_train × j` in `train` order.
    pub(crate) centred_train: &'a Mat<f64>,
    /// `Some(fold)`: permute the training targets only, stream keyed by the fold;
    /// `None`: permute the pool `train ∪ test`, stream shared by all folds.
    pub(crate) fold_key: Option<usize>,
    /// Seed of the permutation stream.
    pub(crate) seed: u64,
    /// Number of permutations `B`.
    pub(crate) permutations: usize,
}

/// The held-out RMSE of every permutation, `[attribute][permutation]`.
///
/// `fit` maps a chunk of centred permuted training targets (`n_train × (j · c)`, attribute `a`
/// in columns `a·c .. (a+1)·c`) to centred test predictions of the same layout, overwriting
/// its second argument (`n_test × (j · c)`).
pub(crate) fn null_rmse<T: Element>(
    design: &NullDesign<'_>,
    mut fit: impl FnMut(MatRef<'_, T>, MatMut<'_, T>),
) -> Vec<Vec<f64>> {
    let NullDesign { y, j, train, test, .. } = *design;
    let (n_train, n_test, b) = (train.len(), test.len(), design.permutations);
    let mut out = vec![Vec::with_capacity(b); j];
    if b == 0 {
        return out;
    }
    let chunk = (CHUNK_ELEMENTS / (n_train * j).max(1)).clamp(1, b);
    let pool = Pool::new(train, test, design.fold_key.is_none());
    let mut order: Vec<usize> = (0..pool.stimuli.len()).collect();
    let mut stream = rng::permutation_rng(design.seed, design.fold_key);
    let mut targets = Mat::<T>::zeros(n_train, j * chunk);
    let mut fitted = Mat::<T>::zeros(n_test, j * chunk);
    // Centred test targets per column (pool scheme); the per-fold scheme's are fixed.
    let test_width = if pool.permutes_test { j * chunk } else { 0 };
    let mut test_targets = Mat::<f64>::zeros(n_test, test_width);
    let fixed_test: Vec<Vec<f64>> =
        (0..j).map(|a| test.iter().map(|&i| y[i * j + a] - design.means[a]).collect()).collect();
    let mut done = 0;
    while done < b {
        let c = chunk.min(b - done);
        for k in 0..c {
            rng::shuffle(&mut order, &mut stream);
            pool.fill(design, &order, k, c, targets.as_mut(), test_targets.as_mut());
        }
        let width = j * c;
        fit(targets.as_ref().subcols(0, width), fitted.as_mut().subcols_mut(0, width));
        for (a, rmses) in out.iter_mut().enumerate() {
            for k in 0..c {
                let col = a * c + k;
                let truth = if pool.permutes_test {
                    test_targets.col_as_slice(col)
                } else {
                    &fixed_test[a]
                };
                let sse: f64 = fitted
                    .col_as_slice(col)
                    .iter()
                    .zip(truth)
                    .map(|(&p, t)| {
                        let e = p.into() - t;
                        e * e
                    })
                    .sum();
                rmses.push((sse / n_test as f64).sqrt());
            }
        }
        done += c;
    }
    out
}

/// The stimuli a permutation reorders and where the training and test stimuli sit among them.
struct Pool {
    /// The permuted stimuli: the training stimuli (per-fold scheme), or `train ∪ test` sorted.
    stimuli: Vec<usize>,
    /// Position in `stimuli` of each training stimulus.
    slot_train: Vec<usize>,
    /// Position in `stimuli` of each test stimulus (pool scheme only).
    slot_test: Vec<usize>,
    /// Whether test targets move with the permutation.
    permutes_test: bool,
}

impl Pool {
    fn new(train: &[usize], test: &[usize], whole: bool) -> Self {
        if !whole {
            return Self {
                stimuli: train.to_vec(),
                slot_train: (0..train.len()).collect(),
                slot_test: Vec::new(),
                permutes_test: false,
            };
        }
        let mut stimuli: Vec<usize> = train.iter().chain(test).copied().collect();
        stimuli.sort_unstable();
        let slot_of = |i: &usize| stimuli.binary_search(i).expect("stimulus is in the pool");
        let slot_train = train.iter().map(slot_of).collect();
        let slot_test = test.iter().map(slot_of).collect();
        Self { stimuli, slot_train, slot_test, permutes_test: true }
    }

    /// Writes permutation `k` of a chunk of `c` (order `order`) into the columns `a·c + k`.
    fn fill<T: Element>(
        &self,
        design: &NullDesign<'_>,
        order: &[usize],
        k: usize,
        c: usize,
        mut targets: MatMut<'_, T>,
        mut test_targets: MatMut<'_, f64>,
    ) {
        let (y, j) = (design.y, design.j);
        let source = |slot: usize| self.stimuli[order[slot]];
        if !self.permutes_test {
            // Training targets only: the permuted column has the observed training mean. Column
            // by column, so the writes are sequential and the reads hit one attribute's values.
            for a in 0..design.j {
                let centred = design.centred_train.col_as_slice(a);
                let col = targets.as_mut().col_mut(a * c + k).try_as_col_major_mut();
                let col = col.expect("a column of an owned matrix is contiguous").as_slice_mut();
                for (t, &slot) in col.iter_mut().zip(&self.slot_train) {
                    *t = T::of(centred[order[slot]]);
                }
            }
            return;
        }
        for a in 0..j {
            let col = a * c + k;
            let value = |slot: usize| y[source(slot) * j + a];
            let mean = self.slot_train.iter().map(|&s| value(s)).sum::<f64>()
                / self.slot_train.len() as f64;
            for (i, &slot) in self.slot_train.iter().enumerate() {
                targets[(i, col)] = T::of(value(slot) - mean);
            }
            for (t, &slot) in self.slot_test.iter().enumerate() {
                test_targets[(t, col)] = value(slot) - mean;
            }
        }
    }
}

/// A fixed linear map from centred training targets to centred test predictions,
/// `Z_test diag(1/(λ + α)) Z_trainᵀ`, stored as one `n_test × n_train` matrix or as its two
/// factors, whichever costs fewer multiply-adds per column.
#[derive(Debug, Clone)]
pub(crate) enum RidgeMap<T> {
    /// No component: the prediction is the training mean (centred: 0).
    Empty,
    /// The product, `n_test × n_train`.
    Product(Mat<T>),
    /// `left = Z_test diag(1/(λ + α))` (`n_test × P`), `right = Z_trainᵀ` (`P × n_train`).
    Factors { left: Mat<T>, right: Mat<T> },
}

impl<T: Element> RidgeMap<T> {
    /// The map of `left · right`, in the cheaper form.
    pub(crate) fn new(left: MatRef<'_, f64>, right: MatRef<'_, f64>) -> Self {
        let (n_test, p, n_train) = (left.nrows(), left.ncols(), right.ncols());
        if p == 0 {
            return Self::Empty;
        }
        let cast =
            |m: MatRef<'_, f64>| Mat::<T>::from_fn(m.nrows(), m.ncols(), |r, c| T::of(m[(r, c)]));
        if n_test * n_train <= p * (n_test + n_train) {
            let mut product = Mat::<f64>::zeros(n_test, n_train);
            matmul(product.as_mut(), Accum::Replace, left, right, 1.0, Par::Seq);
            Self::Product(cast(product.as_ref()))
        } else {
            Self::Factors { left: cast(left), right: cast(right) }
        }
    }

    /// Writes the map of `targets` (`n_train × m`) into `out` (`n_test × m`).
    pub(crate) fn apply(&self, targets: MatRef<'_, T>, mut out: MatMut<'_, T>) {
        match self {
            Self::Empty => out.fill(T::of(0.0)),
            Self::Product(h) => {
                matmul(out, Accum::Replace, h.as_ref(), targets, T::of(1.0), Par::Seq);
            }
            Self::Factors { left, right } => {
                let mut weights = Mat::<T>::zeros(right.nrows(), targets.ncols());
                matmul(
                    weights.as_mut(),
                    Accum::Replace,
                    right.as_ref(),
                    targets,
                    T::of(1.0),
                    Par::Seq,
                );
                matmul(out, Accum::Replace, left.as_ref(), weights.as_ref(), T::of(1.0), Par::Seq);
            }
        }
    }
}
