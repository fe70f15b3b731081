//! The permutation test on synthetic data with known answers (science.md C): on null data the
//! false-positive rate sits at the nominal level, planted signal is found.
//!
//! Every test is deterministic (fixed seeds) but the tolerances are honest: about three binomial
//! standard deviations around the exact null rate, so a miscalibrated test fails.

use probe::{bh_qvalues, complement, kfold, pooled_p_value, probe_fold, Permute, ProbeConfig};

use crate::data::{normals, rng};

/// Fraction of `p` strictly below `level`.
fn rate_below(p: &[f64], level: f64) -> f64 {
    p.iter().filter(|&&v| v < level).count() as f64 / p.len() as f64
}

/// Fraction of `p` at or below `level`.
fn rate_at_most(p: &[f64], level: f64) -> f64 {
    p.iter().filter(|&&v| v <= level).count() as f64 / p.len() as f64
}

#[test]
fn null_p_values_are_calibrated_in_one_fold() {
    // J independent null attributes on one random representation, one fold each. With B = 199
    // the p-values lie on k/200 and p < 0.05 ⇔ p ≤ 9/200, so the exact null rate is 0.045 (and
    // 0.5 for p ≤ 0.5); binomial sd over 1500 attributes is 0.0054 and 0.013: the bounds below
    // are about 3.5 and 3 sd wide.
    let (n, j) = (100, 1500);
    // d = 50: primal branch (P = 50); d = 200: kernel branch (P = min(120, 79) = 79).
    let schemes = [Permute::TrainingPerFold, Permute::Pool];
    for ((d, seed), permute) in
        [(50, 1u64), (200, 2)].into_iter().flat_map(|c| schemes.map(|s| (c, s)))
    {
        let cfg = ProbeConfig { n_permutations: 199, seed: 11, permute, ..ProbeConfig::default() };
        let mut g = rng(seed);
        let x = normals(&mut g, n * d);
        let y = normals(&mut g, n * j);
        let test: Vec<usize> = (0..n).filter(|i| i % 5 == 2).collect();
        let train = complement(n, &test);
        let res = probe_fold(&x, n, d, &y, j, &train, &test, 0, &cfg).unwrap();
        let p: Vec<f64> = res.iter().map(|r| r.p_value).collect();
        let (r05, r50) = (rate_below(&p, 0.05), rate_at_most(&p, 0.5));
        eprintln!(
            "null, one fold, d={d} {permute:?}: P={} rate(p<0.05)={r05:.4} rate(p≤0.5)={r50:.4}",
            res[0].n_components
        );
        assert!((0.045 - r05).abs() <= 0.02, "d={d} {permute:?}: false-positive rate {r05}");
        assert!((0.5 - r50).abs() <= 0.04, "d={d} {permute:?}: rate(p ≤ 0.5) = {r50}");
        let p_used = if d == 50 { 50 } else { 79 };
        assert!(res.iter().all(|r| r.n_components == p_used));
    }
}

#[test]
fn fold_pooled_p_values_are_calibrated_with_pool_permutations() {
    // 5 folds, 400 null attributes; the pooled statistic of each attribute over folds, with the
    // same permutations of the stimuli in every fold. (With independent per-fold permutations
    // the same check gives about 0.10 below 0.05: see `Permute::TrainingPerFold`.)
    let (n, d, j, k) = (100, 40, 400, 5);
    let mut g = rng(5);
    let x = normals(&mut g, n * d);
    let y = normals(&mut g, n * j);
    let cfg = ProbeConfig {
        n_permutations: 199,
        seed: 3,
        permute: Permute::Pool,
        ..ProbeConfig::default()
    };
    let folds = kfold(n, k, 9).unwrap();
    let per_fold: Vec<_> = folds
        .iter()
        .enumerate()
        .map(|(f, test)| probe_fold(&x, n, d, &y, j, &complement(n, test), test, f, &cfg).unwrap())
        .collect();
    let pooled: Vec<f64> = (0..j)
        .map(|a| {
            let obs: Vec<f64> = per_fold.iter().map(|r| r[a].rmse).collect();
            let nulls: Vec<&[f64]> = per_fold.iter().map(|r| r[a].null_rmse.as_slice()).collect();
            pooled_p_value(&obs, &nulls)
        })
        .collect();
    let every_fold = (0..j).filter(|&a| per_fold.iter().all(|r| r[a].p_value < 0.05)).count();
    let (r05, r50) = (rate_below(&pooled, 0.05), rate_at_most(&pooled, 0.5));
    let q = bh_qvalues(&pooled);
    let discoveries = q.iter().filter(|&&v| v < 0.05).count();
    eprintln!(
        "null, {k} folds: pooled rate(p<0.05)={r05:.4} rate(p≤0.5)={r50:.4}; \
         significant in every fold: {every_fold}/{j}; BH q<0.05: {discoveries}"
    );
    // sd over 400 attributes: 0.011 at 0.05, 0.025 at 0.5.
    assert!((0.05 - r05).abs() <= 0.033, "pooled false-positive rate {r05}");
    assert!((0.5 - r50).abs() <= 0.075, "pooled rate(p ≤ 0.5) = {r50}");
    assert!(every_fold <= 2, "{every_fold} null attributes significant in all folds");
    assert!(discoveries <= 4, "{discoveries} BH discoveries on null data");
}

