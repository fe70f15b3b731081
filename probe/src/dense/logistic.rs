//! Soft-label logistic regression without intercept from tokens to a mask's per-block
//! foreground fraction, by Newton's method with a backtracking line search.
//!
//! The paper's mask probe is a linear map to K = 2 logits without bias, trained with per-pixel
//! cross-entropy; only the logit difference `z = x_bᵀw` matters, so it is one logistic
//! regression. On a block of `f²` pixels with foreground fraction `p_b` the summed cross-entropy
//! is `f²·(softplus(z_b) − p_b·z_b)`, so the per-pixel objective with penalty `λ_pix/2·‖w‖²` is
//! `f²` times the per-token objective
//! `Σ_b (softplus(z_b) − p_b·z_b) + λ_tok/2·‖w‖²` with `λ_pix = f²·λ_tok`. The per-token form is
//! scikit-learn's `LogisticRegression(fit_intercept=False, C = 1/λ_tok)` with each token doubled,
//! labelled 1 with weight `p_b` and 0 with weight `1 − p_b`.
//!
//! Each Newton iteration is one pass over the training images for the gradient and the Hessian
//! `Σ Xᵀ diag(σ(1−σ)) X + λI` (`C × C`), plus one cheap pass per line-search trial; images can
//! be streamed ([`TrainingImages`]), memory is `C × C`.

use faer::linalg::matmul::matmul;
use faer::{Accum, Col, Mat, Par};

use super::ridge::{cholesky_solve, token_matrix};
use super::{BlockStats, DenseError, TokenGrid};
use crate::ridge::lower_product;

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
    /// Most Newton iterations. Default 100.
    pub max_iter: usize,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        Self { l2: 1.0, tol: 1e-10, max_iter: 100 }
    }
}

/// A fitted logistic probe.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticFit {
    /// The `C` weights: the logit difference (foreground − background) of token `b` is
    /// `x_bᵀw`.
    pub weights: Vec<f64>,
    /// Newton iterations run.
    pub iterations: usize,
    /// Largest absolute gradient entry at the returned weights.
    pub gradient: f64,
}

/// What [`TrainingImages::for_each`] calls with each image: its features and its target's
/// block statistics.
pub type ImageVisitor<'a, T> = dyn FnMut(&[T], &BlockStats) -> Result<(), DenseError> + 'a;

/// Training images a fit can pass over several times, in a fixed order.
pub trait TrainingImages<T> {
    /// Calls `visit` with each image's features (`tokens × C`, row-major, diffusers' token
    /// order) and its target's block statistics, stopping at the first error.
    ///
    /// # Errors
    /// Those of `visit`, and whatever reading an image can fail with.
    fn for_each(&self, visit: &mut ImageVisitor<'_, T>) -> Result<(), DenseError>;
}

impl<T> TrainingImages<T> for [(&[T], &BlockStats)] {
    fn for_each(&self, visit: &mut ImageVisitor<'_, T>) -> Result<(), DenseError> {
        self.iter().try_for_each(|(x, s)| visit(x, s))
    }
}

/// Fits the soft-label logistic probe of a mask target on `channels` features.
///
/// # Errors
/// [`DenseError::InvalidPenalty`] unless `cfg.l2` is positive and finite;
/// [`DenseError::NotAMask`] for a continuous target; [`DenseError::NoImages`];
/// [`DenseError::Shape`], [`DenseError::GridMismatch`], [`DenseError::NonFinite`] for an
/// image's inputs; [`DenseError::NotConverged`].
pub fn fit_logistic<T: Copy + Into<f64>, S: TrainingImages<T> + ?Sized>(
    images: &S,
    channels: usize,
    cfg: &LogisticConfig,
) -> Result<LogisticFit, DenseError> {
    if !(cfg.l2.is_finite() && cfg.l2 > 0.0) {
        return Err(DenseError::InvalidPenalty { what: "l2", bound: "positive", value: cfg.l2 });
    }
    let lambda = cfg.l2;
    let mut w = Col::<f64>::zeros(channels);
    let mut scale = None;
    for iteration in 0..cfg.max_iter {
        let pass = newton_pass(images, channels, &w, true)?;
        let mut gradient = pass.gradient;
        gradient += lambda * &w;
        let g_max = max_abs(&gradient);
        let threshold = cfg.tol * *scale.get_or_insert(g_max.max(1.0));
        if g_max <= threshold {
            return Ok(LogisticFit { weights: to_vec(&w), iterations: iteration, gradient: g_max });
        }
        let loss = pass.loss + lambda / 2.0 * w.squared_norm_l2();
        let mut hessian = pass.hessian;
        for c in 0..channels {
            hessian[(c, c)] += lambda;
        }
        let mut step = Mat::<f64>::from_fn(channels, 1, |c, _| -gradient[c]);
        if !cholesky_solve(hessian, step.as_mut()) {
            return Err(DenseError::Singular { what: "logistic Hessian" });
        }
        let step = Col::<f64>::from_fn(channels, |c| step[(c, 0)]);
        let slope = gradient.transpose() * &step;
        // Armijo backtracking; a full step is almost always taken near the optimum. There the
        // loss changes by less than its rounding, so a trial whose loss is equal to rounding is
        // judged by its gradient instead.
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            let trial = &w + t * &step;
            let pass = newton_pass(images, channels, &trial, false)?;
            let trial_loss = pass.loss + lambda / 2.0 * trial.squared_norm_l2();
            let flat = (trial_loss - loss).abs() <= 1e-12 * loss.abs().max(1.0);
            let smaller_gradient = || {
                let mut g = pass.gradient.clone();
                g += lambda * &trial;
                max_abs(&g) < g_max
            };
            if trial_loss <= loss + 1e-4 * t * slope || (flat && smaller_gradient()) {
                w = trial;
                accepted = true;
                break;
            }
            t /= 2.0;
        }
        if !accepted {
            // No decrease even for a tiny step: the loss is flat to rounding, so this is the
            // optimum as far as f64 can tell, unless the gradient is still large.
            if g_max <= threshold.sqrt() {
                return Ok(LogisticFit {
                    weights: to_vec(&w),
                    iterations: iteration,
                    gradient: g_max,
                });
            }
            return Err(DenseError::NotConverged { iterations: iteration + 1, gradient: g_max });
        }
    }
    let pass = newton_pass(images, channels, &w, false)?;
    let mut gradient = pass.gradient;
    gradient += lambda * &w;
    let g_max = max_abs(&gradient);
    Err(DenseError::NotConverged { iterations: cfg.max_iter, gradient: g_max })
}

