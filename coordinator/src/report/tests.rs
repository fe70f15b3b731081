//! Snapshot tests (insta) of `report.md` and of the HTML's visible text, on a small planted run
//! built in-process from committed rows: every section is exercised (probe tables with usable,
//! shrunk and constant fits, text-encoder and U-Net representations, a representation whose
//! units were quarantined, an attribute with no results, the grid, alignment with an embedding,
//! a linear probe and a tap × context table, the null-control verdict and the incomplete
//! banner). The snapshots live in `snapshots/`; a mismatch fails the
//! test (in CI, where `CI` is set, insta writes nothing and only fails). After an intended
//! change, review with `cargo insta review` or rerun with `INSTA_UPDATE=always`.

use common::spec::AlignmentDistance::{Cosine, Dot};
use common::spec::JobSpec;
use common::stimuli::{AlignmentInputs, Dataset, Embedding};
use common::table::{AlignmentRow, GridRow, ProbeRow, ProbeScore, ProbeTraining, TripletScore};

use super::reduce::{reduce, Inputs};
use super::render;
use super::status::{RunStatus, UnitFact};

const N: usize = 12;
const ATTRS: [&str; 4] = ["size", "loud & <clear>", "taste", "unrated"];

fn spec(null_control: bool) -> JobSpec {
    toml::from_str(&format!(
        r#"
[job]
name = "planted"
null_control = {null_control}
[model]
kind = "bert"
path = "/m/minilm"
[stimuli]
file = "s.csv"
[targets]
file = "s.csv"
columns = {{ a = "a" }}
[analysis.attribute_probe]
folds = 2
components = 4
permutations = 100
grid_components = [2, 4]
grid_alphas = [1.0, 150.0]
[analysis.alignment]
triplets = "t.csv"
distances = ["cosine", "dot"]
linear_probe = true
probe_folds = 2
embedding = "e.csv"
description = "Planted triplets."
"#
    ))
    .unwrap()
}

fn data() -> Dataset {
    Dataset {
        stimuli: (0..N).map(|i| format!("s{i}")).collect(),
        texts: (0..N).map(|i| format!("s{i}")).collect(),
        attributes: ATTRS.iter().map(|s| s.to_string()).collect(),
        groups: vec![Some("visual".into()), Some("sound".into()), Some("sound".into()), None],
        targets: (0..N)
            .flat_map(|i| (0..4).map(move |j| ((i * (j + 2)) % 5) as f64 + 0.25 * i as f64))
            .collect(),
        dropped: vec![("s99".into(), "no rating".into())],
    }
}

/// The committed rows of one probe unit: every fold of attributes 0–2 of `rep`. `quality`
/// scales how far the predictions move from each fold's training mean towards the ratings.
fn probe_rows(data: &Dataset, rep: &str, quality: f64, df: f64, components: u32) -> Vec<ProbeRow> {
    let mut rows = Vec::new();
    for attr in 0..3u32 {
        let rating = |i: usize| data.targets[i * 4 + attr as usize];
        for fold in 0..2u32 {
            let test: Vec<u32> = (0..N as u32).filter(|i| i % 2 == fold).collect();
            let train: Vec<f64> = (0..N).filter(|i| i % 2 != fold as usize).map(rating).collect();
            let mean = train.iter().sum::<f64>() / train.len() as f64;
            let predictions: Vec<f64> = test
                .iter()
                .map(|&i| mean + quality * (rating(i as usize) - mean) + 0.01 * (i % 3) as f64)
                .collect();
            let rmse = (1.0 - 0.5 * quality) * (1.0 + 0.1 * attr as f64);
            rows.push(ProbeRow {
                representation: rep.into(),
                attribute: attr,
                attribute_name: ATTRS[attr as usize].into(),
                fold,
                n_components: components,
                alpha: 150.0,
                rmse,
                baseline_rmse: 1.0 + 0.1 * attr as f64,
                pearson_r: if quality > 0.0 { 0.3 + 0.2 * quality } else { f64::NAN },
                p_value: if quality > 0.5 { 0.001 } else { 0.2 + 0.1 * fold as f64 },
                effective_df: df,
                null_rmse: vec![1.0; 3],
                test_indices: test,
                predictions,
            });
        }
    }
    rows
}

