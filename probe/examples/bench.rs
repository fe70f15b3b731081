//! Timing driver of `scripts/bench-probes`: runs [`probe::probe_fold`] over K folds of data
//! written by `scripts/bench_probes_ref.py` and prints the wall time, so the launcher can set it
//! beside the scikit-learn reference on the same data.
//!
//! Usage: `bench X.f32 Y.f64 N D J K B [ALPHA_GRID]` — `X.f32` is `N × D` little-endian `f32`
//! row-major, `Y.f64` is `N × J` little-endian `f64`; `ALPHA_GRID` is an optional
//! comma-separated α grid (per-attribute α by leave-one-out). Writes the K test folds, one per
//! line, to `X.f32.folds` and prints `diffprobe_seconds <s>`, the
//! summed observed RMSE over attributes of each fold and the number of significant
//! (attribute, fold) pairs.

use std::time::Instant;

use probe::{complement, kfold, probe_fold, ProbeConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 8 {
        eprintln!("usage: bench X.f32 Y.f64 N D J K B [ALPHA_GRID]");
        std::process::exit(2);
    }
    let num = |i: usize| -> usize { args[i].parse().expect("a non-negative integer") };
    let (n, d, j, k, b) = (num(3), num(4), num(5), num(6), num(7));
    let x: Vec<f32> = std::fs::read(&args[1])
        .expect("reading X")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let y: Vec<f64> = std::fs::read(&args[2])
        .expect("reading Y")
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let alpha_grid: Vec<f64> = args
        .get(8)
        .map(|g| g.split(',').map(|a| a.parse().expect("an alpha")).collect())
        .unwrap_or_default();
    let cfg = ProbeConfig { n_permutations: b, seed: 7, alpha_grid, ..ProbeConfig::default() };
    let folds = kfold(n, k, 1).expect("folds");
    let lines: Vec<String> = folds
        .iter()
        .map(|f| f.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))
        .collect();
    std::fs::write(format!("{}.folds", args[1]), lines.join("\n") + "\n").expect("writing folds");

    let start = Instant::now();
    let mut checksum = Vec::with_capacity(k);
    let mut significant = 0usize;
    for (f, test) in folds.iter().enumerate() {
        let train = complement(n, test);
        let res = probe_fold(&x, n, d, &y, j, &train, test, f, &cfg).expect("probe_fold");
        checksum.push(res.iter().map(|r| r.rmse).sum::<f64>());
        significant += res.iter().filter(|r| r.p_value < 0.05).count();
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("diffprobe_seconds {seconds:.6}");
    let per_fold: Vec<String> = checksum.iter().map(|s| format!("{s:.12}")).collect();
    println!("diffprobe_fold_sum_rmse {}", per_fold.join(" "));
    println!("diffprobe_significant_attribute_folds {significant}");
}
