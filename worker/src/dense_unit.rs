//! A dense unit (`[analysis.dense_probe]`, science-2.md §D): gather one unreduced
//! representation (`tokens × C` per stimulus, [`gather`]), read each stimulus's label maps
//! ([`crate::dense_labels`]) down to their block statistics, fit every target on the training
//! images in exact closed form (`probe::dense`: ridge on block means, soft-label logistic for
//! masks) and score each test image at full resolution. One representation and the `C × C`
//! normal equations are in memory; no full-resolution prediction is ever built.

use std::path::Path;

use common::settings::{DenseSettings, DenseTarget};
use common::spec::{DenseTargetKind, DeviceChoice};
use common::stimuli::Dataset;
use common::table::{DenseRow, STRIP_IMAGES};
use common::unit::DenseUnit;
use probe::dense::{
    all_foreground_dice, continuous_metrics, fit_logistic, fit_logistic_with_gram, mask_metrics,
    predict, BlockStats, LogisticConfig, NormalEquations, TokenGrid,
};

use crate::dense_labels::{label_path, read_label};
use crate::dense_paper::{fit_paper, PaperImage, PaperShape};
use crate::error::UnitError;
use crate::probe_unit::gather;

/// Runs the unit: one row per (target, test image).
pub(crate) fn run(
    run_dir: &Path,
    labels: &Path,
    data: &Dataset,
    unit: &DenseUnit,
    device: DeviceChoice,
) -> Result<Vec<DenseRow>, UnitError> {
    let key = unit.representation.key();
    let n = data.len();
    let (x, d) = gather(run_dir, &unit.inputs, &key, n)?;
    let c = unit.channels;
    if c == 0 || d % c != 0 {
        return Err(UnitError::Invalid(format!("{key}: width {d} is not tokens × {c} channels")));
    }
    let tokens = d / c;
    let s = &unit.settings;
    let features = |i: usize| &x[i * d..(i + 1) * d];
    // Every target's block statistics on the training images: [target][training image].
    let weights = match &s.paper {
        None => {
            // Every target's block statistics on the training images: [target][image].
            let train: Vec<Vec<BlockStats>> = s
                .targets
                .iter()
                .map(|t| {
                    s.train.iter().map(|&i| block_stats(labels, data, s, t, i, tokens)).collect()
                })
                .collect::<Result<_, UnitError>>()?;
            fit(&train, &features, c, s)?
        }
        Some(paper) => {
            let device = crate::capture::device(device)?;
            let mut weights = Vec::new();
            for (t, target) in s.targets.iter().enumerate() {
                let mut shape = None;
                let mut images = Vec::with_capacity(s.train.len());
                for &i in &s.train {
                    let (label, height, width) = full_label(labels, data, s, target, i)?;
                    let grid = TokenGrid::infer(tokens, height, width)?;
                    shape.get_or_insert(PaperShape {
                        grid: (grid.h, grid.w),
                        size: (height, width),
                        channels: c,
                    });
                    images.push(PaperImage { features: features(i), label });
                }
                let shape = shape.ok_or_else(|| UnitError::Invalid("no training image".into()))?;
                let rate = paper.learning_rates.get(t).copied().unwrap_or(1e-3);
                let seed = probe::seed_of(paper.seed, &[t as u64]);
                weights.push(fit_paper(&images, shape, target.kind, rate, paper, seed, &device)?);
            }
            weights
        }
    };
    let mut rows = Vec::new();
    for (target, weights) in s.targets.iter().zip(&weights) {
        let stats = |i: usize| block_stats(labels, data, s, target, i, tokens);
        for (t, &i) in s.test.iter().enumerate() {
            let truth = stats(i)?;
            let z = predict(features(i), weights)?;
            let mut row = score(&key, target, &data.stimuli[i], &truth, &z, s.train.len())?;
            if t < STRIP_IMAGES {
                (row.prediction, row.label) = (z, truth.mean().to_vec());
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Stimulus `i`'s label map of `target` at full resolution (a mask as 0/1) with its height and
/// width, for the paper's per-pixel losses.
fn full_label(
    labels: &Path,
    data: &Dataset,
    s: &DenseSettings,
    target: &DenseTarget,
    i: usize,
) -> Result<(Vec<f32>, usize, usize), UnitError> {
    let path = label_path(labels, &data.stimuli[i], &target.name, s.generated)
        .map_err(UnitError::Invalid)?;
    let map = read_label(&path, target.kind).map_err(UnitError::Invalid)?;
    let values = match target.kind {
        DenseTargetKind::Mask => {
            let png = path.extension().is_some_and(|e| e == "png");
            map.mask(png).into_iter().map(|m| f32::from(u8::from(m))).collect()
        }
        DenseTargetKind::Continuous => map.values.iter().map(|&v| v as f32).collect(),
    };
    Ok((values, map.height, map.width))
}

/// The block statistics of stimulus `i`'s label map of `target`.
fn block_stats(
    labels: &Path,
    data: &Dataset,
    s: &DenseSettings,
    target: &DenseTarget,
    i: usize,
    tokens: usize,
) -> Result<BlockStats, UnitError> {
    let path = label_path(labels, &data.stimuli[i], &target.name, s.generated)
        .map_err(UnitError::Invalid)?;
    let map = read_label(&path, target.kind).map_err(UnitError::Invalid)?;
    let named =
        |e: probe::dense::DenseError| UnitError::Invalid(format!("{}: {e}", path.display()));
    match target.kind {
        DenseTargetKind::Mask => {
            let png = path.extension().is_some_and(|e| e == "png");
            BlockStats::from_mask(&map.mask(png), tokens, map.height, map.width).map_err(named)
        }
        DenseTargetKind::Continuous => {
            BlockStats::from_map(&map.values, tokens, map.height, map.width).map_err(named)
        }
    }
}

/// Every target's `C` weights fitted on the training images (`train[target][image]`): the
/// continuous targets by one ridge solve on shared normal equations, each mask by the
/// soft-label logistic fit, preconditioned by the same `XᵀX` when there is one (one pass over
/// the images saved per mask).
fn fit<'a>(
    train: &[Vec<BlockStats>],
    features: &dyn Fn(usize) -> &'a [f32],
    c: usize,
    s: &DenseSettings,
) -> Result<Vec<Vec<f64>>, UnitError> {
    let continuous: Vec<usize> = (0..s.targets.len())
        .filter(|&t| s.targets[t].kind == DenseTargetKind::Continuous)
        .collect();
    let mut eq = None;
    let mut weights = vec![Vec::new(); s.targets.len()];
    if !continuous.is_empty() {
        let mut e = NormalEquations::new(c, continuous.len());
        for (k, &i) in s.train.iter().enumerate() {
            let stats: Vec<&BlockStats> = continuous.iter().map(|&t| &train[t][k]).collect();
            e.add_image(features(i), &stats)?;
        }
        let ridge = e.solve(s.alpha)?;
        for (j, &t) in continuous.iter().enumerate() {
            weights[t] = ridge.weights(j);
        }
        eq = Some(e);
    }
    let cfg = LogisticConfig { l2: s.l2, ..LogisticConfig::default() };
    for (t, target) in s.targets.iter().enumerate() {
        if target.kind != DenseTargetKind::Mask {
            continue;
        }
        let images: Vec<(&[f32], &BlockStats)> =
            s.train.iter().zip(&train[t]).map(|(&i, st)| (features(i), st)).collect();
        let fit = match &eq {
            Some(e) => fit_logistic_with_gram(images.as_slice(), c, &cfg, e.gram())?,
            None => fit_logistic(images.as_slice(), c, &cfg)?,
        };
        weights[t] = fit.weights;
    }
    Ok(weights)
}

/// The row of one test image: Dice (and the all-foreground baseline) for a mask, Spearman ρ,
/// Pearson r and RMSE for a continuous map; the other kind's columns NaN.
fn score(
    key: &str,
    target: &DenseTarget,
    stimulus: &str,
    truth: &BlockStats,
    z: &[f64],
    n_train: usize,
) -> Result<DenseRow, UnitError> {
    let mut row = DenseRow {
        representation: key.into(),
        target: target.name.clone(),
        kind: target.kind.name().into(),
        stimulus: stimulus.into(),
        dice: f64::NAN,
        dice_background: f64::NAN,
        all_foreground_dice: f64::NAN,
        spearman: f64::NAN,
        pearson: f64::NAN,
        rmse: f64::NAN,
        n_train: n_train as u32,
        grid: vec![truth.grid().h as u32, truth.grid().w as u32],
        prediction: Vec::new(),
        label: Vec::new(),
    };
    match target.kind {
        DenseTargetKind::Mask => {
            let foreground: Vec<bool> = z.iter().map(|&v| v > 0.0).collect();
            let m = mask_metrics(truth, &foreground)?;
            row.dice = m.dice;
            row.dice_background = m.dice_background;
            row.all_foreground_dice = all_foreground_dice(truth)?;
        }
        DenseTargetKind::Continuous => {
            let m = continuous_metrics(truth, z)?;
            (row.spearman, row.pearson, row.rmse) = (m.spearman, m.pearson, m.rmse);
        }
    }
    Ok(row)
}
