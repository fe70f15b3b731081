//! Merge: reduce the committed probe rows into the report tables, `report.md` and
//! `report.html` (`crate::html`).
//!
//! * `rmse.parquet` — per (representation, attribute): RMSE per fold and mean ± SE over folds,
//!   the baseline (training-mean) RMSE and relative reduction, Pearson r per fold and its mean
//!   over the folds where it is defined, and the fit's effective degrees of freedom (mean over
//!   folds).
//! * `significance.parquet` — per (representation, attribute): permutation p per fold, the
//!   all-folds rule (significant iff p < 0.05 in every fold), and Benjamini–Hochberg q-values
//!   across the representation's attributes on p_max = max over folds of p (a valid p-value
//!   for the all-folds rule; pooling per-fold permutation nulls would be anti-conservative).
//! * `summary.parquet` — per (representation, group; `all` = every attribute): mean relative
//!   reduction ± SE and mean RMSE ± SE over attributes, mean r, % significant, both entanglement
//!   measures (identification accuracy; correlation-structure delta), the mean effective degrees
//!   of freedom and the shrunk-to-the-mean flag (`SHRUNK_DF`).
//! * `entanglement.parquet` — per representation and attribute pair: human and model
//!   correlation of the out-of-fold predictions, within folds (`probe::correlation_structure`).
//! * `grid.parquet` — when the spec asks for it: mean held-out RMSE per (representation, P, α)
//!   on fold 0 (paper Fig. 5), which is also one of the probes' test folds, so its best cell is
//!   chosen on test data (the report says so).
//! * `alignment.parquet` — when the spec has `[analysis.alignment]`: the alignment units' rows
//!   (`common::table::AlignmentRow`) in plan order, with each representation's linear-probe
//!   mean over folds and the human embedding's own accuracy added (`crate::alignment::merge`).
//!
//! Pearson r is computed within each fold and averaged (the arithmetic mean of the per-fold r):
//! pooled over folds, the out-of-fold predictions carry each fold's own intercept, which alone
//! correlates (negatively) with the ratings. For the same reason the entanglement measures
//! remove each fold's mean from predictions and ratings first.
//!
//! Everything is computed in a fixed order from the committed files, so equal inputs give
//! byte-identical reports whichever workers, attempts or restarts produced them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, ListArray, RecordBatch, StringArray, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema};
use common::ids::UnitKind;
use common::layout::RunLayout;
use common::spec::JobSpec;
use common::stimuli::{AlignmentInputs, Dataset};
use common::table::{read_probe_rows, ProbeRow};

use crate::alignment::AlignmentResults;
use crate::db::StateDb;

/// Below this many effective degrees of freedom (`probe::effective_df`) the ridge penalty has
/// shrunk the probe to the training mean: its features vary little next to α, which says
/// nothing about whether they hold the attribute (z-scoring or a per-attribute α may recover
/// it), so the report flags the fit, not the representation.
pub(crate) const SHRUNK_DF: f64 = 1.0;
const SIGNIFICANCE: f64 = 0.05;

/// One merged (representation, attribute).
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    pub(crate) representation: String,
    pub(crate) attribute: String,
    pub(crate) group: Option<String>,
    pub(crate) rmse_fold: Vec<f64>,
    pub(crate) baseline_fold: Vec<f64>,
    pub(crate) p_fold: Vec<f64>,
    /// Pearson r of predictions and ratings within each fold (NaN where the fold's predictions
    /// are constant).
    pub(crate) r_fold: Vec<f64>,
    /// Effective degrees of freedom of each fold's fit.
    pub(crate) df_fold: Vec<f64>,
    pub(crate) n_components: u32,
    pub(crate) alpha_fold: Vec<f64>,
    /// Out-of-fold predictions for every stimulus (NaN where a fold is missing).
    pub(crate) predicted: Vec<f64>,
    /// The test fold of every stimulus (`None` where its fold is missing).
    pub(crate) fold_of: Vec<Option<u32>>,
    pub(crate) q: f64,
}

