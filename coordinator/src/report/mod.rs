//! The report: the committed rows reduced into one [`ReportModel`] and written as tables,
//! `report.md` and `report.html` under `report/`.
//!
//! The layers, each one way: [`write`] does all the I/O (reads the committed rows and the run's
//! status from `state.sqlite`, writes every file); `reduce` is pure (rows, dataset, settings,
//! status → model); `render::markdown` and `render::html` only format the model.
//!
//! * `rmse.parquet` — per (representation, attribute): RMSE per fold and mean ± SE over folds,
//!   the baseline (training-mean) RMSE and relative reduction, Pearson r per fold and its mean
//!   over the folds where it is defined, and the fit's effective degrees of freedom (mean over
//!   folds).
//! * `significance.parquet` — per (representation, attribute): permutation p per fold, the
//!   all-folds rule (significant iff p < [`SIGNIFICANCE`] in every fold), and Benjamini–Hochberg
//!   q-values across the representation's attributes on p_max = max over folds of p (a valid
//!   p-value for the all-folds rule; pooling per-fold permutation nulls would be
//!   anti-conservative).
//! * `summary.parquet` — per (representation, group; `all` = every attribute): mean relative
//!   reduction ± SE and mean RMSE ± SE over attributes, mean r, % significant, both entanglement
//!   measures (identification accuracy; correlation-structure delta), the mean effective degrees
//!   of freedom and the shrunk-to-the-mean flag (`probe::SHRUNK_DF`).
//! * `entanglement.parquet` — per representation and attribute pair: human and model
//!   correlation of the out-of-fold predictions, within folds (`probe::correlation_structure`).
//! * `grid.parquet` — when the spec asks for it: mean held-out RMSE per (representation, P, α)
//!   on fold 0 (paper Fig. 5), which is also one of the probes' test folds, so its best cell is
//!   chosen on test data (the report says so).
//! * `alignment.parquet` — when the spec has `[analysis.alignment]`: the alignment units' rows
//!   (`common::table::AlignmentRow`) in plan order, with each representation's linear-probe
//!   mean over folds and the human embedding's own accuracy added (`alignment::merge`).
//! * `dense.parquet` — when the spec has `[analysis.dense_probe]`: the dense units' rows
//!   (`common::table::DenseRow`, one per representation, target and test image) in plan order.
//! * `semantic.parquet` — when the spec has `[analysis.semantic]`: the semantic units' rows
//!   (`common::table::SemanticRow`, one per representation, distance and score) in plan order.
//! * `directions.parquet` and `clusters.parquet` — when the spec has `[analysis.directions]`
//!   (and `[analysis.clusters]`): the direction and cluster units' rows
//!   (`common::table::DirectionsRow`, `ClusterRow`) in plan order; the report adds the sign test
//!   of each axis (`directions`).
//!
//! Everything but the HTML's run summary is computed in a fixed order from the committed files,
//! so equal inputs give byte-identical reports whichever workers, attempts or restarts produced
//! them.

pub(crate) mod alignment;
mod calibration;
mod dense;
mod directions;
pub(crate) mod model;
mod probe;
mod reduce;
mod render;
mod semantic;
mod status;
mod svg;
mod tables;

use common::ids::UnitKind;
use common::layout::RunLayout;
use common::spec::JobSpec;
use common::stimuli::{AlignmentInputs, Dataset};

use crate::db::StateDb;
pub(crate) use model::ReportModel;

/// The significance level of every permutation test the report states: a fold is significant
/// when its p is below it, and an attribute when every fold is.
pub(crate) const SIGNIFICANCE: f64 = 0.05;

/// Reads the committed outputs and the run's status, reduces them and writes `report/`.
/// Returns the model (for `--json` and the exit status).
pub(crate) fn write(
    layout: &RunLayout,
    spec: &JobSpec,
    data: &Dataset,
    db: &StateDb,
) -> anyhow::Result<ReportModel> {
    let status = status::RunStatus::read(db)?;
    let mut probe = Vec::new();
    for rel in db.committed_outputs(UnitKind::Probe)? {
        probe.extend(common::table::read_probe_rows(&layout.root().join(&rel))?);
    }
    let mut grid = Vec::new();
    for rel in db.committed_outputs(UnitKind::Grid)? {
        grid.extend(common::table::read_grid_rows(&layout.root().join(&rel))?);
    }
    let alignment = match &spec.analysis.alignment {
        None => None,
        Some(_) => {
            let inputs = AlignmentInputs::open(&layout.alignment_inputs())?;
            let mut rows = Vec::new();
            for rel in db.committed_outputs(UnitKind::Alignment)? {
                rows.extend(common::table::read_alignment_rows(&layout.root().join(&rel))?);
            }
            Some((inputs, rows))
        }
    };
    let directions = match &spec.analysis.directions {
        None => None,
        Some(_) => {
            let (mut rows, mut clusters) = (Vec::new(), Vec::new());
            for rel in db.committed_outputs(UnitKind::Directions)? {
                rows.extend(common::table::read_direction_rows(&layout.root().join(&rel))?);
            }
            for rel in db.committed_outputs(UnitKind::Clusters)? {
                clusters.extend(common::table::read_cluster_rows(&layout.root().join(&rel))?);
            }
            Some(directions::reduce(rows, clusters))
        }
    };
    let dense = match &spec.analysis.dense_probe {
        None => None,
        Some(section) => {
            let mut rows = Vec::new();
            for rel in db.committed_outputs(UnitKind::Dense)? {
                rows.extend(common::table::read_dense_rows(&layout.root().join(&rel))?);
            }
            let thumbnails = dense::thumbnails(spec, layout, &rows);
            let paper_fit = section.fit == common::spec::DenseFit::Paper;
            Some(dense::Dense { thumbnails, paper_fit, ..dense::reduce(rows) })
        }
    };
    let semantic = match &spec.analysis.semantic {
        None => None,
        Some(_) => {
            let mut rows = Vec::new();
            for rel in db.committed_outputs(UnitKind::Semantic)? {
                rows.extend(common::table::read_semantic_rows(&layout.root().join(&rel))?);
            }
            Some(semantic::reduce(rows))
        }
    };
    let inputs = reduce::Inputs { spec, data, probe, grid, alignment, directions, status };
    let mut model = reduce::reduce(inputs)?;
    model.dense = dense;
    model.semantic = semantic;
    let dir = layout.report_dir();
    std::fs::create_dir_all(&dir)?;
    tables::write_all(&dir, &model)?;
    let md = render::markdown::render(&model);
    common::fs::write_bytes_atomic(&dir.join("report.md"), md.as_bytes())?;
    let html = render::html::render(&model);
    common::fs::write_bytes_atomic(&dir.join("report.html"), html.as_bytes())?;
    Ok(model)
}

/// The summary table as JSON values (for `diffprobe report --json`).
pub(crate) fn summary_json(layout: &RunLayout, model: &ReportModel) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = model
        .summary
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
    let (hits, tests) = model.calibration.map_or((0, 0), |c| (c.hits, c.total));
    serde_json::json!({
        "run": layout.root().display().to_string(),
        "report_dir": layout.report_dir().display().to_string(),
        "null_control": model.settings.null_control,
        "per_fold_tests": tests,
        "per_fold_significant": hits,
        "summary": rows,
    })
}

#[cfg(test)]
mod tests;
