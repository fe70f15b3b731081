//! The page on hand-made tables: full, empty, single-representation, with a quarantined unit
//! and with a grid. Structure is checked with a small tag-balance parser.

use common::spec::JobSpec;
use common::stimuli::Dataset;
use common::table::GridRow;

use common::spec::AlignmentDistance::{Cosine, Dot};
use common::table::{AlignmentRow, ProbeScore, ProbeTraining, TripletScore};

use super::{render, FIGURE_IDS};
use crate::report::alignment::AlignmentResults;
use crate::report::probe::Cell;
use crate::report::reduce::assemble;
use crate::report::status::{RunStatus as Facts, UnitFact};

fn spec() -> JobSpec {
    toml::from_str(
        r#"
[job]
name = "t<&>"
[model]
kind = "bert"
path = "/m/minilm"
[stimuli]
file = "s.csv"
[targets]
file = "s.csv"
columns = { a = "a" }
"#,
    )
    .unwrap()
}

const N: usize = 8;
const ATTRS: [&str; 3] = ["vis<ual>", "sound & fury", "taste"];

fn data() -> Dataset {
    let targets = (0..N)
        .flat_map(|i| (0..3).map(move |j| ((i * (j + 2)) % 5) as f64 + 0.1 * j as f64))
        .collect();
    Dataset {
        stimuli: (0..N).map(|i| format!("s{i}")).collect(),
        texts: (0..N).map(|i| format!("s{i}")).collect(),
        attributes: ATTRS.iter().map(|s| s.to_string()).collect(),
        groups: vec![Some("perceptual".into()), Some("perceptual".into()), None],
        targets,
        dropped: vec![],
    }
}

fn cells(data: &Dataset, reps: &[&str]) -> Vec<Cell> {
    let mut out = Vec::new();
    for (r, rep) in reps.iter().enumerate() {
        for (j, attr) in data.attributes.iter().enumerate() {
            let predicted = (0..N)
                .map(|i| data.targets[i * 3 + j] * 0.5 + (i % 3) as f64 * 0.1 * r as f64)
                .collect();
            out.push(Cell {
                representation: rep.to_string(),
                attribute: attr.clone(),
                group: data.groups[j].clone(),
                rmse_fold: vec![0.5 + 0.1 * r as f64, 0.6 + 0.05 * j as f64],
                baseline_fold: vec![1.0, 1.0],
                p_fold: vec![0.01, if j == 1 { 0.2 } else { 0.01 }],
                r_fold: vec![0.5, 0.5],
                df_fold: if rep.ends_with("cls") { vec![0.01, 0.02] } else { vec![3.0, 3.5] },
                n_components: 4,
                alpha_fold: vec![150.0, 150.0],
                predicted,
                fold_of: (0..N).map(|i| Some((i % 2) as u32)).collect(),
                q: 0.02,
            });
        }
    }
    out
}

fn probe_unit(id: &str, rep: &str, state: &str, error: &str) -> UnitFact {
    UnitFact {
        id: id.into(),
        kind: "probe".into(),
        state: state.into(),
        attempts: 1,
        error: error.into(),
        what: format!("{rep}, folds 0–1"),
        representation: Some(rep.into()),
    }
}

fn page(reps: &[&str], facts: &Facts, grid: &[GridRow]) -> String {
    page_with(spec(), reps, facts, grid, None)
}

fn page_with(
    spec: JobSpec,
    reps: &[&str],
    facts: &Facts,
    grid: &[GridRow],
    alignment: Option<AlignmentResults>,
) -> String {
    let data = data();
    let cells = cells(&data, reps);
    let alignment = spec
        .analysis
        .alignment
        .as_ref()
        .zip(alignment)
        .map(|(a, res)| crate::report::alignment::reduce(a, res, facts));
    render(&assemble(&spec, &data, cells, grid.to_vec(), alignment, facts.clone()))
}

/// Every non-void element is closed in order; returns the number of elements opened.
fn balanced(html: &str) -> usize {
    const VOID: [&str; 4] = ["meta", "br", "hr", "img"];
    let mut stack: Vec<String> = Vec::new();
    let mut opened = 0;
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        let end = rest[i..].find('>').expect("unclosed <") + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack.pop().unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(top, name, "</{name}> closes <{top}>");
            continue;
        }
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        assert!(!name.is_empty(), "bad tag <{tag}>");
        opened += 1;
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        // <style> holds CSS; skip to its end.
        if name == "style" {
            let close = rest.find("</style>").expect("</style>");
            rest = &rest[close + "</style>".len()..];
            continue;
        }
        stack.push(name);
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    opened
}

