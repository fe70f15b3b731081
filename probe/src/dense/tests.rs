//! Unit tests of the dense probes: the closed forms against brute force at full resolution
//! (every pixel upsampled, ranks by counting, the per-pixel objectives), the token grid, and the
//! input checks.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::blocks::{average_ranks, binary_ranks};
use super::*;
use crate::tests::random;

/// Nearest upsampling of one value per token to the full-resolution grid (`np.repeat` on both
/// axes).
fn upsample(grid: TokenGrid, per_token: &[f64]) -> Vec<f64> {
    let (height, width) = grid.size();
    (0..height * width).map(|p| per_token[grid.token_of(p / width, p % width)]).collect()
}

/// Average ranks by counting, independent of the sort in the crate: 1 + #smaller +
/// (#equal − 1)/2.
fn brute_ranks(v: &[f64]) -> Vec<f64> {
    v.iter()
        .map(|&x| {
            let less = v.iter().filter(|&&y| y < x).count() as f64;
            let equal = v.iter().filter(|&&y| y == x).count() as f64;
            1.0 + less + (equal - 1.0) / 2.0
        })
        .collect()
}

fn brute_pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

fn brute_dice(pred: &[bool], truth: &[bool]) -> f64 {
    let inter = pred.iter().zip(truth).filter(|(p, t)| **p && **t).count() as f64;
    let (sp, st) = (pred.iter().filter(|p| **p).count(), truth.iter().filter(|t| **t).count());
    (2.0 * inter + DICE_EPS) / (sp as f64 + st as f64 + DICE_EPS)
}

/// Values rounded to a few levels, so both sides have many ties.
fn quantised(v: &[f64], levels: f64) -> Vec<f64> {
    v.iter().map(|x| (x * levels).round() / levels).collect()
}

#[test]
fn grid_is_inferred_from_tokens_and_target_size() {
    assert_eq!(TokenGrid::infer(4096, 512, 512).unwrap(), TokenGrid { h: 64, w: 64, f: 8 });
    assert_eq!(TokenGrid::infer(64, 512, 512).unwrap(), TokenGrid { h: 8, w: 8, f: 64 });
    assert_eq!(TokenGrid::infer(24, 12, 18).unwrap(), TokenGrid { h: 4, w: 6, f: 3 });
    for (tokens, h, w) in [(100, 512, 512), (3, 4, 4), (0, 4, 4), (16, 4, 6), (8, 4, 4)] {
        assert!(
            matches!(TokenGrid::infer(tokens, h, w), Err(DenseError::Grid { .. })),
            "{tokens} tokens on {h} × {w}"
        );
    }
    // Row-major (h, w) token order: token t is block row t / w, column t % w.
    let g = TokenGrid { h: 4, w: 6, f: 3 };
    assert_eq!(g.token_of(0, 0), 0);
    assert_eq!(g.token_of(0, 3), 1);
    assert_eq!(g.token_of(3, 0), 6);
    assert_eq!(g.token_of(11, 17), 23);
}

#[test]
fn average_ranks_share_ties_like_scipy() {
    assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    assert_eq!(average_ranks(&[0.0, -0.0, 5.0]), vec![1.5, 1.5, 3.0]);
    let v = quantised(&random(300, 1, 7), 2.0);
    assert_eq!(average_ranks(&v), brute_ranks(&v));
    let mask: Vec<f64> = random(50, 1, 8).iter().map(|&v| f64::from(u8::from(v > 0.4))).collect();
    assert_eq!(binary_ranks(&mask), brute_ranks(&mask));
    assert_eq!(binary_ranks(&[1.0; 4]), brute_ranks(&[1.0; 4]));
}

