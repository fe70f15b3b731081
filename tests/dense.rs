//! `[analysis.dense_probe]` through the coordinator on the scenes demo (`jobs/demo-dense.toml`,
//! tiny SD in real-image mode): targets planted as a fixed linear map of the captured tokens
//! (nearest-upsampled to the image) are recovered with ρ = 1 and Dice = 1 — which a transposed
//! h/w or a wrong token order would break — in the same run grown with new labels (captures
//! reused); the tables do not depend on the worker count; a missing label file is refused at
//! plan time, naming it.

use std::io::Write;
use std::path::{Path, PathBuf};

use common::table::{read_dense_rows, read_feature_block_if_present};

use crate::util;

const KEY: &str = "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0/none/n20/empty";
/// KEY through the weight-permuted U-Net (the demo's `control_seed = 7`).
const CONTROL: &str =
    "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0/none/p7/n20/empty";
const SIZE: usize = 32;
/// KEY's token grid: the 32 px image is a 16 × 16 latent, the mid block one downsampling below.
const GRID: usize = 8;

fn demo_spec() -> PathBuf {
    util::repo().join("jobs/demo-dense.toml")
}

fn run(dir: &Path, name: &str, workers: &str, sets: &[String]) -> PathBuf {
    util::run_spec(dir, &demo_spec(), name, workers, sets)
}

/// A little-endian float64 `.npy` of an `n × n` map.
fn write_npy(path: &Path, values: &[f64], n: usize) {
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({n}, {n}), }}");
    while (header.len() + 11) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    for v in values {
        f.write_all(&v.to_le_bytes()).unwrap();
    }
}

/// Per stimulus, the planted per-token values x_t · w of `KEY` (w fixed, seeded).
fn planted(run: &Path) -> Vec<(u32, Vec<f64>)> {
    let files: Vec<String> = util::query(
        run,
        "SELECT output FROM units WHERE kind = 'capture' AND state = 'committed' ORDER BY seq",
        |r| r.get(0),
    );
    let mut out = Vec::new();
    for f in files {
        let Some(b) = read_feature_block_if_present(&run.join(f), KEY).unwrap() else {
            continue; // a capture unit of the weight-permuted control
        };
        let tokens = GRID * GRID;
        assert_eq!(b.dim % tokens, 0);
        let c = b.dim / tokens;
        let w: Vec<f64> = (0..c).map(|j| ((j * 2654435761) % 1000) as f64 / 500.0 - 1.0).collect();
        for (i, &s) in b.stimuli.iter().enumerate() {
            let x = &b.values[i * b.dim..(i + 1) * b.dim];
            let z =
                (0..tokens).map(|t| (0..c).map(|j| f64::from(x[t * c + j]) * w[j]).sum()).collect();
            out.push((s, z));
        }
    }
    out
}

