//! Hyper-parameters of the attribute probe (science.md B1): a per-attribute α chosen by exact
//! leave-one-out on the training rows, and the P × α grid report of the paper's Fig. 5. Both
//! reuse one eigendecomposition of the fold's training features for every α, P and attribute.
//!
//! **Leave-one-out scope:** the LOO is over the ridge *given the training PCA basis* (the
//! standard "efficient LOO" of scikit-learn's `RidgeCV(cv=None)` and himalaya's kernel ridge):
//! row `i` is left out of the ridge fit but not out of the centring, z-scoring and PCA, which
//! stay those of all training rows. The intercept is refitted exactly without row `i`.

use faer::Mat;

use crate::ridge::Decomposition;
use crate::{
    check_alpha, check_target_shape, check_targets, component_cap, prepare, Precision, ProbeConfig,
    ProbeError,
};

/// The per-attribute α chosen by [`select_alpha`].
#[derive(Debug, Clone, PartialEq)]
pub struct AlphaChoice {
    /// The chosen α of each attribute (index = target column).
    pub alphas: Vec<f64>,
    /// `loo_mse[attribute][g]`: mean squared leave-one-out error over the training rows with
    /// the `g`-th candidate α; `+∞` where it is not finite (α = 0 with an interpolating fit).
    pub loo_mse: Vec<Vec<f64>>,
    /// Number of PCA components used, as in [`crate::FoldResult::n_components`].
    pub n_components: usize,
}

/// One cell of the hyper-parameter grid of [`hyper_grid`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridCell {
    /// The requested number of components P.
    pub components: usize,
    /// The number actually used: `min(components, n_train − 1, d, numerical rank)`.
    pub n_components: usize,
    /// The ridge penalty α.
    pub alpha: f64,
    /// Held-out RMSE averaged over the attributes.
    pub mean_rmse: f64,
}

/// Chooses α per attribute by exact efficient leave-one-out on the training rows.
///
/// The fit is that of [`crate::probe_fold`] (centring, optional `cfg.zscore`, PCA with
/// `min(cfg.n_components, n_train − 1, d, rank)` components, ridge with unpenalised intercept),
/// on the rows `train` only; for each candidate in `alphas` the mean squared leave-one-out error
/// is `mean_i (r_i / (1 − h_ii))²` with `h_ii = 1/n + Σ_p z_ip² / (λ_p + α)` (module docs: the
/// PCA basis is not refitted). The chosen α is the first candidate, in the order given, with the
/// smallest error (scikit-learn's `RidgeCV(alpha_per_target=True)` rule). `cfg.alpha`,
/// `cfg.alpha_grid` and the permutation settings are ignored.
///
/// # Errors
/// An empty `alphas` ([`ProbeError::EmptyGrid`]), a negative or non-finite candidate, and the
/// errors of [`crate::probe_fold`] that concern `x`, `y` and `train`.
#[allow(clippy::too_many_arguments)] // the shape of `probe_fold`
pub fn select_alpha<T: Copy + Into<f64>>(
    x: &[T],
    n: usize,
    d: usize,
    y: &[f64],
    j: usize,
    train: &[usize],
    alphas: &[f64],
    cfg: &ProbeConfig,
) -> Result<AlphaChoice, ProbeError> {
    if alphas.is_empty() {
        return Err(ProbeError::EmptyGrid { what: "alpha" });
    }
    alphas.iter().try_for_each(|&a| check_alpha(a))?;
    check_target_shape(y, n, j)?;
    let (xtr, xte) = prepare(x, n, d, train, &[], 0, cfg.zscore, false)?;
    check_targets(y, j, train.iter())?;
    let p_max = component_cap(cfg.n_components, train.len(), d);
    let decomposition = Decomposition::new(xtr.as_ref(), xte.as_ref(), p_max, 0, cfg.precision)?;
    let p = decomposition.rank().min(p_max);
    let (targets, _) = centred_targets(y, j, train);
    let loo = decomposition.loo_mse(p, targets.as_ref(), alphas);
    Ok(AlphaChoice {
        alphas: (0..j).map(|c| alphas[first_min(loo.col(c).iter())]).collect(),
        loo_mse: (0..j).map(|c| loo.col(c).iter().copied().collect()).collect(),
        n_components: p,
    })
}

