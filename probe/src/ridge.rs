//! PCA + ridge in eigen form: one symmetric eigendecomposition per (representation, fold)
//! serves every attribute, every α and every permutation.
//!
//! With centred training features `X` (`n × D`), PCA scores on the top-P right singular vectors
//! `Z = X V_P` have `ZᵀZ = diag(λ_p)`, `λ_p = s_p²`, so ridge with an unpenalised intercept
//! predicts `ŷ = ȳ + Z_test diag(1/(λ_p + α)) Z_trainᵀ (y − ȳ)`. We decompose `XᵀX` (`D × D`)
//! when `D ≤ n`, else the Gram matrix `XXᵀ` (`n × n`, kernel form: `Z_train = U S`,
//! `Z_test = X_test Xᵀ U S⁻¹`).
//!
//! The same decomposition gives the exact leave-one-out error of every α ([`Decomposition::loo_mse`]):
//! for ridge with an unpenalised intercept on the training scores, the hat matrix has diagonal
//! `h_ii = 1/n + Σ_p z_ip² / (λ_p + α)` and the leave-one-out residual is `r_i / (1 − h_ii)`,
//! `r_i` the residual of the fit on all training rows. This is the "efficient LOO" of
//! scikit-learn's `RidgeCV(cv=None)` on the PCA scores: the PCA basis stays the one fitted on all
//! training rows (it is not refitted without row `i`). Inner K-fold errors
//! ([`Decomposition::kfold_mse`]) use the group form of the same identity, `e_G = (I − H)_GG⁻¹ r_G`.
//!
//! **Invariant:** every faer call runs with `Par::Seq`, so results are bit-identical whatever
//! the number of threads; components whose eigenvalue is at or below
//! `λ_max · max(n, D) · ε` are treated as numerically zero and never used.

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self, ComputeEigenvectors};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};

use crate::error::ProbeError;
use crate::null::{Element, RidgeMap};
use crate::Precision;

/// The eigen-form PCA of one fold's centred features: scores of the retained components.
#[derive(Debug, Clone)]
pub(crate) struct Decomposition {
    /// Training scores, `n_train × r`, columns in decreasing order of eigenvalue.
    pub(crate) z_train: Mat<f64>,
    /// Test scores, `n_test × r`, same columns.
    pub(crate) z_test: Mat<f64>,
    /// The `r` eigenvalues `λ_p = s_p²`, decreasing, all above the rank tolerance.
    pub(crate) lambda: Vec<f64>,
}

impl Decomposition {
    /// Decomposes centred training rows `xtr` (`n_train × D`) and projects the test rows `xte`
    /// (`n_test × D`, centred with the training mean), keeping at most `p_max` components and
    /// only those above the rank tolerance.
    pub(crate) fn new(
        xtr: MatRef<'_, f64>,
        xte: MatRef<'_, f64>,
        p_max: usize,
        fold: usize,
        precision: Precision,
    ) -> Result<Self, ProbeError> {
        let (n, d) = (xtr.nrows(), xtr.ncols());
        let n_test = xte.nrows();
        if d == 0 || n == 0 || p_max == 0 {
            return Ok(Self::empty(n, n_test));
        }
        if d <= n {
            // Primal: XᵀX = V Λ Vᵀ, Z = X V.
            let gram = lower_gram(xtr.transpose(), precision);
            let (values, vectors) = sym_eigen(gram.as_ref()).ok_or(ProbeError::Eigen { fold })?;
            let keep = retained(&values, p_max, n.max(d));
            if keep.is_empty() {
                return Ok(Self::empty(n, n_test));
            }
            let v = Mat::<f64>::from_fn(d, keep.len(), |i, p| vectors[(i, keep[p])]);
            let mut z_train = Mat::<f64>::zeros(n, keep.len());
            matmul(z_train.as_mut(), Accum::Replace, xtr, v.as_ref(), 1.0, Par::Seq);
            let mut z_test = Mat::<f64>::zeros(n_test, keep.len());
            matmul(z_test.as_mut(), Accum::Replace, xte, v.as_ref(), 1.0, Par::Seq);
            let lambda = keep.iter().map(|&k| values[k]).collect();
            Ok(Self { z_train, z_test, lambda })
        } else {
            let gram = lower_gram(xtr, precision);
            let mut k_test = Mat::<f64>::zeros(n_test, n);
            matmul(k_test.as_mut(), Accum::Replace, xte, xtr.transpose(), 1.0, Par::Seq);
            Self::from_kernel(gram.as_ref(), k_test.as_ref(), p_max, n.max(d), fold)
        }
    }