#[test]
fn planted_linear_targets_are_recovered_exactly() {
    let dir = util::scratch("dense");
    let first = run(&dir, "dense", "2", &[]);
    let rows = read_dense_rows(&first.join("report/dense.parquet")).unwrap();
    assert_eq!(
        rows.len(),
        2 * 12 * 3 * 28,
        "12 representations and their controls × 3 targets × 28 test scenes"
    );
    control_features_are_a_different_network(&first);

    // Labels that are a linear map of KEY's tokens, nearest-upsampled (f = SIZE / GRID).
    let labels = dir.join("planted");
    std::fs::create_dir_all(&labels).unwrap();
    let data = common::stimuli::Dataset::open(&first.join("dataset.json")).unwrap();
    let planted = planted(&first);
    assert_eq!(planted.len(), data.len());
    for (s, z) in &planted {
        let name = &data.stimuli[*s as usize];
        let up = |v: &dyn Fn(f64) -> f64| -> Vec<f64> {
            let f = SIZE / GRID;
            (0..SIZE * SIZE).map(|p| v(z[(p / SIZE / f) * GRID + (p % SIZE) / f])).collect()
        };
        write_npy(&labels.join(format!("{name}.depth.npy")), &up(&|v| v), SIZE);
        // No offset: the probe has no bias, as the paper's.
        write_npy(&labels.join(format!("{name}.shading.npy")), &up(&|v| -2.0 * v), SIZE);
        write_npy(
            &labels.join(format!("{name}.mask.npy")),
            &up(&|v| f64::from(u8::from(v > 0.0))),
            SIZE,
        );
    }
    let features_before = std::fs::read_dir(first.join("features")).unwrap().count();
    let sets = [
        format!("analysis.dense_probe.labels={labels:?}"),
        "analysis.dense_probe.alpha=1e-9".into(),
        "analysis.dense_probe.l2=1e-6".into(),
    ];
    run(&dir, "dense", "2", &sets);
    assert_eq!(
        std::fs::read_dir(first.join("features")).unwrap().count(),
        features_before,
        "captures were rerun"
    );
    let rows = read_dense_rows(&first.join("report/dense.parquet")).unwrap();
    let of = |target: &'static str| {
        rows.iter().filter(move |r| r.representation == KEY && r.target == target)
    };
    for target in ["depth", "shading"] {
        for r in of(target) {
            assert!(
                r.spearman > 0.9999 && r.pearson > 0.9999,
                "{target} of {}: ρ {} r {}",
                r.stimulus,
                r.spearman,
                r.pearson
            );
        }
    }
    // The control sees the same images through shuffled weights: the planted map of the
    // model's own tokens is not a linear map of its tokens.
    let control: Vec<f64> = rows
        .iter()
        .filter(|r| r.representation == CONTROL && r.target == "depth")
        .map(|r| r.spearman)
        .collect();
    assert_eq!(control.len(), 28);
    let mean = control.iter().sum::<f64>() / 28.0;
    assert!(mean < 0.95, "control ρ {mean} on labels planted from the model's own tokens");
    for r in of("mask") {
        assert!(
            r.dice > 0.999 || r.all_foreground_dice < 1e-6,
            "mask of {}: Dice {}",
            r.stimulus,
            r.dice
        );
    }
    let md = std::fs::read_to_string(first.join("report/report.md")).unwrap();
    assert!(md.contains("## Dense probes (seed 002)"), "{md}");
    // A strip per (target, noise level) of the best tap, each with its first test images.
    let html = std::fs::read_to_string(first.join("report/report.html")).unwrap();
    assert_eq!(html.matches(r#"<div class="strip">"#).count(), 3 * 3, "strips");
    let strip_rows = rows.iter().filter(|r| !r.prediction.is_empty()).count();
    assert_eq!(strip_rows, 2 * 12 * 3 * common::table::STRIP_IMAGES, "rows with a strip");
    assert!(md.contains("the weight-permuted control there scores"), "{md}");

    papers_fit_reads_the_planted_map(&dir, &labels);

    // The same tables from one worker as from two.
    let one = run(&dir, "dense1", "1", &[]);
    let two = run(&dir, "dense2", "2", &[]);
    let read = |run: &Path| std::fs::read(run.join("report/dense.parquet")).unwrap();
    assert!(read(&one) == read(&two), "dense.parquet depends on the worker count");
}

/// `fit = "paper"` (Adam on per-pixel losses, candle) on the planted labels, one tap and noise
/// level: long enough training reads the planted map (ρ near 1) and the planted mask, though
/// not to the closed form's exactness.
fn papers_fit_reads_the_planted_map(dir: &Path, labels: &Path) {
    let sets = [
        format!("analysis.dense_probe.labels={labels:?}"),
        format!("capture.taps=[{:?}]", KEY.split("/none").next().unwrap()),
        "capture.image.noise_levels=[20]".into(),
        "analysis.dense_probe.fit=\"paper\"".into(),
        "analysis.dense_probe.epochs=150".into(),
        "analysis.dense_probe.learning_rate=0.02".into(),
    ];
    let run = run(dir, "dense_paper", "1", &sets);
    let rows = read_dense_rows(&run.join("report/dense.parquet")).unwrap();
    assert_eq!(rows.len(), 2 * 3 * 28, "one representation and its control");
    let mean = |target: &str, f: &dyn Fn(&common::table::DenseRow) -> f64| {
        let of: Vec<f64> =
            rows.iter().filter(|r| r.representation == KEY && r.target == target).map(f).collect();
        of.iter().sum::<f64>() / of.len() as f64
    };
    let rho = mean("depth", &|r| r.spearman);
    assert!(rho > 0.9, "paper fit: depth ρ {rho}");
    let dice = mean("mask", &|r| if r.all_foreground_dice < 1e-6 { 1.0 } else { r.dice });
    assert!(dice > 0.9, "paper fit: mask Dice {dice}");
}

/// The control's capture units hold only the permuted twins, for the same stimuli, with
/// other values than the model's own.
fn control_features_are_a_different_network(run: &Path) {
    let files: Vec<String> = util::query(
        run,
        "SELECT output FROM units WHERE kind = 'capture' AND state = 'committed' ORDER BY seq",
        |r| r.get(0),
    );
    let blocks = |key: &str| -> Vec<(u32, Vec<f32>)> {
        let mut out = Vec::new();
        for f in &files {
            if let Some(b) = read_feature_block_if_present(&run.join(f), key).unwrap() {
                let d = b.dim;
                out.extend(
                    b.stimuli
                        .iter()
                        .enumerate()
                        .map(|(i, &s)| (s, b.values[i * d..(i + 1) * d].to_vec())),
                );
            }
        }
        out.sort_by_key(|x| x.0);
        out
    };
    let (own, control) = (blocks(KEY), blocks(CONTROL));
    assert_eq!(own.len(), 48);
    assert_eq!(
        own.iter().map(|x| x.0).collect::<Vec<_>>(),
        control.iter().map(|x| x.0).collect::<Vec<_>>()
    );
    for ((s, a), (_, b)) in own.iter().zip(&control) {
        assert_eq!(a.len(), b.len());
        assert!(a != b, "stimulus {s}: the control's tokens equal the model's");
    }
}

#[test]
fn a_missing_label_is_refused_by_name() {
    let dir = util::scratch("dense_bad");
    let labels = dir.join("labels");
    std::fs::create_dir_all(&labels).unwrap();
    let set = format!("analysis.dense_probe.labels={labels:?}");
    let e = util::plan_error(&dir, &demo_spec(), &[&set]);
    assert!(e.contains("analysis.dense_probe.labels") && e.contains("scene000.depth.png"), "{e}");
    let e = util::plan_error(
        &dir,
        &demo_spec(),
        &["analysis.dense_probe.learning_rates={ dept = 0.1 }"],
    );
    assert!(
        e.contains("analysis.dense_probe.learning_rates") && e.contains("\"dept\" is not a target"),
        "{e}"
    );
    let e = util::plan_error(&dir, &demo_spec(), &["analysis.dense_probe.fit=\"adam\""]);
    assert!(e.contains("fit") && e.contains("paper"), "{e}");
    let e = util::plan_error(&dir, &demo_spec(), &["capture.unet_pooling=[\"mean\"]"]);
    assert!(e.contains("capture.unet_pooling") && e.contains("none"), "{e}");
}