/// Chooses α per attribute by inner K-fold cross-validation on the training rows.
///
/// The fit is that of [`crate::probe_fold`] (centring, optional `cfg.zscore`, PCA with
/// `min(cfg.n_components, n_train − 1, d, rank)` components, ridge with unpenalised intercept)
/// on the rows `train`. `inner_folds` are the validation sets, as **stimulus indices** (like
/// `train`, into `0..n`): each non-empty, a subset of `train`, disjoint from the others, and
/// leaving at least one training row; they need not cover `train` ([`crate::inner_kfold`] gives
/// the seeded partition `probe_fold` uses). For each candidate α and inner fold, the ridge and
/// its intercept are refitted on the training rows outside the fold and scored by the mean
/// squared error on the fold; [`AlphaChoice::loo_mse`] then holds, per attribute and
/// candidate, the **mean over inner folds of the per-fold MSE** (not the MSE pooled over rows:
/// with unequal fold sizes they differ), and the chosen α is the first candidate, in the order
/// given, with the smallest such error.
///
/// This is himalaya's `KernelRidgeCV(alphas, cv=inner_folds, fit_intercept=True)` rule
/// (`l2_neg_loss` averaged over splits, per target), except for ties: himalaya adds
/// `1e-10 · ln α` to the mean score, so it prefers the larger α among near-equal scores.
/// scikit-learn's `RidgeCV` offers no per-target α with `cv ≠ None`.
///
/// **Scope (as for [`select_alpha`]):** the centring, z-scoring and PCA basis are those of all
/// training rows and are not refitted per inner fold; with full-rank P (`cfg.n_components ≥
/// n_train − 1`, without z-scoring) the PCA is an exact rotation and the result equals kernel
/// ridge with a linear kernel refitted per inner fold, that is himalaya's `KernelRidgeCV` on the
/// raw features. The errors are computed exactly from one decomposition per call by the group
/// deletion identity (module `ridge`); an α for which a fold's refit is not positive definite
/// (α = 0 interpolating) scores `+∞`.
///
/// # Errors
/// Those of [`select_alpha`], and [`ProbeError::InvalidInnerFold`] for an empty inner fold, a
/// stimulus not in `train` or in two inner folds, or no inner folds / a fold leaving no
/// training row.
#[allow(clippy::too_many_arguments)] // the shape of `probe_fold`
pub fn select_alpha_kfold<T: Copy + Into<f64>>(
    x: &[T],
    n: usize,
    d: usize,
    y: &[f64],
    j: usize,
    train: &[usize],
    alphas: &[f64],
    inner_folds: &[Vec<usize>],
    cfg: &ProbeConfig,
) -> Result<AlphaChoice, ProbeError> {
    if alphas.is_empty() {
        return Err(ProbeError::EmptyGrid { what: "alpha" });
    }
    alphas.iter().try_for_each(|&a| check_alpha(a))?;
    check_target_shape(y, n, j)?;
    let (xtr, xte) = prepare(x, n, d, train, &[], 0, cfg.zscore, false)?;
    check_targets(y, j, train.iter())?;
    let positions = inner_positions(n, train, inner_folds)?;
    let p_max = component_cap(cfg.n_components, train.len(), d);
    let decomposition = Decomposition::new(xtr.as_ref(), xte.as_ref(), p_max, 0, cfg.precision)?;
    let p = decomposition.rank().min(p_max);
    let (targets, _) = centred_targets(y, j, train);
    let mse = decomposition.kfold_mse(p, targets.as_ref(), alphas, &positions);
    Ok(AlphaChoice {
        alphas: (0..j).map(|c| alphas[first_min(mse.col(c).iter())]).collect(),
        loo_mse: (0..j).map(|c| mse.col(c).iter().copied().collect()).collect(),
        n_components: p,
    })
}