#[test]
fn block_metrics_equal_brute_force_at_full_resolution() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (case, (tokens, height, width)) in
        [(64, 32, 32), (24, 12, 18), (16, 64, 64), (36, 6, 6)].into_iter().enumerate()
    {
        let seed = 100 + case as u64;
        let grid = TokenGrid::infer(tokens, height, width).unwrap();
        let n = height * width;
        for (ties, offset) in [(false, 0.0), (true, 0.0), (false, 1e3)] {
            let mut target: Vec<f64> = random(n, 1, seed).iter().map(|v| v + offset).collect();
            let mut pred: Vec<f64> = random(tokens, 1, seed + 50);
            if ties {
                target = quantised(&target, 2.0);
                pred = quantised(&pred, 1.5);
            }
            let stats = BlockStats::from_map(&target, tokens, height, width).unwrap();
            let got = continuous_metrics(&stats, &pred).unwrap();
            let full = upsample(grid, &pred);
            let rho = brute_pearson(&brute_ranks(&full), &brute_ranks(&target));
            let r = brute_pearson(&full, &target);
            let rmse = (full.iter().zip(&target).map(|(p, t)| (p - t).powi(2)).sum::<f64>()
                / n as f64)
                .sqrt();
            let what = format!("{tokens} tokens on {height}×{width}, ties {ties}");
            assert!((got.spearman - rho).abs() < 1e-12, "{what}: ρ {} vs {rho}", got.spearman);
            assert!((got.pearson - r).abs() < 1e-12, "{what}: r {} vs {r}", got.pearson);
            assert!((got.rmse - rmse).abs() < 1e-12 * rmse.max(1.0), "{what}: rmse");
        }

        let mask: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < 0.3).collect();
        let stats = BlockStats::from_mask(&mask, tokens, height, width).unwrap();
        let predicted: Vec<bool> = (0..tokens).map(|_| rng.random::<f64>() < 0.4).collect();
        let got = mask_metrics(&stats, &predicted).unwrap();
        let full: Vec<bool> =
            upsample(grid, &predicted.iter().map(|&b| f64::from(u8::from(b))).collect::<Vec<_>>())
                .iter()
                .map(|&v| v > 0.5)
                .collect();
        let flip = |v: &[bool]| v.iter().map(|b| !b).collect::<Vec<_>>();
        assert!((got.dice - brute_dice(&full, &mask)).abs() < 1e-12);
        assert!((got.dice_background - brute_dice(&flip(&full), &flip(&mask))).abs() < 1e-12);
        let all = all_foreground_dice(&stats).unwrap();
        assert!((all - brute_dice(&vec![true; n], &mask)).abs() < 1e-12);
        let m = mask.iter().filter(|m| **m).count() as f64;
        // The ε moves the baseline by about ε / N.
        assert!((all - 2.0 * m / (m + n as f64)).abs() < 1e-8 / n as f64);
        // A mask's metrics as a map: its block means are the foreground fractions.
        let as_map: Vec<f64> = mask.iter().map(|&m| f64::from(u8::from(m))).collect();
        let map_stats = BlockStats::from_map(&as_map, tokens, height, width).unwrap();
        assert_eq!(map_stats.mean(), stats.mean());
        assert_eq!(mask_metrics(&map_stats, &predicted), Err(DenseError::NotAMask));
    }
}

#[test]
fn constant_prediction_or_target_is_skipped_and_counted() {
    let target = random(64, 1, 3);
    let stats = BlockStats::from_map(&target, 16, 8, 8).unwrap();
    let got = continuous_metrics(&stats, &[0.25; 16]).unwrap();
    assert!(got.spearman.is_nan() && got.pearson.is_nan() && got.rmse.is_finite());
    let flat = BlockStats::from_map(&[2.0; 64], 16, 8, 8).unwrap();
    let got = continuous_metrics(&flat, &random(16, 1, 4)).unwrap();
    assert!(got.spearman.is_nan() && got.pearson.is_nan());
    let s = summarize(&[0.5, f64::NAN, 0.7, 0.9]);
    assert_eq!((s.n, s.skipped), (3, 1));
    assert!((s.mean - 0.7).abs() < 1e-15);
    assert!((s.se - 0.2 / 3.0_f64.sqrt()).abs() < 1e-15);
    // Empty masks on both sides are a perfect match, as the ε makes them.
    let empty = BlockStats::from_mask(&[false; 64], 16, 8, 8).unwrap();
    assert_eq!(mask_metrics(&empty, &[false; 16]).unwrap().dice, 1.0);
}

