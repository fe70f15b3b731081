//! Odd-one-out alignment through the coordinator: a small MiniLM sweep with
//! `[analysis.alignment]` (every distance, the linear probe, an embedding regression) on
//! triplets the test plants over the demo ratings; the merged `report/alignment.parquet` must
//! equal the `alignment` library run on the same feature matrices. Then bad triplet and
//! embedding files, each refused at plan time (exit 2) naming the file, line or row and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alignment::{
    embedding_regression, linear_probe_fold, odd_one_out, Device, Distance,
    EmbeddingRegressionConfig, LinearProbeConfig, Matrix, Triplets,
};
use common::table::{analysis, read_alignment_rows, read_feature_block, AlignmentRow};

use crate::util;

const N: usize = 60;

/// The first `N` demo stimuli's 7 ratings, in file order, as written by `util::small_spec`.
fn ratings(dir: &Path) -> (Vec<String>, Vec<f64>) {
    let text = std::fs::read_to_string(dir.join("ratings.csv")).unwrap();
    let mut words = Vec::new();
    let mut values = Vec::new();
    for line in text.lines().skip(1) {
        let mut fields = line.split(',');
        words.push(fields.next().unwrap().to_string());
        values.extend(fields.map(|v| v.parse::<f64>().unwrap()));
    }
    assert_eq!(words.len(), N);
    (words, values)
}

/// A planted rule: triplets of distinct stimuli from a fixed LCG, the odd one out the one
/// farthest from the other two in the 7-d rating space (Euclidean); triplets without a unique
/// closest pair are skipped, so the rating space itself answers every triplet correctly.
fn planted_triplets(values: &[f64], m: usize) -> Vec<[usize; 3]> {
    let k = values.len() / N;
    let row = |i: usize| &values[i * k..(i + 1) * k];
    let dist = |a: usize, b: usize| -> f64 {
        row(a).iter().zip(row(b)).map(|(x, y)| (x - y) * (x - y)).sum()
    };
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((x >> 33) % N as u64) as usize
    };
    let mut out = Vec::new();
    while out.len() < m {
        let t = [next(), next(), next()];
        if t[0] == t[1] || t[0] == t[2] || t[1] == t[2] {
            continue;
        }
        let d = [dist(t[0], t[1]), dist(t[0], t[2]), dist(t[1], t[2])];
        let min = d.iter().copied().fold(f64::INFINITY, f64::min);
        if d.iter().filter(|&&v| (v - min).abs() < 1e-9).count() > 1 {
            continue;
        }
        // Pair (0,1) leaves out 2, (0,2) leaves out 1, (1,2) leaves out 0.
        let odd = 2 - d.iter().position(|&v| v == min).unwrap();
        let kept: Vec<usize> = (0..3).filter(|&i| i != odd).map(|i| t[i]).collect();
        out.push([kept[0], kept[1], t[odd]]);
    }
    out
}

fn write_triplets(path: &Path, rows: &[[usize; 3]]) {
    let text: String = rows.iter().map(|t| format!("{},{},{}\n", t[0], t[1], t[2])).collect();
    std::fs::write(path, text).unwrap();
}

const ALIGNMENT: &str = r#"
[analysis.alignment]
triplets = "triplets.csv"
description = "Planted by the e2e test."
distances = ["cosine", "euclidean", "dot"]
seed = 5
linear_probe = true
lambda = 0.001
learning_rate = 0.01
max_epochs = 4
embedding = "ratings.csv"
embedding_folds = 4
"#;

/// The N × D matrix of `key` from the run's committed capture files.
fn features(run: &Path, key: &str) -> (Vec<f32>, usize) {
    let files: Vec<String> = util::query(
        run,
        "SELECT output FROM units WHERE kind = 'capture' AND state = 'committed' ORDER BY seq",
        |r| r.get(0),
    );
    assert!(!files.is_empty());
    let mut x = Vec::new();
    let mut dim = 0;
    for f in files {
        let b = read_feature_block(&run.join(f), key).unwrap();
        dim = b.dim;
        x.resize(N * dim, 0.0);
        for (r, &s) in b.stimuli.iter().enumerate() {
            let s = s as usize;
            x[s * dim..(s + 1) * dim].copy_from_slice(&b.values[r * dim..(r + 1) * dim]);
        }
    }
    (x, dim)
}

