//! L-BFGS preconditioned by Böhning's bound, for the soft-label logistic probe.
//!
//! Newton's method ([`super::newton`]) builds the `C × C` Hessian `Σ Xᵀ diag(ℓ'') X` on every
//! iteration: as much work as the ridge's normal equations, several times over. For the
//! logistic loss `ℓ'' = σ(z)(1 − σ(z)) ≤ ¼`, with equality at `z = 0`, so the Hessian at
//! `w = 0` is `B = XᵀX/4 + λI`, an upper bound of the Hessian everywhere (Böhning & Lindsay
//! 1988). It is built and factored once; each iteration then costs one pass over the tokens
//! for the loss and gradient (`2·tokens·C` multiply-adds per image) and two triangular solves.
//! L-BFGS with `B⁻¹` as its initial inverse Hessian starts with Böhning's monotone step and
//! learns the curvature the bound overstates from the last [`MEMORY`] steps.
//!
//! Where the bound is poor (a nearly separable mask with a tiny penalty: the optimum lies far
//! out, where `ℓ'' ≪ ¼`), L-BFGS crawls; after [`BUDGET`] iterations Newton's method takes
//! over from where it got to and finishes in a few steps.

use std::collections::VecDeque;

use faer::{Col, Mat};

use super::newton::{max_abs, Newton, Solution, TokenLoss, TrainingImages};
use super::ridge::{cholesky_factor, cholesky_solve_factored};
use super::{DenseError, TokenGrid};

/// Steps L-BFGS remembers.
pub(crate) const MEMORY: usize = 10;

/// L-BFGS iterations before Newton's method takes over.
pub(crate) const BUDGET: usize = 60;

impl Newton {
    /// Minimises from `w = 0` like [`Newton::minimise`] (same stopping rule), by L-BFGS with
    /// `bound + λI` as the preconditioner: for a loss whose `ℓ''` peaks at `z = 0`, the
    /// Hessian of the data term at `w = 0` bounds it everywhere (module doc). `bound` is that
    /// Hessian (lower half) if the caller has it, else a first pass builds it. A wrong `bound`
    /// slows the fit but does not change its result.
    pub(crate) fn minimise_bounded<T: Copy + Into<f64>, Y, S: TrainingImages<T, Y> + ?Sized>(
        &self,
        images: &S,
        channels: usize,
        bound: Option<Mat<f64>>,
        grid_of: &dyn Fn(&Y) -> TokenGrid,
        loss_of: TokenLoss<'_, Y>,
    ) -> Result<Solution, DenseError> {
        let lambda = self.lambda;
        let pass = |w: &Col<f64>, hessian: bool| {
            self.penalised(images, channels, w, hessian, grid_of, loss_of)
        };
        let mut w = Col::<f64>::zeros(channels);
        let mut current = pass(&w, bound.is_none())?;
        let mut bound =
            bound.unwrap_or_else(|| std::mem::replace(&mut current.hessian, Mat::zeros(0, 0)));
        for c in 0..channels {
            bound[(c, c)] += lambda;
        }
        let factor = cholesky_factor(bound).ok_or(DenseError::Singular { what: self.what })?;
        let precondition = |q: &Col<f64>| {
            let mut m = Mat::<f64>::from_fn(channels, 1, |c, _| q[c]);
            cholesky_solve_factored(&factor, m.as_mut());
            Col::<f64>::from_fn(channels, |c| m[(c, 0)])
        };
        let scale = max_abs(&current.gradient).max(1.0);
        let threshold = self.tol * scale;
        let mut history: VecDeque<(Col<f64>, Col<f64>, f64)> = VecDeque::with_capacity(MEMORY);
        let mut ran = 0;
        for iteration in 0..self.max_iter.min(BUDGET) {
            ran = iteration + 1;
            let g_max = max_abs(&current.gradient);
            let done = |w: &Col<f64>| Solution {
                weights: w.iter().copied().collect(),
                iterations: iteration,
                gradient: g_max,
            };
            if g_max <= threshold {
                return Ok(done(&w));
            }
            let mut step = -two_loop(&history, &current.gradient, &precondition);
            let mut slope = current.gradient.transpose() * &step;
            if slope >= 0.0 {
                // Rounding spoilt the memory: restart from the bound alone.
                history.clear();
                step = -precondition(&current.gradient);
                slope = current.gradient.transpose() * &step;
            }
            let Some((trial, next)) = self.line_search(&w, &step, slope, &current, g_max, &pass)?
            else {
                break; // no decrease along the L-BFGS direction: let Newton decide
            };
            let s = &trial - &w;
            let y = &next.gradient - &current.gradient;
            let sy = s.transpose() * &y;
            if sy > 0.0 {
                if history.len() == MEMORY {
                    history.pop_front();
                }
                history.push_back((s, y, 1.0 / sy));
            }
            (w, current) = (trial, next);
        }
        let rest = Newton { max_iter: self.max_iter.saturating_sub(ran), ..*self };
        let mut s = rest.minimise_from(images, w, Some(scale), grid_of, loss_of)?;
        s.iterations += ran;
        Ok(s)
    }
}

/// The L-BFGS two-loop recursion: `H·g` for the inverse-Hessian estimate built from `history`
/// on top of `precondition` (Nocedal & Wright, Algorithm 7.4).
fn two_loop(
    history: &VecDeque<(Col<f64>, Col<f64>, f64)>,
    g: &Col<f64>,
    precondition: &dyn Fn(&Col<f64>) -> Col<f64>,
) -> Col<f64> {
    let mut q = g.clone();
    let mut alphas = Vec::with_capacity(history.len());
    for (s, y, rho) in history.iter().rev() {
        let a = rho * (s.transpose() * &q);
        q -= a * y;
        alphas.push(a);
    }
    let mut r = precondition(&q);
    if let Some((s, y, _)) = history.back() {
        // Scale the preconditioner by the curvature last seen along y (Nocedal & Wright
        // eq. 7.20, in the preconditioned metric): the bound overstates it.
        let by = precondition(y);
        let gamma = (s.transpose() * y) / (y.transpose() * &by);
        if gamma.is_finite() && gamma > 0.0 {
            r *= gamma;
        }
    }
    for ((s, y, rho), a) in history.iter().zip(alphas.into_iter().rev()) {
        let b = rho * (y.transpose() * &r);
        r += (a - b) * s;
    }
    r
}
