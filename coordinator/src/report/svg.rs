//! Small hand-written SVG charts for the HTML report: grouped bars with error bars and a
//! reference line, heat-maps with a colour scale and labelled cells, line charts over ordered
//! categories (`lines`), and a placeholder that says why a panel is empty.
//!
//! Output is a pure function of the input: fixed number formatting, no ids (many charts share
//! one page), no scripts, no external references. The charts are built from numbers and
//! strings; every string goes through [`esc`], which is maud's own escaper (the one the page's
//! templates use), and a chart is handed to the page as `maud::Markup`. Hovering a bar or cell
//! shows its value (`<title>`), which needs no script.

use std::fmt::Write;

use maud::{Markup, PreEscaped};

mod lines;
pub(crate) use self::lines::{line_chart, Lines};

/// Series colours (Paul Tol's "bright" scheme, colour-blind safe).
const PALETTE: [&str; 7] =
    ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb"];
const FONT_PX: f64 = 11.0;
/// Rough advance of one character at `FONT_PX` (labels are short; no font metrics needed).
const CHAR_W: f64 = 6.4;

/// Escapes text for SVG content and (double-quoted) attribute values, as maud escapes the page.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let _ = maud::Escaper::new(&mut out).write_str(s);
    out
}

/// A number with `decimals` places, or an en dash for NaN and infinities.
pub(crate) fn num(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "–".to_string()
    }
}

/// One bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bar {
    pub(crate) value: f64,
    /// Half-length of the error bar (± SE), if any.
    pub(crate) err: Option<f64>,
    /// Drawn pale (e.g. a near-constant representation).
    pub(crate) faded: bool,
}

/// A grouped bar chart: one group of bars per category, one bar per series.
#[derive(Debug, Clone)]
pub(crate) struct Bars {
    pub(crate) categories: Vec<String>,
    pub(crate) series: Vec<String>,
    /// `values[category][series]`; `None` is drawn as "n/a" so a gap is never silent.
    pub(crate) values: Vec<Vec<Option<Bar>>>,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    /// Top of the y axis (e.g. 100 for percentages); from the data when `None`.
    pub(crate) y_max: Option<f64>,
    /// A dashed horizontal line with its label.
    pub(crate) reference: Option<(f64, String)>,
}

/// Axis ticks from 0 to at least `max`: about five at 1, 2, 2.5 or 5 × 10^k.
fn ticks(max: f64) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(mag * 10.0);
    let n = (max / step - 1e-9).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// A tick label: as few decimals as the step needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = (0..6)
        .find(|&d| {
            let x = step * 10f64.powi(d as i32);
            (x - x.round()).abs() < 1e-6
        })
        .unwrap_or(6);
    format!("{v:.decimals$}")
}

