//! The token grid and the per-block statistics of one full-resolution target: everything the
//! fits and the metrics need, so no full-resolution array outlives [`BlockStats::from_map`].
//!
//! Squares are kept centred (within each block, and ranks about their mean) rather than as raw
//! sums of squares: the metrics then never subtract two large sums, so they match a
//! full-resolution computation to rounding (raw `Σy²` is `within_ss + f²·mean²`).

use super::{check_finite, check_len, DenseError};

/// How the tokens of a representation tile a full-resolution target: an `h × w` grid of
/// `f × f` pixel blocks; token `t` is block row `t / w`, block column `t % w` (diffusers'
/// row-major `(h, w)` flattening).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenGrid {
    /// Token rows.
    pub h: usize,
    /// Token columns.
    pub w: usize,
    /// Upsampling factor: pixels per block side.
    pub f: usize,
}

impl TokenGrid {
    /// The grid of `tokens` tokens on an `height × width` target: the one block side `f` with
    /// `(height / f) · (width / f) = tokens` (so a 64 × 64 latent's 4,096 tokens on 512² give
    /// f = 8, and a non-square 64 × 96 grid works too).
    ///
    /// # Errors
    /// [`DenseError::Grid`] when no integer `f` tiles the target.
    pub fn infer(tokens: usize, height: usize, width: usize) -> Result<Self, DenseError> {
        let err = DenseError::Grid { tokens, height, width };
        if tokens == 0 || height == 0 || width == 0 || !(height * width).is_multiple_of(tokens) {
            return Err(err);
        }
        let f2 = height * width / tokens;
        let f = (f2 as f64).sqrt().round() as usize;
        if f == 0 || f * f != f2 || !height.is_multiple_of(f) || !width.is_multiple_of(f) {
            return Err(err);
        }
        Ok(Self { h: height / f, w: width / f, f })
    }

    /// Number of tokens (blocks), `h · w`.
    pub fn tokens(&self) -> usize {
        self.h * self.w
    }

    /// Number of full-resolution pixels, `f²·h·w`.
    pub fn pixels(&self) -> usize {
        self.tokens() * self.f * self.f
    }

    /// Full-resolution height and width.
    pub fn size(&self) -> (usize, usize) {
        (self.h * self.f, self.w * self.f)
    }

    /// The token (block) of full-resolution pixel `(row, col)`.
    pub fn token_of(&self, row: usize, col: usize) -> usize {
        (row / self.f) * self.w + col / self.f
    }

    /// Calls `visit(block, pixels)` for every run of `f` consecutive pixels of one block row, in
    /// row-major pixel order.
    pub(crate) fn for_each_run(&self, mut visit: impl FnMut(usize, std::ops::Range<usize>)) {
        let width = self.w * self.f;
        for row in 0..self.h * self.f {
            for col in 0..self.w {
                let start = row * width + col * self.f;
                visit((row / self.f) * self.w + col, start..start + self.f);
            }
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!("{}×{}/{}", self.h, self.w, self.f)
    }

    pub(crate) fn check_same(&self, what: &'static str, other: &Self) -> Result<(), DenseError> {
        if self == other {
            Ok(())
        } else {
            Err(DenseError::GridMismatch { what, got: other.describe(), expected: self.describe() })
        }
    }
}

/// The per-block statistics of one image's full-resolution target.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockStats {
    grid: TokenGrid,
    /// Per block: mean of the target (the fit's target; a mask's foreground fraction).
    mean: Vec<f64>,
    /// Per block: `Σ (y − mean_b)²` over its pixels.
    within_ss: Vec<f64>,
    /// Per block (masks only): number of foreground pixels.
    foreground: Option<Vec<u64>>,
    /// Per block: sum of the pixels' average ranks (1-based, ties averaged, over all pixels).
    rank_sum: Vec<f64>,
    /// `Σ (R − R̄)²` over all pixels, `R̄ = (N + 1)/2` (= `ΣR² − N·R̄²`; exact: ranks are
    /// multiples of ½).
    rank_ss: f64,
}

