//! The charts on hand-made numbers: bars, missing values, escaping, heat-maps, ticks.

use super::*;

fn bar(v: f64) -> Option<Bar> {
    Some(Bar { value: v, err: Some(0.1), faded: false })
}

fn chart(categories: &[&str], series: &[&str], values: Vec<Vec<Option<Bar>>>) -> Bars {
    Bars {
        categories: categories.iter().map(|s| s.to_string()).collect(),
        series: series.iter().map(|s| s.to_string()).collect(),
        values,
        x_label: "layer".into(),
        y_label: "RMSE".into(),
        y_max: None,
        reference: Some((0.5, "best".into())),
    }
}

#[test]
fn grouped_bars_count_bars_gaps_and_error_bars() {
    let c = chart(
        &["text.0", "text.1", "text.2"],
        &["cls", "mean"],
        vec![vec![bar(0.8), bar(0.7)], vec![bar(0.6), None], vec![bar(0.5), bar(0.4)]],
    );
    let s = bar_chart(&c).into_string();
    assert_eq!(s.matches(r#"class="bar""#).count(), 5);
    assert_eq!(s.matches(r#"class="err""#).count(), 5);
    assert_eq!(s.matches(r#"class="missing""#).count(), 1, "a gap is marked n/a");
    assert_eq!(s.matches(r#"class="ref""#).count(), 1);
    assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
}

#[test]
fn empty_and_single_bar_charts_are_valid() {
    let s = bar_chart(&chart(&[], &[], vec![])).into_string();
    assert_eq!(s.matches(r#"class="bar""#).count(), 0);
    assert!(s.starts_with("<svg") && s.ends_with("</svg>") && !s.contains("NaN"));
    let s = bar_chart(&chart(&["text.0/mean"], &[""], vec![vec![bar(0.3)]])).into_string();
    assert_eq!(s.matches(r#"class="bar""#).count(), 1);
    assert!(!s.contains("NaN") && !s.contains("inf"));
    // A NaN value is missing, not a broken rect.
    let s = bar_chart(&chart(&["x"], &[""], vec![vec![bar(f64::NAN)]])).into_string();
    assert_eq!(s.matches(r#"class="bar""#).count(), 0);
    assert_eq!(s.matches(r#"class="missing""#).count(), 1);
}

#[test]
fn names_are_escaped() {
    let c = chart(&["a<b&c"], &["x\"y", "z"], vec![vec![bar(1.0), bar(2.0)]]);
    let s = bar_chart(&c).into_string();
    assert!(s.contains("a&lt;b&amp;c") && s.contains("x&quot;y"));
    assert!(!s.contains("a<b") && !s.contains("b&c"));
    let h = heatmap(&Heatmap {
        rows: vec!["<r>".into()],
        cols: vec!["&".into()],
        values: vec![vec![Some(1.0)]],
        row_label: "P".into(),
        col_label: "α".into(),
        scale: Scale::Sequential { lo: 0.0, hi: 2.0 },
        decimals: 2,
        mark: None,
    })
    .into_string();
    assert!(h.contains("&lt;r&gt;") && !h.contains("<r>"));
    assert!(placeholder("no <grid>").into_string().contains("no &lt;grid&gt;"));
}

#[test]
fn heatmap_labels_every_cell_and_marks_the_best() {
    let h = Heatmap {
        rows: vec!["10".into(), "120".into()],
        cols: vec!["1".into(), "150".into(), "1000".into()],
        values: vec![vec![Some(0.9), Some(0.8), None], vec![Some(0.7), Some(0.6), Some(0.65)]],
        row_label: "P".into(),
        col_label: "α".into(),
        scale: Scale::Sequential { lo: 0.6, hi: 0.9 },
        decimals: 3,
        mark: Some((1, 1)),
    };
    let s = heatmap(&h).into_string();
    assert_eq!(s.matches(r#"class="cell""#).count(), 6);
    assert_eq!(s.matches(r#"class="mark""#).count(), 1);
    assert!(s.contains(">0.600<") && s.contains(">–<"));
    // The ends of the scale get the first and last colours.
    assert_eq!(hex(h.scale.rgb(0.6)), "#440154");
    assert_eq!(hex(h.scale.rgb(0.9)), "#fde725");
    assert_eq!(hex(Scale::Diverging { limit: 1.0 }.rgb(0.0)), "#f7f7f7");
    let empty = heatmap(&Heatmap { rows: vec![], cols: vec![], values: vec![], ..h }).into_string();
    assert_eq!(empty.matches(r#"class="cell""#).count(), 0);
}

#[test]
fn ticks_are_round() {
    assert_eq!(ticks(100.0), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
    assert_eq!(ticks(0.9).len(), 6); // 0 .. 1.0 by 0.2
    let t = ticks(0.0);
    assert_eq!((t.len(), t[5]), (6, 1.0));
    assert_eq!(tick_label(0.25, 0.25), "0.25");
    assert_eq!(tick_label(0.4000000000000001, 0.2), "0.4");
    assert_eq!(tick_label(40.0, 20.0), "40");
}
