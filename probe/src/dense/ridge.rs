//! Ridge without intercept from tokens to block-mean targets, by normal equations accumulated
//! one image at a time (memory `C × C`, whatever the number of images), solved by Cholesky.
//!
//! The objective per target is `Σ_tokens (m_b − x_bᵀw)² + α_tok·‖w‖²` (scikit-learn's
//! `Ridge(fit_intercept=False)` on block means). Because the nearest-upsampled prediction is
//! constant on each `f × f` block, the per-pixel objective `Σ_pixels (y − x_bᵀw)² + α_pix·‖w‖²`
//! equals `f²` times it plus a constant (the within-block sums of squares) when
//! `α_pix = f²·α_tok`: the same minimiser. No intercept, as in the paper's probe (a linear
//! layer without bias).

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};

use super::{check_finite, check_len, BlockStats, DenseError, TokenGrid};
use crate::ridge::lower_product;

/// `XᵀX` and `XᵀY` over every training token seen so far, for `J` targets that share the
/// features.
#[derive(Debug, Clone)]
pub struct NormalEquations {
    channels: usize,
    targets: usize,
    grid: Option<TokenGrid>,
    /// Lower half (diagonal included) of `XᵀX`.
    xtx: Mat<f64>,
    xty: Mat<f64>,
    images: usize,
}

/// The fitted ridge maps, one column of `C` weights per target.
#[derive(Debug, Clone)]
pub struct RidgeFit {
    weights: Mat<f64>,
}

impl NormalEquations {
    /// Empty equations for `channels` features and `targets` targets per image.
    pub fn new(channels: usize, targets: usize) -> Self {
        Self {
            channels,
            targets,
            grid: None,
            xtx: Mat::zeros(channels, channels),
            xty: Mat::zeros(channels, targets),
            images: 0,
        }
    }

    /// Adds one training image: its features (`tokens × C`, row-major, in diffusers' token
    /// order, see [`super`]) and its targets' block statistics, in a fixed target order.
    ///
    /// # Errors
    /// [`DenseError::Shape`] when the features are not `tokens × C` or the number of targets
    /// differs, [`DenseError::NoTargets`] for equations of no target, [`DenseError::GridMismatch`] when a target's grid differs from the first
    /// image's, [`DenseError::NonFinite`].
    pub fn add_image<T: Copy + Into<f64>>(
        &mut self,
        features: &[T],
        targets: &[&BlockStats],
    ) -> Result<(), DenseError> {
        check_len("targets", targets.len(), self.targets)?;
        let grid = match (self.grid, targets.first()) {
            (Some(g), _) => g,
            (None, Some(t)) => t.grid(),
            (None, None) => return Err(DenseError::NoTargets),
        };
        for t in targets {
            grid.check_same("a target of the ridge fit", &t.grid())?;
        }
        let x = token_matrix(features, grid.tokens(), self.channels)?;
        let y = Mat::<f64>::from_fn(grid.tokens(), self.targets, |b, j| targets[j].mean()[b]);
        lower_product(self.xtx.as_mut(), Accum::Add, x.transpose(), x.as_ref(), 1.0);
        matmul(self.xty.as_mut(), Accum::Add, x.transpose(), y.as_ref(), 1.0, Par::Seq);
        self.grid = Some(grid);
        self.images += 1;
        Ok(())
    }

    /// `XᵀX` over the images added (lower half, diagonal included; the upper half is zero):
    /// what [`super::fit_logistic_with_gram`] takes to skip its own pass over the images.
    pub fn gram(&self) -> faer::MatRef<'_, f64> {
        self.xtx.as_ref()
    }

    /// Number of images added.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Solves `(XᵀX + α_tok·I) W = XᵀY` (`α_pix = f²·α_tok` on the per-pixel loss).
    ///
    /// # Errors
    /// [`DenseError::InvalidPenalty`] for a negative or non-finite `alpha`,
    /// [`DenseError::NoImages`], [`DenseError::Singular`] when the system is not numerically
    /// positive definite (only possible with `alpha = 0`).
    pub fn solve(&self, alpha: f64) -> Result<RidgeFit, DenseError> {
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(DenseError::InvalidPenalty {
                what: "alpha",
                bound: "non-negative",
                value: alpha,
            });
        }
        if self.images == 0 {
            return Err(DenseError::NoImages);
        }
        let mut system = self.xtx.clone();
        for c in 0..self.channels {
            system[(c, c)] += alpha;
        }
        let mut weights = self.xty.clone();
        if !cholesky_solve(system, weights.as_mut()) {
            return Err(DenseError::Singular { what: "ridge" });
        }
        Ok(RidgeFit { weights })
    }
}

