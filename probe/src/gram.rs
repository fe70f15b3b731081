//! The stimulus Gram matrix: inner products of the used stimuli's features, centred on their
//! mean, computed once per representation so that every fold's kernel-form PCA is read from it.
//!
//! K-fold probing in kernel form (`D > n_train`) needs, per fold, the training rows' centred Gram
//! matrix and the test rows' centred cross products. Centring on the fold's training mean `c` is
//! an exact rank-two correction of any Gram matrix `K` of the same rows, `K_c[i,l] = K[i,l] −
//! m_i − m_l + μ` with `m_i` the mean of `K[i, train]` and `μ` the mean of `m` over the training
//! rows, so one `N × N × D` product serves all `K` folds instead of `K` products of
//! `n_train × n_train × D` (about K·0.8 times fewer multiply-adds). The features are first
//! centred on the mean of all used rows, which keeps the correction small and the subtraction
//! free of cancellation. The product may be computed elsewhere (a GPU) and handed over with
//! [`StimulusGram::from_parts`].

use faer::{Accum, Mat};

use crate::error::ProbeError;
use crate::null::Element;
use crate::ridge::lower_product;
use crate::Precision;

/// Feature columns centred and multiplied per block (bounds the `f64` copy to `N × 2048`).
const COLUMN_BLOCK: usize = 2048;

/// Centred inner products of a set of stimuli (see the module documentation).
#[derive(Debug, Clone)]
pub struct StimulusGram {
    /// Number of stimuli of the representation (indices are `< n`).
    n: usize,
    /// Feature dimension D.
    d: usize,
    /// Position of each stimulus in the matrix, `usize::MAX` when it is not in it.
    position: Vec<usize>,
    /// The Gram matrix of the listed stimuli, full (both halves).
    k: Mat<f64>,
}

