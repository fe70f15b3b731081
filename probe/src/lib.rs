//! Attribute probes (science.md B1): per fold, PCA + ridge from a representation to human
//! ratings, with a permutation test per attribute, plus the statistics the report pools them
//! with (Pearson r, Benjamini–Hochberg q-values, a fold-pooled p-value, representation spread);
//! the per-attribute α by exact leave-one-out or inner K-fold cross-validation and the P × α
//! grid report (module `tuning`); and
//! the two entanglement measures (module `entangle`).
//!
//! **Invariants:** results are a pure function of the inputs and [`ProbeConfig`]: every linear
//! algebra call is sequential (`faer::Par::Seq`), so they are bit-identical whatever the thread
//! count; the permutations of attribute `j` depend only on the seed, `j`, the stimuli and (in
//! the default per-fold scheme) the fold index, so every representation is tested against the
//! same permutations and grouping folds into work units changes nothing. Computation is in `f64`
//! throughout: `f32` input is accepted and widened, and there is no `f32` compute mode (the
//! eigen form is cheap enough in `f64`, and the 1e-6 agreement with scikit-learn needs it).
//!
//! **Input policy:** NaN or infinite values in a used row of `x` or `y` are an error, never
//! imputed or skipped; constant features are centred away (and zeroed when z-scoring); P is
//! capped at `n_train − 1`, `d` and the numerical rank, so `N < P` is not an error; a test fold
//! of a single stimulus is allowed (its Pearson r is NaN).
#![deny(missing_docs)]

mod entangle;
mod error;
mod folds;
mod ridge;
mod rng;
mod stats;
mod tuning;

use faer::Mat;

pub use crate::entangle::{correlation_structure, identification_accuracy, CorrStructure};
pub use crate::error::ProbeError;
pub use crate::folds::{complement, inner_kfold, kfold};
pub use crate::rng::shuffle;
pub use crate::stats::{bh_qvalues, feature_spread, pearson, pooled_p_value};
pub use crate::tuning::{hyper_grid, select_alpha, select_alpha_kfold, AlphaChoice, GridCell};

use crate::ridge::Decomposition;

/// Settings of one probe analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    /// Upper bound on the number of PCA components P (paper: 120). The number used is
    /// `min(n_components, n_train − 1, D, numerical rank)`.
    pub n_components: usize,
    /// Ridge penalty α on the PCA weights (paper: 150); the intercept is not penalised.
    pub alpha: f64,
    /// Number of permutations B per (attribute, fold); 0 skips the test (p = 1).
    pub n_permutations: usize,
    /// Seed of the permutation streams.
    pub seed: u64,
    /// What the permutation test permutes (see [`Permute`]).
    pub permute: Permute,
    /// Divide each feature by its training standard deviation (population, ddof 0) after
    /// centring; features constant on the training rows are set to 0.
    pub zscore: bool,
    /// Candidate penalties for a per-attribute α chosen by exact leave-one-out on the training
    /// rows ([`select_alpha`]); empty (the default) uses the fixed [`alpha`](Self::alpha).
    /// Each value must be finite and non-negative.
    pub alpha_grid: Vec<f64>,
    /// With a non-empty [`alpha_grid`](Self::alpha_grid), choose α again by leave-one-out for
    /// every permuted training column, so the null distribution includes the selection (the
    /// fully honest null; it costs one `n_train × P × (B + 1)` product per grid value and
    /// attribute). Off by default: each permutation is then refitted with the α chosen for the
    /// observed targets, which makes the test slightly anti-conservative because the selection
    /// has seen the observed training targets.
    pub reselect_alpha_in_permutations: bool,
    /// How α is chosen from a non-empty [`alpha_grid`](Self::alpha_grid): 0 (the default) by
    /// exact leave-one-out ([`select_alpha`]); `k ≥ 2` by inner K-fold cross-validation on the
    /// training rows ([`select_alpha_kfold`]) over the seeded split
    /// [`inner_kfold`]`(train, k, seed, fold)`, the choice minimising the mean over the `k`
    /// inner folds of the held-out MSE (himalaya's `KernelRidgeCV(cv=k)` rule). 1 or more than
    /// `n_train` is an error ([`ProbeError::InvalidFolds`]).
    pub alpha_inner_folds: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            n_components: 120,
            alpha: 150.0,
            n_permutations: 1000,
            seed: 0,
            permute: Permute::TrainingPerFold,
            zscore: false,
            alpha_grid: Vec::new(),
            reselect_alpha_in_permutations: false,
            alpha_inner_folds: 0,
        }
    }
}

