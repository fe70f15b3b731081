//! The dense probes (`probe::dense`, science-2.md §D) on known answers: planted linear features
//! are recovered; a target that is a fixed linear map of the features is read perfectly
//! (ρ = 1, Dice = 1) while the same features in transposed token order are not (the likeliest
//! bug: an `h`/`w` mix-up); an independent smooth target gives ρ ≈ 0; and agreement with
//! scikit-learn's `Ridge` / `LogisticRegression` and scipy's full-resolution `spearmanr` /
//! `pearsonr` written by `scripts/ref_dense_probe.py` (`DIFFPROBE_DENSE_REF`; skipped without
//! it unless `DIFFPROBE_REQUIRE_REFS=1`).

use serde_json::Value;

use probe::dense::{
    all_foreground_dice, continuous_metrics, fit_logistic, mask_metrics, predict, summarize,
    BlockStats, LogisticConfig, NormalEquations, TokenGrid,
};

use crate::data::{normals, rng};
use crate::refs::{cases, floats, indices, size};

/// Nearest upsampling of one value per token (`np.repeat` on both axes).
fn upsample(grid: TokenGrid, per_token: &[f64]) -> Vec<f64> {
    let (height, width) = grid.size();
    (0..height * width).map(|p| per_token[grid.token_of(p / width, p % width)]).collect()
}

/// The features with token `(i, j)` moved to `(j, i)`: what a transposed flattening produces.
fn transposed(x: &[f64], side: usize, c: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for i in 0..side {
        for j in 0..side {
            out[(j * side + i) * c..][..c].copy_from_slice(&x[(i * side + j) * c..][..c]);
        }
    }
    out
}

fn ridge_fit(
    x: &[Vec<f64>],
    stats: &[BlockStats],
    train: &[usize],
    c: usize,
    alpha: f64,
) -> Vec<f64> {
    let mut eq = NormalEquations::new(c, 1);
    for &i in train {
        eq.add_image(&x[i], &[&stats[i]]).unwrap();
    }
    eq.solve(alpha).unwrap().weights(0)
}

#[test]
fn planted_linear_features_are_recovered() {
    let (side, f, c, n) = (16, 2, 8, 20);
    let tokens = side * side;
    let mut g = rng(17);
    let truth = normals(&mut g, c);
    let x: Vec<Vec<f64>> = (0..n).map(|_| normals(&mut g, tokens * c)).collect();
    let grid = TokenGrid { h: side, w: side, f };
    let all: Vec<usize> = (0..n).collect();
    for noise in [0.0, 1.0] {
        let stats: Vec<BlockStats> = x
            .iter()
            .map(|xi| {
                let clean = upsample(grid, &predict(xi, &truth).unwrap());
                let y: Vec<f64> = clean.iter().map(|v| v + noise * normals(&mut g, 1)[0]).collect();
                BlockStats::from_map(&y, tokens, side * f, side * f).unwrap()
            })
            .collect();
        let w = ridge_fit(&x, &stats, &all, c, 1e-6);
        let err = w.iter().zip(&truth).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        // Block means carry noise σ/f over 5,120 tokens: a weight's SE is about 0.007.
        let bound = if noise == 0.0 { 1e-9 } else { 0.05 };
        eprintln!("planted ridge, pixel noise {noise}: max |ŵ − w*| = {err:.2e}");
        assert!(err < bound, "noise {noise}: max |ŵ − w*| = {err}");
    }
}

