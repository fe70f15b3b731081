//! Unit tests of the multi-fold entry points: the shared [`crate::StimulusGram`] against the
//! per-fold kernel form, a Gram matrix handed over from elsewhere, and the `f32` products.

use crate::tests::{max_abs_diff, random};
use crate::{
    complement, kfold, probe_fold, probe_folds, probe_folds_with_gram, shares_gram, FoldSplit,
    Precision, ProbeConfig, ProbeError, StimulusGram,
};

fn splits(n: usize, k: usize) -> Vec<FoldSplit> {
    kfold(n, k, 3)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(fold, test)| FoldSplit { fold, train: complement(n, &test), test })
        .collect()
}

/// Features with a large common offset, so that centring on the wrong mean would show.
fn offset_features(n: usize, d: usize, seed: u64) -> Vec<f64> {
    random(n, d, seed).into_iter().enumerate().map(|(i, v)| v + 50.0 + (i % d) as f64).collect()
}

#[test]
fn shared_gram_equals_the_per_fold_kernel_form() {
    let (n, d, j) = (40, 90, 3);
    let x = offset_features(n, d, 1);
    let y = random(n, j, 2);
    let cfg = ProbeConfig { n_components: 20, n_permutations: 50, ..ProbeConfig::default() };
    let s = splits(n, 5);
    assert!(shares_gram(d, &s, &cfg));
    let shared = probe_folds(&x, n, d, &y, j, &s, &cfg).unwrap();
    let mut per_fold = Vec::new();
    for f in &s {
        per_fold.extend(probe_fold(&x, n, d, &y, j, &f.train, &f.test, f.fold, &cfg).unwrap());
    }
    assert_eq!(shared.len(), per_fold.len());
    for (a, b) in shared.iter().zip(&per_fold) {
        assert_eq!((a.fold, a.attribute, a.n_components), (b.fold, b.attribute, b.n_components));
        assert!(max_abs_diff(&a.predictions, &b.predictions) < 1e-9, "fold {}", a.fold);
        assert!(max_abs_diff(&a.null_rmse, &b.null_rmse) < 1e-9);
        assert_eq!(a.p_value, b.p_value);
    }
    // z-scoring changes the features per fold: no sharing, and a handed-over Gram refuses it.
    let z = ProbeConfig { zscore: true, ..cfg.clone() };
    assert!(!shares_gram(d, &s, &z));
    let rows: Vec<usize> = (0..n).collect();
    let gram = StimulusGram::compute(&x, n, d, &rows, Precision::F64).unwrap();
    assert_eq!(probe_folds_with_gram(&gram, &y, j, &s, &z).unwrap_err(), ProbeError::GramZscore);
}

#[test]
fn a_gram_from_elsewhere_gives_the_same_probe() {
    // The worker's GPU path hands over a Gram matrix centred on the mean of its rows; here it is
    // computed by a plain triple loop over rows centred on a different vector (any common
    // centre is exact).
    let (n, d, j) = (30, 50, 2);
    let x = offset_features(n, d, 5);
    let y = random(n, j, 6);
    let cfg = ProbeConfig { n_components: 10, n_permutations: 30, ..ProbeConfig::default() };
    let s = splits(n, 3);
    let rows: Vec<usize> = (0..n).rev().collect();
    let centre: Vec<f64> = (0..d).map(|c| x[c]).collect();
    let mut k = vec![0.0; n * n];
    for (p, &r) in rows.iter().enumerate() {
        for (q, &l) in rows.iter().enumerate() {
            k[p * n + q] =
                (0..d).map(|c| (x[r * d + c] - centre[c]) * (x[l * d + c] - centre[c])).sum();
        }
    }
    let gram = StimulusGram::from_parts(n, d, &rows, &k).unwrap();
    let handed = probe_folds_with_gram(&gram, &y, j, &s, &cfg).unwrap();
    let computed = probe_folds(&x, n, d, &y, j, &s, &cfg).unwrap();
    for (a, b) in handed.iter().zip(&computed) {
        assert!(max_abs_diff(&a.predictions, &b.predictions) < 1e-8);
        assert_eq!(a.p_value, b.p_value);
    }
    // A stimulus missing from the matrix, and bad matrices, are typed errors.
    let partial = StimulusGram::compute(&x, n, d, &[0, 1, 2, 3], Precision::F64).unwrap();
    assert_eq!(
        probe_folds_with_gram(&partial, &y, j, &s, &cfg).unwrap_err(),
        ProbeError::NotInGram {
            index: s[0].train.iter().chain(&s[0].test).copied().find(|&i| i > 3).unwrap()
        }
    );
    assert!(matches!(
        StimulusGram::from_parts(n, d, &rows, &k[1..]).unwrap_err(),
        ProbeError::Shape { what: "gram", .. }
    ));
    let mut nan = k.clone();
    nan[n + 2] = f64::NAN;
    assert!(matches!(
        StimulusGram::from_parts(n, d, &rows, &nan).unwrap_err(),
        ProbeError::NonFiniteFeature { .. }
    ));
    let mut bad = x.clone();
    bad[7 * d + 3] = f64::INFINITY;
    assert_eq!(
        StimulusGram::compute(&bad, n, d, &rows, Precision::F64).unwrap_err(),
        ProbeError::NonFiniteFeature { row: 7, column: 3, value: f64::INFINITY }
    );
}

#[test]
fn f32_products_agree_with_f64() {
    // Both forms (primal D ≤ n, kernel D > n, shared Gram) and both permutation schemes.
    let (n, j, b) = (60, 3, 200);
    let y = random(n, j, 9);
    for d in [20, 150] {
        let x = random(n, d, 10 + d as u64);
        let base = ProbeConfig { n_components: 15, n_permutations: b, ..ProbeConfig::default() };
        for permute in [crate::Permute::TrainingPerFold, crate::Permute::Pool] {
            let f64_cfg = ProbeConfig { permute, ..base.clone() };
            let f32_cfg = ProbeConfig { precision: Precision::F32, ..f64_cfg.clone() };
            let s = splits(n, 4);
            let a = probe_folds(&x, n, d, &y, j, &s, &f64_cfg).unwrap();
            let c = probe_folds(&x, n, d, &y, j, &s, &f32_cfg).unwrap();
            for (a, c) in a.iter().zip(&c) {
                assert!(max_abs_diff(&a.predictions, &c.predictions) < 1e-4, "d = {d}");
                assert!((a.rmse - c.rmse).abs() < 1e-4 * a.rmse);
                let rel = a.null_rmse.iter().zip(&c.null_rmse).map(|(u, v)| (u - v).abs() / u);
                assert!(rel.fold(0.0, f64::max) < 1e-4, "d = {d}");
                assert!((a.p_value - c.p_value).abs() <= 2.0 / (b + 1) as f64);
            }
        }
    }
}