/// The permutation scheme of the significance test. Both give an exact per-fold p-value under
/// the null (targets exchangeable and independent of the representation); they differ in what
/// can be pooled over folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Permute {
    /// Permute the training targets only, test targets fixed, with a stream seeded by
    /// `(seed, fold, attribute)` (science.md B1). The most powerful per-fold test, but the folds'
    /// permutations are independent, so [`pooled_p_value`] over them is anti-conservative: about
    /// 10 % false positives at a nominal 5 % (and 3.5 % at 1 %) in our simulations.
    #[default]
    TrainingPerFold,
    /// Permute the targets of the whole pool `train ∪ test` (train and test targets move
    /// together) with a stream seeded by `(seed, attribute)`, the same in every fold of a
    /// K-fold split: [`pooled_p_value`] is then an exact test, at some cost in per-fold power
    /// because the null also varies the test targets.
    Pool,
}

/// The outcome of probing one attribute in one fold.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldResult {
    /// Attribute (target column) index.
    pub attribute: usize,
    /// Fold index, as passed to [`probe_fold`].
    pub fold: usize,
    /// Held-out RMSE of the probe.
    pub rmse: f64,
    /// Held-out RMSE of predicting the training mean (the effect-size baseline).
    pub baseline_rmse: f64,
    /// Pearson r between predictions and targets within the test fold; NaN if undefined
    /// (for example when the probe predicts a constant).
    pub pearson_r: f64,
    /// Permutation p-value `(1 + #{null_rmse ≤ rmse}) / (B + 1)`.
    pub p_value: f64,
    /// The B held-out RMSEs under permuted targets, in permutation order (see [`probe_fold`]).
    pub null_rmse: Vec<f64>,
    /// The test stimuli, in the order given to [`probe_fold`].
    pub test_indices: Vec<usize>,
    /// Predictions for `test_indices`, in the same order.
    pub predictions: Vec<f64>,
    /// Number of PCA components actually used (0 when the features are constant on the
    /// training rows; the probe then predicts the training mean and p = 1).
    pub n_components: usize,
    /// The ridge penalty used for the observed targets: `cfg.alpha`, or the leave-one-out
    /// choice from `cfg.alpha_grid`.
    pub alpha: f64,
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
    check_alpha(cfg.alpha)?;
    cfg.alpha_grid.iter().try_for_each(|&a| check_alpha(a))?;
    check_target_shape(y, n, j)?;
    let (xtr, xte) = prepare(x, n, d, train, test, fold, cfg.zscore, true)?;
    check_targets(y, j, train.iter().chain(test))?;

    let p_max = cfg.n_components.min(train.len() - 1).min(d);
    let decomposition = Decomposition::new(xtr.as_ref(), xte.as_ref(), p_max, fold)?;
    let p_used = decomposition.rank().min(p_max);
    let grid = &cfg.alpha_grid;
    // Inner validation folds as positions in `train` (K-fold α selection), or `None` for LOO.
    let inner = if !grid.is_empty() && cfg.alpha_inner_folds > 0 {
        let positions: Vec<usize> = (0..train.len()).collect();
        Some(folds::inner_kfold(&positions, cfg.alpha_inner_folds, cfg.seed, fold)?)
    } else {
        None
    };
    let projection =
        if grid.is_empty() { Some(decomposition.projection(p_used, cfg.alpha)) } else { None };

    // `pool` is what a permutation reorders and `slot_*` are the positions of the train / test
    // stimuli in it; test targets are permuted only in the pool scheme.
    let (pool, slot_train, slot_test, fold_key) = match cfg.permute {
        Permute::TrainingPerFold => {
            (train.to_vec(), (0..train.len()).collect(), Vec::new(), Some(fold))
        }
        Permute::Pool => {
            let mut pool: Vec<usize> = train.iter().chain(test).copied().collect();
            pool.sort_unstable();
            let slot_of = |i: &usize| pool.binary_search(i).expect("stimulus is in the pool");
            let slot_train: Vec<usize> = train.iter().map(slot_of).collect();
            let slot_test: Vec<usize> = test.iter().map(slot_of).collect();
            (pool, slot_train, slot_test, None)
        }
    };

    // The α of the observed targets, chosen for all attributes at once (one pass over the
    // decomposition serves every column); with reselection it is chosen per attribute below.
    let observed_alphas: Option<Vec<f64>> =
        if !grid.is_empty() && !cfg.reselect_alpha_in_permutations {
            let targets = tuning::centred_targets(y, j, train);
            let err = match &inner {
                Some(folds) => decomposition.kfold_mse(p_used, targets.as_ref(), grid, folds),
                None => decomposition.loo_mse(p_used, targets.as_ref(), grid),
            };
            Some((0..j).map(|c| grid[tuning::first_min(err.col(c).iter())]).collect())
        } else {
            None
        };

    let b = cfg.n_permutations;
    let mut results = Vec::with_capacity(j);
    let mut train_targets = Mat::<f64>::zeros(train.len(), b + 1);
    let mut test_targets = Mat::<f64>::zeros(test.len(), b + 1);
    for attribute in 0..j {
        // Column 0 holds the observed targets, column k ≥ 1 the targets after the k-th
        // permutation, each column centred on its own training mean.
        let mut order = pool.clone();
        let mut stream = rng::permutation_rng(cfg.seed, fold_key, attribute);
        let mut observed_mean = 0.0;
        for k in 0..=b {
            if k > 0 {
                // Reshuffling the previous order again gives a uniform, independent permutation.
                rng::shuffle(&mut order, &mut stream);
            }
            let value = |slot: usize| y[order[slot] * j + attribute];
            let col = train_targets.col_as_slice_mut(k);
            for (c, &s) in col.iter_mut().zip(&slot_train) {
                *c = value(s);
            }
            let mean = col.iter().sum::<f64>() / col.len() as f64;
            col.iter_mut().for_each(|c| *c -= mean);
            if k == 0 {
                observed_mean = mean;
            }
            let col = test_targets.col_as_slice_mut(k);
            if slot_test.is_empty() {
                for (c, &i) in col.iter_mut().zip(test) {
                    *c = y[i * j + attribute] - mean;
                }
            } else {
                for (c, &s) in col.iter_mut().zip(&slot_test) {
                    *c = value(s) - mean;
                }
            }
        }
        let (alpha, fitted) = match &projection {
            Some(projection) => (cfg.alpha, projection.apply(train_targets.as_ref())),
            None if observed_alphas.is_some() => {
                let alpha = observed_alphas.as_ref().map_or(cfg.alpha, |a| a[attribute]);
                (alpha, decomposition.projection(p_used, alpha).apply(train_targets.as_ref()))
            }
            None => {
                let columns = if cfg.reselect_alpha_in_permutations { b + 1 } else { 1 };
                let targets = train_targets.subcols(0, columns);
                let loo = match &inner {
                    Some(folds) => decomposition.kfold_mse(p_used, targets, grid, folds),
                    None => decomposition.loo_mse(p_used, targets, grid),
                };
                let chosen: Vec<f64> =
                    (0..columns).map(|c| grid[tuning::first_min(loo.col(c).iter())]).collect();
                let fitted = if cfg.reselect_alpha_in_permutations {
                    decomposition.predict_per_column(p_used, train_targets.as_ref(), &chosen)
                } else {
                    decomposition.projection(p_used, chosen[0]).apply(train_targets.as_ref())
                };
                (chosen[0], fitted)
            }
        };

        let rmse_of = |k: usize| {
            let pairs = fitted.col_as_slice(k).iter().zip(test_targets.col_as_slice(k));
            let sse: f64 = pairs.map(|(p, t)| (p - t) * (p - t)).sum();
            (sse / test.len() as f64).sqrt()
        };
        let rmse = rmse_of(0);
        let null_rmse: Vec<f64> = (1..=b).map(rmse_of).collect();
        let hits = null_rmse.iter().filter(|&&r| r <= rmse).count();
        let observed = test_targets.col_as_slice(0);
        let baseline_rmse =
            (observed.iter().map(|t| t * t).sum::<f64>() / test.len() as f64).sqrt();
        let y_test: Vec<f64> = test.iter().map(|&i| y[i * j + attribute]).collect();
        let predictions: Vec<f64> =
            fitted.col_as_slice(0).iter().map(|p| p + observed_mean).collect();
        results.push(FoldResult {
            attribute,
            fold,
            rmse,
            baseline_rmse,
            pearson_r: pearson(&predictions, &y_test),
            // Without a component the probe is the mean predictor whatever the targets; in the
            // pool scheme its null RMSEs still vary with the permuted test targets, so the
            // p-value is set to 1 rather than drawn at random.
            p_value: if p_used == 0 { 1.0 } else { (1 + hits) as f64 / (b + 1) as f64 },
            null_rmse,
            test_indices: test.to_vec(),
            predictions,
            n_components: p_used,
            alpha,
        });
    }
    Ok(results)
}

