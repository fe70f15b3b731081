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
use common::table::{AlignmentRow, ProbeScore, ProbeTraining, TripletScore};
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
    match &unit.task {
        AlignmentTask::Evaluate(settings) => evaluate(settings, &features, &triplets, inputs, &key),
        &AlignmentTask::LinearProbe { fold, ref settings } => {
            let device = crate::capture::device(device)?;
            let cfg = linear_probe_config(settings);
            let r = linear_probe_fold(&features, &triplets, fold, &cfg, &device)?;
            Ok(vec![AlignmentRow::LinearProbeFold {
                representation: key,
                fold: fold as u32,
                score: ProbeScore {
                    accuracy: r.test_accuracy,
                    correct: (r.test_accuracy * r.n_test as f64).round() as u32,
                    n_triplets: r.n_test as u32,
                    n_concepts: r.n_test_concepts as u32,
                    chance: CHANCE,
                },
                training: ProbeTraining {
                    n_train: r.n_train as u32,
                    n_dropped: r.n_dropped as u32,
                    epochs: r.epochs as u32,
                    stopped_early: r.stopped_early,
                    train_loss: r.train_loss,
                    test_loss: r.test_loss,
                },
            }])
        }
    }
}

fn evaluate(
    s: &EvaluateSettings,
    features: &Matrix<'_, f32>,
    triplets: &Triplets,
    inputs: &AlignmentInputs,
    key: &str,
) -> Result<Vec<AlignmentRow>, UnitError> {
    let scored = |d: AlignmentDistance, r: &OddOneOut| TripletScore {
        distance: d,
        accuracy: r.accuracy,
        correct: r.correct as u32,
        ties: ties(r),
        n_triplets: triplets.len() as u32,
        n_concepts: triplets.n_concepts() as u32,
        chance: CHANCE,
    };
    let mut rows = Vec::new();
    for &d in &s.distances {
        let r = odd_one_out(features, triplets, distance(d))?;
        rows.push(AlignmentRow::OddOneOut { representation: key.into(), score: scored(d, &r) });
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
        rows.push(AlignmentRow::RegressionFold {
            representation: key.into(),
            fold: f as u32,
            n_concepts: folds[f].len() as u32,
            r2: r2.iter().sum::<f64>() / r2.len() as f64,
            r2_dimensions: r2.clone(),
            alpha_dimensions: alphas.clone(),
        });
    }
    let predicted = Matrix::new("predicted embedding", &r.predicted, n, k)?;
    for &d in &s.distances {
        let o = odd_one_out(&predicted, triplets, distance(d))?;
        rows.push(AlignmentRow::RegressionPredicted {
            representation: key.into(),
            score: scored(d, &o),
            r2: r.overall_r2,
            r2_dimensions: r.mean_r2.clone(),
        });
    }
    Ok(rows)
}

/// Triplets without a unique closest pair (no prediction; counted wrong).
pub(crate) fn ties(r: &OddOneOut) -> u32 {
    r.predictions.iter().filter(|p| p.is_none()).count() as u32
}
