//! `report.md` on hand-made cells: the banner, the null verdict, and what the page claims.

use common::spec::JobSpec;
use common::stimuli::Dataset;
use common::table::GridRow;

use super::*;
use crate::report::probe::Cell;
use crate::report::reduce::assemble;
use crate::report::status::{RunStatus, UnitFact};

fn spec(null_control: bool) -> JobSpec {
    toml::from_str(&format!(
        r#"
[job]
name = "t"
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
"#
    ))
    .unwrap()
}

const N: usize = 8;
const ATTRS: [&str; 3] = ["a", "b", "c"];

fn data() -> Dataset {
    Dataset {
        stimuli: (0..N).map(|i| format!("s{i}")).collect(),
        texts: (0..N).map(|i| format!("s{i}")).collect(),
        attributes: ATTRS.iter().map(|s| s.to_string()).collect(),
        groups: vec![Some("g".into()), Some("g".into()), Some("h".into())],
        targets: (0..N)
            .flat_map(|i| (0..3).map(move |j| ((i * (j + 2)) % 5) as f64 + 0.3 * i as f64))
            .collect(),
        dropped: vec![],
    }
}

/// One cell per attribute of `rep`: predictions half the rating (a usable code), or each
/// fold's training mean when `components` is 0 or the effective df is below 1.
fn cells(data: &Dataset, rep: &str, df: f64, components: u32, p: f64) -> Vec<Cell> {
    (0..3)
        .map(|j| {
            let rating = |i: usize| data.targets[i * 3 + j];
            let train_mean = |f: usize| {
                let v: Vec<f64> = (0..N).filter(|i| i % 2 != f).map(rating).collect();
                v.iter().sum::<f64>() / v.len() as f64
            };
            let flat = components == 0 || df < 1.0;
            Cell {
                representation: rep.into(),
                attribute: ATTRS[j].into(),
                group: data.groups[j].clone(),
                rmse_fold: vec![0.8, 0.9],
                baseline_fold: vec![1.0, 1.0],
                p_fold: vec![p, p],
                r_fold: if flat { vec![f64::NAN; 2] } else { vec![0.5, 0.7] },
                df_fold: vec![df; 2],
                n_components: components,
                alpha_fold: vec![150.0; 2],
                predicted: (0..N)
                    .map(|i| if flat { train_mean(i % 2) } else { 0.5 * rating(i) })
                    .collect(),
                fold_of: (0..N).map(|i| Some((i % 2) as u32)).collect(),
                q: p,
            }
        })
        .collect()
}

/// A run of `total` units of which `done` are committed.
fn status(done: usize, total: usize) -> RunStatus {
    let unit = |i: usize| UnitFact {
        id: format!("u{i}"),
        kind: "probe".into(),
        state: if i < done { "committed" } else { "pending" }.into(),
        attempts: 1,
        error: String::new(),
        what: String::new(),
        representation: None,
    };
    RunStatus { units: (0..total).map(unit).collect(), ..RunStatus::default() }
}

fn markdown(null_control: bool, all: &[Cell], grid: &[GridRow], done: usize) -> String {
    let (spec, data) = (spec(null_control), data());
    render(&assemble(&spec, &data, all.to_vec(), grid.to_vec(), None, status(done, 5)))
}

fn report(null_control: bool, all: &[Cell], grid: &[GridRow]) -> String {
    markdown(null_control, all, grid, 5)
}

#[test]
fn an_unfinished_run_opens_with_the_incomplete_banner() {
    let all = cells(&data(), "text.1/mean", 3.0, 5, 0.01);
    let md = markdown(false, &all, &[], 3);
    assert!(md.contains("> **Incomplete: 3 of 5 units committed.**"), "{md}");
    let md = markdown(false, &all, &[], 5);
    assert!(!md.contains("Incomplete"), "a complete run has no banner: {md}");
}

#[test]
fn the_null_verdict_is_stated() {
    // 6 tests at p = 0.5 (rate 0, inside the band of Binomial(6, 0.05)).
    let data = data();
    let md = report(true, &cells(&data, "text.1/mean", 3.0, 5, 0.5), &[]);
    assert!(md.contains("Verdict: consistent with no knowledge"), "{md}");
    let md = report(true, &cells(&data, "text.1/mean", 3.0, 5, 0.01), &[]);
    assert!(md.contains("Verdict: **not**") && !md.contains("Verdict: consistent"), "{md}");
}

#[test]
fn the_report_claims_only_what_its_numbers_support() {
    let data = data();
    let mut all = cells(&data, "text.0/cls", 0.0, 0, 1.0);
    all.extend(cells(&data, "text.1/cls", 0.004, 40, 0.04));
    all.extend(cells(&data, "text.1/mean", 3.0, 40, 0.001));
    for c in all.iter_mut().filter(|c| c.representation == "text.1/mean") {
        c.rmse_fold = vec![0.7, 0.8];
    }
    let grid = [GridRow {
        representation: "text.1/mean".into(),
        fold: 0,
        components: 10,
        n_components: 10,
        alpha: 1.0,
        mean_rmse: 0.5,
    }];
    let md = report(false, &all, &grid);
    // Shrunk fits are named as such, with what to do; constant ones apart; usable ones not.
    let shrunk = md.lines().find(|l| l.starts_with("**Shrunk to the mean")).expect("flag");
    assert!(shrunk.contains("rerun with `zscore = true` or `alphas`"), "{shrunk}");
    assert!(shrunk.contains("`text.1/cls` (0.004)") && !shrunk.contains("text.1/mean"));
    assert!(!shrunk.contains("text.0/cls"), "{shrunk}");
    assert!(md.contains("**Constant across stimuli**: `text.0/cls`"), "{md}");
    assert!(md.contains("| 0.000 (constant) |"), "{md}");
    assert!(md.contains("| `text.1/cls` | 15.0 % ± 0.0 % |"), "{md}");
    assert!(md.contains("| 0.004 (shrunk to the mean) |"), "{md}");
    assert!(md.contains("| 3.000 |"), "{md}");
    assert!(!md.contains("near-constant") && !md.contains("not a usable code"));
    // The headline leads with the scale-free reduction.
    assert!(md.contains("| representation | mean reduction ± SE | mean RMSE ± SE |"));
    // r and entanglement: undefined is "–", never 0 or a pooled artifact.
    assert!(md.contains("| `text.1/cls` | – | – |"), "{md}");
    assert!(md.contains("| a | g | `text.1/mean` | 0.7500 | 1.0000 | 25.0 % | 0.600 |"), "{md}");
    assert!(md.contains("arithmetic mean of the per-fold r"));
    // The correlation-structure delta says what it measures.
    assert!(!md.contains("entangles what humans keep apart"));
    assert!(md.contains("uncorrected for attenuation"));
    // A single-attribute group has no SE.
    let h = md.split("## Group `h`").nth(1).unwrap().split("\n## ").next().unwrap();
    assert!(h.contains("15.0 % ± – | 0.8500 ± – |") && !h.contains("± 0.0000"), "{h}");
    // The grid is scored on a test fold: adopting its best cell leaks.
    assert!(md.contains("Scored on held-out fold 0, one of the probes' own test folds"));
}