fn unit(id: &str, kind: &str, state: &str, rep: &str, what: &str) -> UnitFact {
    UnitFact {
        id: id.into(),
        kind: kind.into(),
        state: state.into(),
        attempts: if state == "quarantined" { 3 } else { 1 },
        error: if state == "quarantined" { "worker died: <oom> & more".into() } else { "".into() },
        what: what.into(),
        representation: Some(rep.into()),
    }
}

fn status() -> RunStatus {
    RunStatus {
        units: vec![
            unit("p0", "probe", "committed", "text.0/cls", "text.0/cls, folds 0–1"),
            unit("p1", "probe", "committed", "text.1/cls", "text.1/cls, folds 0–1"),
            unit("p2", "probe", "committed", "text.1/mean", "text.1/mean, folds 0–1"),
            unit("p3", "probe", "quarantined", "text.2/mean", "text.2/mean, folds 0–1"),
            unit("p4", "probe", "committed", "mid/mean/k10", "mid/mean/k10, folds 0–1"),
            unit("g0", "grid", "committed", "text.1/mean", "text.1/mean, P × α grid"),
            unit("g1", "grid", "pending", "text.1/cls", "text.1/cls, P × α grid"),
            unit("a0", "alignment", "committed", "text.1/mean", "text.1/mean, odd-one-out"),
            unit("a1", "alignment", "committed", "text.1/mean", "text.1/mean, linear probe fold 0"),
            unit("a2", "alignment", "quarantined", "text.2/mean", "text.2/mean, odd-one-out"),
            unit("a3", "alignment", "committed", "mid/mean/k10", "mid/mean/k10, odd-one-out"),
            unit(
                "a4",
                "alignment",
                "committed",
                "mid/mean/n50/empty",
                "mid/mean/n50/empty, odd-one-out",
            ),
        ],
        failed: vec![crate::db::FailedAttempt {
            unit: common::ids::UnitId("p3".into()),
            attempt: 1,
            worker: "w1".into(),
            outcome: crate::db::AttemptOutcome::Failed,
            error: "worker died".into(),
        }],
        attempts: 11,
        sessions: 2,
        wall_ms: Some(83_400),
        cpu_hours: 0.05,
        gpu_hours: 0.0,
        redone: vec![],
    }
}

fn grid_rows() -> Vec<GridRow> {
    let mut rows = Vec::new();
    for (p, alpha, rmse) in [(2, 1.0, 0.8), (2, 150.0, 0.75), (4, 1.0, 0.7), (4, 150.0, 0.72)] {
        rows.push(GridRow {
            representation: "text.1/mean".into(),
            fold: 0,
            components: p,
            n_components: p,
            alpha,
            mean_rmse: rmse,
        });
    }
    rows
}

fn alignment_rows() -> Vec<AlignmentRow> {
    let score = |distance, accuracy: f64, ties| TripletScore {
        distance,
        accuracy,
        correct: (accuracy * 4.0) as u32,
        ties,
        n_triplets: 4,
        n_concepts: N as u32,
        chance: alignment::CHANCE,
    };
    let rep = "text.1/mean".to_string();
    let mut rows = vec![
        AlignmentRow::OddOneOut { representation: rep.clone(), score: score(Cosine, 0.5, 1) },
        AlignmentRow::OddOneOut { representation: rep.clone(), score: score(Dot, 0.25, 1) },
        AlignmentRow::RegressionPredicted {
            representation: rep.clone(),
            score: score(Cosine, 0.75, 0),
            r2: 0.25,
            r2_dimensions: Vec::new(),
        },
        AlignmentRow::LinearProbeFold {
            representation: rep,
            fold: 0,
            score: ProbeScore {
                accuracy: 0.5,
                correct: 2,
                n_triplets: 4,
                n_concepts: N as u32,
                chance: alignment::CHANCE,
            },
            training: ProbeTraining {
                n_train: 0,
                n_dropped: 0,
                epochs: 0,
                stopped_early: false,
                train_loss: 3f64.ln(),
                test_loss: 3f64.ln(),
            },
        },
    ];
    // U-Net representations with a context (step, noise level): the tap × context table.
    for (rep, acc) in [("mid/mean/k10", 0.75), ("mid/mean/n50/empty", 0.5)] {
        for d in [Cosine, Dot] {
            rows.push(AlignmentRow::OddOneOut {
                representation: rep.into(),
                score: score(d, acc, 0),
            });
        }
    }
    rows
}