    /// Kernel form from the centred training Gram matrix `gram` (`n_train × n_train`, lower half
    /// read) and the centred test cross products `k_test` (`n_test × n_train`):
    /// `XXᵀ = U Λ Uᵀ`, `Z_train = U S`, `Z_test = K_test U S⁻¹`. `dim` is `max(n_train, D)`,
    /// the size that scales the rank tolerance.
    pub(crate) fn from_kernel(
        gram: MatRef<'_, f64>,
        k_test: MatRef<'_, f64>,
        p_max: usize,
        dim: usize,
        fold: usize,
    ) -> Result<Self, ProbeError> {
        let (n, n_test) = (gram.nrows(), k_test.nrows());
        if n == 0 || p_max == 0 {
            return Ok(Self::empty(n, n_test));
        }
        let (values, vectors) = sym_eigen(gram).ok_or(ProbeError::Eigen { fold })?;
        let keep = retained(&values, p_max, dim);
        if keep.is_empty() {
            return Ok(Self::empty(n, n_test));
        }
        let lambda: Vec<f64> = keep.iter().map(|&k| values[k]).collect();
        let s: Vec<f64> = lambda.iter().map(|l| l.sqrt()).collect();
        let z_train = Mat::<f64>::from_fn(n, keep.len(), |i, p| vectors[(i, keep[p])] * s[p]);
        let u_scaled = Mat::<f64>::from_fn(n, keep.len(), |i, p| vectors[(i, keep[p])] / s[p]);
        let mut z_test = Mat::<f64>::zeros(n_test, keep.len());
        matmul(z_test.as_mut(), Accum::Replace, k_test, u_scaled.as_ref(), 1.0, Par::Seq);
        Ok(Self { z_train, z_test, lambda })
    }

    /// No usable component: every prediction is the training mean.
    fn empty(n: usize, n_test: usize) -> Self {
        Self { z_train: Mat::zeros(n, 0), z_test: Mat::zeros(n_test, 0), lambda: Vec::new() }
    }

    /// Number of retained components.
    pub(crate) fn rank(&self) -> usize {
        self.lambda.len()
    }

    /// Mean squared leave-one-out errors of ridge on the first `p` components (`p ≤ rank`),
    /// `alphas.len() × m`, for `m` training target columns `targets` (`n_train × m`), each
    /// centred on its own mean (the intercept). A non-finite error (α = 0 with an
    /// interpolating fit, `h_ii = 1`) is reported as `+∞`.
    pub(crate) fn loo_mse(&self, p: usize, targets: MatRef<'_, f64>, alphas: &[f64]) -> Mat<f64> {
        assert!(p <= self.rank(), "loo_mse: {p} components requested, {} retained", self.rank());
        let (n, m) = (targets.nrows(), targets.ncols());
        let z = self.z_train.subcols(0, p);
        let mut zty = Mat::<f64>::zeros(p, m);
        matmul(zty.as_mut(), Accum::Replace, z.transpose(), targets, 1.0, Par::Seq);
        let mut out = Mat::<f64>::zeros(alphas.len(), m);
        let mut weights = Mat::<f64>::zeros(p, m);
        let mut fitted = Mat::<f64>::zeros(n, m);
        let mut hat = vec![0.0; n];
        for (a, &alpha) in alphas.iter().enumerate() {
            let shrink: Vec<f64> = self.lambda[..p].iter().map(|l| 1.0 / (l + alpha)).collect();
            for (i, h) in hat.iter_mut().enumerate() {
                *h =
                    1.0 / n as f64 + (0..p).map(|k| z[(i, k)] * z[(i, k)] * shrink[k]).sum::<f64>();
            }
            for c in 0..m {
                for k in 0..p {
                    weights[(k, c)] = zty[(k, c)] * shrink[k];
                }
            }
            if p > 0 {
                matmul(fitted.as_mut(), Accum::Replace, z, weights.as_ref(), 1.0, Par::Seq);
            }
            for c in 0..m {
                let col = targets.col(c);
                let fit = fitted.col_as_slice(c);
                let sse: f64 = (0..n)
                    .map(|i| {
                        let e = (col[i] - fit[i]) / (1.0 - hat[i]);
                        e * e
                    })
                    .sum();
                let mse = sse / n as f64;
                out[(a, c)] = if mse.is_finite() { mse } else { f64::INFINITY };
            }
        }
        out
    }

