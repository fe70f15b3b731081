//! Odd-one-out alignment in the report: the committed alignment rows merged ([`merge`]) into
//! `report/alignment.parquet`'s rows, the lookups over them ([`AlignmentResults`], the one seam
//! to `common::table::AlignmentRow`), and the report model's alignment part ([`reduce`]).

use common::spec::{AlignmentDistance, AlignmentSection};
use common::stimuli::AlignmentInputs;
use common::table::{
    analysis as table_analysis, AlignmentRow, ProbeScore, ProbeTraining, TripletScore,
};
use common::unit::Representation;

use alignment::Triplets;

use super::model::{Alignment, AlignmentRepRow, Series};
use super::status::RunStatus;
use crate::alignment::distance;

/// The merged alignment results of a run and what they were computed on.
#[derive(Debug, Clone)]
pub(crate) struct AlignmentResults {
    /// `report/alignment.parquet`'s rows, in plan order (see `merge`).
    pub(crate) rows: Vec<AlignmentRow>,
    /// Number of triplets M.
    pub(crate) n_triplets: usize,
    /// Number of concepts N.
    pub(crate) n_concepts: usize,
    /// Names of the human embedding's dimensions (empty without an embedding).
    pub(crate) dimensions: Vec<String>,
}

impl AlignmentResults {
    /// The accuracy of `analysis` under `distance` for `rep` (fold-free rows only).
    pub(crate) fn accuracy(&self, rep: &str, analysis: &str, distance: &str) -> Option<f64> {
        self.overall(rep, analysis, Some(distance)).and_then(AlignmentRow::accuracy)
    }

    /// The fold-free row of (`rep`, `analysis`, `distance`).
    pub(crate) fn overall(
        &self,
        rep: &str,
        analysis: &str,
        distance: Option<&str>,
    ) -> Option<&AlignmentRow> {
        self.rows.iter().find(|r| {
            r.representation() == rep
                && r.analysis() == analysis
                && r.fold().is_none()
                && r.distance().map(AlignmentDistance::name) == distance
        })
    }

    /// The representations with results, in plan order.
    pub(crate) fn representations(&self) -> Vec<&str> {
        let mut reps: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !r.representation().is_empty() && !reps.contains(&r.representation()) {
                reps.push(r.representation());
            }
        }
        reps
    }

    /// The representation with the highest accuracy of `analysis` under `distance` (the first
    /// in plan order on a tie), with that accuracy.
    pub(crate) fn best(&self, analysis: &str, distance: &str) -> Option<(&str, f64)> {
        let mut best: Option<(&str, f64)> = None;
        for rep in self.representations() {
            if let Some(acc) = self.accuracy(rep, analysis, distance).filter(|a| a.is_finite()) {
                if best.is_none_or(|(_, b)| acc > b) {
                    best = Some((rep, acc));
                }
            }
        }
        best
    }
}

/// Merges the committed alignment outputs (`rows`, in plan order): each representation's
/// evaluate rows, then its linear-probe folds in fold order followed by their mean (the
/// paper's probing accuracy; over the folds that ran), then the human embedding's own
/// accuracy per distance (representation empty).
pub(crate) fn merge(
    section: &AlignmentSection,
    inputs: &AlignmentInputs,
    rows: Vec<AlignmentRow>,
) -> anyhow::Result<AlignmentResults> {
    let mut order: Vec<String> = Vec::new();
    for r in &rows {
        if !order.iter().any(|o| o == r.representation()) {
            order.push(r.representation().to_string());
        }
    }
    let n = inputs.n_concepts;
    let mut merged = Vec::with_capacity(rows.len() + order.len());
    for rep in &order {
        let mine = rows.iter().filter(|r| r.representation() == rep);
        let probe_fold = |r: &AlignmentRow| matches!(r, AlignmentRow::LinearProbeFold { .. });
        merged.extend(mine.clone().filter(|r| !probe_fold(r)).cloned());
        let mut folds: Vec<(&AlignmentRow, &ProbeScore)> = mine
            .filter_map(|r| match r {
                AlignmentRow::LinearProbeFold { score, .. } => Some((r, score)),
                _ => None,
            })
            .collect();
        folds.sort_by_key(|(r, _)| r.fold());
        if folds.is_empty() {
            continue;
        }
        let mean = folds.iter().map(|(_, s)| s.accuracy).sum::<f64>() / folds.len() as f64;
        let total = AlignmentRow::LinearProbeMean {
            representation: rep.clone(),
            score: ProbeScore {
                accuracy: mean,
                correct: folds.iter().map(|(_, s)| s.correct).sum(),
                n_triplets: folds.iter().map(|(_, s)| s.n_triplets).sum(),
                n_concepts: n as u32,
                chance: alignment::CHANCE,
            },
        };
        merged.extend(folds.into_iter().map(|(r, _)| r.clone()));
        merged.push(total);
    }
    let triplets = Triplets::new(
        inputs.triplets.iter().map(|t| t.map(|i| i as usize)).collect(),
        inputs.n_concepts,
    )?;
    let mut dimensions = Vec::new();
    if let Some(emb) = &inputs.embedding {
        dimensions.clone_from(&emb.dimensions);
        let v = alignment::Matrix::new("embedding", &emb.values, n, emb.dimensions.len())?;
        for &d in &section.distances {
            let o = alignment::odd_one_out(&v, &triplets, distance(d))?;
            merged.push(AlignmentRow::HumanEmbedding {
                score: TripletScore {
                    distance: d,
                    accuracy: o.accuracy,
                    correct: o.correct as u32,
                    ties: o.predictions.iter().filter(|p| p.is_none()).count() as u32,
                    n_triplets: triplets.len() as u32,
                    n_concepts: n as u32,
                    chance: alignment::CHANCE,
                },
            });
        }
    }
    Ok(AlignmentResults {
        rows: merged,
        n_triplets: inputs.triplets.len(),
        n_concepts: n,
        dimensions,
    })
}

