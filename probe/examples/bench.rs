//! Timing driver of `scripts/bench-probes`: runs [`probe::probe_fold`] over K folds of data
//! written by `scripts/bench_probes_ref.py` and prints the wall time, so the launcher can set it
//! beside the scikit-learn reference on the same data.
//!
//! Usage: `bench X.f32 Y.f64 N D J K B [ALPHA_GRID [INNER_FOLDS [COMPONENTS [TIMED_FOLDS]]]]` —
//! `X.f32` is `N × D` little-endian `f32` row-major, `Y.f64` is `N × J` little-endian `f64`;
//! `ALPHA_GRID` is an optional comma-separated α grid (per-attribute α by leave-one-out, or by
//! inner K-fold CV when `INNER_FOLDS` = k ≥ 2; `-` or empty for none); `COMPONENTS` is the P
//! cap (default 120; a value ≥ N means full rank); `TIMED_FOLDS` runs only the first that many
//! outer folds (default all K). Writes the K test folds, one per line, to `X.f32.folds`; with
//! inner folds also `X.f32.inner` (line `outer*k + inner`: the inner validation stimuli of
//! [`probe::inner_kfold`]), and, for fold 0, `X.f32.pred0` (`n_test × J` little-endian `f64`
//! predictions, row-major) and `X.f32.alpha0` (the `J` chosen α). Prints
//! `diffprobe_seconds <s>`, the per-fold seconds, the summed observed RMSE over attributes of
//! each fold and the number of significant (attribute, fold) pairs. The timed folds go through
//! [`probe::probe_folds`] in one call, so they share one Gram matrix in kernel form.
//! `BENCH_PRECISION=f32` runs the large products in `f32` ([`probe::Precision`]).

use std::time::Instant;

use probe::{complement, inner_kfold, kfold, probe_folds, FoldSplit, Precision, ProbeConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 8 {
        eprintln!("usage: bench X.f32 Y.f64 N D J K B [ALPHA_GRID [INNER_FOLDS [COMPONENTS [TIMED_FOLDS]]]]");
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
        .filter(|g| !g.is_empty() && g.as_str() != "-")
        .map(|g| g.split(',').map(|a| a.parse().expect("an alpha")).collect())
        .unwrap_or_default();
    let opt = |i: usize, default: usize| args.get(i).map_or(default, |_| num(i));
    let inner = opt(9, 0);
    let components = opt(10, 120);
    let timed = opt(11, k).min(k);
    let cfg = ProbeConfig {
        n_permutations: b,
        seed: 7,
        alpha_grid,
        alpha_inner_folds: inner,
        n_components: components,
        precision: match std::env::var("BENCH_PRECISION").as_deref() {
            Ok("f32") => Precision::F32,
            _ => Precision::F64,
        },
        ..ProbeConfig::default()
    };
    let folds = kfold(n, k, 1).expect("folds");
    let lines: Vec<String> = folds
        .iter()
        .map(|f| f.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))
        .collect();
    std::fs::write(format!("{}.folds", args[1]), lines.join("\n") + "\n").expect("writing folds");
    if inner > 0 {
        let mut lines = Vec::new();
        for (f, test) in folds.iter().enumerate() {
            let train = complement(n, test);
            for v in inner_kfold(&train, inner, cfg.seed, f).expect("inner folds") {
                lines.push(v.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "));
            }
        }
        std::fs::write(format!("{}.inner", args[1]), lines.join("\n") + "\n").expect("inner");
    }

    let splits: Vec<FoldSplit> = folds
        .iter()
        .enumerate()
        .take(timed)
        .map(|(fold, test)| FoldSplit { fold, train: complement(n, test), test: test.clone() })
        .collect();
    let start = Instant::now();
    let res = probe_folds(&x, n, d, &y, j, &splits, &cfg).expect("probe_folds");
    let mut checksum = vec![0.0; timed];
    for r in &res {
        checksum[r.fold] += r.rmse;
    }
    let significant = res.iter().filter(|r| r.p_value < 0.05).count();
    if inner > 0 {
        let fold0: Vec<&probe::FoldResult> = res.iter().filter(|r| r.fold == 0).collect();
        let mut bytes = Vec::with_capacity(folds[0].len() * j * 8);
        for i in 0..folds[0].len() {
            for r in &fold0 {
                bytes.extend_from_slice(&r.predictions[i].to_le_bytes());
            }
        }
        std::fs::write(format!("{}.pred0", args[1]), bytes).expect("writing predictions");
        let alphas: Vec<String> = fold0.iter().map(|r| r.alpha.to_string()).collect();
        std::fs::write(format!("{}.alpha0", args[1]), alphas.join(" ") + "\n").expect("alpha");
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("diffprobe_seconds {seconds:.6}");
    let per_fold: Vec<String> = checksum.iter().map(|s| format!("{s:.12}")).collect();
    println!("diffprobe_fold_sum_rmse {}", per_fold.join(" "));
    println!("diffprobe_significant_attribute_folds {significant}");
}
