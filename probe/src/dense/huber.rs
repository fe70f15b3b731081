//! The Huber probe of a continuous map (the paper's depth and shading probes: a linear map
//! without bias, Huber loss with δ = 1 per pixel), fitted exactly by iteratively reweighted
//! least squares with per-block weights.
//!
//! Unlike the squared loss, the Huber loss of a block depends on every pixel's residual, so the
//! fit reads the map's pixels ([`BlockPixels`], block by block) on every pass; it still builds no
//! full-resolution prediction. The per-token objective is
//! `Σ_b (1/f²)·Σ_{pixels of b} H_δ(y − x_bᵀw) + λ_tok/2·‖w‖²`, `f⁻²` times the per-pixel one with
//! `λ_pix = f²·λ_tok`. Each iteration minimises the IRLS majoriser: pixel weights
//! `ψ(r)/r = min(1, δ/|r|)` summed per block give the curvature (in place of Newton's, which is
//! zero where every residual exceeds δ), so every full step decreases the objective.

use super::logistic::NewtonFit;
use super::newton::{Newton, TrainingImages};
use super::{check_finite, check_len, DenseError, TokenGrid};

/// A continuous map's pixel values grouped by block (block `b`'s `f²` values contiguous, in
/// row-major order within the block): what the Huber fit reads.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockPixels {
    grid: TokenGrid,
    values: Vec<f64>,
}

impl BlockPixels {
    /// Groups a `height × width` map (row-major) into the blocks of `tokens` tokens.
    ///
    /// # Errors
    /// As [`super::BlockStats::from_map`].
    pub fn from_map(
        target: &[f64],
        tokens: usize,
        height: usize,
        width: usize,
    ) -> Result<Self, DenseError> {
        let grid = TokenGrid::infer(tokens, height, width)?;
        check_len("target", target.len(), height * width)?;
        check_finite("target", target)?;
        let area = grid.f * grid.f;
        let mut values = vec![0.0; target.len()];
        let mut filled = vec![0_usize; grid.tokens()];
        for (pixel, &v) in target.iter().enumerate() {
            let b = grid.token_of(pixel / width, pixel % width);
            values[b * area + filled[b]] = v;
            filled[b] += 1;
        }
        Ok(Self { grid, values })
    }

    /// The token grid.
    pub fn grid(&self) -> TokenGrid {
        self.grid
    }
}

/// Settings of [`fit_huber`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HuberConfig {
    /// The Huber threshold δ in the map's units (the paper: 1).
    pub delta: f64,
    /// The L2 penalty `λ_tok` (`λ_pix = f²·λ_tok`); must be positive. Default 1e-6 (the paper
    /// has none; a positive one keeps the system definite).
    pub l2: f64,
    /// Convergence, as [`super::LogisticConfig::tol`]. Default 1e-9.
    pub tol: f64,
    /// Most IRLS iterations. Default 500.
    pub max_iter: usize,
}

impl Default for HuberConfig {
    fn default() -> Self {
        Self { delta: 1.0, l2: 1e-6, tol: 1e-9, max_iter: 500 }
    }
}

/// Fits the Huber probe of a continuous map on `channels` features.
///
/// # Errors
/// [`DenseError::InvalidPenalty`] unless `cfg.l2` and `cfg.delta` are positive and finite;
/// [`DenseError::NoImages`]; [`DenseError::Shape`], [`DenseError::GridMismatch`],
/// [`DenseError::NonFinite`] for an image's inputs; [`DenseError::NotConverged`].
pub fn fit_huber<T: Copy + Into<f64>, S: TrainingImages<T, BlockPixels> + ?Sized>(
    images: &S,
    channels: usize,
    cfg: &HuberConfig,
) -> Result<NewtonFit, DenseError> {
    for (what, value) in [("l2", cfg.l2), ("delta", cfg.delta)] {
        if !(value.is_finite() && value > 0.0) {
            return Err(DenseError::InvalidPenalty { what, bound: "positive", value });
        }
    }
    let delta = cfg.delta;
    let newton =
        Newton { lambda: cfg.l2, tol: cfg.tol, max_iter: cfg.max_iter, what: "Huber IRLS" };
    let loss = |pixels: &BlockPixels, z: &[f64], d1: &mut [f64], d2: &mut [f64]| {
        let area = pixels.grid.f * pixels.grid.f;
        let mut loss = 0.0;
        for (b, block) in pixels.values.chunks_exact(area).enumerate() {
            let (mut l, mut g, mut h) = (0.0, 0.0, 0.0);
            for &y in block {
                let r = y - z[b];
                if r.abs() <= delta {
                    l += 0.5 * r * r;
                    g -= r;
                    h += 1.0;
                } else {
                    l += delta * (r.abs() - 0.5 * delta);
                    g -= delta * r.signum();
                    h += delta / r.abs();
                }
            }
            let a = area as f64;
            loss += l / a;
            d1[b] = g / a;
            d2[b] = h / a;
        }
        Ok(loss)
    };
    let s = newton.minimise(images, channels, &|p: &BlockPixels| p.grid, &loss)?;
    Ok(NewtonFit { weights: s.weights, iterations: s.iterations, gradient: s.gradient })
}
