//! The dense-probe part of the report (`[analysis.dense_probe]`, science-2.md §D): the committed
//! rows in plan order (`report/dense.parquet`), per (target, representation) the mean ± SE of
//! the primary score over test images (Dice for a mask, Spearman ρ for a continuous map) beside
//! the all-foreground Dice, and per target where the score emerges along denoising.
//!
//! **Emergence** (the paper's "by step 3"): the contexts of a target's cells are put in
//! denoising order (generation: step 0 first; real images: the highest noise level first); the
//! statement names the first context at which some tap reaches [`EMERGENCE`] of the target's
//! best mean score. It is made only when the best beats its floor: ρ > 0 for a continuous map,
//! the all-foreground Dice for a mask; otherwise the report says there is nothing to emerge.

use std::collections::BTreeMap;

use common::table::DenseRow;
use common::unit::Representation;

use probe::dense::summarize;

/// The share of the best score at which a property counts as emerged.
pub(crate) const EMERGENCE: f64 = 0.9;

/// The dense part of the model.
#[derive(Debug, Clone)]
pub(crate) struct Dense {
    /// Every row, in plan order.
    pub(crate) rows: Vec<DenseRow>,
    /// Per (target, representation), in order of first appearance.
    pub(crate) cells: Vec<DenseCell>,
    /// Per target, in order of first appearance.
    pub(crate) targets: Vec<TargetSummary>,
    /// The input image of each stimulus drawn in a strip, where it can be found.
    pub(crate) thumbnails: BTreeMap<String, Thumbnail>,
    /// Whether the probes were trained the paper's way (`fit = "paper"`), not in closed form.
    pub(crate) paper_fit: bool,
}

/// An image shrunk for a strip: at most [`THUMBNAIL`] pixels a side, RGB, row-major.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Thumbnail {
    pub(crate) height: usize,
    pub(crate) width: usize,
    pub(crate) rgb: Vec<[u8; 3]>,
}

/// The longest side of a [`Thumbnail`].
pub(crate) const THUMBNAIL: u32 = 32;

/// The thumbnails of the stimuli with strips: the real image (`capture.image.folder`) or the
/// generated one (`images/{stimulus}.r0.png`, with `save_images`). A missing or unreadable
/// image only leaves its strip without one.
pub(crate) fn thumbnails(
    spec: &common::spec::JobSpec,
    layout: &common::layout::RunLayout,
    rows: &[DenseRow],
) -> BTreeMap<String, Thumbnail> {
    let mut out = BTreeMap::new();
    for r in rows.iter().filter(|r| !r.prediction.is_empty()) {
        if out.contains_key(&r.stimulus) {
            continue;
        }
        let candidates = match spec.capture.mode {
            common::spec::CaptureMode::Image => ["png", "jpg", "jpeg"]
                .map(|e| spec.capture.image.folder.join(format!("{}.{e}", r.stimulus)))
                .to_vec(),
            common::spec::CaptureMode::Generate => {
                vec![layout.images_dir().join(format!("{}.r0.png", r.stimulus))]
            }
        };
        let Some(image) = candidates.iter().find_map(|p| image::open(p).ok()) else { continue };
        let small = image.thumbnail(THUMBNAIL, THUMBNAIL).to_rgb8();
        let (width, height) = (small.width() as usize, small.height() as usize);
        let rgb = small.pixels().map(|p| p.0).collect();
        out.insert(r.stimulus.clone(), Thumbnail { height, width, rgb });
    }
    out
}

/// One target on one representation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DenseCell {
    pub(crate) target: String,
    pub(crate) kind: String,
    pub(crate) representation: String,
    /// Mean and SE of the primary score over test images with one (NaN scores skipped).
    pub(crate) mean: f64,
    pub(crate) se: f64,
    pub(crate) images: usize,
    pub(crate) skipped: usize,
    /// Masks: mean all-foreground Dice of the same images; continuous: NaN.
    pub(crate) baseline: f64,
}

/// Where a target is best, and where it emerges.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TargetSummary {
    pub(crate) target: String,
    pub(crate) kind: String,
    /// Index into `cells` of the best mean score, if any cell has one.
    pub(crate) best: Option<usize>,
    /// The first context (in denoising order) where some tap reaches [`EMERGENCE`] of the best,
    /// with that cell's index; `None` unless the best is positive.
    pub(crate) emerges: Option<(String, usize)>,
    /// Index into `cells` of the weight-permuted control of the best cell (same tap and
    /// context through the permuted U-Net), if the run has one.
    pub(crate) control: Option<usize>,
}