impl Cell {
    pub(crate) fn rmse(&self) -> f64 {
        mean(&self.rmse_fold)
    }
    pub(crate) fn rmse_se(&self) -> f64 {
        se(&self.rmse_fold)
    }
    pub(crate) fn baseline(&self) -> f64 {
        mean(&self.baseline_fold)
    }
    pub(crate) fn reduction(&self) -> f64 {
        1.0 - self.rmse() / self.baseline()
    }
    pub(crate) fn p_max(&self) -> f64 {
        self.p_fold.iter().copied().fold(0.0, f64::max)
    }
    pub(crate) fn significant(&self, folds: usize) -> bool {
        self.p_fold.len() == folds && self.p_fold.iter().all(|&p| p < SIGNIFICANCE)
    }
    /// The arithmetic mean of the per-fold r over the folds where it is defined; NaN if none.
    pub(crate) fn pearson_r(&self) -> f64 {
        mean_defined(&self.r_fold)
    }
    /// The mean over folds of the effective degrees of freedom.
    pub(crate) fn effective_df(&self) -> f64 {
        mean(&self.df_fold)
    }
}

/// One row of the summary.
#[derive(Debug, Clone)]
pub(crate) struct SummaryRow {
    pub(crate) representation: String,
    pub(crate) group: String,
    pub(crate) n_attributes: usize,
    pub(crate) mean_rmse: f64,
    pub(crate) se_rmse: f64,
    pub(crate) mean_reduction: f64,
    /// SE over attributes of the relative reduction (0 for one attribute).
    pub(crate) se_reduction: f64,
    /// Mean over attributes of each attribute's mean per-fold r (attributes with a defined r).
    pub(crate) mean_r: f64,
    pub(crate) pct_significant: f64,
    /// Mean over attributes and folds of the fit's effective degrees of freedom.
    pub(crate) effective_df: f64,
    /// Entanglement (i): identification accuracy over the set's attribute pairs (chance 0.5),
    /// within folds; NaN when no pair is defined.
    pub(crate) identification: f64,
    /// Entanglement (ii): mean |off-diagonal corr| of predictions − of human ratings, within
    /// folds; NaN when no pair is defined.
    pub(crate) corr_delta: f64,
}

impl SummaryRow {
    /// Whether the fits are shrunk to the training mean at their α ([`SHRUNK_DF`]).
    pub(crate) fn shrunk(&self) -> bool {
        self.effective_df < SHRUNK_DF
    }
}

/// Human ratings by attribute name, for the entanglement measures.
pub(crate) struct Truth {
    pub(crate) n: usize,
    pub(crate) columns: BTreeMap<String, Vec<f64>>,
}

impl Truth {
    pub(crate) fn of(data: &Dataset) -> Truth {
        let j = data.attributes.len();
        let columns = data
            .attributes
            .iter()
            .enumerate()
            .map(|(a, name)| {
                (name.clone(), (0..data.len()).map(|i| data.targets[i * j + a]).collect())
            })
            .collect();
        Truth { n: data.len(), columns }
    }
}

/// The entanglement inputs of a set of attributes of one representation: predictions and
/// ratings (`rows × j`, row-major) and the test fold of each row, on the stimuli every attribute
/// has an out-of-fold prediction for, all in the same fold.
fn entanglement_inputs(set: &[&Cell], truth: &Truth) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    let rows: Vec<usize> = (0..truth.n)
        .filter(|&i| {
            set.iter().all(|c| c.predicted[i].is_finite() && c.fold_of[i] == set[0].fold_of[i])
        })
        .collect();
    let pred = rows.iter().flat_map(|&i| set.iter().map(move |c| c.predicted[i])).collect();
    let real = rows
        .iter()
        .flat_map(|&i| set.iter().map(move |c| truth.columns[&c.attribute][i]))
        .collect();
    let folds = rows.iter().map(|&i| set[0].fold_of[i].unwrap_or(0) as usize).collect();
    (pred, real, folds)
}

/// Both entanglement measures over a set of attributes of one representation, within folds.
fn entanglement(set: &[&Cell], truth: &Truth) -> (f64, f64) {
    let (pred, real, folds) = entanglement_inputs(set, truth);
    let (n, j) = (folds.len(), set.len());
    (
        probe::identification_accuracy(&pred, &real, n, j, &folds),
        probe::correlation_structure(&pred, &real, n, j, &folds).delta,
    )
}

