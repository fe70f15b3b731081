//! Newton's method with a backtracking line search for the penalised per-token objectives of
//! the dense probes, `Σ_b ℓ(z_b; target_b) + λ/2·‖w‖²` with `z = Xw`: the soft-label logistic
//! and the Huber probe differ only in `ℓ` and its first two derivatives in `z`.
//!
//! Each iteration is one pass over the training images for the gradient
//! `Σ Xᵀ ℓ'(z) + λw` and the Hessian `Σ Xᵀ diag(ℓ''(z)) X + λI` (`C × C`, lower half), plus one
//! cheaper pass per line-search trial; images are streamed ([`TrainingImages`]), memory is
//! `C × C`.

use faer::{Accum, Col, Mat};

use super::ridge::cholesky_solve;
use super::{check_finite, check_len};
use super::{DenseError, TokenGrid};
use crate::ridge::lower_product;

/// What [`TrainingImages::for_each`] calls with each image: its features and its target.
pub type ImageVisitor<'a, T, Y> = dyn FnMut(&[T], &Y) -> Result<(), DenseError> + 'a;

/// Training images a fit can pass over several times, in a fixed order: features
/// (`tokens × C`, row-major, diffusers' token order) and a target `Y` (the block statistics of
/// a mask for [`super::fit_logistic`], the block pixels of a map for [`super::fit_huber`]).
pub trait TrainingImages<T, Y> {
    /// Calls `visit` with each image, stopping at the first error.
    ///
    /// # Errors
    /// Those of `visit`, and whatever reading an image can fail with.
    fn for_each(&self, visit: &mut ImageVisitor<'_, T, Y>) -> Result<(), DenseError>;
}

impl<T, Y> TrainingImages<T, Y> for [(&[T], &Y)] {
    fn for_each(&self, visit: &mut ImageVisitor<'_, T, Y>) -> Result<(), DenseError> {
        self.iter().try_for_each(|(x, y)| visit(x, y))
    }
}

/// The per-token loss: given an image's target and its logits `z`, writes `ℓ'` and `ℓ''` per
/// token and returns `Σ ℓ`.
pub(crate) type TokenLoss<'a, Y> =
    &'a dyn Fn(&Y, &[f64], &mut [f64], &mut [f64]) -> Result<f64, DenseError>;

/// Settings of one minimisation.
#[derive(Clone, Copy)]
pub(crate) struct Newton {
    pub lambda: f64,
    pub tol: f64,
    pub max_iter: usize,
    /// The fit's name, for [`DenseError::Singular`].
    pub what: &'static str,
}

/// The objective's pass at a point (with or without the Hessian).
pub(super) type PassAt<'a> = dyn Fn(&Col<f64>, bool) -> Result<Pass, DenseError> + 'a;

/// A minimiser: weights, Newton iterations run and the largest absolute gradient entry there.
pub(crate) struct Solution {
    pub weights: Vec<f64>,
    pub iterations: usize,
    pub gradient: f64,
}

impl Newton {
    /// Minimises from `w = 0` until the largest absolute gradient entry is at most `tol` times
    /// that at `w = 0` (or `tol`, if that is below 1).
    pub(crate) fn minimise<T: Copy + Into<f64>, Y, S: TrainingImages<T, Y> + ?Sized>(
        &self,
        images: &S,
        channels: usize,
        grid_of: &dyn Fn(&Y) -> TokenGrid,
        loss_of: TokenLoss<'_, Y>,
    ) -> Result<Solution, DenseError> {
        self.minimise_from(images, Col::zeros(channels), None, grid_of, loss_of)
    }

    /// [`Newton::minimise`] from `start`; `scale` is the largest absolute gradient entry at
    /// `w = 0` if known (else that at `start` sets the tolerance).
    pub(crate) fn minimise_from<T: Copy + Into<f64>, Y, S: TrainingImages<T, Y> + ?Sized>(
        &self,
        images: &S,
        start: Col<f64>,
        scale: Option<f64>,
        grid_of: &dyn Fn(&Y) -> TokenGrid,
        loss_of: TokenLoss<'_, Y>,
    ) -> Result<Solution, DenseError> {
        let channels = start.nrows();
        let mut scale = scale;
        let lambda = self.lambda;
        let pass = |w: &Col<f64>, hessian: bool| {
            self.penalised(images, channels, w, hessian, grid_of, loss_of)
        };
        let mut w = start;
        for iteration in 0..self.max_iter {
            let mut current = pass(&w, true)?;
            let g_max = max_abs(&current.gradient);
            let threshold = self.tol * *scale.get_or_insert(g_max.max(1.0));
            let done = |w: &Col<f64>| Solution {
                weights: w.iter().copied().collect(),
                iterations: iteration,
                gradient: g_max,
            };
            if g_max <= threshold {
                return Ok(done(&w));
            }
            let mut hessian = std::mem::replace(&mut current.hessian, Mat::zeros(0, 0));
            for c in 0..channels {
                hessian[(c, c)] += lambda;
            }
            let mut step = Mat::<f64>::from_fn(channels, 1, |c, _| -current.gradient[c]);
            if !cholesky_solve(hessian, step.as_mut()) {
                return Err(DenseError::Singular { what: self.what });
            }
            let step = Col::<f64>::from_fn(channels, |c| step[(c, 0)]);
            let slope = current.gradient.transpose() * &step;
            if let Some((trial, _)) = self.line_search(&w, &step, slope, &current, g_max, &pass)? {
                w = trial;
            } else {
                // No decrease even for a tiny step: the optimum as far as f64 can tell, unless
                // the gradient is still large.
                if g_max <= threshold.sqrt() {
                    return Ok(done(&w));
                }
                return Err(DenseError::NotConverged {
                    iterations: iteration + 1,
                    gradient: g_max,
                });
            }
        }
        let g_max = max_abs(&pass(&w, false)?.gradient);
        Err(DenseError::NotConverged { iterations: self.max_iter, gradient: g_max })
    }

