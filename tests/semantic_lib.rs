//! The `alignment` crate's semantic lens against scipy / scikit-learn / numpy
//! (`scripts/ref_semantic.py`, read from `DIFFPROBE_SEMANTIC_REF`): the five distance matrices
//! equal `cdist` within 1e-12 (relative, absolute below 1), silhouette, AUC and the inter/intra ratio equal scikit-learn's /
//! numpy's within 1e-10, and the LOO k-NN accuracies and mAP@R with same-image exclusion equal
//! numpy's within 1e-12 (the same hit counts; only the summation order of the mean differs).
//!
//! Without `DIFFPROBE_SEMANTIC_REF` the test reports that it skipped, unless
//! `DIFFPROBE_REQUIRE_REFS=1`, which makes it fail.

use alignment::semantic::{scores, DistanceMatrix, Items, SemanticConfig};
use alignment::{Distance, Matrix};

use crate::refs::{cases, floats, indices, size};

#[test]
fn semantic_scores_match_scipy_and_sklearn() {
    let Some(doc) = crate::refs::reference("DIFFPROBE_SEMANTIC_REF", "scripts/ref_semantic.py")
    else {
        return;
    };
    let config = SemanticConfig { bootstrap: 100, permutations: 20, seed: 1 };
    for case in cases(&doc, "semantic_cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let (n, d) = (size(case, "n"), size(case, "d"));
        let values = floats(&case["features"]);
        let (classes, images) = (indices(&case["classes"]), indices(&case["images"]));
        let features = Matrix::new("features", &values, n, d).unwrap();
        let items = Items::new(&classes, &images).unwrap();
        for distance in Distance::SEMANTIC {
            let want = &case[distance.name()];
            let dm = DistanceMatrix::new(&features, distance);
            let reference = floats(&want["matrix"]);
            let worst = dm
                .values()
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0.0, f64::max);
            assert!(worst <= 1e-12, "case {name}, {distance}: cdist differs by {worst:e}");
            let s = scores(&dm, &items, &config).unwrap();
            let close = |got: f64, key: &str, tol: f64| {
                let w = want[key].as_f64().unwrap();
                assert!((got - w).abs() <= tol, "case {name}, {distance}, {key}: {got} vs {w}");
            };
            close(s.silhouette.value, "silhouette", 1e-10);
            close(s.auc.value, "auc", 1e-10);
            close(s.ratio.value, "ratio", 1e-10);
            close(s.knn1.value, "knn1", 1e-12);
            close(s.knn5.value, "knn5", 1e-12);
            close(s.map_at_r.value, "map_at_r", 1e-12);
            eprintln!(
                "case {name}, {distance}: cdist within {worst:.1e}; 1-NN {:.3} (chance {:.3}), \
                 5-NN {:.3}, mAP@R {:.3} (chance {:.3}), AUC {:.3}, ratio {:.3}, silhouette {:.3}",
                s.knn1.value,
                s.knn1.chance,
                s.knn5.value,
                s.map_at_r.value,
                s.map_at_r.chance,
                s.auc.value,
                s.ratio.value,
                s.silhouette.value
            );
        }
    }
}