/// The per-pair correlation table of one representation, within folds: (attribute a,
/// attribute b, human r, model r).
pub(crate) fn pair_table(set: &[&Cell], truth: &Truth) -> Vec<(String, String, f64, f64)> {
    let (pred, real, folds) = entanglement_inputs(set, truth);
    probe::correlation_structure(&pred, &real, folds.len(), set.len(), &folds)
        .pairs
        .into_iter()
        .map(|(a, b, h, m)| (set[a].attribute.clone(), set[b].attribute.clone(), h, m))
        .collect()
}

pub(crate) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The mean of the values that are not NaN; NaN if there are none.
pub(crate) fn mean_defined(v: &[f64]) -> f64 {
    let defined: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if defined.is_empty() {
        return f64::NAN;
    }
    mean(&defined)
}

/// Standard error of the mean: sample sd (ddof 1) / √n; 0 for a single value.
pub(crate) fn se(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64;
    (var / v.len() as f64).sqrt()
}

/// Reads every committed probe file and merges its rows into cells, in plan order.
pub(crate) fn cells(layout: &RunLayout, data: &Dataset, db: &StateDb) -> anyhow::Result<Vec<Cell>> {
    let mut order: Vec<String> = Vec::new();
    let mut rows: BTreeMap<(usize, u32), Vec<ProbeRow>> = BTreeMap::new();
    for rel in db.committed_outputs(UnitKind::Probe)? {
        for row in read_probe_rows(&layout.root().join(&rel))? {
            let idx = match order.iter().position(|r| r == &row.representation) {
                Some(i) => i,
                None => {
                    order.push(row.representation.clone());
                    order.len() - 1
                }
            };
            rows.entry((idx, row.attribute)).or_default().push(row);
        }
    }
    let mut out = Vec::new();
    for ((rep, attr), mut fold_rows) in rows {
        fold_rows.sort_by_key(|r| r.fold);
        let mut predicted = vec![f64::NAN; data.len()];
        let mut fold_of = vec![None; data.len()];
        for r in &fold_rows {
            for (&i, &p) in r.test_indices.iter().zip(&r.predictions) {
                predicted[i as usize] = p;
                fold_of[i as usize] = Some(r.fold);
            }
        }
        out.push(Cell {
            representation: order[rep].clone(),
            attribute: data.attributes[attr as usize].clone(),
            group: data.groups[attr as usize].clone(),
            rmse_fold: fold_rows.iter().map(|r| r.rmse).collect(),
            baseline_fold: fold_rows.iter().map(|r| r.baseline_rmse).collect(),
            p_fold: fold_rows.iter().map(|r| r.p_value).collect(),
            r_fold: fold_rows.iter().map(|r| r.pearson_r).collect(),
            df_fold: fold_rows.iter().map(|r| r.effective_df).collect(),
            n_components: fold_rows.iter().map(|r| r.n_components).min().unwrap_or(0),
            alpha_fold: fold_rows.iter().map(|r| r.alpha).collect(),
            predicted,
            fold_of,
            q: f64::NAN,
        });
    }
    // BH across the attributes of each representation, on p_max.
    for rep in &order {
        let idx: Vec<usize> = (0..out.len()).filter(|&i| &out[i].representation == rep).collect();
        let p: Vec<f64> = idx.iter().map(|&i| out[i].p_max()).collect();
        for (&i, q) in idx.iter().zip(probe::bh_qvalues(&p)) {
            out[i].q = q;
        }
    }
    Ok(out)
}