#[test]
fn a_linear_map_of_the_features_is_read_perfectly_and_a_transposed_order_is_not() {
    let (side, f, c, n, n_train) = (8, 4, 16, 12, 8);
    let (tokens, size) = (side * side, side * f);
    let grid = TokenGrid { h: side, w: side, f };
    let mut g = rng(23);
    let truth = normals(&mut g, c);
    let norm2: f64 = truth.iter().map(|v| v * v).sum();
    let x: Vec<Vec<f64>> = (0..n)
        .map(|_| {
            let mut xi = normals(&mut g, tokens * c);
            // A margin of 0.5 around the mask's boundary, so the separable mask generalises:
            // z moves away from 0 by 0.5 (not onto ±0.5, which would tie the map's values).
            for row in xi.chunks_exact_mut(c) {
                let z: f64 = row.iter().zip(&truth).map(|(a, b)| a * b).sum();
                if z.abs() < 0.5 {
                    let shift = 0.5 * z.signum() / norm2;
                    row.iter_mut().zip(&truth).for_each(|(a, b)| *a += shift * b);
                }
            }
            xi
        })
        .collect();
    let maps: Vec<Vec<f64>> =
        x.iter().map(|xi| upsample(grid, &predict(xi, &truth).unwrap())).collect();
    let map_stats: Vec<BlockStats> =
        maps.iter().map(|y| BlockStats::from_map(y, tokens, size, size).unwrap()).collect();
    let mask_stats: Vec<BlockStats> = maps
        .iter()
        .map(|y| {
            let mask: Vec<bool> = y.iter().map(|&v| v > 0.0).collect();
            BlockStats::from_mask(&mask, tokens, size, size).unwrap()
        })
        .collect();
    let train: Vec<usize> = (0..n_train).collect();
    let test: Vec<usize> = (n_train..n).collect();

    let score = |x: &[Vec<f64>]| {
        let w = ridge_fit(x, &map_stats, &train, c, 1e-9);
        let rho: Vec<f64> = test
            .iter()
            .map(|&i| {
                continuous_metrics(&map_stats[i], &predict(&x[i], &w).unwrap()).unwrap().spearman
            })
            .collect();
        let images: Vec<(&[f64], &BlockStats)> =
            train.iter().map(|&i| (x[i].as_slice(), &mask_stats[i])).collect();
        let cfg = LogisticConfig { l2: 1e-3, ..LogisticConfig::default() };
        let fit = fit_logistic(images.as_slice(), c, &cfg).unwrap();
        let dice: Vec<f64> = test
            .iter()
            .map(|&i| {
                let fg: Vec<bool> =
                    predict(&x[i], &fit.weights).unwrap().iter().map(|&z| z > 0.0).collect();
                mask_metrics(&mask_stats[i], &fg).unwrap().dice
            })
            .collect();
        (summarize(&rho), summarize(&dice))
    };
    let (rho, dice) = score(&x);
    eprintln!("linear map, token order as documented: ρ {rho:?}, Dice {dice:?}");
    assert!(rho.mean > 1.0 - 1e-12 && rho.skipped == 0, "{rho:?}");
    assert_eq!(dice.mean, 1.0, "{dice:?}");

    let swapped: Vec<Vec<f64>> = x.iter().map(|xi| transposed(xi, side, c)).collect();
    let (rho, dice) = score(&swapped);
    eprintln!("linear map, transposed token order: ρ {rho:?}, Dice {dice:?}");
    assert!(rho.mean < 0.5, "a transposed order still gives ρ {rho:?}");
    assert!(dice.mean < 0.8, "a transposed order still gives Dice {dice:?}");
}

#[test]
fn an_independent_smooth_target_gives_rho_near_zero() {
    let (side, f, c, n, n_train) = (8, 4, 16, 60, 30);
    let (tokens, size) = (side * side, side * f);
    let mut g = rng(31);
    let x: Vec<Vec<f64>> = (0..n).map(|_| normals(&mut g, tokens * c)).collect();
    let stats: Vec<BlockStats> = (0..n)
        .map(|_| {
            // A sum of three random low-frequency waves: smooth, and unrelated to the features.
            let waves: Vec<f64> = normals(&mut g, 12);
            let y: Vec<f64> = (0..size * size)
                .map(|p| {
                    let (r, col) =
                        ((p / size) as f64 / size as f64, (p % size) as f64 / size as f64);
                    waves
                        .chunks_exact(4)
                        .map(|k| k[0] * (3.0 * (k[1] * r + k[2] * col) + k[3]).cos())
                        .sum()
                })
                .collect();
            BlockStats::from_map(&y, tokens, size, size).unwrap()
        })
        .collect();
    let train: Vec<usize> = (0..n_train).collect();
    let w = ridge_fit(&x, &stats, &train, c, 1.0);
    let rho: Vec<f64> = (n_train..n)
        .map(|i| continuous_metrics(&stats[i], &predict(&x[i], &w).unwrap()).unwrap().spearman)
        .collect();
    let s = summarize(&rho);
    eprintln!("independent smooth target: ρ {:.4} ± {:.4} over {} images", s.mean, s.se, s.n);
    assert!(s.mean.abs() < 4.0 * s.se && s.mean.abs() < 0.15, "{s:?}");
}

