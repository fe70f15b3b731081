//! Unit tests of the prompt directions on planted h(p, r) = b_r + Σ_c a_pc·e_c + σε with a large
//! shared per-replicate term b_r: paired directions recover Σ a·e with error σ√(2·dim / R), the
//! unpaired estimate does far worse, planted loadings give the planted β, equal prompts give 0;
//! well separated blobs are clustered perfectly, random labels score ARI ≈ 0.

use super::*;
use crate::error::AlignmentError;
use crate::matrix::Matrix;
use crate::rng::{normal, shuffle, stream, Stream};

/// h of the prompts with `loadings` (one row per prompt, padded with zeros to `dim`), `r`
/// replicates, shared term of scale `shared`, noise σ; row p · r + s.
fn planted(
    loadings: &[Vec<f64>],
    dim: usize,
    r: usize,
    shared: f64,
    sigma: f64,
    seed: u64,
) -> Vec<f64> {
    let mut rng = stream(Stream::Init, seed, 77);
    let b: Vec<f64> = (0..r * dim).map(|_| shared * normal(&mut rng)).collect();
    let mut h = Vec::with_capacity(loadings.len() * r * dim);
    for a in loadings {
        for s in 0..r {
            h.extend((0..dim).map(|k| {
                b[s * dim + k] + a.get(k).copied().unwrap_or(0.0) + sigma * normal(&mut rng)
            }));
        }
    }
    h
}

fn norm_of_difference(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt()
}

/// The planted direction a_p − a_b, padded to `dim`.
fn planted_direction(p: &[f64], b: &[f64], dim: usize) -> Vec<f64> {
    (0..dim).map(|k| p.get(k).unwrap_or(&0.0) - b.get(k).unwrap_or(&0.0)).collect()
}

#[test]
fn paired_directions_recover_the_plant_with_error_sigma_over_root_r() {
    let loadings = vec![vec![3.0, -1.0, 2.0], vec![0.5, 1.0, -1.0]];
    let (dim, sigma) = (400, 1.0);
    let truth = planted_direction(&loadings[0], &loadings[1], dim);
    for r in [16, 64] {
        let values = planted(&loadings, dim, r, 100.0, sigma, r as u64);
        let h = Replicates::new(Matrix::new("h", &values, 2 * r, dim).unwrap(), r).unwrap();
        let paired = norm_of_difference(&direction(&h, 0, 1).unwrap(), &truth);
        let expected = sigma * (2.0 * dim as f64 / r as f64).sqrt();
        assert!((paired / expected - 1.0).abs() < 0.15, "R {r}: error {paired} vs {expected}");
        // Independent replicate sets: the base prompt's rows come from another draw of b_r.
        let other = planted(&loadings, dim, r, 100.0, sigma, 1000 + r as u64);
        let p = Matrix::new("h", &values[..r * dim], r, dim).unwrap();
        let b = Matrix::new("h", &other[r * dim..], r, dim).unwrap();
        let unpaired = norm_of_difference(&unpaired_direction(&p, &b).unwrap(), &truth);
        assert!(unpaired > 30.0 * paired, "R {r}: unpaired {unpaired} vs paired {paired}");
    }
}

#[test]
fn the_same_prompt_twice_gives_exactly_zero() {
    let loadings = vec![vec![1.0, 2.0], vec![-1.0, 0.5]];
    let mut values = planted(&loadings, 6, 5, 100.0, 0.7, 3);
    let first: Vec<f64> = values[..5 * 6].to_vec();
    values.extend(first); // prompt 2 = a copy of prompt 0's rows
    let h = Replicates::new(Matrix::new("h", &values, 15, 6).unwrap(), 5).unwrap();
    assert!(direction(&h, 1, 1).unwrap().iter().all(|&v| v == 0.0));
    assert!(direction(&h, 2, 0).unwrap().iter().all(|&v| v == 0.0));
    assert!(direction(&h, 1, 0).unwrap().iter().any(|&v| v != 0.0));
}

/// Prompts: 0 man, 1 woman, 2 person, then queries; loadings on (gender, profession, other).
fn professions() -> Vec<Vec<f64>> {
    vec![
        vec![1.0, 0.0, 0.0],
        vec![-1.0, 0.0, 0.0],
        vec![0.0, 0.0, 0.0],
        vec![0.6, 2.0, 0.0],
        vec![-0.3, 1.0, 1.0],
        vec![0.0, 0.0, 2.0],
        vec![0.9, -0.5, 0.2],
    ]
}