/// Per representation and group (`all` first, then named groups in name order).
pub(crate) fn summarise(cells: &[Cell], folds: usize, truth: &Truth) -> Vec<SummaryRow> {
    let mut reps: Vec<&str> = Vec::new();
    for c in cells {
        if !reps.contains(&c.representation.as_str()) {
            reps.push(&c.representation);
        }
    }
    let mut groups: Vec<String> = cells.iter().filter_map(|c| c.group.clone()).collect();
    groups.sort();
    groups.dedup();
    let mut out = Vec::new();
    for rep in reps {
        let mine: Vec<&Cell> = cells.iter().filter(|c| c.representation == rep).collect();
        let mut sets: Vec<(String, Vec<&Cell>)> = vec![("all".into(), mine.clone())];
        for g in &groups {
            sets.push((
                g.clone(),
                mine.iter().copied().filter(|c| c.group.as_ref() == Some(g)).collect(),
            ));
        }
        for (group, set) in sets {
            if set.is_empty() {
                continue;
            }
            let rmse: Vec<f64> = set.iter().map(|c| c.rmse()).collect();
            let reduction: Vec<f64> = set.iter().map(|c| c.reduction()).collect();
            let sig = set.iter().filter(|c| c.significant(folds)).count();
            let (identification, corr_delta) = entanglement(&set, truth);
            out.push(SummaryRow {
                representation: rep.to_string(),
                group,
                n_attributes: set.len(),
                mean_rmse: mean(&rmse),
                se_rmse: se(&rmse),
                mean_reduction: mean(&reduction),
                se_reduction: se(&reduction),
                mean_r: mean_defined(&set.iter().map(|c| c.pearson_r()).collect::<Vec<_>>()),
                pct_significant: 100.0 * sig as f64 / set.len() as f64,
                effective_df: mean(&set.iter().map(|c| c.effective_df()).collect::<Vec<_>>()),
                identification,
                corr_delta,
            });
        }
    }
    out
}

fn strings<'a>(v: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}
fn floats(v: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(v))
}
fn float_lists(v: &[&[f64]]) -> ArrayRef {
    let values = Float64Array::from_iter_values(v.iter().flat_map(|x| x.iter().copied()));
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Float64, false)),
        OffsetBuffer::from_lengths(v.iter().map(|x| x.len())),
        Arc::new(values),
        None,
    ))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> anyhow::Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), a.null_count() > 0))
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )?)
}

fn write(path: &Path, b: &RecordBatch) -> anyhow::Result<()> {
    common::fs::write_atomic(path, |f| common::table::write_batch(f, path, b))
        .with_context(|| path.display().to_string())
}

/// The summary table as JSON values (for `diffprobe report --json`).
pub(crate) fn summary_json(
    layout: &RunLayout,
    spec: &JobSpec,
    data: &Dataset,
    db: &StateDb,
) -> anyhow::Result<serde_json::Value> {
    let cells = cells(layout, data, db)?;
    let summary = summarise(&cells, spec.analysis.attribute_probe.folds, &Truth::of(data));
    let rows: Vec<serde_json::Value> = summary
        .iter()
        .map(|s| {
            serde_json::json!({
                "representation": s.representation,
                "group": s.group,
                "n_attributes": s.n_attributes,
                "mean_rmse": s.mean_rmse,
                "se_rmse": s.se_rmse,
                "mean_relative_reduction": s.mean_reduction,
                "se_relative_reduction": s.se_reduction,
                "mean_pearson_r": s.mean_r,
                "pct_significant": s.pct_significant,
                "identification_accuracy": s.identification,
                "corr_structure_delta": s.corr_delta,
                "effective_df": s.effective_df,
                "shrunk_to_mean": s.shrunk(),
            })
        })
        .collect();
    let (hits, tests) = crate::report::per_fold_rate(&cells);
    Ok(serde_json::json!({
        "run": layout.root().display().to_string(),
        "report_dir": layout.report_dir().display().to_string(),
        "null_control": spec.job.null_control,
        "per_fold_tests": tests,
        "per_fold_significant": hits,
        "summary": rows,
    }))
}