#[test]
fn fits_and_metrics_match_scikit_learn_and_scipy() {
    let Some(doc) = crate::refs::reference("DIFFPROBE_DENSE_REF", "scripts/ref_dense_probe.py")
    else {
        return;
    };
    let metric = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let close = |got: f64, want: f64, tol: f64| {
        (got.is_nan() && want.is_nan()) || (got - want).abs() <= tol * want.abs().max(1.0)
    };
    for case in cases(&doc, "ridge_cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let (h, w, f, c) = (size(case, "h"), size(case, "w"), size(case, "f"), size(case, "c"));
        let x: Vec<Vec<f64>> = case["features"].as_array().unwrap().iter().map(floats).collect();
        let stats: Vec<BlockStats> = case["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| BlockStats::from_map(&floats(t), h * w, h * f, w * f).unwrap())
            .collect();
        let (train, test) = (indices(&case["train"]), indices(&case["test"]));
        let got = ridge_fit(&x, &stats, &train, c, case["alpha"].as_f64().unwrap());
        let want = floats(&case["weights"]);
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        eprintln!("ridge {name}: max |w − sklearn| = {diff:.2e}");
        assert!(got.iter().zip(&want).all(|(a, b)| close(*a, *b, 1e-8)), "{name}: {diff:e}");
        for ((&i, pred), m) in test
            .iter()
            .zip(case["predictions"].as_array().unwrap())
            .zip(case["metrics"].as_array().unwrap())
        {
            let ours = continuous_metrics(&stats[i], &floats(pred)).unwrap();
            for (what, a, b) in [
                ("spearman", ours.spearman, metric(&m["spearman"])),
                ("pearson", ours.pearson, metric(&m["pearson"])),
                ("rmse", ours.rmse, metric(&m["rmse"])),
            ] {
                assert!(close(a, b, 1e-12), "{name} image {i}: {what} {a} vs scipy {b}");
            }
        }
    }
    for case in cases(&doc, "logistic_cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let (h, w, f, c) = (size(case, "h"), size(case, "w"), size(case, "f"), size(case, "c"));
        let x: Vec<Vec<f64>> = case["features"].as_array().unwrap().iter().map(floats).collect();
        let stats: Vec<BlockStats> = case["masks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let mask: Vec<bool> = floats(m).iter().map(|&v| v > 0.5).collect();
                BlockStats::from_mask(&mask, h * w, h * f, w * f).unwrap()
            })
            .collect();
        let (train, test) = (indices(&case["train"]), indices(&case["test"]));
        let images: Vec<(&[f64], &BlockStats)> =
            train.iter().map(|&i| (x[i].as_slice(), &stats[i])).collect();
        let cfg = LogisticConfig { l2: case["l2"].as_f64().unwrap(), ..LogisticConfig::default() };
        let fit = fit_logistic(images.as_slice(), c, &cfg).unwrap();
        let want = floats(&case["weights"]);
        let diff = fit.weights.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        eprintln!("logistic {name}: {} iterations, max |w − sklearn| = {diff:.2e}", fit.iterations);
        assert!(
            fit.weights.iter().zip(&want).all(|(a, b)| close(*a, *b, 1e-5)),
            "{name}: {diff:e}"
        );
        for ((&i, logits), m) in test
            .iter()
            .zip(case["logits"].as_array().unwrap())
            .zip(case["metrics"].as_array().unwrap())
        {
            let fg: Vec<bool> = floats(logits).iter().map(|&z| z > 0.0).collect();
            let ours = mask_metrics(&stats[i], &fg).unwrap();
            let all = all_foreground_dice(&stats[i]).unwrap();
            for (what, a, b) in [
                ("dice", ours.dice, metric(&m["dice"])),
                ("dice_background", ours.dice_background, metric(&m["dice_background"])),
                ("all_foreground", all, metric(&m["all_foreground"])),
            ] {
                assert!(close(a, b, 1e-12), "{name} image {i}: {what} {a} vs numpy {b}");
            }
        }
    }
}

/// A timing printout at one SD tap's mid size (1,024 tokens × 640 channels, 512² targets; no
/// assertion on time): per image, the block statistics of a map and a mask, the normal
/// equations, the metrics, and a logistic fit over a few images.
#[test]
fn time_dense_probe_at_mid_size() {
    use std::time::Instant;
    let (side, c, f, n) = (32, 640, 16, 4);
    let (tokens, size) = (side * side, side * f);
    let mut g = rng(41);
    let x: Vec<Vec<f32>> = (0..n)
        .map(|_| normals(&mut g, tokens * c).into_iter().map(|v| v as f32).collect())
        .collect();
    let maps: Vec<Vec<f64>> = (0..n).map(|_| normals(&mut g, size * size)).collect();
    let start = Instant::now();
    let stats: Vec<BlockStats> =
        maps.iter().map(|y| BlockStats::from_map(y, tokens, size, size).unwrap()).collect();
    let masks: Vec<BlockStats> = maps
        .iter()
        .map(|y| {
            let m: Vec<bool> = y.iter().map(|&v| v > 0.3).collect();
            BlockStats::from_mask(&m, tokens, size, size).unwrap()
        })
        .collect();
    let t_stats = start.elapsed() / n as u32;
    let start = Instant::now();
    let mut eq = NormalEquations::new(c, 1);
    for (xi, s) in x.iter().zip(&stats) {
        eq.add_image(xi, &[s]).unwrap();
    }
    let t_gram = start.elapsed() / n as u32;
    let start = Instant::now();
    let w = eq.solve(1.0).unwrap().weights(0);
    let t_solve = start.elapsed();
    let start = Instant::now();
    for (xi, s) in x.iter().zip(&stats) {
        continuous_metrics(s, &predict(xi, &w).unwrap()).unwrap();
    }
    let t_metrics = start.elapsed() / n as u32;
    let images: Vec<(&[f32], &BlockStats)> =
        x.iter().map(Vec::as_slice).zip(masks.iter()).collect();
    let start = Instant::now();
    let fit = fit_logistic(images.as_slice(), c, &LogisticConfig::default()).unwrap();
    let t_logistic = start.elapsed();
    eprintln!(
        "dense probe, {tokens} tokens × {c} channels, {size}² targets, per image: block statistics \
         (map + mask) {t_stats:.2?}, XᵀX {t_gram:.2?}, metrics {t_metrics:.2?}; solve {t_solve:.2?}; \
         logistic on {n} images {t_logistic:.2?} ({} iterations)",
        fit.iterations
    );
}
