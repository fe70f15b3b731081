//! Unit tests of [`crate::probe_fold`]: the eigen form against direct solves in both branches,
//! edge cases (constant features, P = 0) and the typed errors.

use faer::linalg::solvers::Solve;
use faer::Mat;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{complement, kfold, probe_fold, Permute, ProbeConfig, ProbeError};

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller; 1 − u keeps the logarithm finite.
    let u: f64 = rng.random();
    let v: f64 = rng.random();
    (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

pub(crate) fn random(n: usize, cols: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * cols).map(|_| normal(&mut rng)).collect()
}

/// Centred training and test rows as faer matrices, plus the centred training target.
fn centred(
    x: &[f64],
    d: usize,
    y: &[f64],
    train: &[usize],
    test: &[usize],
) -> (Mat<f64>, Mat<f64>, Mat<f64>, f64) {
    let mean: Vec<f64> = (0..d)
        .map(|c| train.iter().map(|&r| x[r * d + c]).sum::<f64>() / train.len() as f64)
        .collect();
    let xtr = Mat::from_fn(train.len(), d, |i, c| x[train[i] * d + c] - mean[c]);
    let xte = Mat::from_fn(test.len(), d, |i, c| x[test[i] * d + c] - mean[c]);
    let ybar = train.iter().map(|&r| y[r]).sum::<f64>() / train.len() as f64;
    let r = Mat::from_fn(train.len(), 1, |i, _| y[train[i]] - ybar);
    (xtr, xte, r, ybar)
}

/// PCA by a thin SVD, then the P × P ridge normal equations solved by LU (no diagonal shortcut).
fn direct_pca_ridge(
    x: &[f64],
    d: usize,
    y: &[f64],
    train: &[usize],
    test: &[usize],
    p: usize,
    alpha: f64,
) -> Vec<f64> {
    let (xtr, xte, r, ybar) = centred(x, d, y, train, test);
    let svd = xtr.thin_svd().unwrap();
    let v = svd.V().subcols(0, p).to_owned();
    let z = &xtr * &v;
    let zt = &xte * &v;
    let mut a = z.transpose() * &z;
    for k in 0..p {
        a[(k, k)] += alpha;
    }
    let mut w = z.transpose() * &r;
    a.partial_piv_lu().solve_in_place(w.as_mut());
    let pred = &zt * &w;
    (0..test.len()).map(|i| ybar + pred[(i, 0)]).collect()
}

/// Plain ridge on all D centred features: (XᵀX + αI) w = Xᵀ r.
fn direct_full_ridge(
    x: &[f64],
    d: usize,
    y: &[f64],
    train: &[usize],
    test: &[usize],
    alpha: f64,
) -> Vec<f64> {
    let (xtr, xte, r, ybar) = centred(x, d, y, train, test);
    let mut a = xtr.transpose() * &xtr;
    for k in 0..d {
        a[(k, k)] += alpha;
    }
    let mut w = xtr.transpose() * &r;
    a.partial_piv_lu().solve_in_place(w.as_mut());
    let pred = &xte * &w;
    (0..test.len()).map(|i| ybar + pred[(i, 0)]).collect()
}

pub(crate) fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(u, v)| (u - v).abs()).fold(0.0, f64::max)
}

fn cfg(p: usize, alpha: f64) -> ProbeConfig {
    ProbeConfig { n_components: p, alpha, n_permutations: 0, ..ProbeConfig::default() }
}

#[test]
fn eigen_form_equals_direct_solve_in_both_branches() {
    // (n, d): primal branch (d ≤ n_train) and kernel branch (d > n_train).
    for (case, &(n, d)) in [(80usize, 12usize), (60, 150), (50, 45), (40, 39)].iter().enumerate() {
        let x = random(n, d, 10 + case as u64);
        let y = random(n, 1, 20 + case as u64);
        let test: Vec<usize> = (0..n).filter(|i| i % 5 == 1).collect();
        let train = complement(n, &test);
        let n_train = train.len();
        let full = d.min(n_train - 1);
        for &alpha in &[0.5, 150.0] {
            for p in [1, full / 2, full] {
                let got = probe_fold(&x, n, d, &y, 1, &train, &test, 0, &cfg(p, alpha)).unwrap();
                assert_eq!(got[0].n_components, p);
                let want = direct_pca_ridge(&x, d, &y, &train, &test, p, alpha);
                let err = max_abs_diff(&got[0].predictions, &want);
                assert!(err < 1e-9, "n={n} d={d} p={p} α={alpha}: max diff {err}");
            }
            // All components = plain ridge on the features (the centred rank is ≤ n_train − 1).
            let got = probe_fold(&x, n, d, &y, 1, &train, &test, 0, &cfg(1000, alpha)).unwrap();
            let want = direct_full_ridge(&x, d, &y, &train, &test, alpha);
            let err = max_abs_diff(&got[0].predictions, &want);
            assert!(err < 1e-9, "full ridge n={n} d={d} α={alpha}: max diff {err}");
        }
    }
}