/// The report model's alignment part: every number both renderers show, over the
/// representations planned for an alignment unit or with results (plan order).
pub(crate) fn reduce(a: &AlignmentSection, res: AlignmentResults, status: &RunStatus) -> Alignment {
    let primary = a.distances[0].name().to_string();
    let mut series: Vec<Series> = (0..a.distances.len()).map(Series::OddOneOut).collect();
    if a.linear_probe {
        series.push(Series::LinearProbe);
    }
    if !res.dimensions.is_empty() {
        series.push(Series::PredictedEmbedding);
    }
    let value = |rep: &str, s: Series| match s {
        Series::OddOneOut(i) => {
            res.accuracy(rep, table_analysis::ODD_ONE_OUT, a.distances[i].name())
        }
        Series::LinearProbe => res.accuracy(rep, table_analysis::LINEAR_PROBE, "dot"),
        Series::PredictedEmbedding => {
            res.accuracy(rep, table_analysis::EMBEDDING_REGRESSION, &primary)
        }
    };
    let with_results = res.representations();
    let mut reps: Vec<&str> = Vec::new();
    let planned = status.units.iter().filter(|u| u.kind == "alignment");
    for r in planned.filter_map(|u| u.representation.as_deref()).chain(with_results.iter().copied())
    {
        if !reps.contains(&r) {
            reps.push(r);
        }
    }
    let probe_folds = |rep: &str| -> Vec<&ProbeTraining> {
        res.rows
            .iter()
            .filter_map(|r| match r {
                AlignmentRow::LinearProbeFold { representation, training, .. }
                    if representation == rep =>
                {
                    Some(training)
                }
                _ => None,
            })
            .collect()
    };
    let rows = reps
        .iter()
        .map(|&rep| {
            let folds = probe_folds(rep).len();
            AlignmentRepRow {
                representation: rep.to_string(),
                has_results: with_results.contains(&rep),
                values: series.iter().map(|&s| value(rep, s)).collect(),
                probe_folds_run: (a.linear_probe && folds < a.probe_folds && folds > 0)
                    .then_some(folds),
                r2: res
                    .overall(rep, table_analysis::EMBEDDING_REGRESSION, Some(&primary))
                    .and_then(AlignmentRow::r2),
            }
        })
        .collect();
    let silent = with_results
        .iter()
        .filter(|&&rep| {
            let folds = probe_folds(rep);
            a.linear_probe
                && !folds.is_empty()
                && folds.iter().all(|t| (t.train_loss - 3f64.ln()).abs() < 1e-3)
        })
        .map(|rep| rep.to_string())
        .collect();
    let ties = reps
        .iter()
        .filter_map(|&rep| {
            let r =
                res.overall(rep, table_analysis::ODD_ONE_OUT, Some(&primary))?.triplet_score()?;
            let t = Some(r.ties).filter(|&t| t > 0)?;
            Some((rep.to_string(), t, r.n_triplets))
        })
        .collect();
    // Diffusion representations: the primary OOOA as tap × (step | noise level / conditioning).
    let mut contexts: Vec<String> = Vec::new();
    let mut bases: Vec<&str> = Vec::new();
    for rep in &with_results {
        let (b, c) = split_context(rep);
        if !c.is_empty() {
            if !contexts.iter().any(|x| x == c) {
                contexts.push(c.to_string());
            }
            if !bases.contains(&b) {
                bases.push(b);
            }
        }
    }
    let by_context = bases
        .iter()
        .map(|b| {
            let values = contexts
                .iter()
                .map(|c| res.accuracy(&format!("{b}/{c}"), table_analysis::ODD_ONE_OUT, &primary))
                .collect();
            (b.to_string(), values)
        })
        .collect();
    let owned = |b: Option<(&str, f64)>| b.map(|(r, v)| (r.to_string(), v));
    Alignment {
        best_odd_one_out: owned(res.best(table_analysis::ODD_ONE_OUT, &primary)),
        best_linear_probe: owned(res.best(table_analysis::LINEAR_PROBE, "dot")),
        best_embedding: owned(res.best(table_analysis::EMBEDDING_REGRESSION, &primary)),
        ceiling: a
            .distances
            .iter()
            .map(|d| {
                let v = res.accuracy("", table_analysis::HUMAN_EMBEDDING, d.name());
                (d.name().to_string(), v)
            })
            .collect(),
        missing_units: status
            .units
            .iter()
            .filter(|u| u.kind == "alignment" && u.state != "committed")
            .map(|u| (u.what.clone(), u.state.clone()))
            .collect(),
        primary,
        series,
        rows,
        ties,
        silent,
        contexts,
        by_context,
        results: res,
    }
}

/// Names a representation key's context (step, noise level, conditioning) apart from its tap
/// and pooling: `mid_block/flatten/k10` → (`mid_block/flatten`, `k10`). The key is parsed by
/// `Representation`'s one parser; a key that does not parse has no context.
fn split_context(key: &str) -> (&str, &str) {
    let context = key.parse::<Representation>().map(|r| r.context().len()).unwrap_or(0);
    match context {
        0 => (key, ""),
        n => (&key[..key.len() - n - 1], &key[key.len() - n..]),
    }
}
