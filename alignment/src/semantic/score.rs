//! [`Score`] (a value with its chance level and CI), [`SemanticConfig`], and the bootstrap.
//!
//! **CI:** a percentile bootstrap over *query items*: each replicate draws as many items as were
//! scored, with replacement, and weights each item's contribution (its own value, or its pairs for
//! the pair scores) by how often it was drawn; the reference set (neighbours, the other side of
//! each pair) stays whole. `se` is the standard deviation of the replicates (ddof 1) and the CI
//! their 2.5 % and 97.5 % quantiles (numpy's linear rule). Items sharing an image are resampled
//! independently, so the interval is somewhat narrow when many objects share an image.
//! Replicates come from `rng::Stream::Bootstrap`, seeded by `(seed, score)`.

use crate::rng::{below, stream, Stream};

/// Settings of the semantic scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SemanticConfig {
    /// Bootstrap replicates of each CI (0: no CI, `se` and the bounds NaN).
    pub bootstrap: usize,
    /// Label permutations of the k-NN chance level.
    pub permutations: usize,
    /// The seed of the bootstrap and the permutations.
    pub seed: u64,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        Self { bootstrap: 1000, permutations: 200, seed: 0 }
    }
}

/// One score of a descriptor set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The score.
    pub value: f64,
    /// Its value for descriptors unrelated to the classes (stated per score in `scores`).
    pub chance: f64,
    /// Bootstrap standard error.
    pub se: f64,
    /// Lower bound of the 95 % bootstrap CI.
    pub ci_low: f64,
    /// Upper bound of the 95 % bootstrap CI.
    pub ci_high: f64,
    /// Number of query items scored (those with at least one usable neighbour or pair).
    pub n: usize,
}

/// Which score a random stream belongs to (so adding a score never shifts another's numbers).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Which {
    Knn = 0,
    MapAtR = 1,
    Auc = 2,
    Ratio = 3,
    Silhouette = 4,
    Drift = 5,
    ClassTop1 = 6,
    InstanceTop1 = 7,
    Reidentification = 8,
}

impl Which {
    /// The stream index, with `k` folded in for the k-NN scores.
    pub(crate) fn index(self, k: usize) -> usize {
        (self as usize) | (k << 8)
    }
}

/// A [`Score`] from `value` and `chance` over `n` items, with a bootstrap CI of `statistic`,
/// which maps per-item weights (draw counts, length `n`) to the replicate's value.
pub(crate) fn with_bootstrap(
    value: f64,
    chance: f64,
    n: usize,
    config: &SemanticConfig,
    which: usize,
    mut statistic: impl FnMut(&[f64]) -> f64,
) -> Score {
    let mut replicates = Vec::with_capacity(config.bootstrap);
    let mut rng = stream(Stream::Bootstrap, config.seed, which);
    let mut weights = vec![0.0; n];
    for _ in 0..config.bootstrap {
        weights.iter_mut().for_each(|w| *w = 0.0);
        for _ in 0..n {
            weights[below(&mut rng, n)] += 1.0;
        }
        let r = statistic(&weights);
        if r.is_finite() {
            replicates.push(r);
        }
    }
    replicates.sort_by(f64::total_cmp);
    let (se, ci_low, ci_high) = if replicates.len() < 2 {
        (f64::NAN, f64::NAN, f64::NAN)
    } else {
        let m = replicates.len() as f64;
        let mean = replicates.iter().sum::<f64>() / m;
        let var = replicates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (m - 1.0);
        (var.sqrt(), quantile(&replicates, 0.025), quantile(&replicates, 0.975))
    };
    Score { value, chance, se, ci_low, ci_high, n }
}

/// The weighted mean of per-item values.
pub(crate) fn weighted_mean(values: &[f64], weights: &[f64]) -> f64 {
    let total: f64 = weights.iter().sum();
    values.iter().zip(weights).map(|(v, w)| v * w).sum::<f64>() / total
}

/// numpy's default (linear) quantile of sorted values.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    if lo + 1 < sorted.len() {
        sorted[lo] + frac * (sorted[lo + 1] - sorted[lo])
    } else {
        sorted[lo]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_follow_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert!((quantile(&v, 0.025) - 1.1).abs() < 1e-12);
        assert!((quantile(&v, 0.975) - 4.9).abs() < 1e-12);
    }
}
