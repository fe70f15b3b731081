//! Agreement with scikit-learn: `PCA(svd_solver='full')` + `Ridge` (optionally after
//! `StandardScaler`) predictions written by `scripts/ref_probe.py` must be reproduced to 1e-6;
//! so must the per-target α of `RidgeCV(alpha_per_target=True)` (efficient leave-one-out) on the
//! PCA scores, exactly, with its predictions, and, when the file has them, himalaya's
//! `KernelRidgeCV` with leave-one-out folds; and the mean RMSE of a P × α grid; and himalaya's
//! `KernelRidgeCV` with explicit inner K-fold splits (α per target, CV score, predictions).
//!
//! The JSON path comes from `DIFFPROBE_SKLEARN_REF` (absolute, or relative to `coordinator/`). Without
//! it the test reports that it skipped, unless `DIFFPROBE_REQUIRE_REFS=1`, which makes it fail.

use serde_json::Value;

use probe::{hyper_grid, probe_fold, select_alpha, select_alpha_kfold, ProbeConfig};

use crate::refs::{cases, floats, indices, refs_required, size};

/// The reference document, or `None` (skip) when `DIFFPROBE_SKLEARN_REF` is unset.
fn reference() -> Option<Value> {
    crate::refs::reference("DIFFPROBE_SKLEARN_REF", "scripts/ref_probe.py")
}

#[test]
fn loo_alpha_choice_matches_ridgecv_and_himalaya() {
    let Some(doc) = reference() else { return };
    for case in cases(&doc, "alpha_cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let (n, d, j) = (size(case, "n"), size(case, "d"), size(case, "j"));
        let (x, y) = (floats(&case["x"]), floats(&case["y"]));
        let (train, test) = (indices(&case["train"]), indices(&case["test"]));
        let grid = floats(&case["alphas"]);
        let cfg = ProbeConfig {
            n_components: size(case, "requested_components"),
            alpha_grid: grid.clone(),
            n_permutations: 0,
            zscore: case["zscore"].as_bool().expect("zscore"),
            ..ProbeConfig::default()
        };
        let choice = select_alpha(&x, n, d, &y, j, &train, &grid, &cfg)
            .unwrap_or_else(|e| panic!("case {name}: {e}"));
        assert_eq!(choice.n_components, size(case, "n_components"), "case {name}: P used");
        assert_eq!(choice.alphas, floats(&case["chosen_alphas"]), "case {name}: RidgeCV alpha_");
        let got = probe_fold(&x, n, d, &y, j, &train, &test, 0, &cfg)
            .unwrap_or_else(|e| panic!("case {name}: {e}"));
        let mut refs = vec![("RidgeCV", floats(&case["predictions"]))];
        if let Some(h) = case.get("himalaya_predictions") {
            refs.push(("himalaya KernelRidgeCV", floats(h)));
            for (a, b) in choice.alphas.iter().zip(floats(&case["himalaya_chosen_alphas"])) {
                assert!((a - b).abs() <= 1e-9 * a, "case {name}: himalaya alpha {b} vs {a}");
            }
        } else {
            eprintln!("case {name}: no himalaya reference in the file");
        }
        for (who, want) in refs {
            let mut max_diff = 0.0_f64;
            for r in &got {
                assert_eq!(r.alpha, choice.alphas[r.attribute], "case {name}");
                for (i, p) in r.predictions.iter().enumerate() {
                    max_diff = max_diff.max((p - want[i * j + r.attribute]).abs());
                }
            }
            eprintln!("{who} case {name}: alphas {:?} max |diff| = {max_diff:.3e}", choice.alphas);
            assert!(max_diff < 1e-6, "{who} case {name}: max |diff| {max_diff:e} ≥ 1e-6");
        }
    }
}