fn text_width(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

/// Horizontal grid lines with their tick labels, and the two axes, of a plot spanning `xs`
/// (left, right) and `ys` (top, bottom); `y` maps a value to its height.
fn axes(
    s: &mut String,
    ticks: &[f64],
    step: f64,
    xs: (f64, f64),
    ys: (f64, f64),
    y: &dyn Fn(f64) -> f64,
) {
    let ((left, right), (top, bottom)) = (xs, ys);
    for t in ticks {
        let ty = y(*t);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{right:.1}" y1="{ty:.1}" y2="{ty:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left - 5.0,
            ty + 4.0,
            tick_label(*t, step)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom:.1}" stroke="#444"/><line x1="{left}" x2="{right:.1}" y1="{bottom:.1}" y2="{bottom:.1}" stroke="#444"/>"##
    );
}

/// Renders a grouped bar chart.
pub(crate) fn bar_chart(c: &Bars) -> Markup {
    const PLOT_H: f64 = 190.0;
    const BAR_W: f64 = 16.0;
    const PAD: f64 = 10.0;
    let n_series = c.series.len().max(1);
    let group_w = n_series as f64 * BAR_W + 2.0 * PAD;
    let rotate = c.categories.iter().any(|l| text_width(l) > group_w - 2.0);
    let longest = c.categories.iter().map(|l| text_width(l)).fold(0.0, f64::max);
    let has_legend = c.series.len() > 1 || c.reference.is_some();
    let legend_h = if has_legend { 22.0 } else { 4.0 };
    let legend_w = c.series.iter().map(|n| 28.0 + text_width(n)).sum::<f64>()
        + c.reference.as_ref().map_or(0.0, |r| 22.0 + text_width(&r.1));
    let top = legend_h + 12.0;
    let left = 58.0;
    let x_axis_h = if rotate { longest * 0.72 + 14.0 } else { 18.0 };
    let bottom = x_axis_h + 22.0;
    let plot_w = (c.categories.len() as f64 * group_w).max(120.0);
    let width = (left + plot_w).max(left + legend_w) + 16.0;
    let height = top + PLOT_H + bottom;

    let data_max = c
        .values
        .iter()
        .flatten()
        .flatten()
        .map(|b| b.value + b.err.unwrap_or(0.0))
        .chain(c.reference.iter().map(|r| r.0))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let ticks = ticks(c.y_max.unwrap_or(data_max * 1.05));
    let y_top = *ticks.last().unwrap_or(&1.0);
    let step = ticks.get(1).copied().unwrap_or(1.0);
    let y = |v: f64| top + PLOT_H - (v.clamp(0.0, y_top) / y_top) * PLOT_H;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" font-size="{FONT_PX}">"#
    );
    axes(&mut s, &ticks, step, (left, left + plot_w), (top, top + PLOT_H), &y);
    let _ = write!(
        s,
        r#"<text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + PLOT_H / 2.0,
        esc(&c.y_label)
    );
    // Bars.
    for (ci, cat) in c.categories.iter().enumerate() {
        let gx = left + ci as f64 * group_w + PAD;
        for si in 0..n_series {
            let x = gx + si as f64 * BAR_W;
            let series = c.series.get(si).map(String::as_str).unwrap_or("");
            let name = if series.is_empty() {
                esc(cat)
            } else {
                format!("{} / {}", esc(cat), esc(series))
            };
            match c.values.get(ci).and_then(|v| v.get(si)).copied().flatten() {
                Some(b) if b.value.is_finite() => {
                    let (y0, y1) = (y(b.value), y(0.0));
                    let opacity = if b.faded { r#" fill-opacity="0.35""# } else { "" };
                    let err = b.err.map(|e| format!(" ± {}", num(e, 4))).unwrap_or_default();
                    let _ = write!(
                        s,
                        r#"<rect class="bar" x="{:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="{}"{opacity}><title>{name}: {}{err}</title></rect>"#,
                        x + 0.5,
                        BAR_W - 1.0,
                        (y1 - y0).max(0.0),
                        PALETTE[si % PALETTE.len()],
                        num(b.value, 4)
                    );
                    if let Some(e) = b.err.filter(|e| e.is_finite() && *e > 0.0) {
                        let (ya, yb) = (y(b.value - e), y(b.value + e));
                        let cx = x + BAR_W / 2.0;
                        let _ = write!(
                            s,
                            r##"<path class="err" d="M{cx:.1} {ya:.1}V{yb:.1}M{:.1} {ya:.1}h6M{:.1} {yb:.1}h6" stroke="#222" fill="none"/>"##,
                            cx - 3.0,
                            cx - 3.0
                        );
                    }
                }
                _ => {
                    let _ = write!(
                        s,
                        r##"<text class="missing" transform="translate({:.1} {:.1}) rotate(-90)" fill="#b00" font-size="9">n/a<title>{name}: no results</title></text>"##,
                        x + BAR_W / 2.0 + 3.0,
                        top + PLOT_H - 3.0
                    );
                }
            }
        }
        let lx = gx - PAD + group_w / 2.0;
        let ly = top + PLOT_H + 14.0;
        if rotate {
            let _ = write!(
                s,
                r#"<text transform="translate({:.1} {ly:.1}) rotate(-40)" text-anchor="end">{}</text>"#,
                lx + 4.0,
                esc(cat)
            );
        } else {
            let _ = write!(
                s,
                r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle">{}</text>"#,
                esc(cat)
            );
        }
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        height - 6.0,
        esc(&c.x_label)
    );
    if let Some((v, _)) = &c.reference {
        if v.is_finite() {
            let ry = y(*v);
            let _ = write!(
                s,
                r##"<line class="ref" x1="{left}" x2="{:.1}" y1="{ry:.1}" y2="{ry:.1}" stroke="#111" stroke-dasharray="5 3"/>"##,
                left + plot_w
            );
        }
    }
    // Legend: the series, then the reference line.
    let mut lx = left;
    if c.series.len() > 1 {
        for (si, name) in c.series.iter().enumerate() {
            let _ = write!(
                s,
                r#"<rect x="{lx:.1}" y="6" width="10" height="10" fill="{}"/><text x="{:.1}" y="15">{}</text>"#,
                PALETTE[si % PALETTE.len()],
                lx + 14.0,
                esc(name)
            );
            lx += 14.0 + text_width(name) + 14.0;
        }
    }
    if let Some((_, label)) = &c.reference {
        let _ = write!(
            s,
            r##"<line x1="{lx:.1}" x2="{:.1}" y1="11" y2="11" stroke="#111" stroke-dasharray="5 3"/><text x="{:.1}" y="15">{}</text>"##,
            lx + 18.0,
            lx + 22.0,
            esc(label)
        );
    }
    s.push_str("</svg>");
    PreEscaped(s)
}

/// How values map to colours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scale {
    /// Viridis from `lo` (dark) to `hi` (light).
    Sequential { lo: f64, hi: f64 },
    /// Blue (−limit) through white (0) to red (+limit).
    Diverging { limit: f64 },
}