/// Checks that a ridge penalty is finite and non-negative.
pub(crate) fn check_alpha(alpha: f64) -> Result<(), ProbeError> {
    if alpha.is_finite() && alpha >= 0.0 {
        Ok(())
    } else {
        Err(ProbeError::InvalidAlpha { alpha })
    }
}

/// Checks the shape of `y` and that it has columns.
pub(crate) fn check_target_shape(y: &[f64], n: usize, j: usize) -> Result<(), ProbeError> {
    check_len("y", y.len(), n, j)?;
    if j == 0 {
        return Err(ProbeError::NoTargets);
    }
    Ok(())
}

/// Checks that the listed rows (in range: call after [`prepare`]) hold finite targets.
pub(crate) fn check_targets<'a>(
    y: &[f64],
    j: usize,
    rows: impl Iterator<Item = &'a usize>,
) -> Result<(), ProbeError> {
    for &row in rows {
        for (column, &value) in y[row * j..(row + 1) * j].iter().enumerate() {
            if !value.is_finite() {
                return Err(ProbeError::NonFiniteTarget { column, row, value });
            }
        }
    }
    Ok(())
}

fn check_len(what: &'static str, got: usize, rows: usize, cols: usize) -> Result<(), ProbeError> {
    if rows.checked_mul(cols) == Some(got) {
        Ok(())
    } else {
        Err(ProbeError::Shape { what, got, rows, cols })
    }
}

