//! `[analysis.semantic]` through the coordinator on the scenes demo (`jobs/demo-lens.toml`:
//! tiny SD, real images, one masked object per scene, seen through four transforms): every row,
//! drift and cross-retrieval included, equals the `alignment::semantic` library on the committed
//! matrices, and a bad objects file or transform is refused at plan time, naming it.

use std::path::Path;

use alignment::semantic::{
    ablation, cross_retrieval, drift, knn_accuracy, mean_inter_class_distance, scores,
    DistanceMatrix, Items, SemanticConfig,
};
use alignment::{Distance, Matrix};
use common::table::{read_feature_block, read_semantic_rows};

use crate::util;

#[test]
fn semantic_rows_equal_the_library_on_the_same_matrices() {
    let dir = util::scratch("lens");
    let spec = util::repo().join("jobs/demo-lens.toml");
    let run = util::run_spec(&dir, &spec, "demo-lens", "2", &[]);
    let rows = read_semantic_rows(&run.join("report/semantic.parquet")).unwrap();
    assert_eq!(
        rows.len(),
        6 * 5 * 6 + 6 * 4 * 5 * 9 + 2 * 5 * 7,
        "6 representations × 5 distances × 6 scores, their 4 transforms with 3 more scores, and \
         per noise level and distance an ablation of 3 taps (3 alone, 3 steps, the best)"
    );

    let data = common::stimuli::Dataset::open(&run.join("dataset.json")).unwrap();
    let objects =
        std::fs::read_to_string(util::repo().join("data/demo/scenes/objects.csv")).unwrap();
    let (mut items, mut classes) = (Vec::new(), Vec::new());
    for line in objects.lines().skip(1) {
        let (stimulus, class) = line.split_once(',').unwrap();
        items.push(data.stimuli.iter().position(|s| s == stimulus).unwrap());
        classes.push(usize::from(class == "box"));
    }
    let images: Vec<usize> = (0..items.len()).collect();
    let key = "mid_block/mask_mean/n20/empty";
    let x = features(&run, key, data.len());
    let d = x.len() / data.len();
    let picked: Vec<f32> = items.iter().flat_map(|&i| x[i * d..(i + 1) * d].to_vec()).collect();
    let m = Matrix::new("objects", &picked, items.len(), d).unwrap();
    let config = SemanticConfig { bootstrap: 500, permutations: 100, seed: 20240501 };
    for (name, distance) in
        [("cosine", Distance::Cosine), ("l1", Distance::L1), ("correlation", Distance::Correlation)]
    {
        let want = scores(
            &DistanceMatrix::new(&m, distance),
            &Items::new(&classes, &images).unwrap(),
            &config,
        )
        .unwrap();
        let got = |score: &str| {
            rows.iter()
                .find(|r| r.representation == key && r.distance == name && r.score == score)
                .unwrap()
        };
        for (score, w) in [
            ("knn1", want.knn1),
            ("map_at_r", want.map_at_r),
            ("auc", want.auc),
            ("silhouette", want.silhouette),
        ] {
            let g = got(score);
            assert_eq!(
                (g.value, g.chance, g.ci_low, g.ci_high),
                (w.value, w.chance, w.ci_low, w.ci_high),
                "{name} {score}"
            );
        }
    }

    // Invariance rows: the library's drift and cross-retrieval of the transformed matrix
    // against the untransformed one.
    let turned = features(&run, &format!("{key}/t:rot90"), data.len());
    let picked_t: Vec<f32> =
        items.iter().flat_map(|&i| turned[i * d..(i + 1) * d].to_vec()).collect();
    assert_ne!(picked_t, picked, "rot90 left the descriptors unchanged");
    let mt = Matrix::new("turned", &picked_t, items.len(), d).unwrap();
    let it = Items::new(&classes, &images).unwrap();
    let inter = mean_inter_class_distance(&DistanceMatrix::new(&m, Distance::Cosine), &it).unwrap();
    let (_, want_drift) = drift(&m, &mt, Distance::Cosine, inter, &config).unwrap();
    let want_cross = cross_retrieval(&m, &mt, &it, Distance::Cosine, &config).unwrap();
    let got = |score: &str| {
        rows.iter()
            .find(|r| {
                r.representation == format!("{key}/t:rot90")
                    && r.distance == "cosine"
                    && r.score == score
            })
            .unwrap()
    };
    for (score, w) in [
        ("drift", want_drift),
        ("cross_class_top1", want_cross.class_top1),
        ("cross_instance_top1", want_cross.instance_top1),
    ] {
        let g = got(score);
        assert_eq!((g.value, g.chance, g.ci_low), (w.value, w.chance, w.ci_low), "{score}");
    }
    assert!(want_drift.value > 0.0);

    // The ablation rows: the library's forward selection on the committed matrices.
    let taps =
        ["down_blocks.0", "mid_block", "up_blocks.1"].map(|t| format!("{t}/mask_mean/n80/empty"));
    let mats: Vec<Vec<f32>> = taps
        .iter()
        .map(|k| {
            let x = features(&run, k, data.len());
            let d = x.len() / data.len();
            items.iter().flat_map(|&i| x[i * d..(i + 1) * d].to_vec()).collect()
        })
        .collect();
    let ms: Vec<Matrix<'_, f32>> = mats
        .iter()
        .map(|v| Matrix::new("tap", v, items.len(), v.len() / items.len()).unwrap())
        .collect();
    let quick = SemanticConfig { bootstrap: 0, permutations: 0, seed: 20240501 };
    let knn1 = |dm: &DistanceMatrix, it: &Items<'_>| Ok(knn_accuracy(dm, it, 1, &quick)?.value);
    let want = ablation(&ms, &it, Distance::L1, &knn1).unwrap();
    let got: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| {
            r.distance == "l1" && r.score == "ablation_step" && r.representation.contains("n80")
        })
        .map(|r| (r.representation.clone(), r.value))
        .collect();
    let want: Vec<(String, f64)> = want
        .path
        .iter()
        .map(|s| {
            (s.taps.iter().map(|&t| taps[t].as_str()).collect::<Vec<_>>().join(" + "), s.score)
        })
        .collect();
    assert_eq!(got, want);

    let bad = dir.join("objects.csv");
    std::fs::write(&bad, "stimulus,class\nscene000,box\nscene999,box\n").unwrap();
    let set = format!("analysis.semantic.objects={bad:?}");
    let e = util::plan_error(&dir, &spec, &[&set]);
    assert!(
        e.contains("analysis.semantic.objects")
            && e.contains("objects.csv:3")
            && e.contains("scene999"),
        "{e}"
    );
    let e = util::plan_error(&dir, &spec, &["capture.image.transforms=[\"rot45\"]"]);
    assert!(e.contains("capture.image.transforms") && e.contains("rot45"), "{e}");
    let e = util::plan_error(&dir, &spec, &["capture.image.transforms=[\"flip_h\", \"flip_h\"]"]);
    assert!(e.contains("capture.image.transforms") && e.contains("twice"), "{e}");
}

/// The N × D matrix of `key` from the run's committed capture files.
fn features(run: &Path, key: &str, n: usize) -> Vec<f32> {
    let files: Vec<String> = util::query(
        run,
        "SELECT output FROM units WHERE kind = 'capture' AND state = 'committed' ORDER BY seq",
        |r| r.get(0),
    );
    let mut x = Vec::new();
    for f in files {
        let b = read_feature_block(&run.join(f), key).unwrap();
        x.resize(n * b.dim, 0.0);
        for (r, &s) in b.stimuli.iter().enumerate() {
            let s = s as usize;
            x[s * b.dim..(s + 1) * b.dim].copy_from_slice(&b.values[r * b.dim..(r + 1) * b.dim]);
        }
    }
    x
}
