//! Plan-time inputs of `[analysis.alignment]` (stage two of the spec): the triplet file is
//! read and resolved against the run's stimuli, the human embedding is read in stimulus order,
//! and the folds of the linear probe are checked, so that bad input is refused before any
//! model runs (exit 2), naming the spec key, the file, the line or row and the field.
//!
//! **Triplet indices** count the lines of `index_list` when the spec gives one (e.g. THINGS'
//! 1,854 concepts), else the stimuli as listed in `stimuli.file` (before the missing-ratings
//! policy drops any); either way they are matched to dataset rows by name, so a dropped
//! stimulus is an error naming the concept and why it was dropped, never a silent shift.
//! **Names** are matched exactly (after trimming spaces) to the stimulus names.
//!
//! The result, [`AlignmentInputs`], is written once to the run directory (`alignment.json`);
//! workers read only that file. After the sweep, [`merge`] joins the units' rows into
//! `report/alignment.parquet` ([`AlignmentResults`]).

use std::path::Path;

use alignment::{AlignmentError, Concepts, CsvOptions, Entries, TripletProblem, Triplets};
use common::error::SpecError;
use common::spec::{
    AlignmentDistance, AlignmentSection, EarlyStoppingChoice, JobSpec, TripletEntries,
};
use common::stimuli::{AlignmentInputs, Dataset};
use common::table::{AlignmentRow, ProbeScore, TripletScore};

const SECTION: &str = "analysis.alignment";

/// Resolves the triplets and the embedding of the spec's `[analysis.alignment]`, or `None`
/// when the spec has no such section.
pub(crate) fn resolve(
    spec: &JobSpec,
    spec_file: &str,
    data: &Dataset,
) -> anyhow::Result<Option<AlignmentInputs>> {
    let Some(a) = &spec.analysis.alignment else { return Ok(None) };
    let err = |key: &str, msg: String| SpecError::new(spec_file, format!("{SECTION}.{key}"), msg);
    let list = match &a.index_list {
        Some(path) => read_index_list(path).map_err(|m| err("index_list", m))?,
        None => common::stimuli::listed_stimuli(spec, spec_file)?,
    };
    let list_key = if a.index_list.is_some() { "index_list" } else { "triplets" };
    let concepts = Concepts::new(data.stimuli.clone())
        .and_then(|c| c.with_index_list(list))
        .map_err(|e| err(list_key, e.to_string()))?;
    let options = CsvOptions {
        entries: match a.triplet_entries {
            TripletEntries::Indices => Entries::Indices,
            TripletEntries::Names => Entries::Names,
        },
        has_header: a.triplet_header,
        delimiter: a.delimiter_byte(),
    };
    let triplets = Triplets::from_csv(&a.triplets, &concepts, &options)
        .map_err(|e| err("triplets", explain(&e, data)))?;
    let n = data.len();
    let embedding = match &a.embedding {
        Some(path) => Some(
            common::stimuli::read_embedding(path, &a.embedding_key, &data.stimuli)
                .map_err(|e| err("embedding", e.to_string()))?,
        ),
        None => None,
    };
    if embedding.is_some() && n < a.embedding_folds {
        return Err(err(
            "embedding_folds",
            format!("{} folds need at least as many stimuli; the run has {n}", a.embedding_folds),
        )
        .into());
    }
    if a.linear_probe {
        check_probe_folds(a, &triplets, n).map_err(|m| err("probe_folds", m))?;
    }
    let rows = triplets.rows().iter().map(|t| t.map(|i| i as u32)).collect();
    Ok(Some(AlignmentInputs { n_concepts: n, triplets: rows, embedding }))
}

/// One concept name per line; lines are counted from 0 and none may be empty.
fn read_index_list(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut names = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() {
            return Err(format!(
                "{}: line {}: empty concept name (index {i}); the list has one name per line",
                path.display(),
                i + 1
            ));
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err(format!("{}: the list names no concept", path.display()));
    }
    Ok(names)
}

/// The library's message, plus why a concept without a stimulus has none when the
/// missing-ratings policy dropped it.
fn explain(e: &AlignmentError, data: &Dataset) -> String {
    let msg = e.to_string();
    if let AlignmentError::TripletFile { problem: TripletProblem::NoStimulus { name }, .. } = e {
        if let Some((_, why)) = data.dropped.iter().find(|(s, _)| s == name) {
            return format!("{msg}: the stimulus was dropped for missing ratings ({why})");
        }
    }
    msg
}

/// Every fold of the linear probe must keep training and test triplets (and validation
/// triplets when early stopping watches them), else the unit would fail after capture.
fn check_probe_folds(a: &AlignmentSection, triplets: &Triplets, n: usize) -> Result<(), String> {
    let k = a.probe_folds;
    if n < k {
        return Err(format!("{k} folds need at least as many stimuli; the run has {n}"));
    }
    let folds = probe::kfold(n, k, a.seed).map_err(|e| e.to_string())?;
    for (f, test) in folds.iter().enumerate() {
        let p = alignment::partition(triplets, test);
        let held = match a.early_stopping {
            EarlyStoppingChoice::TestLoss => None,
            EarlyStoppingChoice::ValidationLoss => {
                Some((p.train.len() as f64 * a.validation_fraction).round() as usize)
            }
        };
        let trained = p.train.len() - held.unwrap_or(0).min(p.train.len());
        if trained == 0 || p.test.is_empty() || held == Some(0) {
            return Err(format!(
                "fold {f} of {k} keeps {} training{} and {} test triplets ({} mix training and \
                 test concepts and are dropped); every fold needs some of each: give more \
                 triplets or fewer folds",
                p.train.len(),
                held.map(|h| format!(" ({h} of them for validation)")).unwrap_or_default(),
                p.test.len(),
                p.dropped
            ));
        }
    }
    Ok(())
}

/// The library's distance for a spec distance.
pub(crate) fn distance(d: AlignmentDistance) -> alignment::Distance {
    match d {
        AlignmentDistance::Cosine => alignment::Distance::Cosine,
        AlignmentDistance::Euclidean => alignment::Distance::Euclidean,
        AlignmentDistance::Dot => alignment::Distance::NegDot,
    }
}

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