    /// The objective at `w`: the data term's pass plus the penalty `λ/2·‖w‖²` and its gradient.
    pub(super) fn penalised<T: Copy + Into<f64>, Y, S: TrainingImages<T, Y> + ?Sized>(
        &self,
        images: &S,
        channels: usize,
        w: &Col<f64>,
        hessian: bool,
        grid_of: &dyn Fn(&Y) -> TokenGrid,
        loss_of: TokenLoss<'_, Y>,
    ) -> Result<Pass, DenseError> {
        let mut p = Pass::run(images, channels, w, hessian, grid_of, loss_of)?;
        p.loss += self.lambda / 2.0 * w.squared_norm_l2();
        p.gradient += self.lambda * w;
        Ok(p)
    }

    /// Armijo backtracking from the full step (almost always taken near the optimum), judging a trial whose loss equals the current
    /// one to rounding by its gradient instead; `None` if no trial is accepted.
    pub(super) fn line_search(
        &self,
        w: &Col<f64>,
        step: &Col<f64>,
        slope: f64,
        current: &Pass,
        g_max: f64,
        pass: &PassAt<'_>,
    ) -> Result<Option<(Col<f64>, Pass)>, DenseError> {
        let mut t = 1.0;
        for _ in 0..40 {
            let trial = w + t * step;
            let p = pass(&trial, false)?;
            let flat = (p.loss - current.loss).abs() <= 1e-12 * current.loss.abs().max(1.0);
            if p.loss <= current.loss + 1e-4 * t * slope || (flat && max_abs(&p.gradient) < g_max) {
                return Ok(Some((trial, p)));
            }
            t /= 2.0;
        }
        Ok(None)
    }
}

/// The data part of the objective, its gradient and (when asked) its Hessian (lower half) at
/// `w`.
pub(super) struct Pass {
    pub(super) loss: f64,
    pub(super) gradient: Col<f64>,
    pub(super) hessian: Mat<f64>,
}

impl Pass {
    pub(super) fn run<T: Copy + Into<f64>, Y, S: TrainingImages<T, Y> + ?Sized>(
        images: &S,
        channels: usize,
        w: &Col<f64>,
        with_hessian: bool,
        grid_of: &dyn Fn(&Y) -> TokenGrid,
        loss_of: TokenLoss<'_, Y>,
    ) -> Result<Self, DenseError> {
        let mut loss = 0.0;
        let mut hessian = Mat::<f64>::zeros(if with_hessian { channels } else { 0 }, channels);
        let mut first: Option<TokenGrid> = None;
        let mut count = 0_usize;
        let w_vec: Vec<f64> = w.iter().copied().collect();
        let mut g = vec![0.0; channels];
        images.for_each(&mut |features, target| {
            let grid = grid_of(target);
            first.get_or_insert(grid).check_same("a target of the fit", &grid)?;
            let tokens = grid.tokens();
            let (mut d1, mut d2) = (vec![0.0; tokens], vec![0.0; tokens]);
            if with_hessian {
                // The pass that builds the Hessian also checks the features, once per fit.
                check_len("features", features.len(), tokens * channels)?;
                check_finite("features", features)?;
                let z: Vec<f64> =
                    features.chunks_exact(channels).map(|row| dot(row, &w_vec)).collect();
                loss += loss_of(target, &z, &mut d1, &mut d2)?;
                // Built transposed (C × tokens, column-major): each column is one token's
                // contiguous row of features.
                let root: Vec<f64> = d2.iter().map(|v| v.sqrt()).collect();
                let xs = Mat::<f64>::from_fn(channels, tokens, |c, b| {
                    root[b] * features[b * channels + c].into()
                });
                lower_product(hessian.as_mut(), Accum::Add, xs.as_ref(), xs.transpose(), 1.0);
            } else {
                check_len("features", features.len(), tokens * channels)?;
                let z: Vec<f64> =
                    features.chunks_exact(channels).map(|row| dot(row, &w_vec)).collect();
                loss += loss_of(target, &z, &mut d1, &mut d2)?;
            }
            // Σ_b ℓ'(z_b)·x_b, row by row: the features stay in their stored type.
            for (row, &d) in features.chunks_exact(channels).zip(&d1) {
                if d != 0.0 {
                    for (gc, &v) in g.iter_mut().zip(row) {
                        *gc += d * v.into();
                    }
                }
            }
            count += 1;
            Ok(())
        })?;
        let gradient = Col::<f64>::from_fn(channels, |c| g[c]);
        if count == 0 {
            return Err(DenseError::NoImages);
        }
        Ok(Self { loss, gradient, hessian })
    }
}

/// `Σ x_c·w_c` in f64, eight running sums at a time (so it vectorises).
fn dot<T: Copy + Into<f64>>(x: &[T], w: &[f64]) -> f64 {
    let mut acc = [0.0; 8];
    let (xs, ws) = (x.chunks_exact(8), w.chunks_exact(8));
    let tail: f64 = xs.remainder().iter().zip(ws.remainder()).map(|(&v, wc)| v.into() * wc).sum();
    for (xc, wc) in xs.zip(ws) {
        for k in 0..8 {
            acc[k] += xc[k].into() * wc[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

pub(super) fn max_abs(v: &Col<f64>) -> f64 {
    v.iter().fold(0.0_f64, |m, x| m.max(x.abs()))
}