#[test]
fn inner_kfold_alpha_choice_matches_himalaya() {
    let Some(doc) = reference() else { return };
    let Some(list) = doc.get("kfold_cases").and_then(Value::as_array).filter(|l| !l.is_empty())
    else {
        assert!(
            !refs_required(),
            "no kfold_cases in the reference file (regenerate it with himalaya installed)"
        );
        eprintln!("skipped: no kfold_cases (himalaya) in the reference file");
        return;
    };
    for case in list {
        let name = case["name"].as_str().unwrap_or("?");
        let (n, d, j) = (size(case, "n"), size(case, "d"), size(case, "j"));
        let (x, y) = (floats(&case["x"]), floats(&case["y"]));
        let (train, test) = (indices(&case["train"]), indices(&case["test"]));
        let grid = floats(&case["alphas"]);
        let inner: Vec<Vec<usize>> =
            case["inner_folds"].as_array().expect("inner_folds").iter().map(indices).collect();
        let cfg = ProbeConfig {
            n_components: size(case, "requested_components"),
            alpha_grid: grid.clone(),
            n_permutations: 0,
            ..ProbeConfig::default()
        };
        let choice = select_alpha_kfold(&x, n, d, &y, j, &train, &grid, &inner, &cfg)
            .unwrap_or_else(|e| panic!("case {name}: {e}"));
        assert_eq!(choice.n_components, size(case, "n_components"), "case {name}: P used");
        let want_alphas = floats(&case["himalaya_chosen_alphas"]);
        for (a, b) in choice.alphas.iter().zip(&want_alphas) {
            assert!((a - b).abs() <= 1e-9 * a, "case {name}: himalaya alpha {b} vs {a}");
        }
        // himalaya's cv_scores_: the best mean over splits of −MSE, plus 1e-10·ln α.
        let mut score_diff = 0.0_f64;
        for ((row, &alpha), score) in
            choice.loo_mse.iter().zip(&choice.alphas).zip(floats(&case["himalaya_cv_scores"]))
        {
            let best = row.iter().copied().fold(f64::INFINITY, f64::min);
            let theirs = -(score - 1e-10 * alpha.ln());
            score_diff = score_diff.max((best - theirs).abs() / theirs);
        }
        assert!(score_diff < 1e-8, "case {name}: relative CV score diff {score_diff:e}");
        // The same choice through probe_fold with these inner folds: fix α per attribute.
        let want = floats(&case["himalaya_predictions"]);
        let mut max_diff = 0.0_f64;
        for (c, &alpha) in choice.alphas.iter().enumerate() {
            let fixed = ProbeConfig { alpha, alpha_grid: Vec::new(), ..cfg.clone() };
            let got = probe_fold(&x, n, d, &y, j, &train, &test, 0, &fixed)
                .unwrap_or_else(|e| panic!("case {name}: {e}"));
            for (i, p) in got[c].predictions.iter().enumerate() {
                max_diff = max_diff.max((p - want[i * j + c]).abs());
            }
        }
        eprintln!(
            "himalaya K-fold case {name} ({} inner folds, on {}): alphas {:?}, CV score rel \
             diff {score_diff:.1e}, max |pred diff| = {max_diff:.3e}",
            inner.len(),
            case["himalaya_input"].as_str().unwrap_or("?"),
            choice.alphas
        );
        assert!(max_diff < 1e-6, "case {name}: max |diff| {max_diff:e} ≥ 1e-6");
    }
}

#[test]
fn hyper_grid_matches_scikit_learn() {
    let Some(doc) = reference() else { return };
    for case in cases(&doc, "grid_cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let (n, d, j) = (size(case, "n"), size(case, "d"), size(case, "j"));
        let (x, y) = (floats(&case["x"]), floats(&case["y"]));
        let (train, test) = (indices(&case["train"]), indices(&case["test"]));
        let components = indices(&case["components"]);
        let alphas = floats(&case["alphas"]);
        let got = hyper_grid(&x, n, d, &y, j, &train, &test, &components, &alphas, false)
            .unwrap_or_else(|e| panic!("case {name}: {e}"));
        let want = case["cells"].as_array().expect("cells");
        assert_eq!(got.len(), want.len(), "case {name}: number of cells");
        let mut max_diff = 0.0_f64;
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.components, size(w, "components"), "case {name}");
            assert_eq!(g.n_components, size(w, "n_components"), "case {name}");
            assert_eq!(g.alpha, w["alpha"].as_f64().expect("alpha"), "case {name}");
            max_diff = max_diff.max((g.mean_rmse - w["mean_rmse"].as_f64().expect("rmse")).abs());
        }
        eprintln!("grid case {name}: {} cells, max |diff| = {max_diff:.3e}", got.len());
        assert!(max_diff < 1e-6, "grid case {name}: max |diff| {max_diff:e} ≥ 1e-6");
    }
}

#[test]
fn predictions_match_scikit_learn() {
    let Some(doc) = reference() else { return };
    let path = "the reference file";
    let cases = doc["cases"].as_array().expect("cases");
    assert!(!cases.is_empty(), "no cases in {path}");
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let (n, d, j) = (size(case, "n"), size(case, "d"), size(case, "j"));
        let (x, y) = (floats(&case["x"]), floats(&case["y"]));
        let (train, test) = (indices(&case["train"]), indices(&case["test"]));
        let want = floats(&case["predictions"]);
        let cfg = ProbeConfig {
            n_components: size(case, "requested_components"),
            alpha: case["alpha"].as_f64().expect("alpha"),
            n_permutations: 0,
            zscore: case["zscore"].as_bool().expect("zscore"),
            ..ProbeConfig::default()
        };
        let got = probe_fold(&x, n, d, &y, j, &train, &test, 0, &cfg)
            .unwrap_or_else(|e| panic!("case {name}: {e}"));
        let mut max_diff = 0.0_f64;
        for r in &got {
            assert_eq!(r.n_components, size(case, "n_components"), "case {name}: P used");
            for (i, p) in r.predictions.iter().enumerate() {
                max_diff = max_diff.max((p - want[i * j + r.attribute]).abs());
            }
        }
        eprintln!(
            "sklearn case {name}: n={n} d={d} P={} max |diff| = {max_diff:.3e}",
            got[0].n_components
        );
        assert!(max_diff < 1e-6, "case {name}: max |diff| {max_diff:e} ≥ 1e-6");
    }
}