/// Merges the committed probe outputs and writes `report/`.
pub(crate) fn write_report(
    layout: &RunLayout,
    spec: &JobSpec,
    data: &Dataset,
    db: &StateDb,
) -> anyhow::Result<()> {
    let folds = spec.analysis.attribute_probe.folds;
    let cells = cells(layout, data, db)?;
    let dir = layout.report_dir();
    std::fs::create_dir_all(&dir)?;
    let group = |c: &Cell| c.group.clone().unwrap_or_default();
    let groups: Vec<String> = cells.iter().map(group).collect();
    let rmse = batch(vec![
        ("representation", strings(cells.iter().map(|c| c.representation.as_str()))),
        ("attribute", strings(cells.iter().map(|c| c.attribute.as_str()))),
        ("group", strings(groups.iter().map(String::as_str))),
        ("rmse", floats(cells.iter().map(Cell::rmse))),
        ("rmse_se_folds", floats(cells.iter().map(Cell::rmse_se))),
        (
            "rmse_fold",
            float_lists(&cells.iter().map(|c| c.rmse_fold.as_slice()).collect::<Vec<_>>()),
        ),
        ("baseline_rmse", floats(cells.iter().map(Cell::baseline))),
        ("relative_reduction", floats(cells.iter().map(Cell::reduction))),
        ("pearson_r", floats(cells.iter().map(Cell::pearson_r))),
        (
            "pearson_r_fold",
            float_lists(&cells.iter().map(|c| c.r_fold.as_slice()).collect::<Vec<_>>()),
        ),
        ("effective_df", floats(cells.iter().map(Cell::effective_df))),
        (
            "n_components",
            Arc::new(UInt32Array::from_iter_values(cells.iter().map(|c| c.n_components))),
        ),
        (
            "alpha_fold",
            float_lists(&cells.iter().map(|c| c.alpha_fold.as_slice()).collect::<Vec<_>>()),
        ),
    ])?;
    write(&dir.join("rmse.parquet"), &rmse)?;
    let significance = batch(vec![
        ("representation", strings(cells.iter().map(|c| c.representation.as_str()))),
        ("attribute", strings(cells.iter().map(|c| c.attribute.as_str()))),
        ("group", strings(groups.iter().map(String::as_str))),
        ("p_fold", float_lists(&cells.iter().map(|c| c.p_fold.as_slice()).collect::<Vec<_>>())),
        ("p_max", floats(cells.iter().map(Cell::p_max))),
        (
            "significant_all_folds",
            Arc::new(BooleanArray::from(
                cells.iter().map(|c| c.significant(folds)).collect::<Vec<_>>(),
            )),
        ),
        ("q_bh", floats(cells.iter().map(|c| c.q))),
    ])?;
    write(&dir.join("significance.parquet"), &significance)?;
    let truth = Truth::of(data);
    let summary = summarise(&cells, folds, &truth);
    let table = batch(vec![
        ("representation", strings(summary.iter().map(|s| s.representation.as_str()))),
        ("group", strings(summary.iter().map(|s| s.group.as_str()))),
        (
            "n_attributes",
            Arc::new(UInt32Array::from_iter_values(summary.iter().map(|s| s.n_attributes as u32))),
        ),
        ("mean_rmse", floats(summary.iter().map(|s| s.mean_rmse))),
        ("se_rmse", floats(summary.iter().map(|s| s.se_rmse))),
        ("mean_relative_reduction", floats(summary.iter().map(|s| s.mean_reduction))),
        ("se_relative_reduction", floats(summary.iter().map(|s| s.se_reduction))),
        ("mean_pearson_r", floats(summary.iter().map(|s| s.mean_r))),
        ("pct_significant", floats(summary.iter().map(|s| s.pct_significant))),
        ("identification_accuracy", floats(summary.iter().map(|s| s.identification))),
        ("corr_structure_delta", floats(summary.iter().map(|s| s.corr_delta))),
        ("effective_df", floats(summary.iter().map(|s| s.effective_df))),
        (
            "shrunk_to_mean",
            Arc::new(BooleanArray::from(
                summary.iter().map(SummaryRow::shrunk).collect::<Vec<_>>(),
            )),
        ),
    ])?;
    write(&dir.join("summary.parquet"), &table)?;
    write_entanglement(&dir.join("entanglement.parquet"), &cells, &truth)?;
    let mut grid = Vec::new();
    for rel in db.committed_outputs(UnitKind::Grid)? {
        grid.extend(common::table::read_grid_rows(&layout.root().join(&rel))?);
    }
    if !grid.is_empty() {
        let path = dir.join("grid.parquet");
        common::fs::write_atomic(&path, |f| common::table::write_grid_rows(f, &path, &grid))?;
    }
    let alignment = alignment_results(layout, spec, db)?;
    if let Some(a) = &alignment {
        let path = dir.join("alignment.parquet");
        common::fs::write_atomic(&path, |f| {
            common::table::write_alignment_rows(f, &path, &a.rows)
        })?;
    }
    let md = crate::report::markdown(
        spec,
        data,
        &cells,
        &summary,
        &grid,
        alignment.as_ref(),
        &db.quarantined()?,
        committed_of_total(db)?,
    );
    common::fs::write_bytes_atomic(&dir.join("report.md"), md.as_bytes())?;
    let facts = crate::html::Facts::read(db)?;
    let html = crate::html::render(&crate::html::Input {
        spec,
        data,
        cells: &cells,
        summary: &summary,
        grid: &grid,
        alignment: alignment.as_ref(),
        truth: &truth,
        facts: &facts,
    });
    common::fs::write_bytes_atomic(&dir.join("report.html"), html.as_bytes())?;
    Ok(())
}

