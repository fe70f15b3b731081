//! The `alignment` crate's integration tests, in three groups:
//! the numpy reference (`scripts/ref_alignment.py`, read from `DIFFPROBE_ALIGNMENT_REF`: equal
//! odd-one-out predictions and accuracies for every distance, equal α choices and R² within
//! 1e-8 for the embedding regression); the linear probe recovering a planted linear alignment
//! (with a timing printout); and calibration: unrelated features and triplets score chance.
//!
//! Without `DIFFPROBE_ALIGNMENT_REF` the reference tests report that they skipped, unless
//! `DIFFPROBE_REQUIRE_REFS=1`, which makes them fail.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use alignment::{
    embedding_regression, embedding_regression_with_folds, linear_probe, linear_probe_fold,
    odd_one_out, partition, Device, Distance, EarlyStopping, EmbeddingRegressionConfig,
    LinearProbeConfig, Matrix, Triplets, CHANCE,
};

use crate::data::normals;
use crate::refs::{cases, floats, indices, size};

// ------------------------------------------------------------------ numpy reference

/// The reference document, or `None` (skip) when `DIFFPROBE_ALIGNMENT_REF` is unset.
fn reference() -> Option<Value> {
    crate::refs::reference("DIFFPROBE_ALIGNMENT_REF", "scripts/ref_alignment.py")
}

fn triplets_of(case: &Value, n: usize) -> Triplets {
    let flat = indices(&case["triplets"]);
    Triplets::new(flat.chunks(3).map(|c| [c[0], c[1], c[2]]).collect(), n).expect("triplets")
}

/// numpy's predictions: 0, 1, 2, or −1 for a tie.
fn numpy_predictions(v: &Value) -> Vec<Option<u8>> {
    let raw = v.as_array().expect("predictions");
    raw.iter().map(|p| u8::try_from(p.as_i64().expect("int")).ok()).collect()
}

#[test]
fn odd_one_out_matches_numpy() {
    let Some(doc) = reference() else { return };
    for case in cases(&doc, "ooo_cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let (n, d) = (size(case, "n"), size(case, "d"));
        let values = floats(&case["features"]);
        let narrow: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let triplets = triplets_of(case, n);
        for distance in Distance::ALL {
            let want = &case[distance.name()];
            let got = if case["f32"].as_bool() == Some(true) {
                // float32 values written as float64: they narrow back exactly (up to the JSON
                // parser's last-bit rounding, which narrowing absorbs).
                assert!(narrow
                    .iter()
                    .zip(&values)
                    .all(|(&a, &b)| (f64::from(a) - b).abs() <= 1e-15 * b.abs()));
                odd_one_out(&Matrix::new("features", &narrow, n, d).unwrap(), &triplets, distance)
            } else {
                odd_one_out(&Matrix::new("features", &values, n, d).unwrap(), &triplets, distance)
            }
            .unwrap();
            let expected = numpy_predictions(&want["predictions"]);
            let differ = got.predictions.iter().zip(&expected).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "case {name}, {distance}: {differ} predictions differ");
            assert_eq!(got.accuracy, want["accuracy"].as_f64().unwrap(), "case {name}, {distance}");
            let ties = got.predictions.iter().filter(|p| p.is_none()).count();
            eprintln!("case {name}, {distance}: accuracy {:.4}, {ties} ties", got.accuracy);
        }
    }
}

#[test]
fn embedding_regression_matches_numpy() {
    let Some(doc) = reference() else { return };
    for case in cases(&doc, "regression_cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let (n, d, k) = (size(case, "n"), size(case, "d"), size(case, "k"));
        let (x, v) = (floats(&case["x"]), floats(&case["v"]));
        let folds: Vec<Vec<usize>> =
            case["folds"].as_array().unwrap().iter().map(indices).collect();
        let cfg = EmbeddingRegressionConfig {
            alphas: floats(&case["alphas"]),
            zscore: case["zscore"].as_bool().unwrap(),
            distance: Distance::Cosine,
            ..EmbeddingRegressionConfig::default()
        };
        let features = Matrix::new("features", &x, n, d).unwrap();
        let embedding = Matrix::new("embedding", &v, n, k).unwrap();
        let triplets = triplets_of(case, n);
        let got = embedding_regression_with_folds(&features, &embedding, &triplets, &folds, &cfg)
            .unwrap_or_else(|e| panic!("case {name}: {e}"));
        let want_alphas: Vec<Vec<f64>> =
            case["chosen_alphas"].as_array().unwrap().iter().map(floats).collect();
        assert_eq!(got.alphas, want_alphas, "case {name}: α per fold and dimension");
        let want_r2: Vec<Vec<f64>> = case["r2"].as_array().unwrap().iter().map(floats).collect();
        let r2_diff = max_diff(got.r2.iter().flatten(), want_r2.iter().flatten());
        let pred_diff = max_diff(got.predicted.iter(), floats(&case["predicted"]).iter());
        eprintln!(
            "case {name}: mean R² {:.4}, max |ΔR²| {r2_diff:.2e}, max |Δprediction| {pred_diff:.2e}, \
             OOOA of V̂ {:.4} (V: {:.4})",
            got.overall_r2, got.predicted_odd_one_out.accuracy, got.embedding_odd_one_out.accuracy
        );
        assert!(r2_diff < 1e-8, "case {name}: R² differs by {r2_diff:e}");
        assert!(pred_diff < 1e-8, "case {name}: predictions differ by {pred_diff:e}");
        assert_eq!(
            got.predicted_odd_one_out.predictions,
            numpy_predictions(&case["ooo_predictions"]),
            "case {name}"
        );
        assert_eq!(
            got.predicted_odd_one_out.accuracy,
            case["ooo_accuracy"].as_f64().unwrap(),
            "case {name}"
        );
        assert_eq!(
            got.embedding_odd_one_out.accuracy,
            case["embedding_accuracy"].as_f64().unwrap(),
            "case {name}"
        );
    }
}

