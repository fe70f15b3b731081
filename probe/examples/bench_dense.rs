//! Timing driver of `scripts/bench-dense`: fits the dense probes of `probe::dense` on data
//! written by `scripts/bench_dense_ref.py` and prints the wall time and the weights, so the
//! launcher can set them beside scikit-learn's on the same data.
//!
//! Usage: `bench_dense X.f32 Y.f64 M.u8 N H W C ALPHA L2` — `X.f32` is `N × (H·W) × C`
//! little-endian `f32` (token-major per image), `Y.f64` the `N × H × W` continuous target at
//! token resolution (f = 1), `M.u8` the `N × 2H × 2W` mask at twice the token resolution
//! (f = 2, so a token's foreground fraction is 0, ¼, ½, ¾ or 1). Prints `ridge_seconds`,
//! `logistic_seconds` (with the iterations and the time given the ridge's `XᵀX`, as the dense
//! unit fits a mask beside a continuous map), then the ridge and logistic weights, one line
//! each, space-separated.

use std::time::Instant;

use probe::dense::{
    fit_logistic, fit_logistic_with_gram, BlockStats, LogisticConfig, NormalEquations,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 10 {
        eprintln!("usage: bench_dense X.f32 Y.f64 M.u8 N H W C ALPHA L2");
        std::process::exit(2);
    }
    let num = |i: usize| -> usize { args[i].parse().expect("a non-negative integer") };
    let (n, h, w, c) = (num(4), num(5), num(6), num(7));
    let alpha: f64 = args[8].parse().expect("alpha");
    let l2: f64 = args[9].parse().expect("l2");
    let tokens = h * w;
    let x: Vec<f32> = std::fs::read(&args[1])
        .expect("X")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    let y: Vec<f64> = std::fs::read(&args[2])
        .expect("Y")
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let m: Vec<bool> = std::fs::read(&args[3]).expect("M").into_iter().map(|v| v > 0).collect();
    assert_eq!(x.len(), n * tokens * c, "X is N × tokens × C");
    let image = |i: usize| &x[i * tokens * c..(i + 1) * tokens * c];
    let maps: Vec<BlockStats> = (0..n)
        .map(|i| BlockStats::from_map(&y[i * tokens..(i + 1) * tokens], tokens, h, w).unwrap())
        .collect();
    let masks: Vec<BlockStats> = (0..n)
        .map(|i| {
            let px = 4 * tokens;
            BlockStats::from_mask(&m[i * px..(i + 1) * px], tokens, 2 * h, 2 * w).unwrap()
        })
        .collect();

    let start = Instant::now();
    let mut eq = NormalEquations::new(c, 1);
    for (i, stats) in maps.iter().enumerate() {
        eq.add_image(image(i), &[stats]).unwrap();
    }
    let ridge = eq.solve(alpha).unwrap().weights(0);
    let gram = eq.gram();
    let ridge_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let images: Vec<(&[f32], &BlockStats)> = (0..n).map(|i| (image(i), &masks[i])).collect();
    let cfg = LogisticConfig { l2, ..LogisticConfig::default() };
    let logistic = fit_logistic(images.as_slice(), c, &cfg).unwrap();
    let logistic_s = start.elapsed().as_secs_f64();

    // As the dense unit fits a mask beside a continuous map: the ridge's XᵀX preconditions.
    let start = Instant::now();
    let shared = fit_logistic_with_gram(images.as_slice(), c, &cfg, gram).unwrap();
    let shared_s = start.elapsed().as_secs_f64();
    let gap = shared.weights.iter().zip(&logistic.weights).map(|(a, b)| (a - b).abs());
    assert!(gap.fold(0.0, f64::max) < 1e-9, "the shared-Gram fit differs");

    let line = |v: &[f64]| v.iter().map(|x| format!("{x:e}")).collect::<Vec<_>>().join(" ");
    println!("ridge_seconds {ridge_s}");
    println!(
        "logistic_seconds {logistic_s} iterations {} shared_gram_seconds {shared_s}",
        logistic.iterations
    );
    println!("{}", line(&ridge));
    println!("{}", line(&logistic.weights));
}