/// Whether a cell's representation was captured through the weight-permuted U-Net.
pub(crate) fn is_control(representation: &str) -> bool {
    representation.parse::<Representation>().is_ok_and(|r| r.permuted.is_some())
}

/// The representation a control cell is the control of (itself for other cells).
fn unpermuted(representation: &str) -> Option<Representation> {
    let r = representation.parse::<Representation>().ok()?;
    Some(Representation { permuted: None, ..r })
}

/// The model part from the committed rows (plan order).
pub(crate) fn reduce(rows: Vec<DenseRow>) -> Dense {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in &rows {
        if !keys.contains(&(r.target.as_str(), r.representation.as_str())) {
            keys.push((&r.target, &r.representation));
        }
    }
    let cells: Vec<DenseCell> = keys
        .iter()
        .map(|&(target, rep)| {
            let of: Vec<&DenseRow> =
                rows.iter().filter(|r| r.target == target && r.representation == rep).collect();
            let scores: Vec<f64> = of.iter().map(|r| r.score()).collect();
            let s = summarize(&scores);
            let baselines: Vec<f64> = of.iter().map(|r| r.all_foreground_dice).collect();
            DenseCell {
                target: target.into(),
                kind: of[0].kind.clone(),
                representation: rep.into(),
                mean: s.mean,
                se: s.se,
                images: s.n,
                skipped: s.skipped,
                baseline: summarize(&baselines).mean,
            }
        })
        .collect();
    let mut names: Vec<&str> = Vec::new();
    for c in &cells {
        if !names.contains(&c.target.as_str()) {
            names.push(&c.target);
        }
    }
    let targets = names.iter().map(|t| summary(&cells, t)).collect();
    Dense { rows, cells, targets, thumbnails: BTreeMap::new(), paper_fit: false }
}

/// The best cell of `target`, where it emerges (module doc) and its control; control cells
/// are never the best and never where a property emerges.
pub(crate) fn summary(cells: &[DenseCell], target: &str) -> TargetSummary {
    let of: Vec<usize> = (0..cells.len())
        .filter(|&i| cells[i].target == target && !is_control(&cells[i].representation))
        .collect();
    let best = of
        .iter()
        .copied()
        .filter(|&i| cells[i].mean.is_finite())
        .max_by(|&a, &b| cells[a].mean.total_cmp(&cells[b].mean));
    let emerges = best.filter(|&b| cells[b].mean > floor(&cells[b])).and_then(|b| {
        let bar = EMERGENCE * cells[b].mean;
        let mut order: Vec<(Order, usize)> =
            of.iter().map(|&i| (denoising_order(&cells[i].representation), i)).collect();
        order.sort_by(|a, b| a.0.cmp(&b.0));
        order.into_iter().find(|&(_, i)| cells[i].mean >= bar).map(|(o, i)| (o.name, i))
    });
    let control = best.and_then(|b| {
        let own = unpermuted(&cells[b].representation)?;
        (0..cells.len()).find(|&i| {
            cells[i].target == target
                && is_control(&cells[i].representation)
                && unpermuted(&cells[i].representation).as_ref() == Some(&own)
        })
    });
    let kind = of.first().map_or_else(String::new, |&i| cells[i].kind.clone());
    TargetSummary { target: target.into(), kind, best, emerges, control }
}

/// What the best score must beat for emergence to be stated: the all-foreground Dice of a
/// mask, 0 for a continuous map's ρ.
fn floor(c: &DenseCell) -> f64 {
    if c.baseline.is_finite() {
        c.baseline
    } else {
        0.0
    }
}

/// A context's place along denoising, and its name (`step 2`, `noise 80 %`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Order {
    rank: i64,
    pub(crate) name: String,
}

