//! Attribute probes (science.md B1): per fold, PCA + ridge from a representation to human
//! ratings, with a permutation test per attribute, plus the statistics the report pools them
//! with (Pearson r, Benjamini–Hochberg q-values, a fold-pooled p-value, the fit's effective
//! degrees of freedom);
//! the per-attribute α by exact leave-one-out or inner K-fold cross-validation and the P × α
//! grid report (module `tuning`); and
//! the two entanglement measures (module `entangle`); and
//! dense per-pixel probes of spatial representations in exact closed form (module [`dense`]).
//!
//! **Invariants:** results are a pure function of the inputs and [`ProbeConfig`]: every linear
//! algebra call is sequential (`faer::Par::Seq`), so they are bit-identical whatever the thread
//! count; one permutation reorders the stimuli of every attribute, and the permutations depend
//! only on the seed, the stimuli and (in the default per-fold scheme) the fold index, so every
//! representation is tested against the same permutations and neither grouping folds into work
//! units nor probing a subset of attributes changes them. Computation is in `f64` by default
//! (`f32` input is widened; the 1e-6 agreement with scikit-learn needs it); [`Precision::F32`]
//! runs the two large products, the Gram matrix and the permutation refits, in `f32`.
//!
//! **Input policy:** NaN or infinite values in a used row of `x` or `y` are an error, never
//! imputed or skipped; constant features are centred away (and zeroed when z-scoring); P is
//! capped at `n_train − 1`, `d` and the numerical rank, so `N < P` is not an error; a test fold
//! of a single stimulus is allowed (its Pearson r is NaN).
#![deny(missing_docs)]

mod checks;
mod config;
pub mod dense;
mod entangle;
mod error;
mod folds;
mod gram;
mod null;
mod pca;
mod ridge;
mod rng;
mod stats;
mod tuning;

use faer::{MatMut, MatRef};

pub(crate) use crate::checks::{
    check_alpha, check_len, check_split, check_target_shape, check_targets, component_cap, prepare,
};
pub use crate::config::{FoldResult, FoldSplit, Permute, Precision, ProbeConfig};
pub use crate::entangle::{correlation_structure, identification_accuracy, CorrStructure};
pub use crate::error::ProbeError;
pub use crate::folds::{complement, inner_kfold, kfold, train_test_split};
pub use crate::gram::StimulusGram;
pub use crate::pca::pca_scores;
pub use crate::rng::{seed_of, shuffle, SplitMix64};
pub use crate::stats::{bh_qvalues, pearson, pooled_p_value};
pub use crate::tuning::{hyper_grid, select_alpha, select_alpha_kfold, AlphaChoice, GridCell};

use crate::ridge::Decomposition;

/// Effective degrees of freedom of ridge regression on principal components with eigenvalues
/// `lambda` (`λ_p = s_p²`, the squared singular values of the centred training features) and
/// penalty `alpha`: `Σ_p λ_p / (λ_p + α)`, the trace of the hat matrix without the intercept.
///
/// It is `P` for α = 0 and falls towards 0 as α outgrows the eigenvalues. Below about 1 the
/// probe predicts almost the training mean: features whose variance is small next to α (unscaled
/// low-variance features, such as a BERT-style `[CLS]` token below the last layer) are shrunk
/// away however informative they are, and z-scoring or choosing α per attribute recovers them.
pub fn effective_df(lambda: &[f64], alpha: f64) -> f64 {
    // A fold from +0, not `sum`, which starts at −0 and would print "-0.000" with no component.
    lambda.iter().fold(0.0, |df, &l| df + l / (l + alpha))
}

