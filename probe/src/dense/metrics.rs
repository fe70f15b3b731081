//! The per-image metrics of a dense probe at full resolution (§D, the paper's definitions),
//! computed exactly from [`BlockStats`] and one prediction per token, and their mean ± SE over
//! images.
//!
//! With `a = f²` pixels per block, `p_b` the prediction of block `b`, `m_b` the target's block
//! mean and `N` pixels: Pearson's covariance is `a·Σ_b (p_b − p̄)(m_b − ȳ)` and the target's
//! variance `a·Σ_b (m_b − ȳ)² + Σ_b within_ss_b`; the squared error is
//! `a·Σ_b (p_b − m_b)² + Σ_b within_ss_b`. The upsampled prediction's average ranks are tied
//! within each block: blocks sorted by `p` occupy consecutive runs of `a` pixel positions, and
//! tied blocks share the mean of their runs. Spearman's ρ is then the Pearson correlation of
//! those ranks with the target's, from the target's per-block rank sums and `Σ (R − R̄)²`.

use super::{check_finite, check_len, BlockStats, DenseError};

/// The smoothing constant of the paper's Dice, `(2Σm̂m + ε)/(Σm̂ + Σm + ε)`.
pub const DICE_EPS: f64 = 1e-8;

/// Correlation and error metrics of one image's continuous prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContinuousMetrics {
    /// Spearman's ρ over all pixels (average ranks); NaN when the prediction or the target is
    /// constant (the paper skips such images; [`summarize`] counts them).
    pub spearman: f64,
    /// Pearson's r over all pixels; NaN as for `spearman`.
    pub pearson: f64,
    /// Root mean squared error over all pixels.
    pub rmse: f64,
}

/// Dice of one image's predicted mask against a mask target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskMetrics {
    /// Dice of the foreground.
    pub dice: f64,
    /// Dice of the background (both masks complemented).
    pub dice_background: f64,
}

/// Mean ± standard error of a metric over images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Mean over the images with a value.
    pub mean: f64,
    /// Standard error of the mean, `sd / √n` with the sample standard deviation (ddof 1); NaN
    /// for fewer than two images.
    pub se: f64,
    /// Images with a value.
    pub n: usize,
    /// Images skipped because their value is NaN (a constant prediction or target).
    pub skipped: usize,
}

/// Spearman's ρ, Pearson's r and RMSE of the nearest-upsampled `prediction` (one value per
/// token) against the target summarised by `stats`.
///
/// # Errors
/// [`DenseError::Shape`] when `prediction` does not have one value per token,
/// [`DenseError::NonFinite`].
pub fn continuous_metrics(
    stats: &BlockStats,
    prediction: &[f64],
) -> Result<ContinuousMetrics, DenseError> {
    let grid = stats.grid();
    let blocks = grid.tokens();
    check_len("prediction", prediction.len(), blocks)?;
    check_finite("prediction", prediction)?;
    let area = (grid.f * grid.f) as f64;
    let n = grid.pixels() as f64;
    let mean = stats.mean();
    let within: f64 = stats.within_ss().iter().sum();

    let sq_error: f64 = prediction.iter().zip(mean).map(|(p, m)| (p - m).powi(2)).sum();
    let rmse = ((area * sq_error + within) / n).sqrt();

    let constant = prediction.iter().all(|&p| p == prediction[0]);
    if constant {
        return Ok(ContinuousMetrics { spearman: f64::NAN, pearson: f64::NAN, rmse });
    }
    let p_bar = prediction.iter().sum::<f64>() / blocks as f64;
    let y_bar = mean.iter().sum::<f64>() / blocks as f64;
    let (mut cov, mut var_p, mut var_y) = (0.0, 0.0, 0.0);
    for (&p, &m) in prediction.iter().zip(mean) {
        cov += (p - p_bar) * (m - y_bar);
        var_p += (p - p_bar).powi(2);
        var_y += (m - y_bar).powi(2);
    }
    let pearson = correlation(area * cov, area * var_p, area * var_y + within);

    let ranks = block_ranks(prediction, area);
    let centre = (n + 1.0) / 2.0;
    let (mut cov, mut var_q) = (0.0, 0.0);
    for (&q, &r) in ranks.iter().zip(stats.rank_sum()) {
        cov += (q - centre) * (r - area * centre);
        var_q += (q - centre).powi(2);
    }
    let spearman = correlation(cov, area * var_q, stats.rank_ss());
    Ok(ContinuousMetrics { spearman, pearson, rmse })
}