/// Validates inner folds given as stimulus indices and returns them as sorted positions in
/// `train`.
fn inner_positions(
    n: usize,
    train: &[usize],
    inner_folds: &[Vec<usize>],
) -> Result<Vec<Vec<usize>>, ProbeError> {
    let bad = |fold: usize, problem: &'static str| ProbeError::InvalidInnerFold { fold, problem };
    if inner_folds.is_empty() {
        return Err(bad(0, "list is empty: give at least one inner fold"));
    }
    let mut position = vec![usize::MAX; n];
    for (q, &i) in train.iter().enumerate() {
        position[i] = q;
    }
    let mut seen = vec![false; train.len()];
    let mut out = Vec::with_capacity(inner_folds.len());
    for (f, fold) in inner_folds.iter().enumerate() {
        if fold.is_empty() {
            return Err(bad(f, "is empty"));
        }
        if fold.len() >= train.len() {
            return Err(bad(f, "leaves no training stimulus"));
        }
        let mut pos = Vec::with_capacity(fold.len());
        for &i in fold {
            let q = *position.get(i).ok_or(bad(f, "has a stimulus that is not in train"))?;
            if q == usize::MAX {
                return Err(bad(f, "has a stimulus that is not in train"));
            }
            if std::mem::replace(&mut seen[q], true) {
                return Err(bad(f, "repeats a stimulus of an earlier inner fold or of itself"));
            }
            pos.push(q);
        }
        pos.sort_unstable();
        out.push(pos);
    }
    Ok(out)
}

/// Mean held-out RMSE over attributes for every (P, α) of a grid, from one eigendecomposition
/// (science.md B1, the paper's Fig. 5).
///
/// The fit is that of [`crate::probe_fold`] with `zscore`, no permutations. Cells come in the
/// order `components` × `alphas` (components outer). P is capped per cell as in
/// [`GridCell::n_components`], so several requested P can give the same cell values.
///
/// # Errors
/// An empty grid ([`ProbeError::EmptyGrid`]), a negative or non-finite α, and the errors of
/// [`crate::probe_fold`] that concern `x`, `y`, `train` and `test`.
#[allow(clippy::too_many_arguments)] // the shape of `probe_fold`
pub fn hyper_grid<T: Copy + Into<f64>>(
    x: &[T],
    n: usize,
    d: usize,
    y: &[f64],
    j: usize,
    train: &[usize],
    test: &[usize],
    components: &[usize],
    alphas: &[f64],
    zscore: bool,
) -> Result<Vec<GridCell>, ProbeError> {
    if alphas.is_empty() {
        return Err(ProbeError::EmptyGrid { what: "alpha" });
    }
    if components.is_empty() {
        return Err(ProbeError::EmptyGrid { what: "components" });
    }
    alphas.iter().try_for_each(|&a| check_alpha(a))?;
    check_target_shape(y, n, j)?;
    let (xtr, xte) = prepare(x, n, d, train, test, 0, zscore, true)?;
    check_targets(y, j, train.iter().chain(test))?;
    let cap = |requested: usize| component_cap(requested, train.len(), d);
    let p_max = cap(components.iter().copied().max().unwrap_or(0));
    let decomposition = Decomposition::new(xtr.as_ref(), xte.as_ref(), p_max, 0, Precision::F64)?;
    let (targets, means) = centred_targets(y, j, train);
    let mut cells = Vec::with_capacity(components.len() * alphas.len());
    for &requested in components {
        let p = cap(requested).min(decomposition.rank());
        for &alpha in alphas {
            let pred = decomposition.predict_per_column(p, targets.as_ref(), &vec![alpha; j]);
            let total: f64 = (0..j)
                .map(|c| {
                    let sse: f64 = test
                        .iter()
                        .zip(pred.col_as_slice(c))
                        .map(|(&i, p)| (p + means[c] - y[i * j + c]).powi(2))
                        .sum();
                    (sse / test.len() as f64).sqrt()
                })
                .sum();
            cells.push(GridCell {
                components: requested,
                n_components: p,
                alpha,
                mean_rmse: total / j as f64,
            });
        }
    }
    Ok(cells)
}

