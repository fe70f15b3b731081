//! The pure reduction: committed rows, the dataset, the spec's settings and the run's status
//! (read before) in, one [`ReportModel`] out. No I/O; equal inputs give equal models.

use common::spec::JobSpec;
use common::stimuli::{AlignmentInputs, Dataset};
use common::table::{AlignmentRow, GridRow, ProbeRow};

use super::calibration::calibrate;
use super::model::{
    Alignment, Correlation, Coverage, Fit, Grid, GridOfBest, Pair, ReportModel, Representation,
    Settings, Stimuli,
};
use super::probe::{self, Cell, SummaryRow, Truth};
use super::status::RunStatus;

/// Everything the report is made from.
pub(crate) struct Inputs<'a> {
    pub(crate) spec: &'a JobSpec,
    pub(crate) data: &'a Dataset,
    /// Committed probe rows, in plan order.
    pub(crate) probe: Vec<ProbeRow>,
    /// Committed grid rows, in plan order.
    pub(crate) grid: Vec<GridRow>,
    /// The alignment inputs and committed rows (plan order), when the spec asks for alignment.
    pub(crate) alignment: Option<(AlignmentInputs, Vec<AlignmentRow>)>,
    /// The directions part, when the spec asks for directions.
    pub(crate) directions: Option<super::directions::Directions>,
    pub(crate) status: RunStatus,
}

/// Reduces the inputs to the report model.
pub(crate) fn reduce(inputs: Inputs<'_>) -> anyhow::Result<ReportModel> {
    let Inputs { spec, data, probe, grid, alignment, directions, status } = inputs;
    let alignment = match (&spec.analysis.alignment, alignment) {
        (Some(section), Some((inputs, rows))) => {
            let results = super::alignment::merge(section, &inputs, rows)?;
            Some(super::alignment::reduce(section, results, &status))
        }
        _ => None,
    };
    let mut model = assemble(spec, data, probe::merge(probe, data), grid, alignment, status);
    model.directions = directions;
    Ok(model)
}

/// The model from merged probe cells and alignment results (tests build cells directly).
pub(crate) fn assemble(
    spec: &JobSpec,
    data: &Dataset,
    cells: Vec<Cell>,
    grid: Vec<GridRow>,
    alignment: Option<Alignment>,
    status: RunStatus,
) -> ReportModel {
    let folds = spec.analysis.attribute_probe.folds;
    let truth = Truth::of(data);
    let summary = probe::summarise(&cells, folds, &truth);
    let representations = representations(&cells, &summary, &status);
    let mut groups: Vec<String> = data.groups.iter().flatten().cloned().collect();
    groups.sort();
    groups.dedup();
    let best_per_attribute = data
        .attributes
        .iter()
        .map(|attr| {
            let best = (0..cells.len())
                .filter(|&i| &cells[i].attribute == attr)
                .min_by(|&x, &y| cells[x].rmse().total_cmp(&cells[y].rmse()));
            (attr.clone(), best)
        })
        .collect();
    let pairs =
        reps_of(&cells)
            .into_iter()
            .flat_map(|rep| {
                let set: Vec<&Cell> = cells.iter().filter(|c| c.representation == rep).collect();
                probe::pair_table(&set, &truth).into_iter().map(move |(a, b, human_r, model_r)| {
                    Pair { representation: rep.to_string(), a, b, human_r, model_r }
                })
            })
            .collect::<Vec<_>>();
    let model = &spec.model;
    ReportModel {
        settings: Settings {
            job_name: spec.job.name.clone(),
            null_control: spec.job.null_control,
            model_name: model
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model_path: model.path.display().to_string(),
            model_kind: format!("{:?}", model.kind),
            device: format!("{:?}", model.device),
            probe: spec.analysis.attribute_probe.clone(),
            alignment: spec.analysis.alignment.clone(),
            spec_toml: spec.to_toml(),
        },
        stimuli: Stimuli {
            n: data.len(),
            dropped: data.dropped.len(),
            attributes: data.attributes.iter().cloned().zip(data.groups.iter().cloned()).collect(),
        },
        best_text: best_text(&representations, &summary),
        calibration: calibrate(&cells, folds, spec.job.null_control),
        correlation: correlation(&cells, &summary, &pairs),
        grid: grid_model(grid, &status),
        groups,
        best_per_attribute,
        representations,
        pairs,
        cells,
        summary,
        alignment,
        directions: None,
        dense: None,
        semantic: None,
        status,
    }
}

/// The representations of `cells`, in order of first appearance (plan order).
fn reps_of(cells: &[Cell]) -> Vec<&str> {
    let mut reps: Vec<&str> = Vec::new();
    for c in cells {
        if !reps.contains(&c.representation.as_str()) {
            reps.push(&c.representation);
        }
    }
    reps
}