/// Validates the split and the used rows of `x`, and returns the training and test rows
/// centred (and optionally z-scored) with training statistics. An empty `test` is an error
/// only when `need_test`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare<T: Copy + Into<f64>>(
    x: &[T],
    n: usize,
    d: usize,
    train: &[usize],
    test: &[usize],
    fold: usize,
    zscore: bool,
    need_test: bool,
) -> Result<(Mat<f64>, Mat<f64>), ProbeError> {
    check_len("x", x.len(), n, d)?;
    let mut used = vec![false; n];
    for (which, list) in [("train", train), ("test", test)] {
        for &index in list {
            if index >= n {
                return Err(ProbeError::IndexOutOfRange { which, index, n });
            }
            if std::mem::replace(&mut used[index], true) {
                return Err(ProbeError::DuplicateIndex { index, fold });
            }
        }
    }
    if train.len() < 2 {
        return Err(ProbeError::TooFewTraining { fold, n_train: train.len() });
    }
    if need_test && test.is_empty() {
        return Err(ProbeError::EmptyTest { fold });
    }
    for &row in train.iter().chain(test) {
        for (column, &v) in x[row * d..(row + 1) * d].iter().enumerate() {
            let value: f64 = v.into();
            if !value.is_finite() {
                return Err(ProbeError::NonFiniteFeature { row, column, value });
            }
        }
    }

    // Row-wise passes (cache-friendly for row-major `x`); each column's sums add the training
    // rows in the order given, as a per-column sum would.
    let row = |r: usize| &x[r * d..(r + 1) * d];
    let first: Vec<f64> = row(train[0]).iter().map(|&v| v.into()).collect();
    let mut constant = vec![true; d];
    let mut sum = vec![-0.0_f64; d];
    for &r in train {
        for (c, &v) in row(r).iter().enumerate() {
            let v: f64 = v.into();
            constant[c] &= v == first[c];
            sum[c] += v;
        }
    }
    let mut shift: Vec<f64> = sum.iter().map(|s| s / train.len() as f64).collect();
    let mut scale = vec![1.0; d];
    if zscore {
        let mut ss = vec![-0.0_f64; d];
        for &r in train {
            for (c, &v) in row(r).iter().enumerate() {
                let v: f64 = v.into();
                ss[c] += (v - shift[c]).powi(2);
            }
        }
        for c in 0..d {
            scale[c] = 1.0 / (ss[c] / train.len() as f64).sqrt();
        }
    }
    for c in 0..d {
        if constant[c] {
            // Exactly constant on the training rows: centre exactly (the mean of equal values
            // can be off by an ulp) and, when z-scoring, zero the column out.
            shift[c] = first[c];
            if zscore {
                scale[c] = 0.0;
            }
        }
    }
    let build = |rows: &[usize]| {
        // Column blocks: contiguous reads of `x`, sequential writes down each column.
        const BLOCK: usize = 64;
        let mut out = Mat::<f64>::zeros(rows.len(), d);
        for c0 in (0..d).step_by(BLOCK) {
            let c1 = (c0 + BLOCK).min(d);
            for (i, &r) in rows.iter().enumerate() {
                for (c, &v) in row(r)[c0..c1].iter().enumerate() {
                    let c = c0 + c;
                    let v: f64 = v.into();
                    out[(i, c)] = (v - shift[c]) * scale[c];
                }
            }
        }
        out
    };
    Ok((build(train), build(test)))
}

#[cfg(test)]
mod tests;