    /// Inner K-fold cross-validation errors of ridge on the first `p` components (`p ≤ rank`),
    /// `alphas.len() × m`, for `m` centred training target columns `targets` (`n_train × m`).
    ///
    /// `folds` are validation sets given as row positions in `0..n_train` (disjoint, non-empty,
    /// not all rows: checked by the caller). Entry `(a, c)` is the mean over folds of the
    /// per-fold mean squared error on the held-out rows of the ridge (with unpenalised
    /// intercept) refitted on the other rows of the fixed scores, computed exactly by the group
    /// deletion identity `e_G = (I − H)_GG⁻¹ r_G` (`H` the hat matrix of the fit on all rows,
    /// `r` its residuals). `I − H = Q + U diag(α/(λ+α)) Uᵀ` with `U = Z Λ^{-1/2}` and
    /// `Q = I − 11ᵀ/n − UUᵀ` is formed without the cancellation of `I − H` at small α. A fold
    /// whose `(I − H)_GG` is not positive definite (α = 0 with an interpolating fit) gives `+∞`.
    pub(crate) fn kfold_mse(
        &self,
        p: usize,
        targets: MatRef<'_, f64>,
        alphas: &[f64],
        folds: &[Vec<usize>],
    ) -> Mat<f64> {
        assert!(p <= self.rank(), "kfold_mse: {p} components requested, {} retained", self.rank());
        let (n, m) = (targets.nrows(), targets.ncols());
        let inv_sqrt: Vec<f64> = self.lambda[..p].iter().map(|l| 1.0 / l.sqrt()).collect();
        let u = Mat::<f64>::from_fn(n, p, |i, k| self.z_train[(i, k)] * inv_sqrt[k]);
        // Uᵀy and Qy = y − U Uᵀ y (y is centred, so the 11ᵀ/n part vanishes).
        let mut uty = Mat::<f64>::zeros(p, m);
        let mut qy = targets.to_owned();
        if p > 0 {
            matmul(uty.as_mut(), Accum::Replace, u.transpose(), targets, 1.0, Par::Seq);
            matmul(qy.as_mut(), Accum::Add, u.as_ref(), uty.as_ref(), -1.0, Par::Seq);
        }
        let mut out = Mat::<f64>::zeros(alphas.len(), m);
        let weight = 1.0 / folds.len() as f64;
        for fold in folds {
            let g = fold.len();
            let ug = Mat::<f64>::from_fn(g, p, |r, k| u[(fold[r], k)]);
            // Q_GG = I − 1/n − U_G U_Gᵀ (lower half is what the Cholesky reads).
            let mut q = Mat::<f64>::from_fn(g, g, |a, b| f64::from(a == b) - 1.0 / n as f64);
            if p > 0 {
                lower_product(q.as_mut(), Accum::Add, ug.as_ref(), ug.transpose(), -1.0);
            }
            let qy_g = Mat::<f64>::from_fn(g, m, |r, c| qy[(fold[r], c)]);
            let mut ugt = Mat::<f64>::zeros(g, p);
            for (a, &alpha) in alphas.iter().enumerate() {
                for k in 0..p {
                    let t = alpha / (self.lambda[k] + alpha);
                    for r in 0..g {
                        ugt[(r, k)] = ug[(r, k)] * t;
                    }
                }
                let mut system = q.clone();
                let mut resid = qy_g.clone();
                if p > 0 {
                    lower_product(system.as_mut(), Accum::Add, ugt.as_ref(), ug.transpose(), 1.0);
                    matmul(resid.as_mut(), Accum::Add, ugt.as_ref(), uty.as_ref(), 1.0, Par::Seq);
                }
                if !cholesky_solve(system.as_mut(), resid.as_mut()) {
                    for c in 0..m {
                        out[(a, c)] = f64::INFINITY;
                    }
                    continue;
                }
                for c in 0..m {
                    let sse: f64 = resid.col_as_slice(c).iter().map(|e| e * e).sum();
                    out[(a, c)] += weight * sse / g as f64;
                }
            }
        }
        for v in out.col_iter_mut().flat_map(|c| c.iter_mut()) {
            if !v.is_finite() {
                *v = f64::INFINITY;
            }
        }
        out
    }

