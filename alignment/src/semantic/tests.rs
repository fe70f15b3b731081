//! Unit tests of the semantic lens: planted classes f = μ_c + σε, σ → 0 is perfect, shuffled
//! classes score chance, drift of identical descriptors is exactly 0.

use super::*;
use crate::matrix::Matrix;
use crate::odd_one_out::Distance;
use crate::rng::{normal, shuffle, stream, Stream};

/// `classes × per` objects in `d` dimensions, two objects per image, f = μ_c + σε.
fn planted(
    classes: usize,
    per: usize,
    d: usize,
    sigma: f64,
    seed: u64,
) -> (Vec<f64>, Vec<usize>, Vec<usize>) {
    let mut rng = stream(Stream::Init, seed, 99);
    let means: Vec<f64> = (0..classes * d).map(|_| 3.0 * normal(&mut rng)).collect();
    let mut f = Vec::new();
    let mut labels = Vec::new();
    for c in 0..classes {
        for _ in 0..per {
            f.extend((0..d).map(|k| means[c * d + k] + sigma * normal(&mut rng)));
            labels.push(c);
        }
    }
    let images = (0..labels.len()).map(|i| i / 2).collect();
    (f, labels, images)
}

#[test]
fn sigma_to_zero_gives_perfect_scores() {
    let (f, classes, images) = planted(4, 6, 5, 1e-9, 1);
    let m = Matrix::new("features", &f, classes.len(), 5).unwrap();
    let items = Items::new(&classes, &images).unwrap();
    let config = SemanticConfig { bootstrap: 50, permutations: 20, seed: 3 };
    for distance in Distance::SEMANTIC {
        let s = scores(&DistanceMatrix::new(&m, distance), &items, &config).unwrap();
        assert_eq!(s.knn1.value, 1.0, "{distance}");
        assert_eq!(s.knn5.value, 1.0, "{distance}");
        assert_eq!(s.map_at_r.value, 1.0, "{distance}");
        assert_eq!(s.auc.value, 1.0, "{distance}");
        assert!(s.ratio.value > 1e3, "{distance}: {}", s.ratio.value);
        assert!(s.silhouette.value > 0.999, "{distance}");
        assert!(s.knn1.chance < 0.4 && s.map_at_r.chance < 0.4, "{distance}");
    }
}

#[test]
fn shuffled_classes_score_chance() {
    let (f, mut classes, images) = planted(4, 40, 8, 1.0, 2);
    shuffle(&mut classes, &mut stream(Stream::Init, 5, 0));
    let m = Matrix::new("features", &f, classes.len(), 8).unwrap();
    let items = Items::new(&classes, &images).unwrap();
    let config = SemanticConfig { bootstrap: 200, permutations: 100, seed: 4 };
    let s = scores(&DistanceMatrix::new(&m, Distance::Euclidean), &items, &config).unwrap();
    for (name, score) in [
        ("1-NN", s.knn1),
        ("5-NN", s.knn5),
        ("mAP@R", s.map_at_r),
        ("AUC", s.auc),
        ("ratio", s.ratio),
    ] {
        let z = (score.value - score.chance) / score.se;
        assert!(z.abs() < 3.5, "{name}: {} vs chance {} ± {}", score.value, score.chance, score.se);
        assert!(score.ci_low <= score.value && score.value <= score.ci_high, "{name}");
    }
    assert!(s.silhouette.value.abs() < 0.1, "silhouette {}", s.silhouette.value);
}

#[test]
fn identical_descriptors_drift_exactly_zero_and_retrieve_themselves() {
    let (f, classes, images) = planted(3, 6, 4, 0.5, 3);
    let m = Matrix::new("features", &f, classes.len(), 4).unwrap();
    let items = Items::new(&classes, &images).unwrap();
    let config = SemanticConfig::default();
    for distance in Distance::SEMANTIC {
        let dm = DistanceMatrix::new(&m, distance);
        let inter = mean_inter_class_distance(&dm, &items).unwrap();
        let (per, score) = drift(&m, &m, distance, inter, &config).unwrap();
        assert!(per.iter().all(|&d| d == 0.0) && score.value == 0.0, "{distance}");
        let r = cross_retrieval(&m, &m, &items, distance, &config).unwrap();
        assert_eq!(r.instance_top1.value, 1.0, "{distance}");
    }
}

#[test]
fn ties_and_votes_follow_the_stated_rules() {
    // Query 0 (image 0); neighbours 1, 2, 3 at distances 1, 1, 2 from other images.
    let f = [0.0, 1.0, -1.0, 2.0, 2.0];
    let m = Matrix::new("features", &f, 5, 1).unwrap();
    let dm = DistanceMatrix::new(&m, Distance::L1);
    let images = [0, 1, 2, 3, 0];
    let items = Items::new(&[0, 1, 0, 1, 0], &images).unwrap();
    assert_eq!(pass::ranked(dm.row(0), &items, 0), vec![1, 2, 3]);
    // Votes 1:1 between classes 1 and 0: class 1 ranks first.
    assert_eq!(scores::vote(&[1, 2], &[0, 1, 0, 1, 0]), 1);
    assert_eq!(scores::random_ranking_ap(1, 1), 1.0);
    assert!((scores::random_ranking_ap(1, 4) - 0.25).abs() < 1e-15);
}