#[test]
fn planted_loadings_give_the_planted_beta() {
    let loadings = professions();
    let (dim, r) = (5, 6);
    let values = planted(&loadings, dim, r, 100.0, 0.0, 4);
    let h =
        Replicates::new(Matrix::new("h", &values, loadings.len() * r, dim).unwrap(), r).unwrap();
    let axis = Axis { positive: 0, negative: 1, neutral: 2 };
    let config = DirectionsConfig { bootstrap: 200, seed: 1 };
    let report = bias(&h, axis, &[3, 4, 5, 6], 2, &config).unwrap();
    let a = planted_direction(&loadings[0], &loadings[1], dim);
    for b in &report.biases {
        let d = planted_direction(&loadings[b.query], &loadings[2], dim);
        let want = cosine(&d, &a);
        let projection = d[0] * a[0] / a[0].abs();
        assert!(
            (b.beta.value - want).abs() < 1e-12,
            "query {}: {} vs {want}",
            b.query,
            b.beta.value
        );
        assert!((b.projection.value - projection).abs() < 1e-12, "query {}", b.query);
        // σ = 0: every resample gives the same β.
        assert!((b.beta.ci_low - want).abs() < 1e-9 && (b.beta.ci_high - want).abs() < 1e-9);
        assert!((b.projection.ci_high - projection).abs() < 1e-9);
    }
    assert_eq!(report.biases[2].beta.value, 0.0, "an orthogonal query has β = 0");
    assert_eq!(report.sign_test, SignTest { positive: 2, nonzero: 3, p_value: 1.0 });
}

#[test]
fn bootstrap_ci_contains_the_true_beta_and_shrinks_with_r() {
    let loadings = professions();
    let (dim, sigma) = (4, 0.3);
    let a = planted_direction(&loadings[0], &loadings[1], dim);
    let truth = cosine(&planted_direction(&loadings[3], &loadings[2], dim), &a);
    let config = DirectionsConfig { bootstrap: 1000, seed: 2 };
    let axis = Axis { positive: 0, negative: 1, neutral: 2 };
    let width = |r: usize| -> f64 {
        let values = planted(&loadings, dim, r, 100.0, sigma, 40 + r as u64);
        let m = Matrix::new("h", &values, loadings.len() * r, dim).unwrap();
        let beta =
            bias(&Replicates::new(m, r).unwrap(), axis, &[3], 2, &config).unwrap().biases[0].beta;
        assert!(beta.ci_low <= truth && truth <= beta.ci_high, "R {r}: {truth} outside {beta:?}");
        beta.ci_high - beta.ci_low
    };
    let (narrow, wide) = (width(64), width(8));
    assert!(narrow < 0.6 * wide, "CI width {narrow} at R = 64 vs {wide} at R = 8");
}

#[test]
fn descriptors_rank_by_their_planted_cosine() {
    // Prompts: 0 base, 1 concept, then descriptors at decreasing angles to the concept.
    let loadings = vec![
        vec![0.0, 0.0],
        vec![2.0, 0.0],
        vec![1.0, 1.0],
        vec![1.0, 0.1],
        vec![-1.0, 0.5],
        vec![0.0, 3.0],
    ];
    let values = planted(&loadings, 3, 4, 50.0, 0.0, 5);
    let h = Replicates::new(Matrix::new("h", &values, 24, 3).unwrap(), 4).unwrap();
    let ranked = rank_descriptors(&h, &[2, 3, 4, 5], 1, 0, &DirectionsConfig::default()).unwrap();
    let order: Vec<usize> = ranked.iter().map(|r| r.descriptor).collect();
    assert_eq!(order, vec![3, 2, 5, 4]);
    assert!((ranked[1].score.value - 0.5_f64.sqrt()).abs() < 1e-12);
    assert!(ranked[2].score.value.abs() < 1e-12);
}

#[test]
fn sign_test_is_the_exact_binomial() {
    let t = sign_test(&[1.0; 10]);
    assert_eq!((t.positive, t.nonzero), (10, 10));
    assert!((t.p_value - 2.0 / 1024.0).abs() < 1e-15);
    // k = 2 of 10: 2 · (1 + 10 + 45) / 1024; zeros do not count.
    let mut v = vec![-1.0; 8];
    v.extend([0.5, 0.2, 0.0, 0.0]);
    assert!((sign_test(&v).p_value - 112.0 / 1024.0).abs() < 1e-15);
    assert_eq!(sign_test(&[0.0, 0.0]).p_value, 1.0);
    let large = sign_test(&vec![1.0; 5000]);
    assert!(large.p_value >= 0.0 && large.p_value < 1e-300);
}

