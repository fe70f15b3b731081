//! `report/report.html`: the report model as one self-contained page (inline CSS and SVG, no
//! script, no network; a Content-Security-Policy forbids any fetch), written beside `report.md`.
//!
//! Figures follow the paper's: % attributes significant in all folds, the mean relative
//! reduction ± SE (scale-free, unlike the mean RMSE, which the table adds) with the text
//! encoder's best layer as a reference line, the RMSE per attribute group, the P × α grid,
//! entanglement (identification accuracy; human vs model correlation matrices), odd-one-out
//! alignment with human triplets (when the spec asks for it), then a run summary. Each figure
//! is a `<figure id="fig-…">` with its SVG panels, a caption saying what is plotted and a table
//! of the plotted numbers; a representation without results or a failed unit is stated in the
//! figure ("n/a" bars, notes, rows marked missing), never left out silently. What a run has
//! nothing to show for by design (the U-Net panel of a text-only run, a grid or alignment the
//! spec does not ask for) is left out with one line saying why (`omitted`), not drawn empty.
//!
//! The page is written with maud templates, which escape every string they are given; the
//! charts (`report::svg`) escape through maud's escaper too. The run summary shows wall time and
//! attempt counts, which differ between equal runs, so `report.html` is the one report file
//! that is not byte-identical across restarts (the crash and Slurm tests compare the others).

mod alignment;
mod dense;
mod directions;
mod grid;
mod probe;
mod semantic;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::report::model::{Coverage, ReportModel};
use crate::report::probe::{SummaryRow, SHRUNK_DF};
use crate::report::svg::{self, Bar, Bars};

const STYLE: &str = include_str!("style.css");

/// The figure ids, in page order (the browser check looks for each).
pub(crate) const FIGURE_IDS: [&str; 10] = [
    "fig-significance",
    "fig-rmse",
    "fig-rmse-groups",
    "fig-grid",
    "fig-identification",
    "fig-correlation",
    "fig-alignment",
    "fig-directions",
    "fig-dense",
    "fig-semantic",
];

const FIGURE_NAMES: [&str; 10] = [
    "Significance",
    "RMSE",
    "RMSE by group",
    "P × α grid",
    "Identification",
    "Correlation structure",
    "Alignment",
    "Directions",
    "Dense probes",
    "Semantic lens",
];

/// Renders the page.
pub(crate) fn render(model: &ReportModel) -> String {
    let page = Page::new(model);
    let title = format!("diffprobe report: {}", model.settings.job_name);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="Content-Security-Policy"
                    content="default-src 'none'; style-src 'unsafe-inline'";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    (page.header())
                    (page.significance())
                    (page.rmse())
                    (page.rmse_groups())
                    (page.grid())
                    (page.identification())
                    (page.correlation())
                    (page.alignment())
                    (page.directions())
                    (page.dense())
                    (page.semantic())
                    (page.run_summary())
                }
            }
        }
    }
    .into_string()
}

/// One table row: its cells, and whether it stands for something without results (drawn in
/// the missing colour).
pub(super) struct Row {
    missing: bool,
    cells: Vec<Markup>,
}

impl Row {
    fn new(cells: Vec<Markup>) -> Row {
        Row { missing: false, cells }
    }
    fn missing(cells: Vec<Markup>) -> Row {
        Row { missing: true, cells }
    }
}

/// The page's view of the model: representations by key for the figures' lookups.
struct Page<'a> {
    m: &'a ReportModel,
    /// Every representation, planned or with results, in plan order.
    reps: Vec<&'a str>,
    /// The `all` summary row of each representation with results.
    all: BTreeMap<&'a str, &'a SummaryRow>,
    coverage: BTreeMap<&'a str, Coverage>,
}

fn split(key: &str) -> (&str, &str) {
    key.rsplit_once('/').unwrap_or((key, ""))
}

