//! Soft-label logistic regression without intercept from tokens to a mask's per-block
//! foreground fraction.
//!
//! The paper's mask probe is a linear map to K = 2 logits without bias, trained with per-pixel
//! cross-entropy; only the logit difference `z = x_bᵀw` matters, so it is one logistic
//! regression. On a block of `f²` pixels with foreground fraction `p_b` the summed cross-entropy
//! is `f²·(softplus(z_b) − p_b·z_b)`, so the per-pixel objective with penalty `λ_pix/2·‖w‖²` is
//! `f²` times the per-token objective
//! `Σ_b (softplus(z_b) − p_b·z_b) + λ_tok/2·‖w‖²` with `λ_pix = f²·λ_tok`. The per-token form is
//! scikit-learn's `LogisticRegression(fit_intercept=False, C = 1/λ_tok)` with each token doubled,
//! labelled 1 with weight `p_b` and 0 with weight `1 − p_b`. Fitted by L-BFGS preconditioned
//! by Böhning's bound of the Hessian (`super::lbfgs`).

use super::newton::{Newton, TrainingImages};
use super::{BlockStats, DenseError};

/// Settings of [`fit_logistic`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogisticConfig {
    /// The L2 penalty `λ_tok` on the per-token objective (`λ_pix = f²·λ_tok`); must be positive
    /// (a separable mask would otherwise send the weights to infinity). Default 1, scikit-learn's
    /// `C = 1`.
    pub l2: f64,
    /// Convergence: the largest absolute gradient entry at most `tol` times that at `w = 0`
    /// (or `tol` if that is below 1). Default 1e-10.
    pub tol: f64,
    /// Most iterations. Default 500.
    pub max_iter: usize,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        Self { l2: 1.0, tol: 1e-10, max_iter: 500 }
    }
}

/// A fitted probe of [`fit_logistic`] or [`super::fit_huber`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewtonFit {
    /// The `C` weights: token `b`'s prediction (for a mask, the logit difference foreground −
    /// background) is `x_bᵀw`.
    pub weights: Vec<f64>,
    /// Iterations run (Newton's for the Huber probe, L-BFGS's for the logistic one).
    pub iterations: usize,
    /// Largest absolute gradient entry at the returned weights.
    pub gradient: f64,
}

/// Fits the soft-label logistic probe of a mask target on `channels` features.
///
/// # Errors
/// [`DenseError::InvalidPenalty`] unless `cfg.l2` is positive and finite;
/// [`DenseError::NotAMask`] for a continuous target; [`DenseError::NoImages`];
/// [`DenseError::Shape`], [`DenseError::GridMismatch`], [`DenseError::NonFinite`] for an
/// image's inputs; [`DenseError::NotConverged`].
pub fn fit_logistic<T: Copy + Into<f64>, S: TrainingImages<T, BlockStats> + ?Sized>(
    images: &S,
    channels: usize,
    cfg: &LogisticConfig,
) -> Result<NewtonFit, DenseError> {
    fit(images, channels, cfg, None)
}

/// [`fit_logistic`] given `XᵀX` of the same training images (lower half, e.g.
/// [`super::NormalEquations::gram`] of a ridge fit on them): its preconditioner is then free,
/// which saves the most expensive pass. A Gram of other images gives the same weights, slower.
///
/// # Errors
/// Those of [`fit_logistic`]; [`DenseError::Shape`] unless `gram` is `channels × channels`.
pub fn fit_logistic_with_gram<T: Copy + Into<f64>, S: TrainingImages<T, BlockStats> + ?Sized>(
    images: &S,
    channels: usize,
    cfg: &LogisticConfig,
    gram: faer::MatRef<'_, f64>,
) -> Result<NewtonFit, DenseError> {
    if gram.nrows() != channels || gram.ncols() != channels {
        let got = gram.nrows() * gram.ncols();
        return Err(DenseError::Shape { what: "gram", got, expected: channels * channels });
    }
    // ℓ'' = σ(0)(1 − σ(0)) = ¼ at w = 0: the Hessian there is XᵀX / 4.
    let bound = faer::Mat::from_fn(channels, channels, |i, j| gram[(i, j)] / 4.0);
    fit(images, channels, cfg, Some(bound))
}

fn fit<T: Copy + Into<f64>, S: TrainingImages<T, BlockStats> + ?Sized>(
    images: &S,
    channels: usize,
    cfg: &LogisticConfig,
    bound: Option<faer::Mat<f64>>,
) -> Result<NewtonFit, DenseError> {
    if !(cfg.l2.is_finite() && cfg.l2 > 0.0) {
        return Err(DenseError::InvalidPenalty { what: "l2", bound: "positive", value: cfg.l2 });
    }
    let newton =
        Newton { lambda: cfg.l2, tol: cfg.tol, max_iter: cfg.max_iter, what: "logistic Hessian" };
    let loss = |stats: &BlockStats, z: &[f64], d1: &mut [f64], d2: &mut [f64]| {
        if stats.foreground().is_none() {
            return Err(DenseError::NotAMask);
        }
        let mut loss = 0.0;
        for (b, (&zb, &p)) in z.iter().zip(stats.mean()).enumerate() {
            loss += softplus(zb) - p * zb;
            let s = sigmoid(zb);
            d1[b] = s - p;
            d2[b] = s * (1.0 - s);
        }
        Ok(loss)
    };
    let s = newton.minimise_bounded(images, channels, bound, &|s: &BlockStats| s.grid(), &loss)?;
    Ok(NewtonFit { weights: s.weights, iterations: s.iterations, gradient: s.gradient })
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + eᶻ)` without overflow.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}