fn max_diff<'a>(a: impl Iterator<Item = &'a f64>, b: impl Iterator<Item = &'a f64>) -> f64 {
    a.zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

// ------------------------------------------------------------------ synthetic data

/// `m` random triples of distinct concepts, in random order.
fn random_triples(rng: &mut ChaCha8Rng, n: usize, m: usize) -> Vec<[usize; 3]> {
    (0..m)
        .map(|_| loop {
            let t = [0; 3].map(|_| rng.random_range(0..n));
            if t[0] != t[1] && t[0] != t[2] && t[1] != t[2] {
                break t;
            }
        })
        .collect()
}

/// Reorders each triple so that field 2 is the odd one out of the embedding `v` (k columns)
/// under the dot-product similarity: the generator's ceiling is accuracy 1 under
/// [`Distance::NegDot`].
fn judged_by(v: &[f64], k: usize, triples: Vec<[usize; 3]>) -> Vec<[usize; 3]> {
    let sim = |a: usize, b: usize| (0..k).map(|c| v[a * k + c] * v[b * k + c]).sum::<f64>();
    triples
        .into_iter()
        .map(|[a, b, c]| {
            let s = [sim(a, b), sim(a, c), sim(b, c)];
            if s[0] >= s[1] && s[0] >= s[2] {
                [a, b, c]
            } else if s[1] >= s[2] {
                [a, c, b]
            } else {
                [b, c, a]
            }
        })
        .collect()
}

// ------------------------------------------------------------------ linear probe

#[test]
fn linear_probe_recovers_a_planted_alignment() {
    // X: 150 concepts × 16 features; the human embedding is a linear map of 3 of them (mixed),
    // so 13 of the 16 raw dimensions are noise to the raw similarity but a probe can learn W.
    let (n, d, k, m) = (150, 16, 3, 12_000);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let x = normals(&mut rng, n * d);
    let a = normals(&mut rng, 3 * k);
    let v: Vec<f64> =
        (0..n * k).map(|i| (0..3).map(|f| x[(i / k) * d + f] * a[f * k + i % k]).sum()).collect();
    let triples = random_triples(&mut rng, n, m);
    let triplets = Triplets::new(judged_by(&v, k, triples), n).unwrap();
    let features = Matrix::new("features", &x, n, d).unwrap();
    let raw = odd_one_out(&features, &triplets, Distance::Cosine).unwrap().accuracy;
    let raw_dot = odd_one_out(&features, &triplets, Distance::NegDot).unwrap().accuracy;

    let cfg = learning_config();
    let start = Instant::now();
    let probe = linear_probe(&features, &triplets, &cfg, &Device::Cpu).unwrap();
    let elapsed = start.elapsed();
    let ceiling = ceiling_over_folds(&v, k, &triplets, &cfg);
    for f in &probe.folds {
        eprintln!(
            "fold {}: {} train / {} test triplets ({} dropped), {} epochs{}, train loss {:.4}, \
             test loss {:.4}, test OOOA {:.4}",
            f.fold,
            f.n_train,
            f.n_test,
            f.n_dropped,
            f.epochs,
            if f.stopped_early { " (early stop)" } else { "" },
            f.train_loss,
            f.test_loss,
            f.test_accuracy
        );
    }
    eprintln!(
        "planted alignment: probe OOOA {:.4}, raw features {raw:.4} (cosine) / {raw_dot:.4} (dot), \
         generator ceiling {ceiling:.4}; linear probe took {elapsed:.2?}",
        probe.mean_accuracy
    );
    assert!(probe.mean_accuracy > raw + 0.15, "probe {} vs raw {raw}", probe.mean_accuracy);
    assert!(
        probe.mean_accuracy > 0.85 * ceiling,
        "probe {} vs ceiling {ceiling}",
        probe.mean_accuracy
    );
    // Same seed, same numbers (one fold suffices).
    let again = linear_probe_fold(&features, &triplets, 1, &cfg, &Device::Cpu).unwrap();
    assert_eq!(again, probe.folds[1]);
    // Early stopping on held-out training triplets instead of the test fold learns as well.
    let held_out = LinearProbeConfig {
        early_stopping: EarlyStopping::ValidationLoss { fraction: 0.1 },
        ..cfg.clone()
    };
    let fold = linear_probe_fold(&features, &triplets, 0, &held_out, &Device::Cpu).unwrap();
    eprintln!(
        "validation-loss early stopping, fold 0: {} train / {} validation triplets, {} epochs, \
         test OOOA {:.4}",
        fold.n_train, fold.n_validation, fold.epochs, fold.test_accuracy
    );
    assert_eq!(fold.n_validation + fold.n_train, probe.folds[0].n_train);
    assert!(fold.test_accuracy > raw + 0.15, "{}", fold.test_accuracy);
}