impl StimulusGram {
    /// Computes the centred Gram matrix of `rows` of `x` (`n × d` row-major), in `f64` or with
    /// `f32` products ([`Precision`]).
    ///
    /// # Errors
    /// A buffer whose length does not match `n × d`, an index `≥ n` or listed twice, or a NaN or
    /// infinite value in a listed row.
    pub fn compute<T: Copy + Into<f64>>(
        x: &[T],
        n: usize,
        d: usize,
        rows: &[usize],
        precision: Precision,
    ) -> Result<Self, ProbeError> {
        let position = positions(n, rows)?;
        crate::check_len("x", x.len(), n, d)?;
        let row = |r: usize| &x[r * d..(r + 1) * d];
        let mut mean = vec![0.0_f64; d];
        for &r in rows {
            for (c, &v) in row(r).iter().enumerate() {
                let value: f64 = v.into();
                if !value.is_finite() {
                    return Err(ProbeError::NonFiniteFeature { row: r, column: c, value });
                }
                mean[c] += value;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows.len().max(1) as f64);
        let k = match precision {
            Precision::F64 => lower_gram::<f64, T>(x, d, rows, &mean),
            Precision::F32 => lower_gram::<f32, T>(x, d, rows, &mean),
        };
        let mut k = k;
        for i in 0..rows.len() {
            for l in 0..i {
                k[(l, i)] = k[(i, l)];
            }
        }
        Ok(Self { n, d, position, k })
    }

    /// A Gram matrix computed elsewhere: `k` is `rows.len() × rows.len()` row-major, the inner
    /// products of the listed stimuli's features after centring on any common vector (the mean
    /// of the rows is the accurate choice); `d` is the feature dimension.
    ///
    /// # Errors
    /// A wrong length, an index `≥ n` or listed twice, or a non-finite entry.
    pub fn from_parts(n: usize, d: usize, rows: &[usize], k: &[f64]) -> Result<Self, ProbeError> {
        let position = positions(n, rows)?;
        let m = rows.len();
        crate::check_len("gram", k.len(), m, m)?;
        if let Some(at) = k.iter().position(|v| !v.is_finite()) {
            return Err(ProbeError::NonFiniteFeature {
                row: rows[at / m],
                column: at % m,
                value: k[at],
            });
        }
        // Symmetrise: a product computed in another order may differ in the last bits.
        let k = Mat::<f64>::from_fn(m, m, |i, l| 0.5 * (k[i * m + l] + k[l * m + i]));
        Ok(Self { n, d, position, k })
    }

    /// Number of stimuli of the representation.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Feature dimension D.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Whether stimulus `i` is in the matrix.
    pub fn contains(&self, i: usize) -> bool {
        self.position.get(i).is_some_and(|&p| p != usize::MAX)
    }

    /// The fold's training Gram matrix and test cross products, centred on the training mean:
    /// `n_train × n_train` and `n_test × n_train`. `None` when a stimulus is not in the matrix.
    pub(crate) fn fold_blocks(
        &self,
        train: &[usize],
        test: &[usize],
    ) -> Option<(Mat<f64>, Mat<f64>)> {
        let at = |i: usize| self.position.get(i).copied().filter(|&p| p != usize::MAX);
        let tr: Vec<usize> = train.iter().map(|&i| at(i)).collect::<Option<_>>()?;
        let te: Vec<usize> = test.iter().map(|&i| at(i)).collect::<Option<_>>()?;
        let mean_over_train =
            |p: usize| tr.iter().map(|&l| self.k[(p, l)]).sum::<f64>() / tr.len() as f64;
        let m_train: Vec<f64> = tr.iter().map(|&p| mean_over_train(p)).collect();
        let m_test: Vec<f64> = te.iter().map(|&p| mean_over_train(p)).collect();
        let mu = m_train.iter().sum::<f64>() / tr.len() as f64;
        let k_train = Mat::<f64>::from_fn(tr.len(), tr.len(), |i, l| {
            self.k[(tr[i], tr[l])] - m_train[i] - m_train[l] + mu
        });
        let k_test = Mat::<f64>::from_fn(te.len(), tr.len(), |t, l| {
            self.k[(te[t], tr[l])] - m_test[t] - m_train[l] + mu
        });
        Some((k_train, k_test))
    }
}

/// Position of each stimulus in `rows` (`usize::MAX` for the others).
fn positions(n: usize, rows: &[usize]) -> Result<Vec<usize>, ProbeError> {
    let mut position = vec![usize::MAX; n];
    for (p, &r) in rows.iter().enumerate() {
        if r >= n {
            return Err(ProbeError::IndexOutOfRange { which: "gram", index: r, n });
        }
        if std::mem::replace(&mut position[r], p) != usize::MAX {
            return Err(ProbeError::DuplicateIndex { index: r, fold: 0 });
        }
    }
    Ok(position)
}

/// The lower half of the centred Gram matrix of `rows`, accumulated over column blocks with
/// products in `E` and the sum in `f64`.
fn lower_gram<E: Element, T: Copy + Into<f64>>(
    x: &[T],
    d: usize,
    rows: &[usize],
    mean: &[f64],
) -> Mat<f64> {
    let m = rows.len();
    let mut k = Mat::<f64>::zeros(m, m);
    let mut block_gram = Mat::<E>::zeros(m, m);
    // Stimuli as columns: each is a contiguous slice of a row of `x` (row-major), read and
    // written sequentially; the product takes the transpose. One buffer serves every block.
    let mut buffer = Mat::<E>::zeros(COLUMN_BLOCK.min(d), m);
    for c0 in (0..d).step_by(COLUMN_BLOCK) {
        let c1 = (c0 + COLUMN_BLOCK).min(d);
        for (i, &r) in rows.iter().enumerate() {
            let source = &x[r * d + c0..r * d + c1];
            let centre = &mean[c0..c1];
            let column = buffer.as_mut().col_mut(i).subrows_mut(0, c1 - c0);
            let column = column.try_as_col_major_mut().expect("contiguous column");
            for ((t, &v), &mu) in column.as_slice_mut().iter_mut().zip(source).zip(centre) {
                *t = E::of(v.into() - mu);
            }
        }
        let block = buffer.as_ref().subrows(0, c1 - c0);
        lower_product(block_gram.as_mut(), Accum::Replace, block.transpose(), block, E::of(1.0));
        for l in 0..m {
            for i in l..m {
                k[(i, l)] += block_gram[(i, l)].into();
            }
        }
    }
    k
}