/// Every representation planned for a probe unit or with results, in plan order, with how far
/// its units got and what its fits say.
fn representations(
    cells: &[Cell],
    summary: &[SummaryRow],
    status: &RunStatus,
) -> Vec<Representation> {
    let mut out: Vec<Representation> = Vec::new();
    let find = |out: &mut Vec<Representation>, key: &str| -> usize {
        out.iter().position(|r| r.key == key).unwrap_or_else(|| {
            out.push(Representation {
                key: key.to_string(),
                all: None,
                coverage: Coverage::default(),
                fit: Fit::NoResults,
            });
            out.len() - 1
        })
    };
    for u in status.units.iter().filter(|u| u.kind == "probe") {
        let Some(rep) = &u.representation else { continue };
        let i = find(&mut out, rep);
        let c = &mut out[i].coverage;
        c.planned += 1;
        c.committed += usize::from(u.state == "committed");
        c.quarantined += usize::from(u.state == "quarantined");
    }
    for (s, row) in summary.iter().enumerate().filter(|(_, s)| s.group == "all") {
        let i = find(&mut out, &row.representation);
        let constant = cells
            .iter()
            .filter(|c| c.representation == row.representation)
            .all(|c| c.n_components == 0);
        out[i].all = Some(s);
        out[i].fit = match (row.shrunk(), constant) {
            (_, true) => Fit::Constant,
            (true, false) => Fit::Shrunk,
            (false, false) => Fit::Usable,
        };
    }
    out
}

/// The `all` rows of `summary` in representation-name order.
fn all_by_name(summary: &[SummaryRow]) -> Vec<&SummaryRow> {
    let mut all: Vec<&SummaryRow> = summary.iter().filter(|s| s.group == "all").collect();
    all.sort_by(|a, b| a.representation.cmp(&b.representation));
    all
}

/// The text encoder's representation with the highest mean relative reduction.
fn best_text(reps: &[Representation], summary: &[SummaryRow]) -> Option<usize> {
    let best = all_by_name(summary)
        .into_iter()
        .filter(|r| r.representation.starts_with("text.") && r.mean_reduction.is_finite())
        .max_by(|a, b| {
            a.mean_reduction
                .total_cmp(&b.mean_reduction)
                .then(b.representation.cmp(&a.representation))
        })?;
    reps.iter().position(|r| r.key == best.representation)
}

/// The representation with the lowest mean RMSE and its attribute pairs.
fn correlation(cells: &[Cell], summary: &[SummaryRow], pairs: &[Pair]) -> Correlation {
    let best =
        all_by_name(summary).into_iter().filter(|r| r.mean_rmse.is_finite()).min_by(|a, b| {
            a.mean_rmse.total_cmp(&b.mean_rmse).then(a.representation.cmp(&b.representation))
        });
    let Some(best) = best else { return Correlation::NoResults };
    let rep = &best.representation;
    let attributes: Vec<String> =
        cells.iter().filter(|c| &c.representation == rep).map(|c| c.attribute.clone()).collect();
    if attributes.len() < 2 {
        return Correlation::TooFewAttributes;
    }
    Correlation::Shown {
        representation: rep.clone(),
        attributes,
        pairs: pairs.iter().filter(|p| &p.representation == rep).cloned().collect(),
    }
}

/// The grid's best cells: each representation's, and the whole grid of the overall best's.
fn grid_model(rows: Vec<GridRow>, status: &RunStatus) -> Grid {
    let lowest = |it: &mut dyn Iterator<Item = &GridRow>| {
        it.min_by(|x, y| x.mean_rmse.total_cmp(&y.mean_rmse)).cloned()
    };
    let mut reps: Vec<&str> = Vec::new();
    for g in &rows {
        if !reps.contains(&g.representation.as_str()) {
            reps.push(&g.representation);
        }
    }
    let best_per_rep = reps
        .iter()
        .filter_map(|r| lowest(&mut rows.iter().filter(|g| &g.representation == r)))
        .collect();
    let best = lowest(&mut rows.iter().filter(|g| g.mean_rmse.is_finite())).map(|cell| {
        let mine: Vec<&GridRow> =
            rows.iter().filter(|g| g.representation == cell.representation).collect();
        let mut components: Vec<u32> = mine.iter().map(|g| g.components).collect();
        components.sort_unstable();
        components.dedup();
        let mut alphas: Vec<f64> = mine.iter().map(|g| g.alpha).collect();
        alphas.sort_by(f64::total_cmp);
        alphas.dedup();
        let values = components
            .iter()
            .map(|&p| {
                let at = |al: f64| mine.iter().find(|g| g.components == p && g.alpha == al);
                alphas.iter().map(|&al| at(al).map(|g| g.mean_rmse)).collect()
            })
            .collect();
        let finite = mine.iter().map(|g| g.mean_rmse).filter(|v| v.is_finite());
        let range = (
            finite.clone().fold(f64::INFINITY, f64::min),
            finite.fold(f64::NEG_INFINITY, f64::max),
        );
        let mark = components
            .iter()
            .position(|&p| p == cell.components)
            .zip(alphas.iter().position(|&al| al == cell.alpha));
        GridOfBest { cell, components, alphas, values, mark, range }
    });
    let missing_units = status
        .units
        .iter()
        .filter(|u| u.kind == "grid" && u.state != "committed")
        .map(|u| (u.representation.clone().unwrap_or_else(|| "?".into()), u.state.clone()))
        .collect();
    Grid { rows, best_per_rep, best, missing_units }
}