/// Probes every attribute of one representation in one fold.
///
/// `x` is the representation, `n × d` row-major over all stimuli, as `f32` or `f64` (converted
/// to `f64`); `y` is the targets, `n × j` row-major. `train` and `test` are disjoint stimulus
/// indices; only those rows are read. The fit: centre (and optionally z-score) `x` on the
/// training rows, PCA with `P = min(cfg.n_components, n_train − 1, d, rank)` components, ridge
/// with unpenalised intercept and penalty `cfg.alpha`, in eigen form (module `ridge`).
///
/// The permutation test draws `cfg.n_permutations` permutations of the targets as chosen by
/// `cfg.permute` ([`Permute`]); the same projection refits each permuted training column
/// (centred on its own mean) and is scored on the (possibly permuted) test targets. The
/// permutations depend only on the seed, the attribute index, the fold index (per-fold scheme)
/// and the stimuli, never on the representation.
///
/// With a non-empty `cfg.alpha_grid`, each attribute gets its own α, chosen by exact
/// leave-one-out on the training rows as in [`select_alpha`] (reported in
/// [`FoldResult::alpha`]); its permutations are refitted with that α unless
/// `cfg.reselect_alpha_in_permutations` chooses α again for each permuted column. With
/// `cfg.alpha_inner_folds = k > 0` the choice is by inner K-fold cross-validation instead, as in
/// [`select_alpha_kfold`] with the folds [`inner_kfold`]`(train, k, cfg.seed, fold)`.
///
/// Constant features are not an error: with no usable component the probe predicts the
/// training mean, `n_components` is 0 and every p-value is 1. Fewer stimuli than components
/// (`n_train − 1 < cfg.n_components`, or `d < n_train`) is not an error either: P is capped as
/// above. A test fold of one stimulus works; its Pearson r is NaN.
///
/// # Errors
/// A buffer whose length does not match its shape, `j = 0`, an index `≥ n`, a stimulus listed
/// twice, fewer than 2 training stimuli, an empty test fold, a NaN or infinite value in a used
/// row of `x` or `y` (NaN is never imputed or skipped), a negative or non-finite α (fixed or in
/// the grid), or a non-converging eigensolver.
#[allow(clippy::too_many_arguments)] // the public shape agreed with the worker and coordinator
pub fn probe_fold<T: Copy + Into<f64>>(
    x: &[T],
    n: usize,
    d: usize,
    y: &[f64],
    j: usize,
    train: &[usize],
    test: &[usize],
    fold: usize,
    cfg: &ProbeConfig,
) -> Result<Vec<FoldResult>, ProbeError> {
    check_config(cfg)?;
    check_target_shape(y, n, j)?;
    let (xtr, xte) = prepare(x, n, d, train, test, fold, cfg.zscore, true)?;
    check_targets(y, j, train.iter().chain(test))?;
    let p_max = component_cap(cfg.n_components, train.len(), d);
    let decomposition = Decomposition::new(xtr.as_ref(), xte.as_ref(), p_max, fold, cfg.precision)?;
    fit_fold(&decomposition, p_max, y, j, train, test, fold, cfg)
}

/// Probes every attribute of one representation in several folds, as [`probe_fold`] does for
/// each, reading the kernel-form PCA of every fold from one [`StimulusGram`] when that is cheaper
/// ([`shares_gram`]). Results are ordered by split, then attribute.
///
/// # Errors
/// Those of [`probe_fold`] for any split.
pub fn probe_folds<T: Copy + Into<f64>>(
    x: &[T],
    n: usize,
    d: usize,
    y: &[f64],
    j: usize,
    splits: &[FoldSplit],
    cfg: &ProbeConfig,
) -> Result<Vec<FoldResult>, ProbeError> {
    if shares_gram(d, splits, cfg) {
        let mut rows: Vec<usize> =
            splits.iter().flat_map(|s| s.train.iter().chain(&s.test)).copied().collect();
        rows.sort_unstable();
        rows.dedup();
        let gram = StimulusGram::compute(x, n, d, &rows, cfg.precision)?;
        return probe_folds_with_gram(&gram, y, j, splits, cfg);
    }
    let mut out = Vec::new();
    for s in splits {
        out.extend(probe_fold(x, n, d, y, j, &s.train, &s.test, s.fold, cfg)?);
    }
    Ok(out)
}

/// Whether [`probe_folds`] reads these splits from one [`StimulusGram`]: with more than one
/// split, no z-scoring (its statistics change with the fold) and the kernel form
/// (`D > n_train`) in every split.
pub fn shares_gram(d: usize, splits: &[FoldSplit], cfg: &ProbeConfig) -> bool {
    !cfg.zscore && splits.len() > 1 && splits.iter().all(|s| d > s.train.len())
}