fn find<'a>(
    rows: &'a [AlignmentRow],
    rep: &str,
    an: &str,
    distance: Option<&str>,
    fold: Option<u32>,
) -> &'a AlignmentRow {
    rows.iter()
        .find(|r| {
            r.representation() == rep
                && r.analysis() == an
                && r.distance().map(|d| d.name()) == distance
                && r.fold() == fold
        })
        .unwrap_or_else(|| panic!("no row {rep} {an} {distance:?} {fold:?}"))
}

#[test]
fn alignment_sweep_equals_the_library_on_the_same_matrices() {
    let dir = util::scratch("alignment");
    let spec = util::small_spec(&dir, N, ALIGNMENT);
    let (_, values) = ratings(&dir);
    let planted = planted_triplets(&values, 900);
    write_triplets(&dir.join("triplets.csv"), &planted);
    let s = spec.to_str().unwrap();
    let plan = util::run(&["plan", s], &dir);
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    let text = String::from_utf8_lossy(&plan.stdout);
    // 7 representations × (1 evaluate + 3 linear-probe folds).
    assert!(text.contains("+ 28 alignment (900 triplets)"), "{text}");
    let out = util::run(&["run", s, "--workers", "2"], &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = dir.join("runs/e2e");
    let merged = read_alignment_rows(&run.join("report/alignment.parquet")).unwrap();

    let n = N;
    let triplets = Triplets::new(planted.clone(), n).unwrap();
    let distances = [
        ("cosine", Distance::Cosine),
        ("euclidean", Distance::Euclidean),
        ("dot", Distance::NegDot),
    ];
    let k = values.len() / n;
    let v = Matrix::new("embedding", &values, n, k).unwrap();
    let probe_cfg = LinearProbeConfig {
        folds: 3,
        seed: 5,
        lambda: 0.001,
        learning_rate: 0.01,
        max_epochs: 4,
        ..LinearProbeConfig::default()
    };
    let reg_cfg = EmbeddingRegressionConfig { folds: 4, seed: 5, ..Default::default() };
    let mut cosine = BTreeMap::new();
    for layer in 0..=6 {
        let rep = format!("text.{layer}/mean");
        let (x, d) = features(&run, &rep);
        let f = Matrix::new("features", &x, n, d).unwrap();
        for (name, distance) in distances {
            let want = odd_one_out(&f, &triplets, distance).unwrap();
            let got = find(&merged, &rep, analysis::ODD_ONE_OUT, Some(name), None);
            let got = got.triplet_score().unwrap();
            assert_eq!(got.accuracy, want.accuracy, "{rep} {name}");
            assert_eq!(got.correct, want.correct as u32);
            let ties = want.predictions.iter().filter(|p| p.is_none()).count() as u32;
            assert_eq!(got.ties, ties);
            assert_eq!((got.n_triplets, got.n_concepts), (900, n as u32));
            if name == "cosine" {
                cosine.insert(rep.clone(), want.accuracy);
            }
        }
        let mut fold_acc = Vec::new();
        for fold in 0..3 {
            let want = linear_probe_fold(&f, &triplets, fold, &probe_cfg, &Device::Cpu).unwrap();
            let got = find(&merged, &rep, analysis::LINEAR_PROBE, Some("dot"), Some(fold as u32));
            let AlignmentRow::LinearProbeFold { score, training, .. } = got else {
                panic!("{got:?}")
            };
            assert_eq!(score.accuracy, want.test_accuracy, "{rep} fold {fold}");
            assert_eq!(score.n_triplets, want.n_test as u32);
            assert_eq!(training.n_train, want.n_train as u32);
            assert_eq!(training.n_dropped, want.n_dropped as u32);
            assert_eq!(training.epochs, want.epochs as u32);
            let loss = training.test_loss;
            assert!((loss - want.test_loss).abs() <= 1e-9 * want.test_loss.abs(), "{rep}");
            fold_acc.push(want.test_accuracy);
        }
        let mean = find(&merged, &rep, analysis::LINEAR_PROBE, Some("dot"), None);
        assert_eq!(mean.accuracy(), Some(fold_acc.iter().sum::<f64>() / 3.0));
        let want = embedding_regression(&f, &v, &triplets, &reg_cfg).unwrap();
        for fold in 0..4 {
            let got = find(&merged, &rep, analysis::EMBEDDING_REGRESSION, None, Some(fold));
            let AlignmentRow::RegressionFold { r2_dimensions, alpha_dimensions, .. } = got else {
                panic!("{got:?}")
            };
            assert_eq!(r2_dimensions, &want.r2[fold as usize], "{rep} fold {fold}");
            assert_eq!(alpha_dimensions, &want.alphas[fold as usize]);
        }
        let got = find(&merged, &rep, analysis::EMBEDDING_REGRESSION, Some("cosine"), None);
        assert_eq!(got.r2(), Some(want.overall_r2), "{rep}");
        assert_eq!(got.accuracy(), Some(want.predicted_odd_one_out.accuracy), "{rep}");
    }
    // The planted rule is Euclidean in the rating space, so that space answers every triplet.
    let human = find(&merged, "", analysis::HUMAN_EMBEDDING, Some("euclidean"), None);
    assert_eq!(human.accuracy(), Some(1.0));

    let acc = cosine.values().copied().fold(f64::NEG_INFINITY, f64::max);
    let first_best = cosine.iter().find(|(_, &a)| a == acc).unwrap().0;
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(md.contains("## Odd-one-out alignment"), "{md}");
    assert!(md.contains("Planted by the e2e test."));
    // The best representation (plan order breaks ties; text.0..text.6 sort like plan order).
    let line = format!("**Best representation** by cosine OOOA: `{first_best}`, {acc:.3}");
    assert!(md.contains(&line), "{line} not in\n{md}");
    let html = std::fs::read_to_string(run.join("report/report.html")).unwrap();
    let fig = &html[html.find(r#"<figure id="fig-alignment">"#).unwrap()..];
    let fig = &fig[..fig.find("</figure>").unwrap()];
    // 7 representations × (3 distances + linear probe + predicted embedding).
    assert_eq!(fig.matches(r#"class="bar""#).count(), 35);
}

fn set_path(key: &str, path: &Path) -> String {
    format!("analysis.alignment.{key}={:?}", path.display().to_string())
}

#[test]
fn bad_triplets_and_embeddings_exit_2_naming_file_line_and_field() {
    let dir = util::scratch("alignment_bad");
    let spec = util::small_spec(&dir, N, ALIGNMENT);
    let (words, values) = ratings(&dir);
    write_triplets(&dir.join("triplets.csv"), &planted_triplets(&values, 300));
    let t = |name: &str, text: &str| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let s = spec.display().to_string();
    let key = "analysis.alignment.triplets";

    let p = t("range.csv", "0,1,2\n3,4,60\n");
    let e = util::plan_error(&dir, &spec, &[&set_path("triplets", &p)]);
    assert_eq!(
        e,
        format!(
            "error: {s}: {key}: {}, line 2, field 2: index 60 is out of range for 60 concepts",
            p.display()
        )
    );
    let p = t("dup.csv", "0,1,2\n5,5,7\n");
    let e = util::plan_error(&dir, &spec, &[&set_path("triplets", &p)]);
    assert!(
        e.ends_with(&format!("{}, line 2, field 1: concept 5 repeats field 0", p.display())),
        "{e}"
    );
    let p = t("nan.csv", "0,NaN,2\n");
    let e = util::plan_error(&dir, &spec, &[&set_path("triplets", &p)]);
    assert!(e.contains("line 1, field 1: \"NaN\" is not a concept index"), "{e}");
    let p = t("two.csv", "0,1\n");
    let e = util::plan_error(&dir, &spec, &[&set_path("triplets", &p)]);
    assert!(e.contains("line 1: found 2 fields; expected 3"), "{e}");

    // Names: an unknown one, and one whose stimulus was dropped for a missing rating.
    let names = format!(
        "a,b,odd\n{},{},{}\n{},cheetah,{}\n",
        words[0], words[1], words[2], words[3], words[4]
    );
    let p = t("names.csv", &names);
    let by_name = [
        set_path("triplets", &p),
        "analysis.alignment.triplet_entries=\"names\"".into(),
        "analysis.alignment.triplet_header=true".into(),
    ];
    let by_name: Vec<&str> = by_name.iter().map(String::as_str).collect();
    let e = util::plan_error(&dir, &spec, &by_name);
    assert!(
        e.contains(&format!(
            "{key}: {}, line 3, field 1: unknown concept name \"cheetah\"",
            p.display()
        )),
        "{e}"
    );
    let csv = std::fs::read_to_string(dir.join("ratings.csv")).unwrap();
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    let cols: Vec<&str> = lines[2].split(',').collect();
    lines[2] = format!("{},,{}", cols[0], cols[2..].join(","));
    std::fs::write(dir.join("ratings.csv"), lines.join("\n") + "\n").unwrap();
    let p = t("names.csv", &format!("a,b,odd\n{},{},{}\n", words[0], words[1], words[2]));
    let e = util::plan_error(&dir, &spec, &by_name);
    assert!(
        e.contains(&format!(
            "{}, line 2, field 1: concept \"{}\" has no stimulus (no row in the features): the stimulus was dropped for missing ratings (row 3: column \"auditory\" has no numeric rating (\"\"))",
            p.display(),
            words[1]
        )),
        "{e}"
    );
    // By index, the dropped stimulus keeps its place in stimuli.file: index 1 is still it.
    let p = t("dropped.csv", "0,1,2\n");
    let e = util::plan_error(&dir, &spec, &[&set_path("triplets", &p)]);
    assert!(
        e.contains(&format!("line 1, field 1: concept \"{}\" has no stimulus", words[1])),
        "{e}"
    );
    std::fs::write(dir.join("ratings.csv"), csv).unwrap();

    // An index list: indices are its lines, matched to stimuli by name.
    let list = t("concepts.txt", &format!("aardvark\n{}\n{}\n{}\n", words[7], words[8], words[9]));
    let p = t("listed.csv", "1,2,3\n0,1,2\n");
    let e =
        util::plan_error(&dir, &spec, &[&set_path("triplets", &p), &set_path("index_list", &list)]);
    assert!(
        e.contains(
            "line 2, field 0: concept \"aardvark\" has no stimulus (no row in the features)"
        ),
        "{e}"
    );

    // The embedding: a NaN, and a stimulus without a row.
    let mut emb = String::from("word,d1,d2\n");
    for (i, w) in words.iter().enumerate() {
        emb.push_str(&format!(
            "{w},{i},{}\n",
            if i == 4 { "NaN".into() } else { format!("{}", i * 2) }
        ));
    }
    let p = t("emb.csv", &emb);
    let e = util::plan_error(&dir, &spec, &[&set_path("embedding", &p)]);
    assert_eq!(
        e,
        format!(
            "error: {s}: analysis.alignment.embedding: {}: row 6: column \"d2\" is not a finite number (\"NaN\")",
            p.display()
        )
    );
    let short: String = emb
        .lines()
        .filter(|l| !l.starts_with(&format!("{},", words[9])))
        .map(|l| format!("{l}\n"))
        .collect();
    let p = t("emb.csv", &short.replace("NaN", "1"));
    let e = util::plan_error(&dir, &spec, &[&set_path("embedding", &p)]);
    assert!(e.ends_with(&format!("no row with word = \"{}\" (stimulus 9)", words[9])), "{e}");

    // Too few triplets for the linear probe's folds: refused before anything runs.
    let p = t("few.csv", "0,1,2\n3,4,5\n");
    let e = util::plan_error(&dir, &spec, &[&set_path("triplets", &p)]);
    assert!(e.contains("analysis.alignment.probe_folds: fold 0 of 3 keeps"), "{e}");
    assert!(e.contains("every fold needs some of each"), "{e}");
}
