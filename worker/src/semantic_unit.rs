//! A semantic unit (`[analysis.semantic]`, science-2.md §L): gather one representation
//! ([`gather`]), keep the objects' rows, and score class semantics under each distance with the
//! `alignment::semantic` library (its distances, its scores, chance levels and CIs). The
//! distances are held whole up to `analysis.semantic.max_matrix_gib` and computed in row blocks
//! beyond it, with the same scores.

use std::path::Path;

use alignment::semantic::{
    ablation, cross_retrieval, drift, drift_by_gap, knn_accuracy, mean_inter_class_distance,
    reidentification, scores, DistanceRows, Distances, Items, Score, SemanticConfig, Track,
};
use alignment::{Distance, Matrix};
use common::settings::{ObjectTrack, SemanticSettings};
use common::spec::SemanticDistance;
use common::stimuli::Dataset;
use common::table::SemanticRow;
use common::unit::{Representation, SemanticUnit};

use crate::error::UnitError;
use crate::probe_unit::gather;

/// Runs the unit: six rows (the scores) per distance, three more (drift, class and instance
/// cross-retrieval) for a transformed representation, the video rows with tracks, and
/// `dropped_under_one_token` (a count, `n` the objects in all) when objects were dropped.
pub(crate) fn run(
    run_dir: &Path,
    data: &Dataset,
    unit: &SemanticUnit,
) -> Result<Vec<SemanticRow>, UnitError> {
    if !unit.ablation.is_empty() {
        return run_ablation(run_dir, data, unit);
    }
    let key = unit.representation.key();
    let (x, d) = gather(run_dir, &unit.inputs, &key, data.len())?;
    let s = &unit.settings;
    let config =
        SemanticConfig { bootstrap: s.bootstrap, permutations: s.permutations, seed: s.seed };
    let original = untransformed_twin(run_dir, data, unit, d)?;
    let kept = Kept::new(s, &[unit.representation.tap.as_str()]);
    let rows = kept.rows(&pick(s, &x, d), d);
    let m = Matrix::new("objects", &rows, kept.len(), d)?;
    let items = Items::new(&kept.classes, &kept.images)?;
    let original = original.map(|o| kept.rows(&pick(s, &o, d), d));
    let budget = usize::try_from(s.max_matrix_bytes).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for &distance in &s.distances {
        let dist = library_distance(distance);
        let dm = Distances::new(&m, dist, budget);
        let sc = scores(&dm, &items, &config)?;
        let mut named: Vec<(String, Score)> =
            sc.named().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if !kept.tracks.is_empty() {
            named.extend(video_scores(&dm, &items, &kept.tracks, &s.frame_gaps, &config)?);
        }
        if kept.dropped > 0 {
            named.push(("dropped_under_one_token".into(), count(kept.dropped, s.items.len())));
        }
        if let Some(original) = &original {
            let o = Matrix::new("untransformed objects", original, kept.len(), d)?;
            let inter = mean_inter_class_distance(&Distances::new(&o, dist, budget), &items)?;
            named.extend(invariance_scores(&o, &m, &items, dist, inter, &config)?);
        }
        out.extend(named.into_iter().map(|(score, v)| SemanticRow {
            representation: key.clone(),
            distance: distance.name().into(),
            score,
            value: v.value,
            chance: v.chance,
            se: v.se,
            ci_low: v.ci_low,
            ci_high: v.ci_high,
            n: v.n as u32,
        }));
    }
    Ok(out)
}

/// A transformed representation's untransformed twin (`N × d`, dataset order), or `None` for an
/// untransformed one.
fn untransformed_twin(
    run_dir: &Path,
    data: &Dataset,
    unit: &SemanticUnit,
    d: usize,
) -> Result<Option<Vec<f32>>, UnitError> {
    let Some(_) = unit.representation.transform else { return Ok(None) };
    let twin = Representation { transform: None, ..unit.representation.clone() };
    let (x0, d0) = gather(run_dir, &unit.inputs, &twin.key(), data.len())?;
    if d0 != d {
        let key = unit.representation.key();
        return Err(UnitError::Invalid(format!("{key}: width {d} but {twin} has {d0}")));
    }
    Ok(Some(x0))
}

/// Drift and cross-retrieval of `transformed` against `original` (rows `drift`,
/// `cross_class_top1`, `cross_instance_top1`).
fn invariance_scores(
    original: &Matrix<'_, f32>,
    transformed: &Matrix<'_, f32>,
    items: &Items<'_>,
    distance: Distance,
    inter_class: f64,
    config: &SemanticConfig,
) -> Result<Vec<(String, Score)>, UnitError> {
    let (_, drifted) = drift(original, transformed, distance, inter_class, config)?;
    let cross = cross_retrieval(original, transformed, items, distance, config)?;
    Ok(vec![
        ("drift".into(), drifted),
        ("cross_class_top1".into(), cross.class_top1),
        ("cross_instance_top1".into(), cross.instance_top1),
    ])
}