/// `k` blobs of `per` points around 5·e_c in `dim` dimensions, noise 0.2, and their classes.
fn blobs(k: usize, per: usize, dim: usize, seed: u64) -> (Vec<f64>, Vec<usize>) {
    let mut rng = stream(Stream::Init, seed, 5);
    let mut points = Vec::new();
    let mut classes = Vec::new();
    for c in 0..k {
        for _ in 0..per {
            points
                .extend((0..dim).map(|j| if j == c { 5.0 } else { 0.0 } + 0.2 * normal(&mut rng)));
            classes.push(c);
        }
    }
    (points, classes)
}

#[test]
fn separated_blobs_are_clustered_perfectly_by_both_methods() {
    let (raw, classes) = blobs(4, 15, 10, 6);
    let unit = l2_normalized(&Matrix::new("h", &raw, 60, 10).unwrap());
    let points = Matrix::new("h", &unit, 60, 10).unwrap();
    let config = KMeansConfig { k: 4, restarts: 10, max_iter: 300, seed: 3 };
    let km = kmeans(&points, &config).unwrap().labels;
    let agg = agglomerative_cosine(&points, 4).unwrap();
    for labels in [&km, &agg] {
        assert_eq!(adjusted_rand_index(&classes, labels).unwrap(), 1.0);
        assert!((normalized_mutual_info(&classes, labels).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(purity(&classes, labels).unwrap(), 1.0);
    }
    assert!(cosine_silhouette(&points, &agg).unwrap() > 0.9);
}

#[test]
fn random_labels_score_ari_near_zero_and_metrics_ignore_permutations() {
    let mut rng = stream(Stream::Init, 8, 0);
    let truth: Vec<usize> = (0..3000).map(|i| i % 5).collect();
    let mut random = truth.clone();
    shuffle(&mut random, &mut rng);
    let ari = adjusted_rand_index(&truth, &random).unwrap();
    assert!(ari.abs() < 0.005, "ARI of a random labelling {ari}");
    assert!(normalized_mutual_info(&truth, &random).unwrap() < 0.005);
    let renamed: Vec<usize> = random.iter().map(|&l| (l + 3) * 7).collect();
    assert_eq!(adjusted_rand_index(&truth, &renamed).unwrap(), ari);
    let (a, b) = ([0, 0, 1, 1], [5, 5, 2, 2]);
    assert_eq!(adjusted_rand_index(&a, &b).unwrap(), 1.0);
    assert_eq!(normalized_mutual_info(&a, &b).unwrap(), 1.0);
    assert!(adjusted_rand_index(&a, &[0, 1, 0, 1]).unwrap() < 0.0);
}

#[test]
fn lloyd_from_given_centroids_ends_at_the_means_of_its_clusters() {
    let (raw, _) = blobs(3, 10, 4, 9);
    let points = Matrix::new("h", &raw, 30, 4).unwrap();
    let c0: Vec<f64> = [0, 1, 2].iter().flat_map(|&i| points.row(i).to_vec()).collect();
    let fit = kmeans_from(&points, &Matrix::new("C0", &c0, 3, 4).unwrap(), 300).unwrap();
    for c in 0..3 {
        let members: Vec<usize> = (0..30).filter(|&i| fit.labels[i] == c).collect();
        for j in 0..4 {
            let mean =
                members.iter().map(|&i| points.row(i)[j]).sum::<f64>() / members.len() as f64;
            assert!((fit.centers[c * 4 + j] - mean).abs() < 1e-12);
        }
    }
    assert!(fit.inertia > 0.0 && fit.iterations >= 2);
}

#[test]
fn bad_inputs_are_refused_by_name() {
    let values = vec![0.5; 12];
    let m = Matrix::new("h", &values, 6, 2).unwrap();
    let e = Replicates::new(m, 4).unwrap_err();
    assert_eq!(e.to_string(), "h has 6 rows, not a positive multiple of 4 replicates");
    let h = Replicates::new(m, 3).unwrap();
    let e = direction(&h, 2, 0).unwrap_err();
    assert_eq!(e.to_string(), "prompt 2 is out of range for 2 prompts");
    let axis = Axis { positive: 0, negative: 1, neutral: 1 };
    let e = bias(&h, axis, &[0], 1, &DirectionsConfig::default()).unwrap_err();
    assert!(matches!(e, AlignmentError::NotScorable { score: "bias", .. }), "{e}");
    let e = agglomerative_cosine(&m, 7).unwrap_err();
    assert_eq!(e.to_string(), "cannot make 7 clusters of 6 points (need 1 ≤ k ≤ points)");
    let e = adjusted_rand_index(&[0, 1], &[0]).unwrap_err();
    assert!(matches!(e, AlignmentError::LabelMismatch { truth: 2, predicted: 1 }));
}
