//! Figure 8: prompt directions (science-2.md §H): per axis and representation the queries' β
//! with bootstrap CIs as horizontal bars around 0, and the query map (first two principal
//! components of the clustered vectors) coloured by k-means cluster.

use maud::{html, Markup};

use super::{code, figure, omitted, table, text, Page, Row};
use crate::report::svg::num;
use common::table::{direction_analysis, ClusterRow, DirectionsRow};

const COLOURS: [&str; 8] =
    ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#000000"];

impl Page<'_> {
    pub(super) fn directions(&self) -> Markup {
        let title = "Figure 8. Prompt directions in h-space";
        let id = "fig-directions";
        let Some(d) = &self.m.directions else {
            return omitted(
                id,
                title,
                "no direction analyses in this run ([analysis.directions] is not set).",
            );
        };
        let mut panels = Vec::new();
        for a in &d.axes {
            let rows: Vec<&DirectionsRow> = d
                .rows
                .iter()
                .filter(|r| r.analysis == direction_analysis::BIAS)
                .filter(|r| r.representation == a.representation && r.reference == a.axis)
                .collect();
            panels.push((format!("β along {} — {}", a.axis, a.representation), beta_bars(&rows)));
        }
        for c in d.clusters.iter().filter(|c| c.method == "kmeans") {
            panels.push((format!("query map — {}", c.representation), cluster_map(c)));
        }
        let head = [
            ("representation", false),
            ("axis", false),
            ("queries", true),
            ("mean β", true),
            ("verdict", false),
        ];
        let rows: Vec<Row> = d
            .axes
            .iter()
            .map(|a| {
                Row::new(vec![
                    code(&a.representation),
                    text(&a.axis),
                    text(a.queries),
                    text(num(a.mean_beta, 3)),
                    text(a.sentence()),
                ])
            })
            .collect();
        let caption = html! {
            "β(q) = cos(d(q | b), a) of each query's direction from the base prompt with the axis \
            a = d(x | b) − d(y | b), averaged over replicates that share their noise; whiskers are \
            95 % bootstrap CIs over replicates. The verdict is the exact sign test over the \
            queries. A lean is not knowledge by itself: every d(q | b) shares h̄(queries) − h(b), \
            which an axis need not be orthogonal to, so even random weights can lean; read an \
            axis against control axes (prompt pairs that should not matter). The map places each query by the \
            first two principal components of the clustered vectors, coloured by k-means cluster. \
            No code of seed 004 is public: science-2.md §H is this tool's definition. Every \
            number is in directions.parquet and clusters.parquet."
        };
        figure(id, title, &panels, caption, html! {}, table(&head, &rows))
    }
}

/// Horizontal bars of β per query around a zero line, with CI whiskers, on [−1, 1].
fn beta_bars(rows: &[&DirectionsRow]) -> Markup {
    const W: f64 = 260.0;
    const LABEL: f64 = 150.0;
    const ROW: f64 = 16.0;
    let h = ROW * rows.len() as f64 + 24.0;
    let x = |v: f64| LABEL + (v.clamp(-1.0, 1.0) + 1.0) / 2.0 * W;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(LABEL + W + 10.0) height=(h) role="img" {
            line x1=(x(0.0)) x2=(x(0.0)) y1="0" y2=(h - 20.0) stroke="#888" stroke-dasharray="3 3" {}
            @for (i, r) in rows.iter().enumerate() {
                @let y = ROW * i as f64 + 4.0;
                text x=(LABEL - 6.0) y=(y + 10.0) text-anchor="end" font-size="11" { (r.prompt) }
                @let (a, b) = (x(r.value.min(0.0)), x(r.value.max(0.0)));
                rect x=(a) y=(y) width=((b - a).max(0.5)) height=(ROW - 5.0) fill=(COLOURS[0]) {
                    title { (r.prompt) ": β = " (num(r.value, 3)) }
                }
                @if r.ci_low.is_finite() && r.ci_high.is_finite() {
                    line x1=(x(r.ci_low)) x2=(x(r.ci_high)) y1=(y + 5.5) y2=(y + 5.5) stroke="#222" {}
                }
            }
            text x=(x(-1.0)) y=(h - 4.0) font-size="10" { "−1" }
            text x=(x(0.0)) y=(h - 4.0) font-size="10" text-anchor="middle" { "β = 0" }
            text x=(x(1.0)) y=(h - 4.0) font-size="10" text-anchor="end" { "1" }
        }
    }
}

/// The queries on their first two principal components, coloured by cluster.
fn cluster_map(c: &ClusterRow) -> Markup {
    const S: f64 = 260.0;
    let span = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if hi > lo {
            (lo, hi - lo)
        } else {
            (lo - 1.0, 2.0)
        }
    };
    let ((x0, xs), (y0, ys)) = (span(&c.x), span(&c.y));
    let px = |v: f64| 20.0 + (v - x0) / xs * (S - 40.0);
    let py = |v: f64| S - 20.0 - (v - y0) / ys * (S - 40.0);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(S + 80.0) height=(S) role="img" {
            @for i in 0..c.prompts.len() {
                @let colour = COLOURS[c.labels[i] as usize % COLOURS.len()];
                circle cx=(px(c.x[i])) cy=(py(c.y[i])) r="4" fill=(colour) {
                    title { (c.prompts[i]) " (" (c.categories[i]) "), cluster " (c.labels[i]) }
                }
                text x=(px(c.x[i]) + 6.0) y=(py(c.y[i]) + 4.0) font-size="10" { (c.prompts[i]) }
            }
        }
    }
}