    /// Centred test predictions (`n_test × m`) of ridge on the first `p` components for `m`
    /// centred training target columns, column `c` with its own penalty `alphas[c]`.
    pub(crate) fn predict_per_column(
        &self,
        p: usize,
        targets: MatRef<'_, f64>,
        alphas: &[f64],
    ) -> Mat<f64> {
        assert!(p <= self.rank(), "predict: {p} components requested, {} retained", self.rank());
        assert_eq!(alphas.len(), targets.ncols(), "predict: one alpha per column");
        let m = targets.ncols();
        let mut out = Mat::<f64>::zeros(self.z_test.nrows(), m);
        if p == 0 {
            return out;
        }
        let mut weights = Mat::<f64>::zeros(p, m);
        let z = self.z_train.subcols(0, p);
        matmul(weights.as_mut(), Accum::Replace, z.transpose(), targets, 1.0, Par::Seq);
        for (c, &alpha) in alphas.iter().enumerate() {
            for k in 0..p {
                weights[(k, c)] /= self.lambda[k] + alpha;
            }
        }
        let zt = self.z_test.subcols(0, p);
        matmul(out.as_mut(), Accum::Replace, zt, weights.as_ref(), 1.0, Par::Seq);
        out
    }

    /// The ridge map of the first `p` components (`p ≤ rank`) with penalty `alpha`, in `T`.
    pub(crate) fn ridge_map<T: Element>(&self, p: usize, alpha: f64) -> RidgeMap<T> {
        assert!(p <= self.rank(), "ridge_map: {p} components requested, {} retained", self.rank());
        let n_test = self.z_test.nrows();
        let n_train = self.z_train.nrows();
        let left =
            Mat::<f64>::from_fn(n_test, p, |i, k| self.z_test[(i, k)] / (self.lambda[k] + alpha));
        let right = Mat::<f64>::from_fn(p, n_train, |k, i| self.z_train[(i, k)]);
        RidgeMap::new(left.as_ref(), right.as_ref())
    }
}

/// Indices of the components to keep, in decreasing order of eigenvalue: at most `p_max`, and
/// only eigenvalues above `λ_max · dim · ε` (eigenvalues of a Gram matrix carry an absolute error
/// of order `ε · λ_max`, so anything smaller is noise, such as the null direction that centring
/// creates in the kernel form).
fn retained(values: &[f64], p_max: usize, dim: usize) -> Vec<usize> {
    let lambda_max = values.iter().copied().fold(0.0_f64, f64::max);
    if lambda_max <= 0.0 {
        return Vec::new();
    }
    let tol = lambda_max * dim as f64 * f64::EPSILON;
    let mut order: Vec<usize> = (0..values.len()).filter(|&k| values[k] > tol).collect();
    // faer returns ascending eigenvalues; sort explicitly anyway (stable, ties by index).
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order.truncate(p_max);
    order
}