#[test]
fn f32_and_f64_inputs_agree() {
    let (n, d) = (50, 8);
    let x64: Vec<f64> = random(n, d, 1).iter().map(|&v| v as f32 as f64).collect();
    let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
    let y = random(n, 2, 2);
    let test: Vec<usize> = (0..10).collect();
    let train = complement(n, &test);
    let c = ProbeConfig { n_permutations: 20, ..cfg(5, 3.0) };
    let a = probe_fold(&x64, n, d, &y, 2, &train, &test, 0, &c).unwrap();
    let b = probe_fold(&x32, n, d, &y, 2, &train, &test, 0, &c).unwrap();
    assert_eq!(a, b);
}

#[test]
fn constant_features_predict_the_training_mean() {
    let (n, d) = (30, 4);
    let x = vec![0.1f32; n * d];
    let y = random(n, 2, 3);
    let test = vec![0, 7, 13];
    let train = complement(n, &test);
    let c = ProbeConfig { n_permutations: 49, ..ProbeConfig::default() };
    let per_fold = probe_fold(&x, n, d, &y, 2, &train, &test, 4, &c).unwrap();
    let c = ProbeConfig { permute: Permute::Pool, ..c };
    let pool = probe_fold(&x, n, d, &y, 2, &train, &test, 4, &c).unwrap();
    for r in per_fold.iter().chain(&pool) {
        let mean = train.iter().map(|&i| y[i * 2 + r.attribute]).sum::<f64>() / 27.0;
        assert_eq!(r.n_components, 0);
        assert_eq!(r.effective_df, 0.0);
        assert!(r.predictions.iter().all(|&p| (p - mean).abs() < 1e-15));
        assert_eq!(r.rmse, r.baseline_rmse);
        assert_eq!(r.p_value, 1.0);
        assert!(r.pearson_r.is_nan());
        assert_eq!(r.fold, 4);
        assert_eq!(r.null_rmse.len(), 49);
    }
}

/// Planted data: 10 informative features (the rating is their sum plus noise) and 10 noise
/// features, every column multiplied by `scale`; n = 400, one fold of 80.
fn planted(scale: f64) -> (Vec<f64>, Vec<f64>, usize, usize, Vec<usize>, Vec<usize>) {
    let (n, d) = (400, 20);
    let z = random(n, d, 41);
    let noise = random(n, 1, 42);
    let y: Vec<f64> = (0..n).map(|i| z[i * d..i * d + 10].iter().sum::<f64>() + noise[i]).collect();
    let x: Vec<f64> = z.iter().map(|v| v * scale).collect();
    let test: Vec<usize> = (0..n).filter(|i| i % 5 == 2).collect();
    let train = complement(n, &test);
    (x, y, n, d, train, test)
}

#[test]
fn effective_df_flags_a_fit_shrunk_to_the_mean_not_a_representation_without_the_code() {
    let reduction = |r: &crate::FoldResult| 1.0 - r.rmse / r.baseline_rmse;
    let fit = |scale: f64, zscore: bool| {
        let (x, y, n, d, train, test) = planted(scale);
        let c = ProbeConfig { zscore, ..cfg(120, 150.0) };
        probe_fold(&x, n, d, &y, 1, &train, &test, 0, &c).unwrap().remove(0)
    };
    // Low-variance features (sd 0.01): at α = 150 the fit is shrunk to the mean: flagged, and
    // the reduction is nil although the features hold the whole rating.
    let low = fit(0.01, false);
    assert!(low.effective_df < 1.0, "{}", low.effective_df);
    assert!(reduction(&low).abs() < 0.01, "{}", reduction(&low));
    // The same features z-scored: not flagged, and the code shows.
    let scaled = fit(0.01, true);
    assert!(scaled.effective_df > 1.0, "{}", scaled.effective_df);
    assert!(reduction(&scaled) > 0.5, "{}", reduction(&scaled));
    // High-variance informative features (sd 1) unscaled: not flagged, informative.
    let high = fit(1.0, false);
    assert!(high.effective_df > 1.0 && reduction(&high) > 0.5, "{high:?}");
    // The statistic itself: Σ λ/(λ + α); P at α = 0, 0 without components.
    assert_eq!(crate::effective_df(&[3.0, 1.0], 1.0), 0.75 + 0.5);
    assert_eq!(crate::effective_df(&[3.0, 1.0], 0.0), 2.0);
    assert_eq!(crate::effective_df(&[], 150.0), 0.0);
}

