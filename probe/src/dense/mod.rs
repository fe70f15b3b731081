//! Dense probes (science-2.md §D, seed 002): a linear map from every token of a spatial
//! representation to a per-pixel target (a foreground mask, a depth or shading map), fitted and
//! scored in exact closed form at full resolution without ever building a full-resolution
//! prediction.
//!
//! **Token order.** A representation of one image is `tokens × C`, row-major, with
//! `tokens = h · w` in the order diffusers flattens a feature map `(b, c, h, w) → (b, h·w, c)`:
//! token `t` is grid row `t / w`, grid column `t % w`. A target is `H × W`, row-major, with
//! `H = f·h`, `W = f·w`; token `t` covers the `f × f` block of pixels whose rows are
//! `f·(t / w) .. f·(t / w + 1)` and columns `f·(t % w) .. f·(t % w + 1)` ([`TokenGrid`]). The
//! probe's prediction is nearest-upsampled, i.e. constant on each block (`np.repeat` on both
//! axes).
//!
//! **Why the closed form is exact.** With a prediction constant on each block, a per-pixel loss
//! summed over a block depends on the block's pixels only through a few statistics
//! ([`BlockStats`]): the squared error through the block mean and the within-block sum of
//! squares, the 2-logit cross-entropy through the foreground fraction. So ridge on tokens against
//! block means ([`NormalEquations`]) minimises the per-pixel squared loss with
//! `α_pix = f²·α_tok`, and soft-label logistic regression on tokens ([`fit_logistic`]) minimises
//! the per-pixel cross-entropy with `λ_pix = f²·λ_tok`. The Huber probe ([`fit_huber`]) needs
//! every pixel's residual, so it reads the map block by block ([`BlockPixels`]) on each pass.
//! The metrics ([`continuous_metrics`], [`mask_metrics`]) are exact from the block statistics
//! and the per-token prediction.
//!
//! **Invariants:** pure and deterministic (no I/O; every faer call runs with `Par::Seq`);
//! non-finite features or targets are an error, never skipped.

mod blocks;
mod huber;
mod lbfgs;
mod logistic;
mod metrics;
mod newton;
mod ridge;

use thiserror::Error;

pub use blocks::{BlockStats, TokenGrid};
pub use huber::{fit_huber, BlockPixels, HuberConfig};
pub use logistic::{fit_logistic, fit_logistic_with_gram, LogisticConfig, NewtonFit};
pub use metrics::{
    all_foreground_dice, continuous_metrics, mask_metrics, summarize, ContinuousMetrics,
    MaskMetrics, Summary, DICE_EPS,
};
pub use newton::{ImageVisitor, TrainingImages};
pub use ridge::{predict, NormalEquations, RidgeFit};

/// Why a dense-probe computation was refused or failed.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum DenseError {
    /// A flat buffer does not have the length its stated shape implies.
    #[error("{what} has {got} values; expected {expected}")]
    Shape {
        /// Which buffer.
        what: &'static str,
        /// Number of values received.
        got: usize,
        /// Number expected.
        expected: usize,
    },
    /// A target's size is not an integer upsampling of the token grid.
    #[error("a {height} × {width} target does not tile into {tokens} square blocks of equal size")]
    Grid {
        /// Number of tokens.
        tokens: usize,
        /// Target height in pixels.
        height: usize,
        /// Target width in pixels.
        width: usize,
    },
    /// Two inputs that must share a token grid do not.
    #[error("{what}: token grid {got} differs from {expected}")]
    GridMismatch {
        /// What was being combined.
        what: &'static str,
        /// The grid received (`h×w/f`).
        got: String,
        /// The grid expected.
        expected: String,
    },
    /// A value is NaN or infinite.
    #[error("{what} has a non-finite value ({value}) at position {index}")]
    NonFinite {
        /// Which buffer.
        what: &'static str,
        /// Flat position of the value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A metric of masks was asked of a continuous target.
    #[error("Dice needs a mask target; this target is a continuous map")]
    NotAMask,
    /// A penalty is negative, NaN or infinite (or zero where it must be positive).
    #[error("{what} must be finite and {bound}, got {value}")]
    InvalidPenalty {
        /// Which penalty.
        what: &'static str,
        /// `"non-negative"` or `"positive"`.
        bound: &'static str,
        /// The value.
        value: f64,
    },
    /// A fit was asked for no target.
    #[error("the fit has no target")]
    NoTargets,
    /// The fit saw no training token.
    #[error("no training images were given")]
    NoImages,
    /// `XᵀX + αI` (or the logistic Hessian) is not numerically positive definite.
    #[error("the {what} system is singular; use a positive penalty")]
    Singular {
        /// Which system.
        what: &'static str,
    },
    /// Newton's method did not reach the tolerance.
    #[error("logistic fit did not converge in {iterations} iterations (gradient {gradient:e})")]
    NotConverged {
        /// Iterations run.
        iterations: usize,
        /// Largest absolute gradient entry at the end.
        gradient: f64,
    },
}

/// Checks that every value of `values` is finite.
pub(crate) fn check_finite<T: Copy + Into<f64>>(
    what: &'static str,
    values: &[T],
) -> Result<(), DenseError> {
    match values.iter().map(|&v| v.into()).enumerate().find(|(_, v)| !v.is_finite()) {
        Some((index, value)) => Err(DenseError::NonFinite { what, index, value }),
        None => Ok(()),
    }
}

/// Checks that a buffer has `expected` values.
pub(crate) fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), DenseError> {
    if got == expected {
        Ok(())
    } else {
        Err(DenseError::Shape { what, got, expected })
    }
}

#[cfg(test)]
mod tests;