impl RidgeFit {
    /// The `C` weights of target `j`.
    ///
    /// # Panics
    /// If `j` is not a target index.
    pub fn weights(&self, j: usize) -> Vec<f64> {
        self.weights.col(j).iter().copied().collect()
    }

    /// Number of targets.
    pub fn targets(&self) -> usize {
        self.weights.ncols()
    }
}

/// One prediction per token, `x_bᵀw`, for features `tokens × C` (row-major) and `C` weights.
///
/// # Errors
/// [`DenseError::Shape`] when `features.len()` is not a multiple of `weights.len()`,
/// [`DenseError::NonFinite`].
pub fn predict<T: Copy + Into<f64>>(
    features: &[T],
    weights: &[f64],
) -> Result<Vec<f64>, DenseError> {
    let c = weights.len();
    if c == 0 || !features.len().is_multiple_of(c) {
        return Err(DenseError::Shape {
            what: "features",
            got: features.len(),
            expected: features.len().div_ceil(c.max(1)) * c,
        });
    }
    check_finite("features", features)?;
    Ok(features
        .chunks_exact(c)
        .map(|row| row.iter().zip(weights).map(|(&x, w)| x.into() * w).sum())
        .collect())
}

/// The features of one image as a `tokens × C` matrix, checked.
pub(crate) fn token_matrix<T: Copy + Into<f64>>(
    features: &[T],
    tokens: usize,
    channels: usize,
) -> Result<Mat<f64>, DenseError> {
    check_len("features", features.len(), tokens * channels)?;
    check_finite("features", features)?;
    Ok(Mat::from_fn(tokens, channels, |b, c| features[b * channels + c].into()))
}

/// Solves `A x = b` in place for a symmetric positive definite `A` (lower half read),
/// sequentially; `false` if `A` is not numerically positive definite.
pub(crate) fn cholesky_solve(a: Mat<f64>, rhs: faer::MatMut<'_, f64>) -> bool {
    match cholesky_factor(a) {
        Some(l) => {
            cholesky_solve_factored(&l, rhs);
            true
        }
        None => false,
    }
}

/// The Cholesky factor of a symmetric positive definite `A` (lower half read), in faer's
/// in-place layout for [`cholesky_solve_factored`]; `None` if `A` is not numerically positive
/// definite.
pub(crate) fn cholesky_factor(mut a: Mat<f64>) -> Option<Mat<f64>> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::cholesky::llt;
    let n = a.nrows();
    let mut buf = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
        n,
        Par::Seq,
        Default::default(),
    ));
    let stack = MemStack::new(&mut buf);
    let factored = llt::factor::cholesky_in_place(
        a.as_mut(),
        Default::default(),
        Par::Seq,
        stack,
        Default::default(),
    );
    factored.is_ok().then_some(a)
}

/// Solves `A x = b` in place with `A`'s factor from [`cholesky_factor`].
pub(crate) fn cholesky_solve_factored(l: &Mat<f64>, rhs: faer::MatMut<'_, f64>) {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::cholesky::llt;
    let mut buf =
        MemBuffer::new(llt::solve::solve_in_place_scratch::<f64>(l.nrows(), rhs.ncols(), Par::Seq));
    let stack = MemStack::new(&mut buf);
    llt::solve::solve_in_place_with_conj(l.as_ref(), faer::Conj::No, rhs, Par::Seq, stack);
}
