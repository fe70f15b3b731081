//! An alignment unit (`[analysis.alignment]`, science.md B2): gather one representation's
//! N × D matrix from the capture files exactly as a probe unit does ([`gather`]), then either
//! score it on the human triplets (odd-one-out accuracy per distance, and the embedding
//! regression when the spec names an embedding) or train one fold of the linear probe on the
//! worker's device (`model.device`: the GPU when there is one and the spec allows it).
//!
//! The triplets and the embedding come from the run directory's `alignment.json`, resolved and
//! validated by the coordinator at plan time; the settings come from the unit's task (resolved
//! by the plan), never from `spec.toml`; the statistics are the `alignment` crate's.

use std::path::Path;

use alignment::{
    embedding_regression, linear_probe_fold, odd_one_out, Matrix, OddOneOut, Triplets, CHANCE,
};
use common::settings::EvaluateSettings;
use common::spec::{AlignmentDistance, DeviceChoice};
use common::stimuli::{AlignmentInputs, Dataset};
use common::table::{analysis, AlignmentRow};
use common::unit::{AlignmentTask, AlignmentUnit};

use crate::error::UnitError;
use crate::probe_unit::gather;
use crate::settings::{distance, linear_probe_config, regression_config};

/// Runs the unit and returns its rows: for `Evaluate`, one `odd_one_out` row per distance,
/// then (with an embedding) one `embedding_regression` row per fold and one per distance; for
/// a linear-probe fold, one `linear_probe` row. `device` (`model.device`) is where the linear
/// probe trains.
pub(crate) fn run(
    run_dir: &Path,
    device: DeviceChoice,
    data: &Dataset,
    inputs: &AlignmentInputs,
    unit: &AlignmentUnit,
) -> Result<Vec<AlignmentRow>, UnitError> {
    let key = unit.representation.key();
    let n = data.len();
    if inputs.n_concepts != n {
        return Err(UnitError::Invalid(format!(
            "alignment.json indexes {} concepts but dataset.json has {n} stimuli",
            inputs.n_concepts
        )));
    }
    let (x, d) = gather(run_dir, &unit.inputs, &key, n)?;
    let features = Matrix::new("features", &x, n, d)?;
    let rows = inputs.triplets.iter().map(|t| t.map(|i| i as usize)).collect();
    let triplets = Triplets::new(rows, n)?;
    let base = AlignmentRow {
        representation: key,
        n_triplets: triplets.len() as u32,
        n_concepts: n as u32,
        ..AlignmentRow::default()
    };
    match &unit.task {
        AlignmentTask::Evaluate(settings) => {
            evaluate(settings, &features, &triplets, inputs, &base)
        }
        &AlignmentTask::LinearProbe { fold, ref settings } => {
            let device = crate::capture::device(device)?;
            let cfg = linear_probe_config(settings);
            let r = linear_probe_fold(&features, &triplets, fold, &cfg, &device)?;
            Ok(vec![AlignmentRow {
                analysis: analysis::LINEAR_PROBE.into(),
                distance: Some(AlignmentDistance::Dot.name().into()),
                fold: Some(fold as u32),
                accuracy: Some(r.test_accuracy),
                correct: Some((r.test_accuracy * r.n_test as f64).round() as u32),
                n_triplets: r.n_test as u32,
                n_concepts: r.n_test_concepts as u32,
                chance: Some(CHANCE),
                n_train: Some(r.n_train as u32),
                n_dropped: Some(r.n_dropped as u32),
                epochs: Some(r.epochs as u32),
                stopped_early: Some(r.stopped_early),
                train_loss: Some(r.train_loss),
                test_loss: Some(r.test_loss),
                ..base
            }])
        }
    }
}

fn evaluate(
    s: &EvaluateSettings,
    features: &Matrix<'_, f32>,
    triplets: &Triplets,
    inputs: &AlignmentInputs,
    base: &AlignmentRow,
) -> Result<Vec<AlignmentRow>, UnitError> {
    let scored = |what: &str, d: AlignmentDistance, r: &OddOneOut| AlignmentRow {
        analysis: what.into(),
        distance: Some(d.name().into()),
        accuracy: Some(r.accuracy),
        correct: Some(r.correct as u32),
        ties: Some(ties(r)),
        chance: Some(CHANCE),
        ..base.clone()
    };
    let mut rows = Vec::new();
    for &d in &s.distances {
        let r = odd_one_out(features, triplets, distance(d))?;
        rows.push(scored(analysis::ODD_ONE_OUT, d, &r));
    }
    let (emb, regression) = match (&inputs.embedding, &s.regression) {
        (None, None) => return Ok(rows),
        (Some(emb), Some(regression)) => (emb, regression),
        (emb, _) => {
            return Err(UnitError::Invalid(format!(
                "alignment.json {} an embedding but the unit {} an embedding regression",
                if emb.is_some() { "has" } else { "has no" },
                if emb.is_some() { "asks for no" } else { "asks for" },
            )))
        }
    };
    let n = triplets.n_concepts();
    let k = emb.dimensions.len();
    let v = Matrix::new("embedding", &emb.values, n, k)?;
    let cfg = regression_config(regression);
    let r = embedding_regression(features, &v, triplets, &cfg)?;
    let folds = probe::kfold(n, cfg.folds, cfg.seed)?;
    for (f, (r2, alphas)) in r.r2.iter().zip(&r.alphas).enumerate() {
        rows.push(AlignmentRow {
            analysis: analysis::EMBEDDING_REGRESSION.into(),
            fold: Some(f as u32),
            n_triplets: 0,
            n_concepts: folds[f].len() as u32,
            r2: Some(r2.iter().sum::<f64>() / r2.len() as f64),
            r2_dimensions: r2.clone(),
            alpha_dimensions: alphas.clone(),
            ..base.clone()
        });
    }
    let predicted = Matrix::new("predicted embedding", &r.predicted, n, k)?;
    for &d in &s.distances {
        let o = odd_one_out(&predicted, triplets, distance(d))?;
        rows.push(AlignmentRow {
            r2: Some(r.overall_r2),
            r2_dimensions: r.mean_r2.clone(),
            ..scored(analysis::EMBEDDING_REGRESSION, d, &o)
        });
    }
    Ok(rows)
}

/// Triplets without a unique closest pair (no prediction; counted wrong).
pub(crate) fn ties(r: &OddOneOut) -> u32 {
    r.predictions.iter().filter(|p| p.is_none()).count() as u32
}
