//! Figure 9: dense probes (science-2.md §D): per target a tap × context heat-map of the mean
//! primary score over test images (Dice for masks, Spearman ρ for continuous maps), contexts in
//! denoising order, the best cell outlined.

use maud::{html, Markup};

use super::{code, figure, omitted, table, text, Page, Row};
use common::table::DenseRow;

use std::collections::BTreeMap;

use crate::report::dense::{denoising_order, is_control, DenseCell, Thumbnail, EMERGENCE};
use crate::report::svg::{self, num, Heatmap, Scale};

impl Page<'_> {
    pub(super) fn dense(&self) -> Markup {
        let title = "Figure 9. Dense probes per denoising step";
        let id = "fig-dense";
        let Some(d) = &self.m.dense else {
            return omitted(
                id,
                title,
                "no dense probes in this run ([analysis.dense_probe] is not set).",
            );
        };
        let mut panels = Vec::new();
        for t in &d.targets {
            let cells: Vec<&DenseCell> = d
                .cells
                .iter()
                .filter(|c| c.target == t.target && !is_control(&c.representation))
                .collect();
            let metric = if t.kind == "mask" { "Dice" } else { "Spearman ρ" };
            panels.push((
                format!("{} ({metric})", t.target),
                heat(&cells, t.best.map(|i| &d.cells[i]), t.kind == "mask"),
            ));
            if let Some(best) = t.best.map(|i| &d.cells[i]) {
                let tap = tap_of(&best.representation);
                let heading =
                    format!("{}: image | prediction | label per test image, {tap}", t.target);
                let strips = Strips { rows: &d.rows, thumbnails: &d.thumbnails };
                panels.push((heading, strips.draw(&t.target, tap, t.kind == "mask")));
            }
        }
        if panels.is_empty() {
            panels.push((String::new(), svg::placeholder("No results: no dense unit was merged")));
        }
        let head = [
            ("target", false),
            ("best representation", false),
            ("score ± SE", true),
            ("all-foreground Dice", true),
            ("weight-permuted control (gap)", true),
            ("emerges at", false),
        ];
        let rows: Vec<Row> = d
            .targets
            .iter()
            .map(|t| {
                let best = t.best.map(|i| &d.cells[i]);
                let cells = vec![
                    text(&t.target),
                    best.map_or(text("–"), |b| code(&b.representation)),
                    text(best.map_or("–".into(), |b| {
                        format!("{} ± {}", num(b.mean, 3), num(b.se, 3))
                    })),
                    text(best.map_or("–".into(), |b| num(b.baseline, 3))),
                    text(match (best, t.control.map(|i| &d.cells[i])) {
                        (Some(b), Some(c)) => format!(
                            "{} ± {} ({})",
                            num(c.mean, 3),
                            num(c.se, 3),
                            num(b.mean - c.mean, 3)
                        ),
                        _ => "–".into(),
                    }),
                    text(t.emerges.as_ref().map_or("–".into(), |(c, _)| c.clone())),
                ];
                if best.is_none() {
                    Row::missing(cells)
                } else {
                    Row::new(cells)
                }
            })
            .collect();
        let fitted = if d.paper_fit {
            "trained the paper's way (Adam, per-pixel losses)"
        } else {
            "fitted in exact closed form"
        };
        let caption = html! {
            "Each cell: a linear probe from every token of the tap at that step (or noise level) \
            to the label map, " (fitted) " on the training images and scored on \
            each test image at full resolution; the mean over test images. Contexts run in \
            denoising order; the best cell is outlined. \"Emerges at\" is the first context where \
            some tap reaches " (format!("{:.0}", 100.0 * EMERGENCE)) " % of the best. The \
            control is the same cell through the weight-permuted U-Net, when the run has it. \
            Every image's score is in dense.parquet."
        };
        figure(id, title, &panels, caption, html! {}, table(&head, &rows))
    }
}

/// The tap of an unreduced representation key.
fn tap_of(key: &str) -> &str {
    key.split("/none").next().unwrap_or(key)
}

/// The strips' inputs: the dense rows and the input images.
struct Strips<'a> {
    rows: &'a [DenseRow],
    thumbnails: &'a BTreeMap<String, Thumbnail>,
}