pub(crate) fn denoising_order(key: &str) -> Order {
    match key.parse::<Representation>() {
        Ok(Representation { step: Some(k), .. }) => {
            Order { rank: k as i64, name: format!("step {k}") }
        }
        Ok(Representation { noise: Some(n), conditioning, .. }) => {
            let c = conditioning.map_or(String::new(), |c| format!(", {}", c.name()));
            Order { rank: -i64::from(n), name: format!("noise {n} %{c}") }
        }
        _ => Order { rank: i64::MAX, name: key.into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rep: &str, target: &str, score: f64) -> DenseRow {
        DenseRow {
            representation: rep.into(),
            target: target.into(),
            kind: "continuous".into(),
            stimulus: "s".into(),
            dice: f64::NAN,
            dice_background: f64::NAN,
            all_foreground_dice: f64::NAN,
            spearman: score,
            pearson: score,
            rmse: 1.0,
            n_train: 4,
            grid: vec![1, 1],
            prediction: Vec::new(),
            label: Vec::new(),
        }
    }

    /// Emergence is the first step (denoising order) where some tap reaches 90 % of the best,
    /// not the first best; noise levels run from high to low; a target whose best is not
    /// positive emerges nowhere.
    #[test]
    fn emergence_is_stated_where_it_holds_and_not_otherwise() {
        let mut rows = Vec::new();
        for (k, v) in [(0, 0.1), (1, 0.5), (2, 0.91), (3, 1.0), (4, 0.95)] {
            rows.push(row(&format!("a/none/k{k}"), "depth", v));
            rows.push(row(&format!("b/none/k{k}"), "depth", v * 0.5));
            rows.push(row(&format!("a/none/k{k}"), "flat", -0.2 + 0.01 * k as f64));
        }
        for (n, v) in [(20, 0.9), (50, 0.85), (80, 0.3)] {
            rows.push(row(&format!("a/none/n{n}/empty"), "shade", v));
        }
        let d = reduce(rows);
        let name = |t: &TargetSummary| {
            t.emerges.as_ref().map(|(n, i)| (n.clone(), d.cells[*i].representation.clone()))
        };
        let depth = &d.targets[0];
        assert_eq!(d.cells[depth.best.unwrap()].representation, "a/none/k3");
        assert_eq!(name(depth), Some(("step 2".into(), "a/none/k2".into())));
        assert_eq!(d.targets[1].target, "flat");
        assert!(d.targets[1].emerges.is_none(), "a best of −0.16 emerges nowhere");
        assert_eq!(
            name(&d.targets[2]),
            Some(("noise 50 %, empty".into(), "a/none/n50/empty".into()))
        );
        // A mask whose best Dice does not beat predicting all foreground emerges nowhere.
        let mask = |rep: &str, dice: f64| DenseRow {
            kind: "mask".into(),
            dice,
            all_foreground_dice: 0.4,
            ..row(rep, "fg", f64::NAN)
        };
        let d = reduce(vec![mask("a/none/k0", 0.2), mask("a/none/k1", 0.39)]);
        assert!(d.targets[0].emerges.is_none(), "Dice 0.39 < all-foreground 0.4");
        let d = reduce(vec![mask("a/none/k0", 0.5), mask("a/none/k1", 0.8)]);
        assert_eq!(d.targets[0].emerges.as_ref().map(|e| e.0.as_str()), Some("step 1"));
    }

    /// A weight-permuted control cell is never the best nor where a target emerges, even when it
    /// scores higher; the best cell's control is the same tap and context with `/p<seed>`.
    #[test]
    fn the_control_is_paired_with_the_best_cell_and_never_wins() {
        let rows = vec![
            row("a/none/k0", "depth", 0.2),
            row("a/none/k1", "depth", 0.8),
            row("b/none/k1", "depth", 0.5),
            row("a/none/p3/k0", "depth", 0.95),
            row("a/none/p3/k1", "depth", 0.1),
            row("b/none/p3/k1", "depth", 0.3),
        ];
        let d = reduce(rows);
        let t = &d.targets[0];
        assert_eq!(d.cells[t.best.unwrap()].representation, "a/none/k1");
        assert_eq!(d.cells[t.control.unwrap()].representation, "a/none/p3/k1");
        assert_eq!(t.emerges.as_ref().map(|e| e.0.as_str()), Some("step 1"));
        let without = reduce(vec![row("a/none/k0", "depth", 0.2)]);
        assert!(without.targets[0].control.is_none());
        let mut md = String::new();
        crate::report::render::dense::section(&mut md, &d);
        assert!(md.contains("the weight-permuted control there scores 0.100 ± "), "{md}");
        assert!(md.contains("(gap 0.700)"), "{md}");
    }
}