impl Scale {
    /// Position in [0, 1].
    fn t(&self, v: f64) -> f64 {
        let t = match *self {
            Scale::Sequential { lo, hi } => {
                if hi > lo {
                    (v - lo) / (hi - lo)
                } else {
                    0.5
                }
            }
            Scale::Diverging { limit } => {
                if limit > 0.0 {
                    0.5 + v / (2.0 * limit)
                } else {
                    0.5
                }
            }
        };
        t.clamp(0.0, 1.0)
    }
    fn stops(&self) -> &'static [[u8; 3]] {
        match self {
            Scale::Sequential { .. } => {
                &[[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]
            }
            Scale::Diverging { .. } => {
                &[[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]]
            }
        }
    }
    fn rgb(&self, v: f64) -> [u8; 3] {
        let stops = self.stops();
        let x = self.t(v) * (stops.len() - 1) as f64;
        let i = (x.floor() as usize).min(stops.len() - 2);
        let f = x - i as f64;
        let mut out = [0u8; 3];
        for (k, o) in out.iter_mut().enumerate() {
            let (a, b) = (stops[i][k] as f64, stops[i + 1][k] as f64);
            *o = (a + (b - a) * f).round() as u8;
        }
        out
    }
    fn ends(&self) -> (f64, f64) {
        match *self {
            Scale::Sequential { lo, hi } => (lo, hi),
            Scale::Diverging { limit } => (-limit, limit),
        }
    }
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// Dark text on light cells, white on dark ones.
fn ink(c: [u8; 3]) -> &'static str {
    let l = 0.2126 * c[0] as f64 + 0.7152 * c[1] as f64 + 0.0722 * c[2] as f64;
    if l > 140.0 {
        "#111"
    } else {
        "#fff"
    }
}

/// A heat-map with every cell labelled by its value.
#[derive(Debug, Clone)]
pub(crate) struct Heatmap {
    pub(crate) rows: Vec<String>,
    pub(crate) cols: Vec<String>,
    /// `values[row][col]`; `None` is drawn grey with a dash.
    pub(crate) values: Vec<Vec<Option<f64>>>,
    pub(crate) row_label: String,
    pub(crate) col_label: String,
    pub(crate) scale: Scale,
    pub(crate) decimals: usize,
    /// A cell outlined in orange (e.g. the best).
    pub(crate) mark: Option<(usize, usize)>,
}