/// The per-pixel ridge (every pixel a row of its token's features) in the test's own
/// arithmetic: `(X_pixᵀX_pix + α_pix I) w = X_pixᵀ y`.
fn pixel_ridge(x: &[Vec<f64>], y: &[Vec<f64>], grid: TokenGrid, c: usize, alpha: f64) -> Vec<f64> {
    let (height, width) = grid.size();
    let mut a = faer::Mat::<f64>::zeros(c, c);
    let mut rhs = faer::Mat::<f64>::zeros(c, 1);
    for (xi, yi) in x.iter().zip(y) {
        for p in 0..height * width {
            let row = &xi[grid.token_of(p / width, p % width) * c..][..c];
            for k in 0..c {
                rhs[(k, 0)] += row[k] * yi[p];
                for l in 0..c {
                    a[(k, l)] += row[k] * row[l];
                }
            }
        }
    }
    for k in 0..c {
        a[(k, k)] += alpha;
    }
    use faer::linalg::solvers::Solve;
    let w = a.partial_piv_lu().solve(&rhs);
    (0..c).map(|k| w[(k, 0)]).collect()
}

#[test]
fn token_ridge_is_the_pixel_ridge_with_alpha_scaled_by_f_squared() {
    let (tokens, height, width, c) = (16, 16, 16, 5);
    let grid = TokenGrid::infer(tokens, height, width).unwrap();
    let f2 = (grid.f * grid.f) as f64;
    let x: Vec<Vec<f64>> = (0..4).map(|i| random(tokens, c, 20 + i)).collect();
    let y: Vec<Vec<f64>> = (0..4).map(|i| random(height * width, 1, 40 + i)).collect();
    let stats: Vec<BlockStats> =
        y.iter().map(|t| BlockStats::from_map(t, tokens, height, width).unwrap()).collect();
    let mut eq = NormalEquations::new(c, 1);
    for (xi, s) in x.iter().zip(&stats) {
        eq.add_image(xi, &[s]).unwrap();
    }
    for alpha_pix in [0.0, 3.0, 500.0] {
        let got = eq.solve(alpha_pix / f2).unwrap().weights(0);
        let want = pixel_ridge(&x, &y, grid, c, alpha_pix);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-10 * w.abs().max(1.0), "α_pix {alpha_pix}: {g} vs {w}");
        }
    }
}