/// The data part of the objective, its gradient and (when asked) its Hessian (lower half) at
/// `w`.
struct Pass {
    loss: f64,
    gradient: Col<f64>,
    hessian: Mat<f64>,
}

fn newton_pass<T: Copy + Into<f64>, S: TrainingImages<T> + ?Sized>(
    images: &S,
    channels: usize,
    w: &Col<f64>,
    with_hessian: bool,
) -> Result<Pass, DenseError> {
    let mut loss = 0.0;
    let mut gradient = Col::<f64>::zeros(channels);
    let mut hessian = Mat::<f64>::zeros(if with_hessian { channels } else { 0 }, channels);
    let mut grid: Option<TokenGrid> = None;
    let mut count = 0_usize;
    images.for_each(&mut |features, stats| {
        if stats.foreground().is_none() {
            return Err(DenseError::NotAMask);
        }
        let g = *grid.get_or_insert(stats.grid());
        g.check_same("a target of the logistic fit", &stats.grid())?;
        let x = token_matrix(features, g.tokens(), channels)?;
        let mut z = Col::<f64>::zeros(g.tokens());
        matmul(z.as_mut(), Accum::Replace, x.as_ref(), w.as_ref(), 1.0, Par::Seq);
        let p = stats.mean();
        let mut residual = Col::<f64>::zeros(g.tokens());
        let mut root_s = Col::<f64>::zeros(g.tokens());
        for b in 0..g.tokens() {
            let zb = z[b];
            loss += softplus(zb) - p[b] * zb;
            let s = sigmoid(zb);
            residual[b] = s - p[b];
            root_s[b] = (s * (1.0 - s)).sqrt();
        }
        matmul(gradient.as_mut(), Accum::Add, x.transpose(), residual.as_ref(), 1.0, Par::Seq);
        if with_hessian {
            let xs = Mat::<f64>::from_fn(g.tokens(), channels, |b, c| root_s[b] * x[(b, c)]);
            lower_product(hessian.as_mut(), Accum::Add, xs.transpose(), xs.as_ref(), 1.0);
        }
        count += 1;
        Ok(())
    })?;
    if count == 0 {
        return Err(DenseError::NoImages);
    }
    Ok(Pass { loss, gradient, hessian })
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

fn max_abs(v: &Col<f64>) -> f64 {
    v.iter().fold(0.0_f64, |m, x| m.max(x.abs()))
}

fn to_vec(v: &Col<f64>) -> Vec<f64> {
    v.iter().copied().collect()
}