fn alignment_inputs() -> AlignmentInputs {
    AlignmentInputs {
        n_concepts: N,
        triplets: vec![[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]],
        embedding: Some(Embedding {
            dimensions: vec!["d0".into(), "d1".into()],
            values: (0..2 * N).map(|i| ((i * 7) % 5) as f64).collect(),
        }),
    }
}

/// The planted run's model, from committed rows through the real reduction.
fn planted(null_control: bool) -> super::ReportModel {
    let data = data();
    let mut probe = probe_rows(&data, "text.0/cls", 0.0, 0.0, 0);
    probe.extend(probe_rows(&data, "text.1/cls", 0.05, 0.004, 4));
    probe.extend(probe_rows(&data, "text.1/mean", 0.9, 3.0, 4));
    probe.extend(probe_rows(&data, "mid/mean/k10", 0.6, 2.0, 4));
    reduce(Inputs {
        spec: &spec(null_control),
        data: &data,
        probe,
        grid: grid_rows(),
        alignment: Some((alignment_inputs(), alignment_rows())),
        directions: None,
        status: status(),
    })
    .unwrap()
}

/// The page's visible text: tags dropped, one line per block element, table cells after " | ",
/// rows marked missing as `[missing]`, the CSS and the SVG charts left out (the charts have
/// their own tests in `svg.rs` and `render/html/tests.rs`).
fn visible_text(html: &str) -> String {
    const BLOCKS: [&str; 16] = [
        "h1",
        "h2",
        "h3",
        "p",
        "div",
        "tr",
        "figure",
        "figcaption",
        "table",
        "nav",
        "section",
        "details",
        "summary",
        "pre",
        "li",
        "title",
    ];
    let mut out = String::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('>').expect("unclosed <") + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        let name: String =
            tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if !tag.starts_with('/') && (name == "style" || name == "svg") {
            let close = format!("</{name}>");
            rest = &rest[rest.find(&close).expect("closed") + close.len()..];
            continue;
        }
        if name == "tr" && tag.contains(r#"class="missing""#) {
            out.push_str("\n[missing]");
        } else if name == "td" || name == "th" {
            out.push_str(if tag.starts_with('/') { "" } else { " | " });
        } else if BLOCKS.contains(&name.as_str()) {
            out.push('\n');
        } else if name == "a" && !tag.starts_with('/') {
            out.push_str(" · ");
        }
    }
    out.push_str(rest);
    out.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n") + "\n"
}

#[test]
fn planted_report_md() {
    insta::assert_snapshot!(render::markdown::render(&planted(false)));
}

#[test]
fn planted_null_control_report_md() {
    insta::assert_snapshot!(render::markdown::render(&planted(true)));
}

#[test]
fn planted_report_html_text() {
    insta::assert_snapshot!(visible_text(&render::html::render(&planted(false))));
}

#[test]
fn visible_text_keeps_cells_and_drops_charts() {
    let t = visible_text(
        "<style>x{}</style><h2>A &amp; B</h2><svg><text>9</text></svg><table><tr><td>1</td>\
         <td>2</td></tr><tr class=\"missing\"><td>x</td></tr></table>",
    );
    assert_eq!(t, "A &amp; B\n| 1 | 2\n[missing] | x\n");
}