/// The training targets, `n_train × j`, each column centred on its training mean, and the `j`
/// means.
pub(crate) fn centred_targets(y: &[f64], j: usize, train: &[usize]) -> (Mat<f64>, Vec<f64>) {
    let mut out = Mat::<f64>::from_fn(train.len(), j, |i, c| y[train[i] * j + c]);
    let mut means = Vec::with_capacity(j);
    for c in 0..j {
        let col = out.col_as_slice_mut(c);
        let mean = col.iter().sum::<f64>() / col.len() as f64;
        col.iter_mut().for_each(|v| *v -= mean);
        means.push(mean);
    }
    (out, means)
}

/// Index of the first smallest value (strictly smaller values replace it; NaN never wins).
pub(crate) fn first_min<'a>(values: impl Iterator<Item = &'a f64>) -> usize {
    let mut best = (0, f64::INFINITY);
    for (k, &v) in values.enumerate() {
        if v < best.1 {
            best = (k, v);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use faer::linalg::solvers::Solve;
    use faer::Mat;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::{complement, probe_fold};

    fn random(len: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..len)
            .map(|_| {
                let (u, v): (f64, f64) = (rng.random(), rng.random());
                (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect()
    }

    /// Leave-one-out by brute force: for each row, refit intercept + ridge on the other rows of
    /// the fixed scores `z` and predict the row.
    fn brute_loo_mse(z: &Mat<f64>, y: &[f64], alpha: f64) -> f64 {
        let (n, p) = (z.nrows(), z.ncols());
        let mut sse = 0.0;
        for out in 0..n {
            let rows: Vec<usize> = (0..n).filter(|&i| i != out).collect();
            let m = rows.len() as f64;
            let zbar: Vec<f64> =
                (0..p).map(|k| rows.iter().map(|&i| z[(i, k)]).sum::<f64>() / m).collect();
            let ybar = rows.iter().map(|&i| y[i]).sum::<f64>() / m;
            let zc = Mat::<f64>::from_fn(rows.len(), p, |r, k| z[(rows[r], k)] - zbar[k]);
            let yc = Mat::<f64>::from_fn(rows.len(), 1, |r, _| y[rows[r]] - ybar);
            let mut a = zc.transpose() * &zc;
            for k in 0..p {
                a[(k, k)] += alpha;
            }
            let mut w = zc.transpose() * &yc;
            a.partial_piv_lu().solve_in_place(w.as_mut());
            let pred = ybar + (0..p).map(|k| (z[(out, k)] - zbar[k]) * w[(k, 0)]).sum::<f64>();
            sse += (y[out] - pred).powi(2);
        }
        sse / n as f64
    }

    /// Three attributes over the sum of the first 3 features: strong signal (small α wins),
    /// weak signal, and pure noise (large α wins).
    fn planted(x: &[f64], n: usize, d: usize, j: usize, noise: &[f64]) -> Vec<f64> {
        (0..n * j)
            .map(|k| {
                let (i, c) = (k / j, k % j);
                let s: f64 = x[i * d..i * d + 3].iter().sum();
                [5.0 * s + 0.1 * noise[k], 0.3 * s + noise[k], noise[k]][c]
            })
            .collect()
    }

    #[test]
    fn efficient_loo_equals_brute_force_in_both_branches() {
        let alphas = [0.5, 5.0, 150.0];
        // d = 6 < n_train: primal; d = 60 > n_train: kernel. P = 4 (truncated) and P = n − 1.
        for (d, p_req) in [(6, 4), (60, 4), (60, 100)] {
            let n = 30;
            let x = random(n * d, d as u64);
            let y: Vec<f64> = random(n, 7).iter().map(|v| v + 3.0).collect();
            let train: Vec<usize> = (0..n).collect();
            let (xtr, xte) = prepare(&x, n, d, &train, &[], 0, false, false).unwrap();
            let p_max = component_cap(p_req, n, d);
            let dec =
                Decomposition::new(xtr.as_ref(), xte.as_ref(), p_max, 0, Precision::F64).unwrap();
            let p = dec.rank().min(p_max);
            let (targets, _) = centred_targets(&y, 1, &train);
            let loo = dec.loo_mse(p, targets.as_ref(), &alphas);
            let z = dec.z_train.subcols(0, p).to_owned();
            for (a, &alpha) in alphas.iter().enumerate() {
                let want = brute_loo_mse(&z, &y, alpha);
                let got = loo[(a, 0)];
                assert!((got - want).abs() < 1e-9 * want, "d={d} P={p} α={alpha}: {got} vs {want}");
            }
        }
    }

    /// Inner K-fold by brute force on the fixed scores `z`: per fold, refit intercept + ridge
    /// on the other rows and average the per-fold held-out MSE over folds.
    fn brute_kfold_mse(z: &Mat<f64>, y: &[f64], alpha: f64, folds: &[Vec<usize>]) -> f64 {
        let (n, p) = (z.nrows(), z.ncols());
        let mut total = 0.0;
        for fold in folds {
            let rows: Vec<usize> = (0..n).filter(|i| !fold.contains(i)).collect();
            let m = rows.len() as f64;
            let zbar: Vec<f64> =
                (0..p).map(|k| rows.iter().map(|&i| z[(i, k)]).sum::<f64>() / m).collect();
            let ybar = rows.iter().map(|&i| y[i]).sum::<f64>() / m;
            let zc = Mat::<f64>::from_fn(rows.len(), p, |r, k| z[(rows[r], k)] - zbar[k]);
            let yc = Mat::<f64>::from_fn(rows.len(), 1, |r, _| y[rows[r]] - ybar);
            let mut a = zc.transpose() * &zc;
            for k in 0..p {
                a[(k, k)] += alpha;
            }
            let mut w = zc.transpose() * &yc;
            a.partial_piv_lu().solve_in_place(w.as_mut());
            let sse: f64 = fold
                .iter()
                .map(|&i| {
                    let pred =
                        ybar + (0..p).map(|k| (z[(i, k)] - zbar[k]) * w[(k, 0)]).sum::<f64>();
                    (y[i] - pred).powi(2)
                })
                .sum();
            total += sse / fold.len() as f64;
        }
        total / folds.len() as f64
    }

    #[test]
    fn kfold_mse_equals_brute_force_in_both_branches() {
        let alphas = [1e-3, 0.5, 5.0, 150.0, 1e5];
        // Uneven folds that do not cover every row; one fold of a single row.
        let folds: Vec<Vec<usize>> = vec![
            vec![0, 3, 4, 9, 17, 22],
            vec![1, 2, 5, 11, 12, 13, 14, 28],
            vec![7],
            vec![6, 8, 10, 15, 16, 18, 19, 20, 21],
        ];
        for (d, p_req) in [(6, 4), (60, 4), (60, 100), (6, 100)] {
            let n = 30;
            let x = random(n * d, d as u64 + 100);
            let y: Vec<f64> = random(n, 9).iter().map(|v| v - 2.0).collect();
            let train: Vec<usize> = (0..n).collect();
            let (xtr, xte) = prepare(&x, n, d, &train, &[], 0, false, false).unwrap();
            let p_max = component_cap(p_req, n, d);
            let dec =
                Decomposition::new(xtr.as_ref(), xte.as_ref(), p_max, 0, Precision::F64).unwrap();
            let p = dec.rank().min(p_max);
            let (targets, _) = centred_targets(&y, 1, &train);
            let got = dec.kfold_mse(p, targets.as_ref(), &alphas, &folds);
            let z = dec.z_train.subcols(0, p).to_owned();
            for (a, &alpha) in alphas.iter().enumerate() {
                let want = brute_kfold_mse(&z, &y, alpha, &folds);
                let g = got[(a, 0)];
                assert!((g - want).abs() < 1e-8 * want, "d={d} P={p} α={alpha}: {g} vs {want}");
            }
        }
    }

    #[test]
    fn select_alpha_kfold_feeds_probe_fold_and_checks_folds() {
        let (n, d, j) = (90, 12, 3);
        let x = random(n * d, 11);
        let noise = random(n * j, 12);
        let y = planted(&x, n, d, j, &noise);
        let test: Vec<usize> = (0..n).filter(|i| i % 6 == 0).collect();
        let train = complement(n, &test);
        let grid = [1e-2, 1.0, 1e2, 1e4, 1e6];
        let base = ProbeConfig { n_permutations: 30, seed: 5, ..ProbeConfig::default() };
        let inner = crate::inner_kfold(&train, 5, base.seed, 3).unwrap();
        assert_eq!(inner.len(), 5);
        let mut all: Vec<usize> = inner.concat();
        all.sort_unstable();
        assert_eq!(all, train, "the inner folds partition train");
        let choice = select_alpha_kfold(&x, n, d, &y, j, &train, &grid, &inner, &base).unwrap();
        assert!(choice.alphas[0] <= 1.0, "{:?}", choice.alphas);
        assert!(choice.alphas[2] >= 1e2, "{:?}", choice.alphas);
        let cfg = ProbeConfig { alpha_grid: grid.to_vec(), alpha_inner_folds: 5, ..base.clone() };
        let res = probe_fold(&x, n, d, &y, j, &train, &test, 3, &cfg).unwrap();
        for r in &res {
            assert_eq!(r.alpha, choice.alphas[r.attribute]);
            let fixed = ProbeConfig { alpha: r.alpha, alpha_grid: Vec::new(), ..cfg.clone() };
            let want = &probe_fold(&x, n, d, &y, j, &train, &test, 3, &fixed).unwrap()[r.attribute];
            assert_eq!(r, want, "attribute {}: K-fold choice = fixed α run", r.attribute);
        }
        // Honest nulls with K-fold reselection run and keep the observed fit.
        let honest = ProbeConfig { reselect_alpha_in_permutations: true, ..cfg.clone() };
        let res2 = probe_fold(&x, n, d, &y, j, &train, &test, 3, &honest).unwrap();
        for (a, b) in res.iter().zip(&res2) {
            assert_eq!(a.alpha, b.alpha);
        }
        // Inner-fold errors.
        let e = |folds: Vec<Vec<usize>>| {
            select_alpha_kfold(&x, n, d, &y, j, &train, &grid, &folds, &base).unwrap_err()
        };
        assert!(matches!(e(vec![]), ProbeError::InvalidInnerFold { fold: 0, .. }));
        assert!(matches!(e(vec![vec![1], vec![]]), ProbeError::InvalidInnerFold { fold: 1, .. }));
        assert!(matches!(e(vec![vec![0]]), ProbeError::InvalidInnerFold { fold: 0, .. }), "test");
        assert!(matches!(
            e(vec![vec![1], vec![2, 1]]),
            ProbeError::InvalidInnerFold { fold: 1, .. }
        ));
        assert!(matches!(e(vec![vec![1, 1000]]), ProbeError::InvalidInnerFold { fold: 0, .. }));
        assert!(matches!(e(vec![train.clone()]), ProbeError::InvalidInnerFold { fold: 0, .. }));
        let bad = ProbeConfig { alpha_inner_folds: 1, ..cfg.clone() };
        let err = probe_fold(&x, n, d, &y, j, &train, &test, 3, &bad).unwrap_err();
        assert!(matches!(err, ProbeError::InvalidFolds { k: 1, .. }));
        // Inner folds are ignored without a grid.
        let fixed = ProbeConfig { alpha_grid: Vec::new(), ..bad };
        assert!(probe_fold(&x, n, d, &y, j, &train, &test, 3, &fixed).is_ok());
    }

    #[test]
    fn select_alpha_picks_the_smallest_loo_error_and_feeds_probe_fold() {
        let (n, d, j) = (80, 10, 3);
        let x = random(n * d, 1);
        let noise = random(n * j, 2);
        // Attribute 0: strong signal (small α wins); 1: weak; 2: pure noise (large α wins).
        let y = planted(&x, n, d, j, &noise);
        let test: Vec<usize> = (0..n).filter(|i| i % 4 == 0).collect();
        let train = complement(n, &test);
        let grid = [1e-2, 1.0, 1e2, 1e4, 1e6];
        let cfg = ProbeConfig::default();
        let choice = select_alpha(&x, n, d, &y, j, &train, &grid, &cfg).unwrap();
        assert_eq!(choice.n_components, d);
        for (c, row) in choice.loo_mse.iter().enumerate() {
            let best = row.iter().copied().fold(f64::INFINITY, f64::min);
            assert_eq!(choice.alphas[c], grid[row.iter().position(|&v| v == best).unwrap()]);
        }
        assert!(choice.alphas[0] <= 1.0, "{:?}", choice.alphas);
        assert!(choice.alphas[2] >= 1e2, "{:?}", choice.alphas);

        let with_grid =
            ProbeConfig { alpha_grid: grid.to_vec(), n_permutations: 20, ..cfg.clone() };
        let res = probe_fold(&x, n, d, &y, j, &train, &test, 0, &with_grid).unwrap();
        for r in &res {
            assert_eq!(r.alpha, choice.alphas[r.attribute]);
            let fixed = ProbeConfig { alpha: r.alpha, ..with_grid.clone() };
            let want = &probe_fold(&x, n, d, &y, j, &train, &test, 0, &fixed).unwrap()[r.attribute];
            assert_eq!(r, want, "attribute {}: grid choice = fixed α run", r.attribute);
        }
        // Re-selecting α in the permutations keeps the observed fit and changes the nulls.
        let honest = ProbeConfig { reselect_alpha_in_permutations: true, ..with_grid.clone() };
        let res2 = probe_fold(&x, n, d, &y, j, &train, &test, 0, &honest).unwrap();
        for (a, b) in res.iter().zip(&res2) {
            assert_eq!(a.alpha, b.alpha);
            for (p, q) in a.predictions.iter().zip(&b.predictions) {
                assert!((p - q).abs() < 1e-12);
            }
            assert_eq!(a.null_rmse.len(), b.null_rmse.len());
        }
        assert_ne!(res[2].null_rmse, res2[2].null_rmse);
        // The default keeps today's fixed α.
        let plain = probe_fold(&x, n, d, &y, j, &train, &test, 0, &cfg).unwrap();
        assert!(plain.iter().all(|r| r.alpha == 150.0));
    }

    #[test]
    fn hyper_grid_cells_equal_fixed_probe_runs() {
        let (n, d, j) = (50, 80, 2);
        let x = random(n * d, 3);
        let y = random(n * j, 4);
        let test: Vec<usize> = (0..n).filter(|i| i % 5 == 1).collect();
        let train = complement(n, &test);
        let cells = hyper_grid(&x, n, d, &y, j, &train, &test, &[3, 20, 500], &[1.0, 150.0], false)
            .unwrap();
        assert_eq!(cells.len(), 6);
        assert_eq!(cells[4].n_components, train.len() - 1, "P capped at n_train − 1");
        for cell in &cells {
            let cfg = ProbeConfig {
                n_components: cell.components,
                alpha: cell.alpha,
                n_permutations: 0,
                ..ProbeConfig::default()
            };
            let res = probe_fold(&x, n, d, &y, j, &train, &test, 0, &cfg).unwrap();
            let mean = res.iter().map(|r| r.rmse).sum::<f64>() / j as f64;
            assert_eq!(res[0].n_components, cell.n_components);
            assert!((mean - cell.mean_rmse).abs() < 1e-12, "{cell:?} vs {mean}");
        }
    }

    #[test]
    fn grid_errors() {
        let (n, d) = (10, 3);
        let x = random(n * d, 1);
        let y = random(n, 2);
        let train: Vec<usize> = (0..8).collect();
        let cfg = ProbeConfig::default();
        let e = select_alpha(&x, n, d, &y, 1, &train, &[], &cfg).unwrap_err();
        assert_eq!(e.to_string(), "the alpha grid is empty");
        let e = select_alpha(&x, n, d, &y, 1, &train, &[1.0, f64::NAN], &cfg).unwrap_err();
        assert!(matches!(e, ProbeError::InvalidAlpha { .. }));
        let e = hyper_grid(&x, n, d, &y, 1, &train, &[8], &[], &[1.0], false).unwrap_err();
        assert_eq!(e, ProbeError::EmptyGrid { what: "components" });
        let e = hyper_grid(&x, n, d, &y, 1, &train, &[], &[2], &[1.0], false).unwrap_err();
        assert_eq!(e, ProbeError::EmptyTest { fold: 0 });
        let bad = ProbeConfig { alpha_grid: vec![1.0, -2.0], ..cfg };
        let e = probe_fold(&x, n, d, &y, 1, &train, &[8], 0, &bad).unwrap_err();
        assert_eq!(e, ProbeError::InvalidAlpha { alpha: -2.0 });
    }
}
