//! A semantic unit (`[analysis.semantic]`, science-2.md §L): gather one representation
//! ([`gather`]), keep the objects' rows, and score class semantics under each distance with the
//! `alignment::semantic` library (its distances, its scores, chance levels and CIs). The
//! distances are held whole up to `analysis.semantic.max_matrix_gib` and computed in row blocks
//! beyond it, with the same scores.

use std::path::Path;

use alignment::semantic::{
    ablation, cross_retrieval, drift, drift_by_gap, knn_accuracy, mean_inter_class_distance,
    reidentification, scores, DistanceRows, Distances, Items, SemanticConfig, Track,
};
use alignment::{Distance, Matrix};
use common::spec::SemanticDistance;
use common::stimuli::Dataset;
use common::table::SemanticRow;
use common::unit::{Representation, SemanticUnit};

use crate::error::UnitError;
use crate::probe_unit::gather;

/// Runs the unit: six rows (the scores) per distance, three more (drift, class and instance
/// cross-retrieval) for a transformed representation.
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
    let rows: Vec<f32> =
        s.items.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect();
    let m = Matrix::new("objects", &rows, s.items.len(), d)?;
    let items = Items::new(&s.classes, &s.images)?;
    let config =
        SemanticConfig { bootstrap: s.bootstrap, permutations: s.permutations, seed: s.seed };
    // A transformed representation is also scored against its untransformed twin.
    let reference = unit
        .representation
        .transform
        .map(|_| Representation { transform: None, ..unit.representation.clone() });
    let original = match &reference {
        Some(r) => {
            let (x0, d0) = gather(run_dir, &unit.inputs, &r.key(), data.len())?;
            if d0 != d {
                return Err(UnitError::Invalid(format!("{key}: width {d} but {r} has {d0}")));
            }
            Some(s.items.iter().flat_map(|&i| x0[i * d..(i + 1) * d].iter().copied()).collect())
        }
        None => None::<Vec<f32>>,
    };
    let budget = usize::try_from(s.max_matrix_bytes).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for &distance in &s.distances {
        let dm = Distances::new(&m, library_distance(distance), budget);
        let sc = scores(&dm, &items, &config)?;
        let mut named: Vec<(String, alignment::semantic::Score)> = [
            ("knn1", sc.knn1),
            ("knn5", sc.knn5),
            ("map_at_r", sc.map_at_r),
            ("auc", sc.auc),
            ("ratio", sc.ratio),
            ("silhouette", sc.silhouette),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if !s.tracks.is_empty() {
            named.extend(video_scores(&dm, &items, s, &config)?);
        }
        if let Some(original) = &original {
            let o = Matrix::new("untransformed objects", original, s.items.len(), d)?;
            let dist = library_distance(distance);
            let inter = mean_inter_class_distance(&Distances::new(&o, dist, budget), &items)?;
            let (_, drifted) = drift(&o, &m, dist, inter, &config)?;
            let cross = cross_retrieval(&o, &m, &items, dist, &config)?;
            named.push(("drift".into(), drifted));
            named.push(("cross_class_top1".into(), cross.class_top1));
            named.push(("cross_instance_top1".into(), cross.instance_top1));
        }
        for (score, v) in named {
            out.push(SemanticRow {
                representation: key.clone(),
                distance: distance.name().into(),
                score,
                value: v.value,
                chance: v.chance,
                se: v.se,
                ci_low: v.ci_low,
                ci_high: v.ci_high,
                n: v.n as u32,
            });
        }
    }
    Ok(out)
}

/// The video scores under one distance: drift per frame gap (`video_drift_gap<Δτ>`, chance 1,
/// `n` = pairs) and instance re-identification across frames (`video_reid_top1`).
fn video_scores(
    dm: &dyn DistanceRows,
    items: &Items<'_>,
    s: &common::settings::SemanticSettings,
    config: &SemanticConfig,
) -> Result<Vec<(String, alignment::semantic::Score)>, UnitError> {
    let tracks: Vec<Option<Track>> = s
        .tracks
        .iter()
        .map(|t| t.map(|t| Track { instance: t.instance, video: t.video, frame: t.frame }))
        .collect();
    let inter = mean_inter_class_distance(dm, items)?;
    let mut out = Vec::new();
    for g in drift_by_gap(dm, &tracks, &s.frame_gaps, inter)? {
        let score = alignment::semantic::Score {
            value: g.value,
            chance: 1.0,
            se: f64::NAN,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            n: g.pairs,
        };
        out.push((format!("video_drift_gap{}", g.gap), score));
    }
    out.push(("video_reid_top1".to_string(), reidentification(dm, &tracks, config)?));
    Ok(out)
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
        let rows: Vec<f32> =
            s.items.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect();
        blocks.push((rows, d));
    }
    let taps = blocks
        .iter()
        .map(|(rows, d)| Matrix::new("objects", rows, s.items.len(), *d))
        .collect::<Result<Vec<_>, _>>()?;
    let items = Items::new(&s.classes, &s.images)?;
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
            n: s.items.len() as u32,
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