/// The part of the page inside `<figure id="{id}">`.
fn fig<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!(r#"<figure id="{id}""#)).unwrap_or_else(|| panic!("no {id}"));
    let len = html[start..].find("</figure>").unwrap();
    &html[start..start + len]
}

const REPS: [&str; 4] = ["text.0/cls", "text.0/mean", "text.1/cls", "text.1/mean"];

/// The figures a text-only run without a grid or alignment has nothing to show for.
const OMITTED: [&str; 5] =
    ["fig-grid", "fig-alignment", "fig-directions", "fig-dense", "fig-semantic"];

#[test]
fn full_page_has_every_figure_with_svg_caption_and_table() {
    let html = page(&REPS, &Facts::default(), &[]);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(balanced(&html) > 100);
    for id in FIGURE_IDS.iter().filter(|id| !OMITTED.contains(id)) {
        let f = fig(&html, id);
        assert!(f.contains("<svg") && f.contains("<figcaption>") && f.contains("<table>"), "{id}");
    }
    // Nothing to show: one line saying why, no empty box.
    for id in OMITTED {
        let f = fig(&html, id);
        assert!(f.contains(r#"class="omitted""#) && f.contains("Not shown: "), "{id}: {f}");
        assert!(!f.contains("<svg") && !f.contains("<table>"), "{id}");
    }
    assert!(html.contains(r#"id="run-summary""#));
    // Two taps × two poolings.
    assert_eq!(fig(&html, "fig-significance").matches(r#"class="bar""#).count(), 4);
    assert_eq!(fig(&html, "fig-rmse").matches(r#"class="err""#).count(), 4);
    assert_eq!(fig(&html, "fig-rmse").matches(r#"class="ref""#).count(), 1);
    // Four representations × one named group.
    assert_eq!(fig(&html, "fig-rmse-groups").matches(r#"class="bar""#).count(), 4);
    // Three attributes: three 3 × 3 matrices.
    assert_eq!(fig(&html, "fig-correlation").matches(r#"class="cell""#).count(), 27);
    // A text-only run: the U-Net panel is left out, with one line saying why.
    let sig = fig(&html, "fig-significance");
    assert!(sig.contains(NO_UNET_TEXT));
    assert_eq!(sig.matches(r#"<div class="panel">"#).count(), 1);
    assert!(fig(&html, "fig-grid").contains("no P × α grid"));
    // CLS fits with effective df below 1 are drawn pale and named, with what to do.
    let rmse = fig(&html, "fig-rmse");
    assert!(rmse.contains("Pale bars: shrunk to the mean at this α"), "{rmse}");
    assert!(rmse.contains("<code>text.0/cls</code>, <code>text.1/cls</code>."), "{rmse}");
    assert!(!rmse.contains("<code>text.0/mean</code>, "), "mean pooling is not shrunk");
    assert!(rmse.contains("<code>zscore = true</code>"));
    // The headline leads with the scale-free reduction.
    assert!(rmse.contains("mean reduction ± SE (%)"));
    // Names are escaped everywhere.
    assert!(html.contains("vis&lt;ual&gt;") && html.contains("sound &amp; fury"));
    assert!(!html.contains("vis<ual>") && !html.contains("sound & fury") && !html.contains("t<&>"));
    // No network: nothing to fetch.
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    // Deterministic.
    assert_eq!(html, page(&REPS, &Facts::default(), &[]));
}

const NO_UNET_TEXT: &str = "No U-Net panel: this run has no U-Net taps";

#[test]
fn empty_results_still_give_a_valid_page_that_says_so() {
    let html = page(&[], &Facts::default(), &[]);
    balanced(&html);
    assert!(html.contains("No results"), "the page says there are no results");
    for id in FIGURE_IDS.iter().filter(|id| !OMITTED.contains(id)) {
        let f = fig(&html, id);
        assert!(f.contains("<svg") && f.contains("<table>"), "{id}");
        assert_eq!(f.matches(r#"class="bar""#).count(), 0);
    }
    assert!(!html.contains("NaN") && !html.contains("inf\"") && !html.contains(">inf"));
}

#[test]
fn single_representation() {
    let html = page(&["text.3/mean"], &Facts::default(), &[]);
    balanced(&html);
    assert_eq!(fig(&html, "fig-significance").matches(r#"class="bar""#).count(), 1);
    assert_eq!(fig(&html, "fig-identification").matches(r#"class="bar""#).count(), 1);
    assert!(fig(&html, "fig-rmse").contains("best text layer text.3/mean"));
    assert!(!html.contains("NaN"));
}

#[test]
fn a_quarantined_unit_is_shown_not_hidden() {
    let facts = Facts {
        units: vec![
            probe_unit("aaaaaaaaaaaaaaaa", "text.0/mean", "committed", ""),
            probe_unit(
                "bbbbbbbbbbbbbbbb",
                "text.1/mean",
                "quarantined",
                "worker died: <oom> & more",
            ),
            probe_unit("cccccccccccccccc", "text.1/mean", "committed", ""),
        ],
        failed: vec![crate::db::FailedAttempt {
            unit: common::ids::UnitId("bbbbbbbbbbbbbbbb".into()),
            attempt: 1,
            worker: "w1".into(),
            outcome: crate::db::AttemptOutcome::Failed,
            error: "worker died: <oom> & more".into(),
        }],
        attempts: 4,
        sessions: 2,
        wall_ms: Some(83_400),
        cpu_hours: 0.05,
        gpu_hours: 1.25,
        redone: vec![(
            "aaaaaaaaaaaaaaaa".into(),
            "probes/aaaaaaaaaaaaaaaa.a1.parquet failed verification (checksum is now <x>)".into(),
        )],
    };
    // text.1/mean has no results at all (its other unit's rows are absent from the cells).
    let html = page(&["text.0/mean"], &facts, &[]);
    balanced(&html);
    let sig = fig(&html, "fig-significance");
    assert_eq!(sig.matches(r#"class="bar""#).count(), 1);
    assert_eq!(sig.matches(r#"<text class="missing""#).count(), 1, "text.1/mean drawn as n/a");
    assert!(sig.contains("<code>text.1/mean</code> (1 of 2 probe units quarantined)"));
    assert!(sig.contains(
        r#"<tr class="missing"><td><code>text.1/mean</code></td><td class="n">no results"#
    ));
    assert!(html.contains("Incomplete:"));
    assert!(html.contains("<b>Incomplete: 2 of 3 units committed.</b>"), "the banner counts units");
    assert!(html.contains("Redone after failed verification"));
    assert!(
        html.contains("failed verification (checksum is now &lt;x&gt;)"),
        "redone units listed"
    );
    assert!(
        html.contains("1.250 GPU-hours, 0.050 CPU-worker-hours"),
        "the run summary counts GPU-hours"
    );
    assert!(html.contains("worker died: &lt;oom&gt; &amp; more"));
    assert!(html.contains("1 min 23 s") && html.contains("2 coordinator sessions"));
}

#[test]
fn grid_heatmap_has_a_cell_per_p_and_alpha() {
    let mut grid = Vec::new();
    for rep in ["text.0/mean", "text.1/mean"] {
        for (pi, p) in [10u32, 50, 120].into_iter().enumerate() {
            for (ai, alpha) in [1.0, 150.0].into_iter().enumerate() {
                grid.push(GridRow {
                    representation: rep.into(),
                    fold: 0,
                    components: p,
                    n_components: p.min(7),
                    alpha,
                    mean_rmse: 0.9
                        - 0.1 * pi as f64
                        - 0.01 * ai as f64
                        - if rep == "text.1/mean" { 0.05 } else { 0.0 },
                });
            }
        }
    }
    let html = page(&REPS, &Facts::default(), &grid);
    let g = fig(&html, "fig-grid");
    assert_eq!(g.matches(r#"class="cell""#).count(), 6);
    assert_eq!(g.matches(r#"class="mark""#).count(), 1);
    assert!(g.contains("text.1/mean, fold 0") && g.contains("P = 120, α = 150"));
    assert!(
        g.contains("adopting it for the probes would leak"),
        "the grid says it is scored on a test fold"
    );
    // One best row per representation.
    assert_eq!(g.matches("<tr>").count(), 1 + 2);
}

#[test]
fn the_browser_check_looks_for_every_figure() {
    let script = include_str!("../../../../../scripts/check-report-html.sh");
    for id in FIGURE_IDS.iter().chain(&["run-summary"]) {
        assert!(script.contains(id), "scripts/check-report-html.sh does not check {id}");
    }
}

#[test]
fn alignment_figure_has_a_bar_per_distance_and_analysis() {
    let mut spec = spec();
    spec.analysis.alignment = Some(
        toml::from_str(
            r#"
triplets = "t.csv"
distances = ["cosine", "dot"]
linear_probe = true
embedding = "e.csv"
description = "Synthetic <test> triplets."
"#,
        )
        .unwrap(),
    );
    let triplets = |distance, accuracy| TripletScore {
        distance,
        accuracy,
        correct: 0,
        ties: 0,
        n_triplets: 0,
        n_concepts: 0,
        chance: alignment::CHANCE,
    };
    let probe = |accuracy| ProbeScore {
        accuracy,
        correct: 0,
        n_triplets: 0,
        n_concepts: 0,
        chance: alignment::CHANCE,
    };
    let training = ProbeTraining {
        n_train: 0,
        n_dropped: 0,
        epochs: 0,
        stopped_early: false,
        train_loss: 1.0,
        test_loss: 1.0,
    };
    let mut rows = Vec::new();
    for (i, rep) in ["text.0/mean", "text.1/mean"].into_iter().enumerate() {
        let x = 0.1 * i as f64;
        rows.extend([
            AlignmentRow::OddOneOut {
                representation: rep.into(),
                score: triplets(Cosine, 0.4 + x),
            },
            AlignmentRow::OddOneOut { representation: rep.into(), score: triplets(Dot, 0.35 + x) },
            AlignmentRow::LinearProbeFold {
                representation: rep.into(),
                fold: 0,
                score: probe(0.5),
                training: training.clone(),
            },
            AlignmentRow::LinearProbeMean { representation: rep.into(), score: probe(0.5 + x) },
            AlignmentRow::RegressionPredicted {
                representation: rep.into(),
                score: triplets(Cosine, 0.45),
                r2: 0.25,
                r2_dimensions: Vec::new(),
            },
        ]);
    }
    rows.push(AlignmentRow::HumanEmbedding { score: triplets(Cosine, 0.7) });
    let results = AlignmentResults {
        rows,
        n_triplets: 300,
        n_concepts: 8,
        dimensions: vec!["a".into(), "b".into()],
    };
    let facts = Facts {
        units: vec![UnitFact {
            id: "alignment-x".into(),
            kind: "alignment".into(),
            state: "quarantined".into(),
            attempts: 3,
            error: "boom".into(),
            what: "text.2/mean, linear probe fold 1".into(),
            representation: Some("text.2/mean".into()),
        }],
        ..Facts::default()
    };
    let html = page_with(spec, &REPS, &facts, &[], Some(results));
    balanced(&html);
    let f = fig(&html, "fig-alignment");
    // Three representations (text.2/mean without results) × four series: 2 × 4 bars, 4 n/a.
    assert_eq!(f.matches(r#"class="bar""#).count(), 8, "{f}");
    assert_eq!(f.matches(r#"<text class="missing""#).count(), 4);
    assert_eq!(f.matches(r#"class="ref""#).count(), 1, "chance line");
    assert!(f.contains("<code>text.1/mean</code> (0.500)"), "best named: {f}");
    assert!(f.contains("scores 0.700 (cosine)"), "{f}");
    assert!(f.contains("Synthetic &lt;test&gt; triplets."));
    assert!(f.contains("text.2/mean, linear probe fold 1 (quarantined)"));
    assert!(f.contains(r#"<tr class="missing"><td><code>text.2/mean</code>"#));
    // Without the section: one line that says why.
    let plain = page(&REPS, &Facts::default(), &[]);
    assert!(fig(&plain, "fig-alignment").contains("[analysis.alignment] is not set"));
    assert!(!fig(&plain, "fig-alignment").contains("<svg"));
}
