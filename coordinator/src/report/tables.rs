//! The report's Parquet tables, written from the model: each row type is defined in
//! `common::table` (beside the unit outputs they merge) and filled here from the model, so equal
//! models give byte-identical files.

use std::path::Path;

use anyhow::Context;
use common::table::{EntanglementRow, ReportTable, RmseRow, SignificanceRow, SummaryTableRow};

use super::model::ReportModel;

fn write<T: ReportTable>(dir: &Path, rows: &[T]) -> anyhow::Result<()> {
    let path = dir.join(T::FILE);
    common::fs::write_atomic(&path, |f| common::table::write_report_table(f, &path, rows))
        .with_context(|| path.display().to_string())
}

/// Writes every report table of `model` into `dir`.
pub(crate) fn write_all(dir: &Path, model: &ReportModel) -> anyhow::Result<()> {
    let folds = model.settings.probe.folds;
    let group = |g: &Option<String>| g.clone().unwrap_or_default();
    let rmse: Vec<RmseRow> = model
        .cells
        .iter()
        .map(|c| RmseRow {
            representation: c.representation.clone(),
            attribute: c.attribute.clone(),
            group: group(&c.group),
            rmse: c.rmse(),
            rmse_se_folds: c.rmse_se(),
            rmse_fold: c.rmse_fold.clone(),
            baseline_rmse: c.baseline(),
            relative_reduction: c.reduction(),
            pearson_r: c.pearson_r(),
            pearson_r_fold: c.r_fold.clone(),
            effective_df: c.effective_df(),
            n_components: c.n_components,
            alpha_fold: c.alpha_fold.clone(),
        })
        .collect();
    write(dir, &rmse)?;
    let significance: Vec<SignificanceRow> = model
        .cells
        .iter()
        .map(|c| SignificanceRow {
            representation: c.representation.clone(),
            attribute: c.attribute.clone(),
            group: group(&c.group),
            p_fold: c.p_fold.clone(),
            p_max: c.p_max(),
            significant_all_folds: c.significant(folds),
            q_bh: c.q,
        })
        .collect();
    write(dir, &significance)?;
    let summary: Vec<SummaryTableRow> = model
        .summary
        .iter()
        .map(|s| SummaryTableRow {
            representation: s.representation.clone(),
            group: s.group.clone(),
            n_attributes: s.n_attributes as u32,
            mean_rmse: s.mean_rmse,
            se_rmse: s.se_rmse,
            mean_relative_reduction: s.mean_reduction,
            se_relative_reduction: s.se_reduction,
            mean_pearson_r: s.mean_r,
            pct_significant: s.pct_significant,
            identification_accuracy: s.identification,
            corr_structure_delta: s.corr_delta,
            effective_df: s.effective_df,
            shrunk_to_mean: s.shrunk(),
        })
        .collect();
    write(dir, &summary)?;
    // Per representation and attribute pair: the change in absolute correlation is positive
    // when the predictions of the pair go together more than the ratings, which noise-free
    // predictions do even for a perfect model (the human r are not corrected for rating noise).
    let entanglement: Vec<EntanglementRow> = model
        .pairs
        .iter()
        .map(|p| EntanglementRow {
            representation: p.representation.clone(),
            attribute_a: p.a.clone(),
            attribute_b: p.b.clone(),
            human_r: p.human_r,
            model_r: p.model_r,
            abs_delta: p.abs_delta(),
        })
        .collect();
    write(dir, &entanglement)?;
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
    if let Some(d) = &model.dense {
        let path = dir.join("dense.parquet");
        common::fs::write_atomic(&path, |f| common::table::write_dense_rows(f, &path, &d.rows))?;
    }
    if let Some(s) = &model.semantic {
        let path = dir.join("semantic.parquet");
        common::fs::write_atomic(&path, |f| common::table::write_semantic_rows(f, &path, &s.rows))?;
    }
    if let Some(d) = &model.directions {
        let path = dir.join("directions.parquet");
        common::fs::write_atomic(&path, |f| {
            common::table::write_direction_rows(f, &path, &d.rows)
        })?;
        let path = dir.join("clusters.parquet");
        common::fs::write_atomic(&path, |f| {
            common::table::write_cluster_rows(f, &path, &d.clusters)
        })?;
    }
    Ok(())
}