impl Strips<'_> {
    /// Per context of `tap` (denoising order), the first test images' input image (when it can
    /// be found), prediction and label, token by token: grey levels on the label's range (a
    /// mask's prediction is its thresholded logit, black = foreground). Drawn from
    /// `DenseRow::prediction` and `DenseRow::label`.
    fn draw(&self, target: &str, tap: &str, mask: bool) -> Markup {
        let own = |r: &&DenseRow| !is_control(&r.representation);
        let mut contexts: Vec<(crate::report::dense::Order, &str)> = Vec::new();
        let of_tap = |r: &&DenseRow| r.target == target && tap_of(&r.representation) == tap;
        for r in self.rows.iter().filter(own).filter(of_tap) {
            let o = denoising_order(&r.representation);
            if !contexts.iter().any(|(x, _)| *x == o) {
                contexts.push((o, &r.representation));
            }
        }
        contexts.sort_by(|a, b| a.0.cmp(&b.0));
        html! {
            div.strips {
                @for (order, key) in &contexts {
                    @let shown = self.rows.iter().filter(|r| r.target == target && r.representation == **key && !r.prediction.is_empty());
                    div.strip {
                        span.context { (order.name) }
                        @for r in shown {
                            (strip(r, self.thumbnails.get(&r.stimulus), mask))
                        }
                    }
                }
            }
        }
    }
}

/// One test image's strip: image | prediction | label.
fn strip(r: &DenseRow, image: Option<&Thumbnail>, mask: bool) -> Markup {
    const CELL: f64 = 4.0;
    const GAP: f64 = 6.0;
    let (h, w) = (r.grid[0] as usize, r.grid[1] as usize);
    let (lo, hi) = range(&r.label);
    let grey = |v: f64| {
        let t = if hi > lo { ((v - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.5 };
        let g = (255.0 * (1.0 - t)).round() as u8;
        format!("rgb({g},{g},{g})")
    };
    let pred = |v: f64| if mask { grey(if v > 0.0 { hi } else { lo }) } else { grey(v) };
    let height = h as f64 * CELL;
    // The image is drawn at the strip's height, whatever its own resolution.
    let (px, image_width) = match image {
        Some(t) => (height / t.height as f64, height / t.height as f64 * t.width as f64 + GAP),
        None => (0.0, 0.0),
    };
    let x0 = image_width;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(x0 + 2.0 * w as f64 * CELL + GAP) height=(height) role="img" {
            title { (r.stimulus) ": image | prediction | label" }
            @if let Some(t) = image {
                @for (i, [red, green, blue]) in t.rgb.iter().enumerate() {
                    rect x=((i % t.width) as f64 * px) y=((i / t.width) as f64 * px) width=(px) height=(px) fill=(format!("rgb({red},{green},{blue})")) {}
                }
            }
            @for b in 0..h * w {
                rect x=(x0 + (b % w) as f64 * CELL) y=((b / w) as f64 * CELL) width=(CELL) height=(CELL) fill=(pred(r.prediction[b])) {}
                rect x=(x0 + ((b % w) + w) as f64 * CELL + GAP) y=((b / w) as f64 * CELL) width=(CELL) height=(CELL) fill=(grey(r.label[b])) {}
            }
        }
    }
}

fn range(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// The tap × context heat-map of one target's cells.
/// Dice is drawn on [0, 1]; ρ from 0 to its largest value.
fn heat(cells: &[&DenseCell], best: Option<&DenseCell>, mask: bool) -> Markup {
    let split = |key: &str| -> (String, String) {
        let tap = tap_of(key).to_string();
        (tap, denoising_order(key).name)
    };
    let mut taps: Vec<String> = Vec::new();
    let mut contexts: Vec<(crate::report::dense::Order, String)> = Vec::new();
    for c in cells {
        let (tap, _) = split(&c.representation);
        if !taps.contains(&tap) {
            taps.push(tap);
        }
        let o = denoising_order(&c.representation);
        if !contexts.iter().any(|(x, _)| x == &o) {
            contexts.push((o.clone(), o.name));
        }
    }
    contexts.sort_by(|a, b| a.0.cmp(&b.0));
    let value = |tap: &str, ctx: &str| {
        cells
            .iter()
            .find(|c| split(&c.representation) == (tap.to_string(), ctx.to_string()))
            .map(|c| c.mean)
            .filter(|v| v.is_finite())
    };
    let values: Vec<Vec<Option<f64>>> =
        taps.iter().map(|t| contexts.iter().map(|(_, c)| value(t, c)).collect()).collect();
    let mark = best.and_then(|b| {
        let (tap, ctx) = split(&b.representation);
        Some((taps.iter().position(|t| *t == tap)?, contexts.iter().position(|(_, c)| *c == ctx)?))
    });
    let largest = values.iter().flatten().flatten().copied().fold(0.0_f64, f64::max);
    let hi = if mask { 1.0 } else { largest.max(1e-9) };
    svg::heatmap(&Heatmap {
        rows: taps,
        cols: contexts.into_iter().map(|(_, c)| c).collect(),
        values,
        row_label: "tap".into(),
        col_label: "denoising →".into(),
        scale: Scale::Sequential { lo: 0.0, hi },
        decimals: 2,
        mark,
    })
}