/// The paper's probe with a smaller penalty and a larger step, so that it learns on 16
/// features within a few seconds. With the paper's λ = 0.1 on the unsquared ‖W‖_F the penalty's
/// gradient has norm 0.1 whatever the size of W, and at D = 16 (initial ‖W‖_F ≈ σD = 0.016) it
/// beats the cross-entropy's: W shrinks to about 0 and the loss stays at ln 3 (module
/// `linear_probe`, "Penalty").
fn learning_config() -> LinearProbeConfig {
    LinearProbeConfig { lambda: 1e-3, learning_rate: 3e-3, ..LinearProbeConfig::default() }
}

/// Mean over folds of the generator's own accuracy on each fold's test triplets.
fn ceiling_over_folds(v: &[f64], k: usize, triplets: &Triplets, cfg: &LinearProbeConfig) -> f64 {
    let n = triplets.n_concepts();
    let truth = Matrix::new("embedding", v, n, k).unwrap();
    let folds = probe::kfold(n, cfg.folds, cfg.seed).unwrap();
    let total: f64 = folds
        .iter()
        .map(|test| {
            let part = partition(triplets, test);
            let t = Triplets::new(part.test, n).unwrap();
            odd_one_out(&truth, &t, Distance::NegDot).unwrap().accuracy
        })
        .sum();
    total / folds.len() as f64
}

// ------------------------------------------------------------------ calibration

#[test]
fn unrelated_features_score_chance() {
    let (n, d, m) = (300, 10, 30_000);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = normals(&mut rng, n * d);
    let features = Matrix::new("features", &x, n, d).unwrap();
    // Triplets judged by an independent embedding: nothing in X predicts them.
    let hidden = normals(&mut rng, n * 4);
    let triplets = Triplets::new(judged_by(&hidden, 4, random_triples(&mut rng, n, m)), n).unwrap();
    // Standard error of an accuracy near 1/3 over M triplets: √(2/9 / M) ≈ 0.0027.
    for distance in Distance::ALL {
        let acc = odd_one_out(&features, &triplets, distance).unwrap().accuracy;
        eprintln!("random features, {distance}: OOOA {acc:.4}");
        assert!((acc - CHANCE).abs() < 0.011, "{distance}: {acc}");
    }
    let start = Instant::now();
    let probe = linear_probe(&features, &triplets, &learning_config(), &Device::Cpu).unwrap();
    let tests: usize = probe.folds.iter().map(|f| f.n_test).sum();
    eprintln!(
        "random features, linear probe: OOOA {:.4} over {tests} test triplets ({:.2?})",
        probe.mean_accuracy,
        start.elapsed()
    );
    // About 1,100 test triplets per fold: the mean's standard error is about 0.008.
    assert!((probe.mean_accuracy - CHANCE).abs() < 0.035, "{}", probe.mean_accuracy);

    let embedding = Matrix::new("embedding", &hidden, n, 4).unwrap();
    let reg = embedding_regression(
        &features,
        &embedding,
        &triplets,
        &EmbeddingRegressionConfig::default(),
    )
    .unwrap();
    eprintln!(
        "random features, embedding regression: mean R² {:.4}, OOOA of V̂ {:.4} (V: {:.4})",
        reg.overall_r2, reg.predicted_odd_one_out.accuracy, reg.embedding_odd_one_out.accuracy
    );
    assert!(reg.overall_r2 < 0.02, "{:?}", reg.mean_r2);
    assert!((reg.predicted_odd_one_out.accuracy - CHANCE).abs() < 0.02);
}
