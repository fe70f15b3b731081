//! Figure 10: the semantic lens (science-2.md §L): leave-one-out 1-NN class accuracy per
//! representation and distance as a heat-map, the best per distance outlined in the table with
//! its verdict.

use maud::{html, Markup};

use super::{figure, omitted, table, text, Page, Row};
use crate::report::semantic::{transform_of, untransformed, Curves, Semantic, PRIMARY};
use crate::report::svg::{self, Heatmap, Lines, Scale};

impl Page<'_> {
    pub(super) fn semantic(&self) -> Markup {
        let title = "Figure 10. Semantic lens: class semantics per representation";
        let id = "fig-semantic";
        let Some(s) = &self.m.semantic else {
            return omitted(
                id,
                title,
                "no semantic lens in this run ([analysis.semantic] is not set).",
            );
        };
        let primary: Vec<_> = s
            .rows
            .iter()
            .filter(|r| r.score == PRIMARY && transform_of(&r.representation).is_none())
            .collect();
        let mut reps: Vec<String> = Vec::new();
        let mut distances: Vec<String> = Vec::new();
        for r in &primary {
            if !reps.contains(&r.representation) {
                reps.push(r.representation.clone());
            }
            if !distances.contains(&r.distance) {
                distances.push(r.distance.clone());
            }
        }
        let value = |rep: &str, d: &str| {
            primary.iter().find(|r| r.representation == rep && r.distance == d).map(|r| r.value)
        };
        let chart = if primary.is_empty() {
            svg::placeholder("No results: no semantic unit was merged")
        } else {
            svg::heatmap(&Heatmap {
                values: reps
                    .iter()
                    .map(|r| distances.iter().map(|d| value(r, d)).collect())
                    .collect(),
                rows: reps.clone(),
                cols: distances.clone(),
                row_label: "representation".into(),
                col_label: "distance".into(),
                scale: Scale::Sequential { lo: 0.0, hi: 1.0 },
                decimals: 2,
                mark: None,
            })
        };
        let mut panels = vec![(String::new(), chart)];
        if let (Some(first), false) = (s.best.first(), s.transforms.is_empty()) {
            let d = &first.distance;
            panels.push((format!("drift under {d} (0: unchanged; chance 1)"), drift_map(s, d)));
        }
        if let Some(first) = s.best.first() {
            let d = &first.distance;
            if let Some(c) = s.step_curves(d) {
                let chart = curve_chart(c, "DDIM steps k", "1-NN accuracy", None);
                panels.push((format!("1-NN accuracy under {d} against denoising steps"), chart));
            }
            if let Some(c) = s.gap_curves(d) {
                let chance = Some((1.0, "chance".to_string()));
                let chart = curve_chart(c, "frame gap Δτ", "drift", chance);
                panels.push((format!("video drift under {d} against the frame gap"), chart));
            }
        }
        let rows: Vec<Row> =
            s.best.iter().map(|b| Row::new(vec![text(b.sentence(&s.rows[b.row]))])).collect();
        let caption = html! {
            "Leave-one-out 1-NN class accuracy (objects of the same image excluded as neighbours) \
            per representation and distance; chance is the mean accuracy over label permutations. \
            No code or full text of seed 003 is public: science-2.md §L is this tool's definition. \
            With transforms, a panel gives each representation's drift under each transform \
            (image and mask transformed alike before the VAE) against its untransformed twin; \
            with denoising steps, 1-NN accuracy against the steps k; with video, drift against \
            the frame gap Δτ (chance 1). \
            Every score (5-NN, mAP@R, AUC, ratio, silhouette, drift, cross-retrieval) with its \
            chance and CI is in semantic.parquet."
        };
        figure(
            id,
            title,
            &panels,
            caption,
            html! {},
            table(&[("verdict per distance", false)], &rows),
        )
    }
}

/// A line chart of `c`, one line per representation.
fn curve_chart(c: Curves, x: &str, y: &str, reference: Option<(f64, String)>) -> Markup {
    svg::line_chart(&Lines {
        xs: c.xs,
        series: c.series,
        x_label: x.into(),
        y_label: y.into(),
        reference,
    })
}

/// The untransformed representation × transform heat-map of drift under `distance`.
fn drift_map(s: &Semantic, distance: &str) -> Markup {
    let mut reps: Vec<String> = Vec::new();
    for r in s.rows.iter().filter(|r| r.score == "drift") {
        let k = untransformed(&r.representation);
        if !reps.contains(&k) {
            reps.push(k);
        }
    }
    let value = |rep: &str, t: &str| {
        s.rows
            .iter()
            .find(|r| {
                r.score == "drift"
                    && r.distance == distance
                    && untransformed(&r.representation) == rep
                    && transform_of(&r.representation).as_deref() == Some(t)
            })
            .map(|r| r.value)
    };
    let hi = s.rows.iter().filter(|r| r.score == "drift").map(|r| r.value).fold(1.0, f64::max);
    svg::heatmap(&Heatmap {
        values: reps.iter().map(|r| s.transforms.iter().map(|t| value(r, t)).collect()).collect(),
        rows: reps,
        cols: s.transforms.clone(),
        row_label: "representation".into(),
        col_label: "transform".into(),
        scale: Scale::Sequential { lo: 0.0, hi },
        decimals: 2,
        mark: None,
    })
}