#[test]
fn zscore_zeroes_constant_columns_and_rescales_others() {
    // Column 1 is constant; column 0 scaled by 1000 must give the same fit once z-scored.
    let n = 40;
    let base = random(n, 3, 5);
    let x1: Vec<f64> = (0..n).flat_map(|i| [base[3 * i], 2.5, base[3 * i + 2]]).collect();
    let x2: Vec<f64> = (0..n).flat_map(|i| [1000.0 * base[3 * i], 2.5, base[3 * i + 2]]).collect();
    let y = random(n, 1, 6);
    let test: Vec<usize> = (30..40).collect();
    let train = complement(n, &test);
    let c = ProbeConfig { zscore: true, n_permutations: 10, ..cfg(3, 2.0) };
    let a = probe_fold(&x1, n, 3, &y, 1, &train, &test, 0, &c).unwrap();
    let b = probe_fold(&x2, n, 3, &y, 1, &train, &test, 0, &c).unwrap();
    assert_eq!(a[0].n_components, 2, "the constant column must not count");
    assert!(max_abs_diff(&a[0].predictions, &b[0].predictions) < 1e-10);
}

#[test]
fn results_are_deterministic_and_permutations_follow_the_scheme() {
    let (n, d) = (60, 20);
    let x = random(n, d, 8);
    let y = random(n, 3, 9);
    let folds = kfold(n, 5, 1).unwrap();
    let train = complement(n, &folds[2]);
    let c = ProbeConfig { n_permutations: 30, ..ProbeConfig::default() };
    let a = probe_fold(&x, n, d, &y, 3, &train, &folds[2], 2, &c).unwrap();
    let b = probe_fold(&x, n, d, &y, 3, &train, &folds[2], 2, &c).unwrap();
    assert_eq!(a, b);
    // Per-fold scheme: another fold index (same split) draws other permutations.
    let other = probe_fold(&x, n, d, &y, 3, &train, &folds[2], 3, &c).unwrap();
    assert_eq!(a[0].predictions, other[0].predictions);
    assert_ne!(a[0].null_rmse, other[0].null_rmse);
    // Pool scheme: the fold index only labels the results.
    let pool = ProbeConfig { permute: Permute::Pool, ..c.clone() };
    let a_pool = probe_fold(&x, n, d, &y, 3, &train, &folds[2], 2, &pool).unwrap();
    let other = probe_fold(&x, n, d, &y, 3, &train, &folds[2], 3, &pool).unwrap();
    for (r, o) in a_pool.iter().zip(&other) {
        assert_eq!((r.fold, o.fold), (2, 3));
        assert_eq!(r.null_rmse, o.null_rmse);
        assert_eq!(r.rmse, a[r.attribute].rmse);
    }
    assert_ne!(a_pool[0].null_rmse, a[0].null_rmse);
    // Another seed draws other permutations.
    let reseeded = ProbeConfig { seed: 1, ..c.clone() };
    let other = probe_fold(&x, n, d, &y, 3, &train, &folds[2], 2, &reseeded).unwrap();
    assert_eq!(a[0].predictions, other[0].predictions);
    assert_ne!(a[0].null_rmse, other[0].null_rmse);
    // One permutation reorders every attribute, so probing a column alone tests it against the
    // same permutations (equal up to the blocking of the matrix products).
    for col in 0..3 {
        let yc: Vec<f64> = (0..n).map(|i| y[i * 3 + col]).collect();
        let single = probe_fold(&x, n, d, &yc, 1, &train, &folds[2], 2, &c).unwrap();
        assert!(max_abs_diff(&single[0].null_rmse, &a[col].null_rmse) < 1e-12);
        assert_eq!(single[0].p_value, a[col].p_value);
    }
}