/// Renders a heat-map with a stepped colour bar on its right.
pub(crate) fn heatmap(h: &Heatmap) -> Markup {
    // Cells fit their numbers; longer column labels are turned.
    let cell_w = (text_width(&"0".repeat(h.decimals + 3)) + 10.0).max(40.0);
    let longest = h.cols.iter().map(|c| text_width(c)).fold(0.0, f64::max);
    let rotate = longest > cell_w - 4.0;
    let x_axis_h = if rotate { longest * 0.72 + 14.0 } else { 18.0 };
    let cell_h = 24.0;
    let row_w = h.rows.iter().map(|r| text_width(r)).fold(0.0, f64::max);
    let left = 26.0 + row_w + 6.0;
    let top = 10.0;
    let grid_w = h.cols.len() as f64 * cell_w;
    let grid_h = h.rows.len() as f64 * cell_h;
    let bar_x = left + grid_w + 16.0;
    let (lo, hi) = h.scale.ends();
    let legend_w = 14.0
        + 6.0
        + text_width(&num(lo.min(hi), h.decimals)).max(text_width(&num(hi, h.decimals)))
        + 4.0;
    let width = bar_x + legend_w + 4.0;
    let height = top + grid_h.max(120.0).max(grid_h + x_axis_h) + 22.0;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" font-size="{FONT_PX}">"#
    );
    for (ri, row) in h.rows.iter().enumerate() {
        let y = top + ri as f64 * cell_h;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + cell_h / 2.0 + 4.0,
            esc(row)
        );
        for (ci, col) in h.cols.iter().enumerate() {
            let x = left + ci as f64 * cell_w;
            let v = h
                .values
                .get(ri)
                .and_then(|r| r.get(ci))
                .copied()
                .flatten()
                .filter(|v| v.is_finite());
            let (fill, text, label) = match v {
                Some(v) => {
                    let c = h.scale.rgb(v);
                    (hex(c), ink(c), num(v, h.decimals))
                }
                None => ("#eeeeee".to_string(), "#777", "–".to_string()),
            };
            let _ = write!(
                s,
                r##"<rect class="cell" x="{x:.1}" y="{y:.1}" width="{cell_w:.1}" height="{cell_h:.1}" fill="{fill}" stroke="#fff"><title>{} = {}, {} = {}: {label}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{text}">{label}</text>"##,
                esc(&h.row_label),
                esc(row),
                esc(&h.col_label),
                esc(col),
                x + cell_w / 2.0,
                y + cell_h / 2.0 + 4.0
            );
        }
    }
    if let Some((r, c)) = h.mark {
        if r < h.rows.len() && c < h.cols.len() {
            let _ = write!(
                s,
                r##"<rect class="mark" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#ff7f0e" stroke-width="3"/>"##,
                left + c as f64 * cell_w + 1.0,
                top + r as f64 * cell_h + 1.0,
                cell_w - 2.0,
                cell_h - 2.0
            );
        }
    }
    for (ci, col) in h.cols.iter().enumerate() {
        let (x, y) = (left + (ci as f64 + 0.5) * cell_w, top + grid_h + 14.0);
        if rotate {
            let _ = write!(
                s,
                r#"<text transform="translate({:.1} {y:.1}) rotate(-40)" text-anchor="end">{}</text>"#,
                x + 4.0,
                esc(col)
            );
        } else {
            let _ = write!(
                s,
                r#"<text x="{x:.1}" y="{y:.1}" text-anchor="middle">{}</text>"#,
                esc(col)
            );
        }
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(12 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        left + grid_w / 2.0,
        top + grid_h + x_axis_h + 14.0,
        esc(&h.col_label),
        top + grid_h / 2.0,
        esc(&h.row_label)
    );
    // Colour bar: ten steps, high at the top.
    let steps = 10;
    let bar_h = grid_h.max(120.0);
    for k in 0..steps {
        let v = hi - (hi - lo) * (k as f64 + 0.5) / steps as f64;
        let _ = write!(
            s,
            r#"<rect x="{bar_x:.1}" y="{:.1}" width="14" height="{:.1}" fill="{}"/>"#,
            top + k as f64 * bar_h / steps as f64,
            bar_h / steps as f64 + 0.5,
            hex(h.scale.rgb(v))
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}">{}</text><text x="{:.1}" y="{:.1}">{}</text>"#,
        bar_x + 18.0,
        top + 9.0,
        num(hi, h.decimals),
        bar_x + 18.0,
        top + bar_h,
        num(lo, h.decimals)
    );
    s.push_str("</svg>");
    PreEscaped(s)
}

/// An empty panel that says why it is empty.
pub(crate) fn placeholder(message: &str) -> Markup {
    let width = (text_width(message) + 40.0).clamp(240.0, 640.0);
    PreEscaped(format!(
        r##"<svg class="chart placeholder" width="{width:.0}" height="70" viewBox="0 0 {width:.0} 70" role="img" font-size="{FONT_PX}"><rect x="1" y="1" width="{:.0}" height="68" fill="#fafafa" stroke="#bbb" stroke-dasharray="4 3"/><text x="{:.0}" y="39" text-anchor="middle" fill="#666">{}</text></svg>"##,
        width - 2.0,
        width / 2.0,
        esc(message)
    ))
}

#[cfg(test)]
mod tests;