/// Units committed and units planned: the report says it is incomplete when they differ.
pub(crate) fn committed_of_total(db: &StateDb) -> anyhow::Result<(u64, u64)> {
    let counts = db.counts()?;
    Ok((counts.values().map(|c| c.committed).sum(), counts.values().map(|c| c.total()).sum()))
}

/// The committed alignment outputs merged (`crate::alignment::merge`), or `None` when the
/// spec asks for no alignment analyses.
pub(crate) fn alignment_results(
    layout: &RunLayout,
    spec: &JobSpec,
    db: &StateDb,
) -> anyhow::Result<Option<AlignmentResults>> {
    let Some(section) = &spec.analysis.alignment else { return Ok(None) };
    let path = layout.alignment_inputs();
    let inputs = AlignmentInputs::open(&path)?;
    let mut rows = Vec::new();
    for rel in db.committed_outputs(UnitKind::Alignment)? {
        rows.extend(common::table::read_alignment_rows(&layout.root().join(&rel))?);
    }
    Ok(Some(crate::alignment::merge(section, &inputs, rows)?))
}

/// `entanglement.parquet`: per representation and attribute pair, the human and the model
/// correlation within folds and the change in absolute correlation (positive: the predictions
/// of the pair are more correlated than the ratings, which noise-free predictions are even for
/// a perfect model; the human correlations are not corrected for rating noise).
fn write_entanglement(path: &Path, cells: &[Cell], truth: &Truth) -> anyhow::Result<()> {
    let mut reps: Vec<&str> = Vec::new();
    for c in cells {
        if !reps.contains(&c.representation.as_str()) {
            reps.push(&c.representation);
        }
    }
    let mut rows: Vec<(String, String, String, f64, f64)> = Vec::new();
    for rep in reps {
        let set: Vec<&Cell> = cells.iter().filter(|c| c.representation == rep).collect();
        rows.extend(
            pair_table(&set, truth).into_iter().map(|(a, b, h, m)| (rep.to_string(), a, b, h, m)),
        );
    }
    let b = batch(vec![
        ("representation", strings(rows.iter().map(|r| r.0.as_str()))),
        ("attribute_a", strings(rows.iter().map(|r| r.1.as_str()))),
        ("attribute_b", strings(rows.iter().map(|r| r.2.as_str()))),
        ("human_r", floats(rows.iter().map(|r| r.3))),
        ("model_r", floats(rows.iter().map(|r| r.4))),
        ("abs_delta", floats(rows.iter().map(|r| r.4.abs() - r.3.abs()))),
    ])?;
    write(path, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(rep: &str, attr: &str, group: &str, rmse: &[f64], p: &[f64]) -> Cell {
        Cell {
            representation: rep.into(),
            attribute: attr.into(),
            group: Some(group.into()),
            rmse_fold: rmse.to_vec(),
            baseline_fold: vec![1.0; rmse.len()],
            p_fold: p.to_vec(),
            r_fold: vec![0.5; rmse.len()],
            df_fold: vec![4.0; rmse.len()],
            n_components: 10,
            alpha_fold: vec![150.0; rmse.len()],
            predicted: vec![0.0, 1.0, 2.0, 3.0],
            fold_of: vec![Some(0), Some(1), Some(0), Some(1)],
            q: f64::NAN,
        }
    }

    fn truth(attrs: &[&str], n: usize, f: impl Fn(usize, usize) -> f64) -> Truth {
        let columns = attrs
            .iter()
            .enumerate()
            .map(|(a, name)| (name.to_string(), (0..n).map(|i| f(i, a)).collect()))
            .collect();
        Truth { n, columns }
    }

    #[test]
    fn all_folds_rule_and_group_summary() {
        let cells = vec![
            cell("text.1/cls", "a", "g1", &[0.5, 0.7], &[0.01, 0.02]),
            cell("text.1/cls", "b", "g1", &[0.9, 0.9], &[0.01, 0.2]),
            cell("text.1/cls", "c", "g2", &[0.4, 0.4], &[0.001, 0.001]),
        ];
        assert!(cells[0].significant(2) && !cells[1].significant(2));
        assert!(!cells[0].significant(3), "a missing fold is never significant");
        let s = summarise(&cells, 2, &truth(&["a", "b", "c"], 4, |i, _| i as f64));
        assert_eq!(s.iter().map(|r| r.group.as_str()).collect::<Vec<_>>(), ["all", "g1", "g2"]);
        assert!((s[0].pct_significant - 200.0 / 3.0).abs() < 1e-12);
        assert!((s[1].mean_rmse - 0.75).abs() < 1e-12);
        // SE over attributes: sd(0.6, 0.9) / sqrt(2) = 0.15, of the RMSE and of the reduction.
        assert!((s[1].se_rmse - 0.15).abs() < 1e-12);
        assert!((s[1].mean_reduction - 0.25).abs() < 1e-12);
        assert!((s[1].se_reduction - 0.15).abs() < 1e-12);
        assert_eq!(s[2].n_attributes, 1);
        assert_eq!(s[2].se_rmse, 0.0);
    }

    #[test]
    fn r_is_the_mean_of_the_per_fold_r_where_defined() {
        let mut c = cell("text.6/mean", "a", "g", &[0.5, 0.5, 0.5], &[0.01; 3]);
        c.r_fold = vec![0.2, f64::NAN, 0.4];
        assert!((c.pearson_r() - 0.3).abs() < 1e-15);
        c.r_fold = vec![f64::NAN; 3];
        assert!(c.pearson_r().is_nan(), "constant predictions in every fold: no r, not 0");
        let mut d = cell("text.6/mean", "b", "g", &[0.5, 0.5, 0.5], &[0.01; 3]);
        d.r_fold = vec![0.6; 3];
        let s = summarise(&[c, d], 3, &truth(&["a", "b"], 4, |i, a| (i * (a + 1)) as f64));
        assert!((s[0].mean_r - 0.6).abs() < 1e-15, "the undefined attribute is left out");
    }

    #[test]
    fn a_probe_that_predicts_its_training_mean_has_no_entanglement_and_is_flagged() {
        // Eight stimuli in two folds; the probes predict each fold's training mean: constant
        // within folds, different between them. Pooled over folds those intercepts correlate
        // perfectly with each other, which read as maximal entanglement before.
        let n = 8;
        let folds: Vec<Option<u32>> = (0..n).map(|i| Some((i % 2) as u32)).collect();
        let t = truth(&["a", "b", "c"], n, |i, a| ((i * (a + 2)) % 5) as f64 + i as f64 * 0.3);
        let mk = |attr: &str, df: f64| {
            let ratings = &t.columns[attr];
            let train_mean = |f: usize| {
                let v: Vec<f64> = (0..n).filter(|i| i % 2 != f).map(|i| ratings[i]).collect();
                mean(&v)
            };
            Cell {
                predicted: (0..n).map(|i| train_mean(i % 2)).collect(),
                fold_of: folds.clone(),
                df_fold: vec![df; 2],
                r_fold: vec![f64::NAN; 2],
                ..cell("text.3/cls", attr, "g", &[1.0, 1.0], &[0.5, 0.5])
            }
        };
        let cells: Vec<Cell> = ["a", "b", "c"].iter().map(|a| mk(a, 0.004)).collect();
        let s = summarise(&cells, 2, &t);
        assert!(s[0].identification.is_nan(), "{:?}", s[0]);
        assert!(s[0].corr_delta.is_nan(), "{:?}", s[0]);
        assert!(s[0].mean_r.is_nan());
        assert!(s[0].shrunk(), "effective df 0.004 < {SHRUNK_DF}");
        let set: Vec<&Cell> = cells.iter().collect();
        assert!(pair_table(&set, &t).iter().all(|p| p.3.is_nan() && p.2.is_finite()));
        // The same fits with effective df above 1 are not flagged.
        let fine: Vec<Cell> = ["a", "b", "c"].iter().map(|a| mk(a, 2.5)).collect();
        assert!(!summarise(&fine, 2, &t)[0].shrunk());
    }
}