#[test]
fn typed_errors_name_the_problem() {
    let (n, d) = (10, 2);
    let mut x = random(n, d, 1);
    let mut y = random(n, 2, 2);
    let train: Vec<usize> = (0..8).collect();
    let test = vec![8, 9];
    let c = cfg(5, 1.0);
    let run = |x: &[f64], y: &[f64], train: &[usize], test: &[usize], c: &ProbeConfig| {
        probe_fold(x, n, d, y, 2, train, test, 1, c).unwrap_err()
    };
    assert!(matches!(run(&x[1..], &y, &train, &test, &c), ProbeError::Shape { what: "x", .. }));
    assert!(matches!(run(&x, &y[1..], &train, &test, &c), ProbeError::Shape { what: "y", .. }));
    let e = run(&x, &y, &[0], &test, &c);
    assert_eq!(e.to_string(), "fold 1 has 1 training stimulus; need at least 2");
    assert_eq!(run(&x, &y, &train, &[], &c), ProbeError::EmptyTest { fold: 1 });
    assert!(matches!(run(&x, &y, &train, &[8, 10], &c), ProbeError::IndexOutOfRange { .. }));
    assert_eq!(run(&x, &y, &train, &[7, 9], &c), ProbeError::DuplicateIndex { index: 7, fold: 1 });
    let bad = ProbeConfig { alpha: -1.0, ..c.clone() };
    assert!(matches!(run(&x, &y, &train, &test, &bad), ProbeError::InvalidAlpha { .. }));
    y[9 * 2 + 1] = f64::NAN;
    assert_eq!(run(&x, &y, &train, &test, &c).to_string(), "target column 1 has a NaN at row 9");
    y[9 * 2 + 1] = 0.0;
    x[3 * d + 1] = f64::INFINITY;
    assert_eq!(run(&x, &y, &train, &test, &c).to_string(), "x has +inf at row 3, column 1");
    // A NaN in a row that is neither train nor test is not read.
    x[3 * d + 1] = 0.0;
    y[9 * 2] = f64::NAN;
    assert!(probe_fold(&x, n, d, &y, 2, &train, &[8], 1, &c).is_ok());
    assert_eq!(
        probe_fold(&x, n, d, &y, 0, &train, &test, 1, &c).unwrap_err(),
        ProbeError::Shape { what: "y", got: 20, rows: 10, cols: 0 }
    );
    assert_eq!(
        probe_fold(&x, n, d, &[], 0, &train, &test, 1, &c).unwrap_err(),
        ProbeError::NoTargets
    );
}

#[test]
fn kfold_errors() {
    assert_eq!(kfold(5, 1, 0).unwrap_err(), ProbeError::InvalidFolds { k: 1, n: 5 });
    assert_eq!(kfold(5, 6, 0).unwrap_err(), ProbeError::InvalidFolds { k: 6, n: 5 });
    assert_eq!(
        ProbeError::InvalidFolds { k: 6, n: 5 }.to_string(),
        "cannot split 5 stimuli into 6 folds; need 2 ≤ k ≤ 5"
    );
}

#[test]
fn few_stimuli_and_a_single_test_stimulus_are_documented_cases() {
    // N = 6 stimuli, D = 200 features, P requested 120: P is capped at n_train − 1 = 4; a test
    // fold of one stimulus gives a finite RMSE and a NaN Pearson r; a grid works the same.
    let (n, d) = (6, 200);
    let x = random(n, d, 31);
    let y = random(n, 2, 32);
    let train: Vec<usize> = (0..5).collect();
    let c =
        ProbeConfig { n_permutations: 19, alpha_grid: vec![1.0, 150.0], ..ProbeConfig::default() };
    let res = probe_fold(&x, n, d, &y, 2, &train, &[5], 0, &c).unwrap();
    for r in &res {
        assert_eq!(r.n_components, 4);
        assert!(r.rmse.is_finite() && r.pearson_r.is_nan());
        assert_eq!(r.null_rmse.len(), 19);
        assert!(c.alpha_grid.contains(&r.alpha));
    }
}
