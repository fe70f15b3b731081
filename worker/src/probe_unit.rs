//! A probe unit: gather one representation's rows from every capture file (reading only that
//! representation's row group), then fit the attribute probes on a block of folds (in kernel
//! form from one Gram matrix, computed on the worker's GPU when it has one). The settings come
//! from the unit (resolved by the plan), never from `spec.toml`.

use std::path::Path;

use common::spec::DeviceChoice;
use common::stimuli::Dataset;
use common::table::{read_feature_block_if_present, GridRow, ProbeRow};
use common::unit::{GridUnit, ProbeUnit};

use crate::error::UnitError;

/// Runs the unit and returns its rows, ordered by fold then attribute. `device` (`model.device`)
/// says where the Gram matrix may be computed.
pub(crate) fn run(
    run_dir: &Path,
    device: DeviceChoice,
    data: &Dataset,
    unit: &ProbeUnit,
) -> Result<Vec<ProbeRow>, UnitError> {
    let key = unit.representation.key();
    let n = data.len();
    let (x, d) = gather(run_dir, &unit.inputs, &key, n)?;
    let s = &unit.settings;
    let j = data.attributes.len();
    let cfg = crate::settings::probe_config(s);
    let folds = probe::kfold(n, s.folds, s.seed)?;
    let splits = unit
        .folds
        .iter()
        .map(|&f| {
            let test = folds.get(f).ok_or_else(|| {
                UnitError::Invalid(format!("fold {f} out of range (folds = {})", s.folds))
            })?;
            Ok(probe::FoldSplit { fold: f, train: probe::complement(n, test), test: test.clone() })
        })
        .collect::<Result<Vec<_>, UnitError>>()?;
    let results = match gpu_for_gram(device, d, &splits, &cfg)? {
        Some(device) => {
            let rows: Vec<usize> = (0..n).collect();
            let gram = crate::probe_gram::device_gram(&x, n, d, &rows, cfg.precision, &device)?;
            probe::probe_folds_with_gram(&gram, &data.targets, j, &splits, &cfg)?
        }
        None => probe::probe_folds(&x, n, d, &data.targets, j, &splits, &cfg)?,
    };
    let mut rows = Vec::with_capacity(results.len());
    for r in results {
        rows.push(ProbeRow {
            representation: key.clone(),
            attribute: r.attribute as u32,
            attribute_name: data.attributes[r.attribute].clone(),
            fold: r.fold as u32,
            n_components: r.n_components as u32,
            alpha: r.alpha,
            rmse: r.rmse,
            baseline_rmse: r.baseline_rmse,
            pearson_r: r.pearson_r,
            p_value: r.p_value,
            effective_df: r.effective_df,
            null_rmse: r.null_rmse,
            test_indices: r.test_indices.iter().map(|&i| i as u32).collect(),
            predictions: r.predictions,
        });
    }
    Ok(rows)
}

/// The GPU to compute the unit's shared Gram matrix on: `Some` only when the folds share one
/// ([`probe::shares_gram`]) and the worker's device (`model.device`) is a GPU.
fn gpu_for_gram(
    device: DeviceChoice,
    d: usize,
    splits: &[probe::FoldSplit],
    cfg: &probe::ProbeConfig,
) -> Result<Option<candle_core::Device>, UnitError> {
    if !probe::shares_gram(d, splits, cfg) {
        return Ok(None);
    }
    let device = crate::capture::device(device)?;
    Ok(if device.is_cpu() { None } else { Some(device) })
}

/// Runs a grid unit: mean held-out RMSE over attributes for every (P, α) of the unit's grid on
/// its fold, from one eigendecomposition.
pub(crate) fn run_grid(
    run_dir: &Path,
    data: &Dataset,
    unit: &GridUnit,
) -> Result<Vec<GridRow>, UnitError> {
    let key = unit.representation.key();
    let n = data.len();
    let (x, d) = gather(run_dir, &unit.inputs, &key, n)?;
    let s = &unit.settings;
    let folds = probe::kfold(n, s.folds, s.seed)?;
    let fold = unit.fold;
    let test = folds.get(fold).ok_or_else(|| {
        UnitError::Invalid(format!("fold {fold} out of range (folds = {})", s.folds))
    })?;
    let train = probe::complement(n, test);
    let j = data.attributes.len();
    let cells = probe::hyper_grid(
        &x,
        n,
        d,
        &data.targets,
        j,
        &train,
        test,
        &s.components,
        &s.alphas,
        s.zscore,
    )?;
    Ok(cells
        .into_iter()
        .map(|c| GridRow {
            representation: key.clone(),
            fold: fold as u32,
            components: c.components as u32,
            n_components: c.n_components as u32,
            alpha: c.alpha,
            mean_rmse: c.mean_rmse,
        })
        .collect())
}

/// Assembles the N × D matrix of one representation from the capture files; every stimulus
/// must appear exactly once. Alignment units read their matrix with it too.
pub(crate) fn gather(
    run_dir: &Path,
    inputs: &[String],
    key: &str,
    n: usize,
) -> Result<(Vec<f32>, usize), UnitError> {
    let mut x: Vec<f32> = Vec::new();
    let mut dim = None;
    let mut seen = vec![false; n];
    for rel in inputs {
        // Capture units of other representations (the weight-permuted control's) share the
        // manifest; the coverage check below still demands every stimulus exactly once.
        let Some(block) = read_feature_block_if_present(&run_dir.join(rel), key)? else {
            continue;
        };
        let d = *dim.get_or_insert(block.dim);
        if d != block.dim {
            return Err(UnitError::Invalid(format!(
                "{rel}: {key} has width {} but earlier shards have {d}",
                block.dim
            )));
        }
        if x.is_empty() {
            x = vec![0.0; n * d];
        }
        for (row, &s) in block.stimuli.iter().enumerate() {
            let s = s as usize;
            if s >= n || seen[s] {
                return Err(UnitError::Invalid(format!(
                    "{rel}: stimulus {s} is out of range or appears twice"
                )));
            }
            seen[s] = true;
            x[s * d..(s + 1) * d].copy_from_slice(&block.values[row * d..(row + 1) * d]);
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(UnitError::Invalid(format!(
            "{key}: stimulus {missing} is in no capture file ({} inputs)",
            inputs.len()
        )));
    }
    Ok((x, dim.unwrap_or(0)))
}