#[test]
fn planted_signal_is_found_and_noise_is_not() {
    // Attributes 0..5: y = X w + 0.1 ε; attributes 5..25: pure noise. Default P and α.
    let (n, d, j, planted) = (200, 30, 25, 5);
    let mut g = rng(21);
    let x = normals(&mut g, n * d);
    let mut y = normals(&mut g, n * j);
    for a in 0..planted {
        let w = normals(&mut g, d);
        for i in 0..n {
            let signal: f64 = (0..d).map(|c| x[i * d + c] * w[c]).sum();
            y[i * j + a] = signal + 0.1 * y[i * j + a];
        }
    }
    let cfg = ProbeConfig { n_permutations: 199, seed: 4, ..ProbeConfig::default() };
    let folds = kfold(n, 5, 2).unwrap();
    let mut noise_hits = 0;
    for (f, test) in folds.iter().enumerate() {
        let res = probe_fold(&x, n, d, &y, j, &complement(n, test), test, f, &cfg).unwrap();
        for r in &res[..planted] {
            assert_eq!(r.p_value, 1.0 / 200.0, "planted attribute {} fold {f}", r.attribute);
            // α = 150 against eigenvalues ≈ n_train = 160 halves the weights: r stays high
            // but the RMSE only halves.
            assert!(r.rmse < 0.6 * r.baseline_rmse, "rmse {} vs {}", r.rmse, r.baseline_rmse);
            assert!(r.pearson_r > 0.95, "r = {}", r.pearson_r);
        }
        // With a small penalty the planted attributes are recovered almost exactly.
        let light = ProbeConfig { alpha: 1.0, n_permutations: 0, ..cfg.clone() };
        let y_planted: Vec<f64> = (0..n).flat_map(|i| y[i * j..i * j + planted].to_vec()).collect();
        let res = probe_fold(&x, n, d, &y_planted, planted, &complement(n, test), test, f, &light)
            .unwrap();
        for r in &res {
            assert!(
                r.rmse < 0.1 * r.baseline_rmse,
                "α = 1: rmse {} vs {}",
                r.rmse,
                r.baseline_rmse
            );
        }
        for r in &res[planted..] {
            assert!(r.rmse >= 0.9 * r.baseline_rmse, "noise attribute predicted too well");
            noise_hits += usize::from(r.p_value < 0.05);
        }
        let pool = ProbeConfig { permute: Permute::Pool, ..cfg.clone() };
        let res = probe_fold(&x, n, d, &y, j, &complement(n, test), test, f, &pool).unwrap();
        assert!(res[..planted].iter().all(|r| r.p_value == 1.0 / 200.0), "pool scheme, fold {f}");
    }
    // 20 noise attributes × 5 folds at a nominal 4.5 %: about 4.5 expected.
    eprintln!("planted: noise attributes with p < 0.05: {noise_hits}/100");
    assert!(noise_hits <= 12, "{noise_hits}/100 noise (attribute, fold) pairs significant");
}