/// [`probe_folds`] on a Gram matrix computed beforehand (for example on a GPU): every split's
/// PCA is the kernel form read from `gram`. The results equal [`probe_fold`]'s up to rounding.
///
/// # Errors
/// Those of [`probe_fold`] that concern `y`, the splits and the configuration; a stimulus of a
/// split missing from `gram` ([`ProbeError::NotInGram`]); `cfg.zscore` ([`ProbeError::GramZscore`]).
pub fn probe_folds_with_gram(
    gram: &StimulusGram,
    y: &[f64],
    j: usize,
    splits: &[FoldSplit],
    cfg: &ProbeConfig,
) -> Result<Vec<FoldResult>, ProbeError> {
    check_config(cfg)?;
    if cfg.zscore {
        return Err(ProbeError::GramZscore);
    }
    let (n, d) = (gram.n(), gram.d());
    check_target_shape(y, n, j)?;
    let mut out = Vec::new();
    for s in splits {
        check_split(n, &s.train, &s.test, s.fold, true)?;
        check_targets(y, j, s.train.iter().chain(&s.test))?;
        let (k_train, k_test) = gram.fold_blocks(&s.train, &s.test).ok_or_else(|| {
            let index = s.train.iter().chain(&s.test).copied().find(|&i| !gram.contains(i));
            ProbeError::NotInGram { index: index.unwrap_or(0) }
        })?;
        let p_max = component_cap(cfg.n_components, s.train.len(), d);
        let dim = s.train.len().max(d);
        let decomposition =
            Decomposition::from_kernel(k_train.as_ref(), k_test.as_ref(), p_max, dim, s.fold)?;
        out.extend(fit_fold(&decomposition, p_max, y, j, &s.train, &s.test, s.fold, cfg)?);
    }
    Ok(out)
}

/// Checks the penalties of a configuration.
fn check_config(cfg: &ProbeConfig) -> Result<(), ProbeError> {
    check_alpha(cfg.alpha)?;
    cfg.alpha_grid.iter().try_for_each(|&a| check_alpha(a))
}

/// The fit, the α choice and the permutation test of one fold, from its decomposition.
#[allow(clippy::too_many_arguments)]
fn fit_fold(
    decomposition: &Decomposition,
    p_max: usize,
    y: &[f64],
    j: usize,
    train: &[usize],
    test: &[usize],
    fold: usize,
    cfg: &ProbeConfig,
) -> Result<Vec<FoldResult>, ProbeError> {
    let p_used = decomposition.rank().min(p_max);
    let grid = &cfg.alpha_grid;
    // Inner validation folds as positions in `train` (K-fold α selection), or `None` for LOO.
    let inner = if !grid.is_empty() && cfg.alpha_inner_folds > 0 {
        let positions: Vec<usize> = (0..train.len()).collect();
        Some(folds::inner_kfold(&positions, cfg.alpha_inner_folds, cfg.seed, fold)?)
    } else {
        None
    };
    let selection = AlphaSelection { decomposition, p: p_used, grid, inner: inner.as_deref() };
    let (targets, means) = tuning::centred_targets(y, j, train);
    let alphas =
        if grid.is_empty() { vec![cfg.alpha; j] } else { selection.choose(targets.as_ref()) };
    let observed = decomposition.predict_per_column(p_used, targets.as_ref(), &alphas);

    let design = null::NullDesign {
        y,
        j,
        train,
        test,
        means: &means,
        centred_train: &targets,
        fold_key: match cfg.permute {
            Permute::TrainingPerFold => Some(fold),
            Permute::Pool => None,
        },
        seed: cfg.seed,
        permutations: cfg.n_permutations,
    };
    let nulls = if !grid.is_empty() && cfg.reselect_alpha_in_permutations {
        null::null_rmse::<f64>(&design, |chunk, out| selection.refit(chunk, out, j))
    } else {
        match cfg.precision {
            Precision::F64 => null_through_maps::<f64>(&design, decomposition, p_used, &alphas),
            Precision::F32 => null_through_maps::<f32>(&design, decomposition, p_used, &alphas),
        }
    };

    let b = cfg.n_permutations;
    let mut results = Vec::with_capacity(j);
    for (attribute, null_rmse) in nulls.into_iter().enumerate() {
        let y_test: Vec<f64> = test.iter().map(|&i| y[i * j + attribute]).collect();
        let mean = means[attribute];
        let fitted = observed.col_as_slice(attribute);
        let sse: f64 = fitted.iter().zip(&y_test).map(|(p, t)| (p - (t - mean)).powi(2)).sum();
        let rmse = (sse / test.len() as f64).sqrt();
        let baseline_sse: f64 = y_test.iter().map(|t| (t - mean).powi(2)).sum();
        let hits = null_rmse.iter().filter(|&&r| r <= rmse).count();
        let predictions: Vec<f64> = fitted.iter().map(|p| p + mean).collect();
        results.push(FoldResult {
            attribute,
            fold,
            rmse,
            baseline_rmse: (baseline_sse / test.len() as f64).sqrt(),
            pearson_r: pearson(&predictions, &y_test),
            // Without a component the probe is the mean predictor whatever the targets; in the
            // pool scheme its null RMSEs still vary with the permuted test targets, so the
            // p-value is set to 1 rather than drawn at random.
            p_value: if p_used == 0 { 1.0 } else { (1 + hits) as f64 / (b + 1) as f64 },
            null_rmse,
            test_indices: test.to_vec(),
            predictions,
            n_components: p_used,
            alpha: alphas[attribute],
            effective_df: effective_df(&decomposition.lambda[..p_used], alphas[attribute]),
        });
    }
    Ok(results)
}