/// `cov / √(var_a·var_b)`, clamped to [−1, 1]; NaN when either variance is not positive.
fn correlation(cov: f64, var_a: f64, var_b: f64) -> f64 {
    if var_a > 0.0 && var_b > 0.0 {
        (cov / (var_a.sqrt() * var_b.sqrt())).clamp(-1.0, 1.0)
    } else {
        f64::NAN
    }
}

/// The full-resolution average rank shared by every pixel of each block, for blocks of `area`
/// pixels each taking the value `prediction[b]`.
fn block_ranks(prediction: &[f64], area: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..prediction.len()).collect();
    order.sort_by(|&a, &b| prediction[a].total_cmp(&prediction[b]));
    let mut ranks = vec![0.0; prediction.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && prediction[order[end]] == prediction[order[start]] {
            end += 1;
        }
        // Pixel positions start·a + 1 ..= end·a share their mean.
        let rank = (start as f64 * area + 1.0 + end as f64 * area) / 2.0;
        for &b in &order[start..end] {
            ranks[b] = rank;
        }
        start = end;
    }
    ranks
}

/// Foreground and background Dice of a predicted mask (`foreground[b]` for every pixel of
/// block `b`; for a logit difference `z_b` that is `z_b > 0`, the paper's argmax over
/// (background, foreground) logits, a tie going to the background) against a mask target.
///
/// # Errors
/// [`DenseError::NotAMask`] for a continuous target, [`DenseError::Shape`] when `foreground`
/// does not have one value per token.
pub fn mask_metrics(stats: &BlockStats, foreground: &[bool]) -> Result<MaskMetrics, DenseError> {
    let counts = stats.foreground().ok_or(DenseError::NotAMask)?;
    let grid = stats.grid();
    check_len("predicted mask", foreground.len(), grid.tokens())?;
    let area = (grid.f * grid.f) as u64;
    let n = grid.pixels() as u64;
    let (mut inter, mut inter_bg, mut predicted) = (0_u64, 0_u64, 0_u64);
    for (&fg, &count) in foreground.iter().zip(counts) {
        if fg {
            inter += count;
            predicted += area;
        } else {
            inter_bg += area - count;
        }
    }
    let truth: u64 = counts.iter().sum();
    Ok(MaskMetrics {
        dice: dice(inter, predicted, truth),
        dice_background: dice(inter_bg, n - predicted, n - truth),
    })
}

/// Dice of the all-foreground prediction, `2|m| / (|m| + N)` (with the same ε as
/// [`mask_metrics`], so it is exactly the Dice an all-foreground probe scores).
///
/// # Errors
/// [`DenseError::NotAMask`] for a continuous target.
pub fn all_foreground_dice(stats: &BlockStats) -> Result<f64, DenseError> {
    let counts = stats.foreground().ok_or(DenseError::NotAMask)?;
    let truth: u64 = counts.iter().sum();
    let n = stats.grid().pixels() as u64;
    Ok(dice(truth, n, truth))
}

fn dice(intersection: u64, predicted: u64, truth: u64) -> f64 {
    (2.0 * intersection as f64 + DICE_EPS) / (predicted as f64 + truth as f64 + DICE_EPS)
}

/// Mean ± SE of per-image values, NaN values skipped and counted.
pub fn summarize(values: &[f64]) -> Summary {
    let kept: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    let n = kept.len();
    let skipped = values.len() - n;
    if n == 0 {
        return Summary { mean: f64::NAN, se: f64::NAN, n, skipped };
    }
    let mean = kept.iter().sum::<f64>() / n as f64;
    let se = if n < 2 {
        f64::NAN
    } else {
        let ss: f64 = kept.iter().map(|v| (v - mean).powi(2)).sum();
        (ss / (n - 1) as f64).sqrt() / (n as f64).sqrt()
    };
    Summary { mean, se, n, skipped }
}
