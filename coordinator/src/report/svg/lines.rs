//! Line charts: one polyline per series over ordered categories on the x axis (e.g. DDIM steps
//! k, or frame gaps Δτ, evenly spaced whatever their values), markers with their values on hover,
//! an optional dashed reference line (chance). A missing point breaks its line.

use std::fmt::Write;

use maud::{Markup, PreEscaped};

use super::{axes, esc, num, text_width, ticks, FONT_PX, PALETTE};

/// A line chart.
#[derive(Debug, Clone)]
pub(crate) struct Lines {
    /// The x categories, in order.
    pub(crate) xs: Vec<String>,
    /// Per series: its name and one value per x (`None`: no point).
    pub(crate) series: Vec<(String, Vec<Option<f64>>)>,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    /// A dashed horizontal line with its label.
    pub(crate) reference: Option<(f64, String)>,
}

/// Renders a line chart.
pub(crate) fn line_chart(c: &Lines) -> Markup {
    const PLOT_H: f64 = 170.0;
    const STEP_W: f64 = 56.0;
    let (left, top) = (58.0, 14.0);
    let plot_w = (c.xs.len().max(2) - 1) as f64 * STEP_W + 24.0;
    let legend: Vec<String> = c
        .series
        .iter()
        .map(|(n, _)| n.clone())
        .chain(c.reference.iter().map(|r| r.1.clone()))
        .collect();
    let legend_w = legend.iter().map(|n| text_width(n)).fold(0.0, f64::max) + 30.0;
    let width = left + plot_w + 16.0 + legend_w;
    let height = top + PLOT_H + 44.0;
    let max = c
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .chain(c.reference.iter().map(|r| &r.0))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, |m, &v| m.max(v));
    let ticks = ticks(max * 1.05);
    let y_top = *ticks.last().unwrap_or(&1.0);
    let step = ticks.get(1).copied().unwrap_or(1.0);
    let y = |v: f64| top + PLOT_H - (v.clamp(0.0, y_top) / y_top) * PLOT_H;
    let x = |i: usize| left + 12.0 + i as f64 * STEP_W;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" font-size="{FONT_PX}">"#
    );
    let base = top + PLOT_H;
    axes(&mut s, &ticks, step, (left, left + plot_w), (top, base), &y);
    for (i, label) in c.xs.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(i),
            base + 14.0,
            esc(label)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        height - 8.0,
        esc(&c.x_label),
        top + PLOT_H / 2.0,
        esc(&c.y_label)
    );
    if let Some((v, _)) = c.reference.as_ref().filter(|r| r.0.is_finite()) {
        let ry = y(*v);
        let _ = write!(
            s,
            r##"<line class="ref" x1="{left}" x2="{:.1}" y1="{ry:.1}" y2="{ry:.1}" stroke="#111" stroke-dasharray="5 3"/>"##,
            left + plot_w
        );
    }
    for (si, (name, values)) in c.series.iter().enumerate() {
        let colour = PALETTE[si % PALETTE.len()];
        series(&mut s, name, values, colour, &x, &y, &c.xs);
        let ly = top + 8.0 + si as f64 * 16.0;
        let lx = left + plot_w + 16.0;
        let _ = write!(
            s,
            r#"<line x1="{lx:.1}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            esc(name)
        );
    }
    if let Some((_, label)) = &c.reference {
        let ly = top + 8.0 + c.series.len() as f64 * 16.0;
        let lx = left + plot_w + 16.0;
        let _ = write!(
            s,
            r##"<line x1="{lx:.1}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="#111" stroke-dasharray="5 3"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            esc(label)
        );
    }
    s.push_str("</svg>");
    PreEscaped(s)
}

/// One series: its polyline pieces (broken at missing points) and its markers.
fn series(
    s: &mut String,
    name: &str,
    values: &[Option<f64>],
    colour: &str,
    x: &dyn Fn(usize) -> f64,
    y: &dyn Fn(f64) -> f64,
    xs: &[String],
) {
    let mut path = String::new();
    let mut pen_down = false;
    for (i, v) in values.iter().enumerate() {
        match v.filter(|v| v.is_finite()) {
            Some(v) => {
                let _ = write!(path, "{}{:.1} {:.1}", if pen_down { "L" } else { "M" }, x(i), y(v));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if !path.is_empty() {
        let _ = write!(
            s,
            r#"<path class="line" d="{path}" stroke="{colour}" stroke-width="2" fill="none"/>"#
        );
    }
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            let label = xs.get(i).map_or("", String::as_str);
            let _ = write!(
                s,
                r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"><title>{} at {}: {}</title></circle>"#,
                x(i),
                y(v),
                esc(name),
                esc(label),
                num(v, 4)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_point_breaks_the_line_and_every_point_is_marked() {
        let c = Lines {
            xs: ["0", "1", "5"].map(String::from).to_vec(),
            series: vec![
                ("a<b".into(), vec![Some(0.5), None, Some(0.7)]),
                ("c".into(), vec![Some(0.1), Some(0.2), Some(0.3)]),
            ],
            x_label: "steps k".into(),
            y_label: "1-NN".into(),
            reference: Some((0.25, "chance".into())),
        };
        let svg = line_chart(&c).into_string();
        assert_eq!(svg.matches(r#"<circle class="point""#).count(), 5);
        // Series a: two one-point pieces (M… M…), series c: one piece with two segments.
        let paths: Vec<&str> = svg.match_indices(r#"d=""#).map(|(i, _)| &svg[i..]).collect();
        assert_eq!(paths.len(), 2);
        assert_eq!(paths[0].split('"').nth(1).unwrap().matches('M').count(), 2);
        assert_eq!(paths[1].split('"').nth(1).unwrap().matches('L').count(), 2);
        assert!(svg.contains("a&lt;b at 5: 0.7000"), "escaped and labelled");
        assert!(svg.contains(r#"class="ref""#));
    }
}