/// The video scores under one distance: drift per frame gap (`video_drift_gap<Δτ>`, chance 1,
/// `n` = pairs) and instance re-identification across frames (`video_reid_top1`).
fn video_scores(
    dm: &dyn DistanceRows,
    items: &Items<'_>,
    tracks: &[Option<Track>],
    frame_gaps: &[i64],
    config: &SemanticConfig,
) -> Result<Vec<(String, Score)>, UnitError> {
    let inter = mean_inter_class_distance(dm, items)?;
    let mut out = Vec::new();
    for g in drift_by_gap(dm, tracks, frame_gaps, inter)? {
        let score = Score {
            value: g.value,
            chance: 1.0,
            se: f64::NAN,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            n: g.pairs,
        };
        out.push((format!("video_drift_gap{}", g.gap), score));
    }
    out.push(("video_reid_top1".to_string(), reidentification(dm, tracks, config)?));
    Ok(out)
}

/// The objects' rows of a gathered `N × d` representation, in objects-file order.
fn pick(s: &SemanticSettings, x: &[f32], d: usize) -> Vec<f32> {
    s.items.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect()
}

/// The objects a unit scores: those covering at least one token at each of its taps
/// (`SemanticSettings::covers_a_token`); the others are dropped with their class, image and
/// track, and counted.
struct Kept {
    index: Vec<usize>,
    classes: Vec<usize>,
    images: Vec<usize>,
    tracks: Vec<Option<Track>>,
    dropped: usize,
}

impl Kept {
    fn new(s: &SemanticSettings, taps: &[&str]) -> Self {
        let index: Vec<usize> = (0..s.items.len()).filter(|&i| s.covers_a_token(i, taps)).collect();
        let track =
            |t: &ObjectTrack| Track { instance: t.instance, video: t.video, frame: t.frame };
        Self {
            classes: index.iter().map(|&i| s.classes[i]).collect(),
            images: index.iter().map(|&i| s.images[i]).collect(),
            tracks: if s.tracks.is_empty() {
                Vec::new()
            } else {
                index.iter().map(|&i| s.tracks[i].as_ref().map(track)).collect()
            },
            dropped: s.items.len() - index.len(),
            index,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    /// The kept rows of an objects-order `N × d` set.
    fn rows(&self, x: &[f32], d: usize) -> Vec<f32> {
        self.index.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect()
    }
}

/// A count as a row's value (`n` the objects in all; no chance or CI).
fn count(value: usize, n: usize) -> Score {
    Score {
        value: value as f64,
        chance: f64::NAN,
        se: f64::NAN,
        ci_low: f64::NAN,
        ci_high: f64::NAN,
        n,
    }
}

/// The layer ablation of one context (`alignment::semantic::ablation`, scored by 1-NN
/// accuracy): per distance, a row `ablation_single` per tap alone, a row `ablation_step` per
/// step of the forward selection (representation: the taps' keys joined by ` + `, in the order
/// added), and `ablation_best` repeating the best step.
fn run_ablation(
    run_dir: &Path,
    data: &Dataset,
    unit: &SemanticUnit,
) -> Result<Vec<SemanticRow>, UnitError> {
    let s = &unit.settings;
    let mut blocks = Vec::new();
    for r in &unit.ablation {
        let (x, d) = gather(run_dir, &unit.inputs, &r.key(), data.len())?;
        blocks.push((pick(s, &x, d), d));
    }
    // One object set for every tap: objects under one token of any tap are dropped.
    let taps: Vec<&str> = unit.ablation.iter().map(|r| r.tap.as_str()).collect();
    let kept = Kept::new(s, &taps);
    let blocks: Vec<(Vec<f32>, usize)> =
        blocks.iter().map(|(x, d)| (kept.rows(x, *d), *d)).collect();
    let n = kept.len();
    let taps = blocks
        .iter()
        .map(|(rows, d)| Matrix::new("objects", rows, n, *d))
        .collect::<Result<Vec<_>, _>>()?;
    let items = Items::new(&kept.classes, &kept.images)?;
    // Only the accuracy steers the selection: no bootstrap, no permutations.
    let quick = SemanticConfig { bootstrap: 0, permutations: 0, seed: s.seed };
    let knn1 = |dm: &Distances, items: &Items<'_>| Ok(knn_accuracy(dm, items, 1, &quick)?.value);
    let budget = usize::try_from(s.max_matrix_bytes).unwrap_or(usize::MAX);
    let keys: Vec<String> = unit.ablation.iter().map(Representation::key).collect();
    let mut out = Vec::new();
    for &distance in &s.distances {
        let a = ablation(&taps, &items, library_distance(distance), budget, &knn1)?;
        let row = |representation: String, score: &str, value: f64| SemanticRow {
            representation,
            distance: distance.name().into(),
            score: score.into(),
            value,
            chance: f64::NAN,
            se: f64::NAN,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            n: n as u32,
        };
        let joined =
            |taps: &[usize]| taps.iter().map(|&t| keys[t].as_str()).collect::<Vec<_>>().join(" + ");
        for (key, &v) in keys.iter().zip(&a.singles) {
            out.push(row(key.clone(), "ablation_single", v));
        }
        for step in &a.path {
            out.push(row(joined(&step.taps), "ablation_step", step.score));
        }
        let best = &a.path[a.best];
        out.push(row(joined(&best.taps), "ablation_best", best.score));
    }
    Ok(out)
}

fn library_distance(d: SemanticDistance) -> Distance {
    match d {
        SemanticDistance::Cosine => Distance::Cosine,
        SemanticDistance::Euclidean => Distance::Euclidean,
        SemanticDistance::L1 => Distance::L1,
        SemanticDistance::Linf => Distance::LInf,
        SemanticDistance::Correlation => Distance::Correlation,
    }
}
