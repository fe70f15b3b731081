//! The report's Parquet tables, written from the model (see the module doc of `report` for what
//! each holds). Columns are in a fixed order and every value comes from the model, so equal
//! models give byte-identical files.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, ListArray, RecordBatch, StringArray, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema};

use super::model::{Pair, ReportModel};
use super::probe::{Cell, SummaryRow};

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

/// Writes every report table of `model` into `dir`.
pub(crate) fn write_all(dir: &Path, model: &ReportModel) -> anyhow::Result<()> {
    let folds = model.settings.probe.folds;
    let cells = &model.cells;
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
    let summary = &model.summary;
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
    // Per representation and attribute pair: the change in absolute correlation is positive
    // when the predictions of the pair go together more than the ratings, which noise-free
    // predictions do even for a perfect model (the human r are not corrected for rating noise).
    let rows = &model.pairs;
    let entanglement = batch(vec![
        ("representation", strings(rows.iter().map(|r| r.representation.as_str()))),
        ("attribute_a", strings(rows.iter().map(|r| r.a.as_str()))),
        ("attribute_b", strings(rows.iter().map(|r| r.b.as_str()))),
        ("human_r", floats(rows.iter().map(|r| r.human_r))),
        ("model_r", floats(rows.iter().map(|r| r.model_r))),
        ("abs_delta", floats(rows.iter().map(Pair::abs_delta))),
    ])?;
    write(&dir.join("entanglement.parquet"), &entanglement)?;
    let grid = &model.grid.rows;
    if !grid.is_empty() {
        let path = dir.join("grid.parquet");
        common::fs::write_atomic(&path, |f| common::table::write_grid_rows(f, &path, grid))?;
    }
    if let Some(a) = &model.alignment {
        let path = dir.join("alignment.parquet");
        common::fs::write_atomic(&path, |f| {
            common::table::write_alignment_rows(f, &path, &a.results.rows)
        })?;
    }
    Ok(())
}