#[test]
fn logistic_solution_zeroes_the_per_pixel_gradient() {
    let (tokens, height, width, c) = (16, 16, 16, 4);
    let grid = TokenGrid::infer(tokens, height, width).unwrap();
    let f2 = (grid.f * grid.f) as f64;
    let truth = random(c, 1, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut x = Vec::new();
    let mut masks = Vec::new();
    for i in 0..5 {
        let xi = random(tokens, c, 60 + i);
        let logits = predict(&xi, &truth).unwrap();
        // Pixels drawn around the planted probabilities: soft labels, not separable.
        let mask: Vec<bool> = upsample(grid, &logits)
            .iter()
            .map(|z| rng.random::<f64>() < 1.0 / (1.0 + (-z).exp()))
            .collect();
        x.push(xi);
        masks.push(mask);
    }
    let stats: Vec<BlockStats> =
        masks.iter().map(|m| BlockStats::from_mask(m, tokens, height, width).unwrap()).collect();
    let images: Vec<(&[f64], &BlockStats)> =
        x.iter().map(Vec::as_slice).zip(stats.iter()).collect();
    let lambda_pix = 2.0;
    let cfg = LogisticConfig { l2: lambda_pix / f2, ..LogisticConfig::default() };
    let fit = fit_logistic(images.as_slice(), c, &cfg).unwrap();
    assert!(fit.iterations < 20, "{fit:?}");
    // Per pixel: Σ x (σ(z) − m) + λ_pix w = 0 at the optimum of the per-pixel objective.
    let mut grad: Vec<f64> = fit.weights.iter().map(|w| lambda_pix * w).collect();
    for (xi, mask) in x.iter().zip(&masks) {
        let z = upsample(grid, &predict(xi, &fit.weights).unwrap());
        for (p, (&zp, &m)) in z.iter().zip(mask).enumerate() {
            let row = &xi[grid.token_of(p / width, p % width) * c..][..c];
            let r = 1.0 / (1.0 + (-zp).exp()) - f64::from(u8::from(m));
            grad.iter_mut().zip(row).for_each(|(g, xv)| *g += xv * r);
        }
    }
    let scale = (height * width * masks.len()) as f64;
    assert!(grad.iter().all(|g| g.abs() < 1e-9 * scale), "per-pixel gradient {grad:?}");

    // The preconditioner changes the path, not the optimum: the ridge's XᵀX of the same
    // images, or a Gram of other data, gives the same weights.
    let mut eq = NormalEquations::new(c, 1);
    for (xi, st) in x.iter().zip(&stats) {
        eq.add_image(xi, &[st]).unwrap();
    }
    let other = faer::Mat::<f64>::from_fn(c, c, |i, j| if i == j { 50.0 + i as f64 } else { 0.0 });
    for gram in [eq.gram(), other.as_ref()] {
        let shared = fit_logistic_with_gram(images.as_slice(), c, &cfg, gram).unwrap();
        for (a, b) in shared.weights.iter().zip(&fit.weights) {
            assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}

#[test]
fn inputs_are_checked() {
    let stats = BlockStats::from_map(&random(64, 1, 1), 16, 8, 8).unwrap();
    let mut eq = NormalEquations::new(3, 1);
    assert!(matches!(eq.add_image(&[0.0; 47], &[&stats]), Err(DenseError::Shape { .. })));
    let mut bad = vec![0.0; 48];
    bad[7] = f64::NAN;
    assert!(matches!(eq.add_image(&bad, &[&stats]), Err(DenseError::NonFinite { index: 7, .. })));
    assert_eq!(eq.solve(1.0).unwrap_err(), DenseError::NoImages);
    assert!(matches!(eq.solve(-1.0), Err(DenseError::InvalidPenalty { .. })));
    let other = BlockStats::from_map(&random(256, 1, 1), 16, 16, 16).unwrap();
    eq.add_image(&random(16, 3, 2), &[&stats]).unwrap();
    assert!(matches!(
        eq.add_image(&random(16, 3, 2), &[&other]),
        Err(DenseError::GridMismatch { .. })
    ));
    // Rank-deficient features without a penalty cannot be solved.
    let mut eq = NormalEquations::new(3, 1);
    eq.add_image(&[1.0; 48], &[&stats]).unwrap();
    assert_eq!(eq.solve(0.0).unwrap_err(), DenseError::Singular { what: "ridge" });
    assert!(eq.solve(1e-3).is_ok());
    assert!(matches!(
        BlockStats::from_map(&[f64::INFINITY; 64], 16, 8, 8),
        Err(DenseError::NonFinite { .. })
    ));
    assert!(matches!(BlockStats::from_map(&[0.0; 63], 16, 8, 8), Err(DenseError::Shape { .. })));
    let images: [(&[f64], &BlockStats); 1] = [(&[0.0; 48], &stats)];
    assert_eq!(
        fit_logistic(images.as_slice(), 3, &LogisticConfig::default()).unwrap_err(),
        DenseError::NotAMask
    );
    let cfg = LogisticConfig { l2: 0.0, ..LogisticConfig::default() };
    assert!(matches!(
        fit_logistic(images.as_slice(), 3, &cfg),
        Err(DenseError::InvalidPenalty { .. })
    ));
    let pixels = BlockPixels::from_map(&random(64, 1, 1), 16, 8, 8).unwrap();
    let images: [(&[f64], &BlockPixels); 1] = [(&[0.0; 48], &pixels)];
    let cfg = HuberConfig { delta: -1.0, ..HuberConfig::default() };
    assert!(matches!(
        fit_huber(images.as_slice(), 3, &cfg),
        Err(DenseError::InvalidPenalty { what: "delta", .. })
    ));
}

/// Planted maps `upsample(Xw*) + noise` with a few gross outliers, as block pixels and stats.
fn planted_maps(
    grid: TokenGrid,
    c: usize,
    n: usize,
    outliers: f64,
) -> (Vec<f64>, Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let (height, width) = grid.size();
    let truth = random(c, 1, 77);
    let mut rng = ChaCha8Rng::seed_from_u64(78);
    let x: Vec<Vec<f64>> = (0..n).map(|i| random(grid.tokens(), c, 80 + i as u64)).collect();
    let maps = x
        .iter()
        .enumerate()
        .map(|(i, xi)| {
            let clean = upsample(grid, &predict(xi, &truth).unwrap());
            let noise = random(height * width, 1, 200 + i as u64);
            clean
                .iter()
                .zip(noise)
                .map(|(v, e)| v + 0.3 * e + if rng.random::<f64>() < outliers { 40.0 } else { 0.0 })
                .collect()
        })
        .collect();
    (truth, x, maps)
}

#[test]
fn huber_with_a_huge_delta_is_half_the_ridge_objective() {
    let grid = TokenGrid { h: 4, w: 4, f: 4 };
    let (height, width) = grid.size();
    let (c, lambda) = (5, 0.7);
    let (_, x, maps) = planted_maps(grid, c, 6, 0.0);
    let pixels: Vec<BlockPixels> =
        maps.iter().map(|y| BlockPixels::from_map(y, 16, height, width).unwrap()).collect();
    let images: Vec<(&[f64], &BlockPixels)> =
        x.iter().map(Vec::as_slice).zip(pixels.iter()).collect();
    let cfg = HuberConfig { delta: 1e6, l2: lambda, ..HuberConfig::default() };
    let huber = fit_huber(images.as_slice(), c, &cfg).unwrap();
    let mut eq = NormalEquations::new(c, 1);
    for (xi, y) in x.iter().zip(&maps) {
        eq.add_image(xi, &[&BlockStats::from_map(y, 16, height, width).unwrap()]).unwrap();
    }
    // Σ_b (1/f²)·Σ ½ r² + λ/2·‖w‖² = ½ (Σ_b (m_b − z_b)² + λ‖w‖²) + a constant.
    let ridge = eq.solve(lambda).unwrap().weights(0);
    assert!(huber.iterations <= 2, "{huber:?}");
    for (h, r) in huber.weights.iter().zip(&ridge) {
        assert!((h - r).abs() < 1e-9 * r.abs().max(1.0), "{h} vs {r}");
    }
}

#[test]
fn huber_solution_zeroes_the_per_pixel_gradient_and_resists_outliers() {
    let grid = TokenGrid { h: 8, w: 8, f: 2 };
    let (height, width) = grid.size();
    let f2 = (grid.f * grid.f) as f64;
    let c = 6;
    let (truth, x, maps) = planted_maps(grid, c, 8, 0.03);
    let pixels: Vec<BlockPixels> =
        maps.iter().map(|y| BlockPixels::from_map(y, 64, height, width).unwrap()).collect();
    let images: Vec<(&[f64], &BlockPixels)> =
        x.iter().map(Vec::as_slice).zip(pixels.iter()).collect();
    let lambda_pix = 0.5;
    let cfg = HuberConfig { l2: lambda_pix / f2, ..HuberConfig::default() };
    let fit = fit_huber(images.as_slice(), c, &cfg).unwrap();
    let mut grad: Vec<f64> = fit.weights.iter().map(|w| lambda_pix * w).collect();
    for (xi, y) in x.iter().zip(&maps) {
        let z = upsample(grid, &predict(xi, &fit.weights).unwrap());
        for (p, (&zp, &yp)) in z.iter().zip(y).enumerate() {
            let row = &xi[grid.token_of(p / width, p % width) * c..][..c];
            let psi = (yp - zp).clamp(-cfg.delta, cfg.delta);
            grad.iter_mut().zip(row).for_each(|(g, xv)| *g -= xv * psi);
        }
    }
    let scale = (height * width * maps.len()) as f64;
    assert!(grad.iter().all(|g| g.abs() < 1e-7 * scale), "per-pixel gradient {grad:?}");

    let mut eq = NormalEquations::new(c, 1);
    for (xi, y) in x.iter().zip(&maps) {
        eq.add_image(xi, &[&BlockStats::from_map(y, 64, height, width).unwrap()]).unwrap();
    }
    let ridge = eq.solve(1e-6).unwrap().weights(0);
    let err = |w: &[f64]| w.iter().zip(&truth).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let (e_huber, e_ridge) = (err(&fit.weights), err(&ridge));
    eprintln!(
        "3 % outliers: max |ŵ − w*| Huber {e_huber:.3e} ({} IRLS steps), ridge {e_ridge:.3e}",
        fit.iterations
    );
    assert!(e_huber < 0.5 * e_ridge, "Huber {e_huber} vs ridge {e_ridge} ({fit:?})");
}
