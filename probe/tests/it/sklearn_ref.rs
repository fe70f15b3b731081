//! Agreement with scikit-learn: `PCA(svd_solver='full')` + `Ridge` (optionally after
//! `StandardScaler`) predictions written by `scripts/ref_probe.py` must be reproduced to 1e-6.
//!
//! The JSON path comes from `DIFFPROBE_SKLEARN_REF` (absolute, or relative to `probe/`). Without
//! it the test reports that it skipped, unless `DIFFPROBE_REQUIRE_REFS=1`, which makes it fail.

use serde_json::Value;

use probe::{probe_fold, ProbeConfig};

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|e| e.as_f64().expect("number")).collect()
}

fn indices(v: &Value) -> Vec<usize> {
    v.as_array().expect("array").iter().map(|e| e.as_u64().expect("index") as usize).collect()
}

fn size(case: &Value, key: &str) -> usize {
    case[key].as_u64().unwrap_or_else(|| panic!("case field {key} missing")) as usize
}

#[test]
fn predictions_match_scikit_learn() {
    let Ok(path) = std::env::var("DIFFPROBE_SKLEARN_REF") else {
        assert!(
            std::env::var("DIFFPROBE_REQUIRE_REFS").as_deref() != Ok("1"),
            "DIFFPROBE_REQUIRE_REFS=1 but DIFFPROBE_SKLEARN_REF is not set \
             (generate it with scripts/ref_probe.py OUT.json)"
        );
        eprintln!("skipped: DIFFPROBE_SKLEARN_REF not set");
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let doc: Value = serde_json::from_str(&text).expect("reference JSON");
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