/// The lower half (diagonal included) of `a aᵀ`, the upper half left at zero: half the work
/// of a full product, and all that [`sym_eigen`] reads. With [`Precision::F32`] the product runs
/// in `f32` (the eigendecomposition stays in `f64`).
fn lower_gram(a: MatRef<'_, f64>, precision: Precision) -> Mat<f64> {
    match precision {
        Precision::F64 => lower_gram_in::<f64>(a),
        Precision::F32 => lower_gram_in::<f32>(a),
    }
}

fn lower_gram_in<E: Element>(a: MatRef<'_, f64>) -> Mat<f64> {
    let n = a.nrows();
    let cast = Mat::<E>::from_fn(n, a.ncols(), |i, c| E::of(a[(i, c)]));
    let mut gram = Mat::<E>::zeros(n, n);
    lower_product(
        gram.as_mut(),
        Accum::Replace,
        cast.as_ref(),
        cast.as_ref().transpose(),
        E::of(1.0),
    );
    Mat::<f64>::from_fn(n, n, |i, l| gram[(i, l)].into())
}

/// Writes (`Accum::Replace`) or adds (`Accum::Add`) `scale · a b` into the lower half (diagonal
/// included) of `dst`, for a product known to be symmetric: half the work of a full product,
/// and all that the eigensolver and the Cholesky factorisation read.
pub(crate) fn lower_product<E: Element>(
    dst: faer::MatMut<'_, E>,
    accum: Accum,
    a: MatRef<'_, E>,
    b: MatRef<'_, E>,
    scale: E,
) {
    use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
    tri_matmul(
        dst,
        BlockStructure::TriangularLower,
        accum,
        a,
        BlockStructure::Rectangular,
        b,
        BlockStructure::Rectangular,
        scale,
        Par::Seq,
    );
}

/// Solves `A x = b` in place for a symmetric positive definite `A` (lower half read, overwritten
/// by its Cholesky factor), sequentially; `false` if `A` is not numerically positive definite.
fn cholesky_solve(mut a: faer::MatMut<'_, f64>, rhs: faer::MatMut<'_, f64>) -> bool {
    use faer::linalg::cholesky::llt;
    let n = a.nrows();
    let mut buf = MemBuffer::new(
        llt::factor::cholesky_in_place_scratch::<f64>(n, Par::Seq, Default::default())
            .or(llt::solve::solve_in_place_scratch::<f64>(n, rhs.ncols(), Par::Seq)),
    );
    let stack = MemStack::new(&mut buf);
    if llt::factor::cholesky_in_place(
        a.as_mut(),
        Default::default(),
        Par::Seq,
        stack,
        Default::default(),
    )
    .is_err()
    {
        return false;
    }
    llt::solve::solve_in_place_with_conj(a.as_ref(), faer::Conj::No, rhs, Par::Seq, stack);
    true
}

/// Eigendecomposition of a symmetric matrix (lower half read), sequentially; `None` if the
/// solver did not converge.
pub(crate) fn sym_eigen(a: MatRef<'_, f64>) -> Option<(Vec<f64>, Mat<f64>)> {
    let n = a.nrows();
    let mut vectors = Mat::<f64>::zeros(n, n);
    let mut values = Diag::<f64>::zeros(n);
    let par = Par::Seq;
    let mut buf = MemBuffer::new(evd::self_adjoint_evd_scratch::<f64>(
        n,
        ComputeEigenvectors::Yes,
        par,
        Default::default(),
    ));
    evd::self_adjoint_evd(
        a,
        values.as_mut(),
        Some(vectors.as_mut()),
        par,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .ok()?;
    let values = values.column_vector().iter().copied().collect();
    Some((values, vectors))
}
