//! The probe's settings ([`ProbeConfig`], one per analysis), a fold's train/test split and what
//! one fold returns.

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
    /// Arithmetic of the large products: the Gram matrix and the permutation refits (see
    /// [`Precision`]).
    pub precision: Precision,
}

/// The arithmetic of the two large products of a probe: the Gram matrix of the features and the
/// refits of the permuted targets. The eigendecomposition, the observed fit, the α choice and
/// every statistic are `f64` in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// `f64` throughout (the default; agrees with scikit-learn to 1e-6).
    #[default]
    F64,
    /// `f32` products (accumulated in `f32` by the matrix kernels, summed in `f64` between
    /// blocks): about twice the throughput. Observed predictions move by the relative error
    /// of an `f32` Gram matrix (about 1e-5 of the largest eigenvalue's share), null RMSEs by
    /// about 1e-6 relative, so a p-value changes only when a permuted RMSE is that close to the
    /// observed one.
    F32,
}

/// One fold of a K-fold split: its index and its training and test stimuli.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldSplit {
    /// Fold index (keys the per-fold permutations and labels the results).
    pub fold: usize,
    /// Training stimuli.
    pub train: Vec<usize>,
    /// Test stimuli.
    pub test: Vec<usize>,
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
            precision: Precision::F64,
        }
    }
}

/// The permutation scheme of the significance test. Both give an exact per-fold p-value under
/// the null (targets exchangeable and independent of the representation); they differ in what
/// can be pooled over folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Permute {
    /// Permute the training targets only, test targets fixed, with a stream seeded by
    /// `(seed, fold)` (science.md B1). The most powerful per-fold test, but the folds'
    /// permutations are independent, so [`pooled_p_value`] over them is anti-conservative: about
    /// 10 % false positives at a nominal 5 % (and 3.5 % at 1 %) in our simulations.
    #[default]
    TrainingPerFold,
    /// Permute the targets of the whole pool `train ∪ test` (train and test targets move
    /// together) with a stream seeded by `seed` alone, the same in every fold of a
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
    /// Effective degrees of freedom of the fit, [`effective_df`] of the retained components'
    /// eigenvalues at [`alpha`](Self::alpha): below about 1 the penalty has shrunk the fit to
    /// the training mean, whatever the features hold.
    pub effective_df: f64,
}