fn is_text(key: &str) -> bool {
    key.starts_with("text.")
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// Plain text as a cell.
fn text(s: impl std::fmt::Display) -> Markup {
    html! { (s) }
}

fn code(s: &str) -> Markup {
    html! { code { (s) } }
}

/// `items` separated by ", ".
fn list(items: &[Markup]) -> Markup {
    html! {
        @for (i, item) in items.iter().enumerate() {
            @if i > 0 { ", " }
            (item)
        }
    }
}

fn note(body: Markup) -> Markup {
    html! { p.note { (body) } }
}

fn info(body: Markup) -> Markup {
    html! { p class="note info" { (body) } }
}

fn figure(
    id: &str,
    title: &str,
    panels: &[(String, Markup)],
    caption: Markup,
    notes: Markup,
    table: Markup,
) -> Markup {
    html! {
        figure id=(id) {
            h2 { (title) }
            div.panels {
                @for (heading, svg) in panels {
                    div.panel {
                        @if !heading.is_empty() { h3 { (heading) } }
                        (svg)
                    }
                }
            }
            figcaption { (caption) }
            (notes)
            (table)
        }
        "\n"
    }
}

/// A table; `head` gives each column's title and whether it is numeric (right-aligned).
fn table(head: &[(&str, bool)], rows: &[Row]) -> Markup {
    let t = html! {
        table {
            @if head.iter().any(|h| !h.0.is_empty()) {
                thead { tr { @for (h, _) in head { th { (h) } } } }
            }
            tbody {
                @for row in rows {
                    tr class=[row.missing.then_some("missing")] {
                        @for (i, c) in row.cells.iter().enumerate() {
                            td class=[head.get(i).is_some_and(|h| h.1).then_some("n")] { (c) }
                        }
                    }
                }
            }
        }
    };
    if rows.len() > 16 {
        html! { div.scroll { (t) } }
    } else {
        t
    }
}

const NO_UNET: &str = "No U-Net panel: this run has no U-Net taps, only text-encoder ones.";
const NO_TEXT: &str = "No text-encoder panel: this run has no text-encoder taps.";

/// A figure the run has nothing to show for: its heading and one line saying why.
fn omitted(id: &str, title: &str, why: &str) -> Markup {
    html! {
        figure id=(id) class="omitted" {
            h2 { (title) }
            p class="note info" { "Not shown: " (why) }
        }
        "\n"
    }
}

impl<'a> Page<'a> {
    fn new(m: &'a ReportModel) -> Page<'a> {
        let mut page =
            Page { m, reps: Vec::new(), all: BTreeMap::new(), coverage: BTreeMap::new() };
        for r in &m.representations {
            page.reps.push(&r.key);
            page.coverage.insert(&r.key, r.coverage);
            if let Some(i) = r.all {
                page.all.insert(&r.key, &m.summary[i]);
            }
        }
        page
    }

    fn header(&self) -> Markup {
        let (s, st) = (&self.m.settings, &self.m.stimuli);
        let a = &s.probe;
        let alpha = if a.alphas.is_empty() {
            format!("ridge α = {}", a.alpha)
        } else {
            format!("ridge α chosen per fold by leave-one-out from {:?}", a.alphas)
        };
        let (done, total) = self.m.status.committed_of_total();
        let q = self.m.status.quarantined().count();
        let missing = self.reps.iter().filter(|r| !self.all.contains_key(*r)).count();
        html! {
            h1 { "diffprobe report: " (s.job_name) }
            p {
                "Model " (code(&s.model_name)) " (" (s.model_kind) "); " (st.n) " stimuli ("
                (st.dropped) " dropped for missing ratings); " (st.attributes.len())
                " attributes; " (a.folds) " folds; PCA P = " (a.components) ", " (alpha) "; "
                (a.permutations) " permutations per fold (seed " (a.seed) ")."
            }
            @if done < total {
                div.banner {
                    b { "Incomplete: " (done) " of " (total) " units committed." }
                    " The figures cover only the committed units; the run is still going, was \
                    interrupted, or has units to redo or quarantined. Finish it with "
                    code { "diffprobe resume" } ", then " code { "diffprobe report" } " again."
                }
            }
            @if self.all.is_empty() {
                div.banner {
                    b { "No results:" }
                    " no probe results were merged, so every figure below is empty."
                    @if q > 0 { " " (q) " units were quarantined (see the run summary)." }
                }
            } @else if q > 0 || missing > 0 {
                div.banner {
                    b { "Incomplete:" }
                    " " (q) " quarantined units; " (missing) " of " (self.reps.len())
                    " representations without results. The figures mark what is missing; the \
                    run summary lists the errors."
                }
            }
            nav {
                @for (id, name) in FIGURE_IDS.iter().zip(FIGURE_NAMES) {
                    a href={ "#" (id) } { (name) }
                }
                a href="#run-summary" { "Run summary" }
            }
        }
    }

    /// Notes on representations without results or with missing probe units, on fits shrunk
    /// to the mean (drawn pale), and on a representation panel left out.
    fn notes(&self, pale: bool) -> Markup {
        if self.reps.is_empty() {
            return note(text("No results: no representation was planned or merged."));
        }
        let mut none = Vec::new();
        let mut partial = Vec::new();
        for &rep in &self.reps {
            let c = self.coverage.get(rep).copied().unwrap_or_default();
            let why = if c.planned == 0 {
                String::new()
            } else if c.quarantined > 0 {
                format!(" ({} of {} probe units quarantined)", c.quarantined, c.planned)
            } else if c.committed < c.planned {
                format!(" ({} of {} probe units not run)", c.planned - c.committed, c.planned)
            } else {
                String::new()
            };
            if !self.all.contains_key(rep) {
                none.push(html! { (code(rep)) (why) });
            } else if c.committed < c.planned {
                partial.push(html! { (code(rep)) (why) });
            }
        }
        let shrunk: Vec<Markup> =
            self.all.values().filter(|r| r.shrunk()).map(|r| code(&r.representation)).collect();
        let has_text = self.reps.iter().any(|r| is_text(r));
        let has_other = self.reps.iter().any(|r| !is_text(r));
        html! {
            @if !none.is_empty() {
                (note(html! { "No results (drawn as n/a): " (list(&none)) "." }))
            }
            @if !partial.is_empty() {
                (note(html! {
                    "Missing folds, so numbers cover only the folds that ran and no attribute \
                    can be significant in all folds: " (list(&partial)) "."
                }))
            }
            @if pale && !shrunk.is_empty() {
                (info(html! {
                    "Pale bars: shrunk to the mean at this α (effective degrees of freedom \
                    Σ λ/(λ + α) < " (SHRUNK_DF) "); rerun with " code { "zscore = true" } " or "
                    code { "alphas" } ". Their features vary little next to the penalty, so the \
                    probe predicts almost the training mean whatever they hold: "
                    (list(&shrunk)) "."
                }))
            }
            @if pale && has_text && !has_other { (info(text(NO_UNET))) }
            @if pale && has_other && !has_text { (info(text(NO_TEXT))) }
        }
    }

    /// Two panels over the representations: text-encoder layers (taps × pooling) and U-Net taps.
    fn rep_panels(
        &self,
        value: &dyn Fn(&SummaryRow) -> Bar,
        y_label: &str,
        y_max: Option<f64>,
        reference: Option<(f64, String)>,
    ) -> Vec<(String, Markup)> {
        let panel = |keys: Vec<&str>, x_label: &str| -> Markup {
            let mut taps = Vec::new();
            let mut pools = Vec::new();
            for k in &keys {
                let (t, p) = split(k);
                push_unique(&mut taps, t);
                push_unique(&mut pools, p);
            }
            let values = taps
                .iter()
                .map(|t| {
                    pools
                        .iter()
                        .map(|p| {
                            let key = if p.is_empty() { t.clone() } else { format!("{t}/{p}") };
                            self.all.get(key.as_str()).map(|r| value(r))
                        })
                        .collect()
                })
                .collect();
            svg::bar_chart(&Bars {
                categories: taps,
                series: pools,
                values,
                x_label: x_label.into(),
                y_label: y_label.into(),
                y_max,
                reference: reference.clone(),
            })
        };
        let text: Vec<&str> = self.reps.iter().copied().filter(|r| is_text(r)).collect();
        let other: Vec<&str> = self.reps.iter().copied().filter(|r| !is_text(r)).collect();
        if text.is_empty() && other.is_empty() {
            return vec![(
                String::new(),
                svg::placeholder("No results: no representation was planned or merged"),
            )];
        }
        // A panel the run has no representations for is left out; `notes` says so.
        let mut panels = Vec::new();
        if !text.is_empty() {
            panels.push((
                "Text encoder, by layer".to_string(),
                panel(text, "text-encoder tap (text.0 = embeddings), bars by pooling"),
            ));
        }
        if !other.is_empty() {
            panels.push((
                "U-Net taps × denoising step".to_string(),
                panel(other, "U-Net tap × step"),
            ));
        }
        panels
    }

    /// One row per representation: its cells from its `all` row, or "no results".
    fn rep_rows(&self, cols: usize, row: &dyn Fn(&SummaryRow) -> Vec<Markup>) -> Vec<Row> {
        self.reps
            .iter()
            .map(|&rep| match self.all.get(rep) {
                Some(r) => {
                    let mut v = vec![code(rep)];
                    v.extend(row(r));
                    Row::new(v)
                }
                None => {
                    let mut v = vec![code(rep), text("no results")];
                    v.resize(cols, html! {});
                    Row::missing(v)
                }
            })
            .collect()
    }
}