#[test]
fn ablation_adds_the_informative_tap_first() {
    let (f, classes, images) = planted(3, 10, 4, 0.3, 6);
    let mut rng = stream(Stream::Init, 7, 0);
    let noise: Vec<f64> = (0..f.len()).map(|_| normal(&mut rng)).collect();
    let taps = [
        Matrix::new("noise", &noise, classes.len(), 4).unwrap(),
        Matrix::new("signal", &f, classes.len(), 4).unwrap(),
    ];
    let items = Items::new(&classes, &images).unwrap();
    let config = SemanticConfig { bootstrap: 0, permutations: 0, seed: 0 };
    let score = |dm: &Distances, it: &Items<'_>| knn_accuracy(dm, it, 1, &config).map(|s| s.value);
    let a = ablation(&taps, &items, Distance::Euclidean, usize::MAX, &score).unwrap();
    assert_eq!(a.path[0].taps, vec![1]);
    assert_eq!(a.path[1].taps, vec![1, 0]);
    assert_eq!(a.best, 0);
    assert!(a.singles[1] > a.singles[0]);
}

#[test]
fn bad_labels_are_refused() {
    let m = Matrix::new("features", &[0.0, 1.0, 2.0], 3, 1).unwrap();
    let dm = DistanceMatrix::new(&m, Distance::L1);
    assert!(Items::new(&[0, 1], &[0]).is_err());
    let items = Items::new(&[0, 1], &[0, 1]).unwrap();
    let e = knn_accuracy(&dm, &items, 1, &SemanticConfig::default()).unwrap_err();
    assert_eq!(e.to_string(), "classes has 2 entries but the descriptors have 3 rows");
    let one_image = Items::new(&[0, 1, 1], &[0, 0, 0]).unwrap();
    assert!(knn_accuracy(&dm, &one_image, 1, &SemanticConfig::default()).is_err());
    let one_class = Items::new(&[0, 0, 0], &[0, 1, 2]).unwrap();
    assert!(silhouette(&dm, &one_class, &SemanticConfig::default()).is_err());
}

/// Distances computed in row blocks, of any size, are the held matrix's rows bit for bit, so
/// every score is identical; the budget decides which a set gets.
#[test]
fn blocked_distances_give_the_held_scores() {
    let (f, classes, images) = planted(5, 9, 6, 1.0, 11);
    let n = classes.len();
    let m = Matrix::new("features", &f, n, 6).unwrap();
    let items = Items::new(&classes, &images).unwrap();
    let config = SemanticConfig { bootstrap: 30, permutations: 10, seed: 2 };
    let tracks: Vec<Option<Track>> = (0..n)
        .map(|i| Some(Track { instance: i % 7, video: i % 2, frame: i as i64 / 7 }))
        .collect();
    for distance in Distance::SEMANTIC {
        let held = DistanceMatrix::new(&m, distance);
        let want = scores(&held, &items, &config).unwrap();
        let inter = mean_inter_class_distance(&held, &items).unwrap();
        let gaps = drift_by_gap(&held, &tracks, &[1, 2, 3], inter).unwrap();
        let reid = reidentification(&held, &tracks, &config).unwrap();
        for block in [1, 4, n, n + 5] {
            let blocked = BlockedDistances::new(&m, distance, block);
            let mut rows = Vec::new();
            blocked.for_each_row(&mut |i, row| {
                assert_eq!(rows.len(), i * n);
                rows.extend_from_slice(row);
            });
            assert_eq!(rows, held.values(), "{distance}, block {block}");
            assert_eq!(scores(&blocked, &items, &config).unwrap(), want, "{distance}");
            assert_eq!(mean_inter_class_distance(&blocked, &items).unwrap(), inter);
            assert_eq!(drift_by_gap(&blocked, &tracks, &[1, 2, 3], inter).unwrap(), gaps);
            assert_eq!(reidentification(&blocked, &tracks, &config).unwrap(), reid);
        }
        let budget = 8 * n * 3;
        assert!(
            matches!(Distances::new(&m, distance, budget), Distances::Blocked(ref b) if b.block() == 3)
        );
        assert!(matches!(Distances::new(&m, distance, 8 * n * n), Distances::Held(_)));
    }
}

/// The streamed AUC (positives sorted, negatives placed by binary search) equals the plain
/// Mann–Whitney count over all pairs, ties ½, on integer features full of ties; its bootstrap
/// interval holds the value.
#[test]
fn the_streamed_auc_counts_every_pair_and_tie() {
    let mut rng = stream(Stream::Init, 21, 0);
    let n = 40;
    let f: Vec<f64> = (0..n * 2).map(|_| (normal(&mut rng) * 2.0).round()).collect();
    let classes: Vec<usize> = (0..n).map(|i| (i * 7) % 3).collect();
    let images: Vec<usize> = (0..n).map(|i| i / 3).collect();
    let m = Matrix::new("features", &f, n, 2).unwrap();
    let items = Items::new(&classes, &images).unwrap();
    let dm = DistanceMatrix::new(&m, Distance::L1);
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for i in 0..n {
        for j in 0..n {
            if images[i] != images[j] {
                let d = dm.row(i)[j];
                if classes[i] == classes[j] {
                    pos.push(d)
                } else {
                    neg.push(d)
                }
            }
        }
    }
    let wins: f64 = neg
        .iter()
        .map(|&d| {
            pos.iter()
                .map(|&p| {
                    if p < d {
                        1.0
                    } else if p == d {
                        0.5
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
        })
        .sum();
    let plain = wins / (pos.len() * neg.len()) as f64;
    let config = SemanticConfig { bootstrap: 200, permutations: 0, seed: 1 };
    let auc = pair_auc(&dm, &items, &config).unwrap();
    assert!((auc.value - plain).abs() < 1e-14, "{} vs {plain}", auc.value);
    assert!(auc.ci_low <= auc.value && auc.value <= auc.ci_high, "{auc:?}");
    assert!(auc.se > 0.0 && auc.se < 0.2, "{auc:?}");
}