/// The null RMSEs with each attribute's permuted columns refitted by its fixed ridge map (one
/// product over every attribute's columns when they share α), products in `T`.
fn null_through_maps<T: null::Element>(
    design: &null::NullDesign<'_>,
    decomposition: &Decomposition,
    p: usize,
    alphas: &[f64],
) -> Vec<Vec<f64>> {
    if design.permutations == 0 {
        return vec![Vec::new(); alphas.len()];
    }
    // One map per distinct α (a grid has few values; J can be in the hundreds).
    let mut distinct: Vec<f64> = alphas.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    let maps: Vec<null::RidgeMap<T>> =
        distinct.iter().map(|&a| decomposition.ridge_map(p, a)).collect();
    let map_of: Vec<usize> = alphas
        .iter()
        .map(|a| distinct.binary_search_by(|d| d.total_cmp(a)).expect("α is in the list"))
        .collect();
    let j = alphas.len();
    null::null_rmse::<T>(design, |chunk, mut out| {
        if maps.len() == 1 {
            maps[0].apply(chunk, out);
            return;
        }
        let c = chunk.ncols() / j;
        for (a, &m) in map_of.iter().enumerate() {
            maps[m].apply(chunk.subcols(a * c, c), out.as_mut().subcols_mut(a * c, c));
        }
    })
}

/// The per-attribute α choice of one fold: exact leave-one-out, or inner K-fold.
struct AlphaSelection<'a> {
    decomposition: &'a Decomposition,
    p: usize,
    grid: &'a [f64],
    inner: Option<&'a [Vec<usize>]>,
}

impl AlphaSelection<'_> {
    /// The chosen α of every centred target column.
    fn choose(&self, targets: MatRef<'_, f64>) -> Vec<f64> {
        let err = match self.inner {
            Some(folds) => self.decomposition.kfold_mse(self.p, targets, self.grid, folds),
            None => self.decomposition.loo_mse(self.p, targets, self.grid),
        };
        (0..targets.ncols()).map(|c| self.grid[tuning::first_min(err.col(c).iter())]).collect()
    }

    /// Refits a chunk of permuted columns (`j` attributes' blocks) with α chosen again for each.
    fn refit(&self, chunk: MatRef<'_, f64>, mut out: MatMut<'_, f64>, j: usize) {
        let c = chunk.ncols() / j;
        for a in 0..j {
            let block = chunk.subcols(a * c, c);
            let chosen = self.choose(block);
            let fitted = self.decomposition.predict_per_column(self.p, block, &chosen);
            out.as_mut().subcols_mut(a * c, c).copy_from(fitted.as_ref());
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_folds;