impl BlockStats {
    /// Statistics of a continuous map (`height × width`, row-major), for a representation of
    /// `tokens` tokens.
    ///
    /// # Errors
    /// [`DenseError::Grid`] (see [`TokenGrid::infer`]), [`DenseError::Shape`] when
    /// `target.len() != height · width`, [`DenseError::NonFinite`].
    pub fn from_map(
        target: &[f64],
        tokens: usize,
        height: usize,
        width: usize,
    ) -> Result<Self, DenseError> {
        let grid = TokenGrid::infer(tokens, height, width)?;
        check_len("target", target.len(), height * width)?;
        check_finite("target", target)?;
        Ok(Self::compute(grid, target, None))
    }

    /// Statistics of a binary mask (`true` = foreground), as [`from_map`](Self::from_map) of its
    /// 0/1 values plus the per-block foreground counts Dice needs.
    ///
    /// # Errors
    /// As [`from_map`](Self::from_map).
    pub fn from_mask(
        mask: &[bool],
        tokens: usize,
        height: usize,
        width: usize,
    ) -> Result<Self, DenseError> {
        let grid = TokenGrid::infer(tokens, height, width)?;
        check_len("mask", mask.len(), height * width)?;
        let values: Vec<f64> = mask.iter().map(|&m| f64::from(u8::from(m))).collect();
        let mut counts = vec![0_u64; grid.tokens()];
        grid.for_each_run(|b, run| counts[b] += mask[run].iter().filter(|&&m| m).count() as u64);
        Ok(Self::compute(grid, &values, Some(counts)))
    }

    fn compute(grid: TokenGrid, y: &[f64], foreground: Option<Vec<u64>>) -> Self {
        let blocks = grid.tokens();
        let area = (grid.f * grid.f) as f64;
        let mut sum = vec![0.0; blocks];
        grid.for_each_run(|b, run| sum[b] += y[run].iter().sum::<f64>());
        let mean: Vec<f64> = sum.iter().map(|s| s / area).collect();
        let mut within_ss = vec![0.0; blocks];
        grid.for_each_run(|b, run| {
            within_ss[b] += y[run].iter().map(|v| (v - mean[b]).powi(2)).sum::<f64>();
        });
        let ranks = if foreground.is_some() { binary_ranks(y) } else { average_ranks(y) };
        let centre = (y.len() as f64 + 1.0) / 2.0;
        let mut rank_sum = vec![0.0; blocks];
        grid.for_each_run(|b, run| rank_sum[b] += ranks[run].iter().sum::<f64>());
        let rank_ss = ranks.iter().map(|r| (r - centre).powi(2)).sum();
        Self { grid, mean, within_ss, foreground, rank_sum, rank_ss }
    }

    /// The token grid.
    pub fn grid(&self) -> TokenGrid {
        self.grid
    }

    /// Per-block means: the fit's target (a mask's foreground fraction).
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Per-block `Σ (y − mean_b)²`.
    pub fn within_ss(&self) -> &[f64] {
        &self.within_ss
    }

    /// Per-block foreground pixel counts, for a mask; `None` for a continuous map.
    pub fn foreground(&self) -> Option<&[u64]> {
        self.foreground.as_deref()
    }

    /// Per-block sums of the full-resolution average ranks.
    pub fn rank_sum(&self) -> &[f64] {
        &self.rank_sum
    }

    /// `Σ (R − R̄)²` of the full-resolution average ranks.
    pub fn rank_ss(&self) -> f64 {
        self.rank_ss
    }
}

/// Average ranks (1-based; tied values share the mean of their positions), as
/// `scipy.stats.rankdata(method="average")`.
pub(crate) fn average_ranks(values: &[f64]) -> Vec<f64> {
    // Sorting (value, position) pairs keeps the comparisons in cache; ties need no stable order
    // because they share one rank.
    let mut order: Vec<(f64, usize)> = values.iter().copied().zip(0..).collect();
    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && order[end].0 == order[start].0 {
            end += 1;
        }
        // Positions start+1 ..= end share their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &(_, i) in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// [`average_ranks`] of 0/1 values, without sorting: every 0 shares the mean of the first
/// `zeros` positions, every 1 the mean of the rest.
pub(crate) fn binary_ranks(values: &[f64]) -> Vec<f64> {
    let zeros = values.iter().filter(|&&v| v == 0.0).count();
    let (low, high) = ((zeros + 1) as f64 / 2.0, (zeros + 1 + values.len()) as f64 / 2.0);
    values.iter().map(|&v| if v == 0.0 { low } else { high }).collect()
}
