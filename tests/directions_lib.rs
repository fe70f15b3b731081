//! The `alignment` crate's prompt-direction clusters against scikit-learn / numpy
//! (`scripts/ref_directions.py`, read from `DIFFPROBE_DIRECTIONS_REF`): Lloyd from given centroids
//! equals `KMeans(init=C0, n_init=1, algorithm="lloyd", tol=0)` (the same labels and passes,
//! centers and inertia within 1e-10), average-linkage cosine clustering equals
//! `AgglomerativeClustering(metric="cosine", linkage="average")` up to a permutation of the labels,
//! and ARI, NMI, purity and the cosine silhouette equal scikit-learn's / numpy's within 1e-10.
//!
//! Without `DIFFPROBE_DIRECTIONS_REF` the test reports that it skipped, unless
//! `DIFFPROBE_REQUIRE_REFS=1`, which makes it fail.

use alignment::directions::{
    adjusted_rand_index, agglomerative_cosine, cosine_silhouette, kmeans_from,
    normalized_mutual_info, purity,
};
use alignment::Matrix;
use serde_json::Value;

use crate::refs::{cases, floats, indices, size};

/// Labels renumbered by first appearance, so that partitions equal up to a permutation compare
/// equal.
fn canonical(labels: &[usize]) -> Vec<usize> {
    let mut seen = Vec::new();
    labels
        .iter()
        .map(|l| {
            if !seen.contains(l) {
                seen.push(*l);
            }
            seen.iter().position(|s| s == l).unwrap_or(0)
        })
        .collect()
}

fn worst(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn direction_clusters_match_sklearn() {
    let Some(doc) = crate::refs::reference("DIFFPROBE_DIRECTIONS_REF", "scripts/ref_directions.py")
    else {
        return;
    };
    for case in cases(&doc, "directions_cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let (n, d, k) = (size(case, "n"), size(case, "d"), size(case, "k"));
        let values = floats(&case["points"]);
        let points = Matrix::new("points", &values, n, d).unwrap();
        let c0 = floats(&case["c0"]);
        let fit = kmeans_from(&points, &Matrix::new("C0", &c0, k, d).unwrap(), 300).unwrap();
        let want = &case["kmeans"];
        assert_eq!(fit.labels, indices(&want["labels"]), "case {name}: k-means labels");
        assert_eq!(fit.iterations, size(want, "n_iter"), "case {name}: Lloyd passes");
        let centers = worst(&fit.centers, &floats(&want["centers"]));
        let inertia = (fit.inertia - want["inertia"].as_f64().unwrap()).abs();
        assert!(centers <= 1e-10 && inertia <= 1e-10, "case {name}: {centers:e}, {inertia:e}");
        let agg = agglomerative_cosine(&points, k).unwrap();
        assert_eq!(canonical(&agg), canonical(&indices(&case["agglomerative"])), "case {name}");
        let metrics = worst_metric(case, &points);
        assert!(metrics <= 1e-10, "case {name}: a metric differs by {metrics:e}");
        eprintln!(
            "case {name}: k-means {} passes, centers within {centers:.1e}, inertia within \
             {inertia:.1e}; agglomerative labels equal; metrics within {metrics:.1e}",
            fit.iterations
        );
    }
}

/// The largest difference of ARI, NMI, purity and silhouette from the reference's.
fn worst_metric(case: &Value, points: &Matrix<'_, f64>) -> f64 {
    let mut worst: f64 = 0.0;
    for m in case["metrics"].as_array().expect("metrics") {
        let (truth, predicted) = (indices(&m["truth"]), indices(&m["predicted"]));
        for (got, key) in [
            (adjusted_rand_index(&truth, &predicted).unwrap(), "ari"),
            (normalized_mutual_info(&truth, &predicted).unwrap(), "nmi"),
            (purity(&truth, &predicted).unwrap(), "purity"),
        ] {
            worst = worst.max((got - m[key].as_f64().unwrap()).abs());
        }
    }
    for s in case["silhouettes"].as_array().expect("silhouettes") {
        let got = cosine_silhouette(points, &indices(&s["labels"])).unwrap();
        worst = worst.max((got - s["silhouette"].as_f64().unwrap()).abs());
    }
    worst
}
