//! Linear-probe alignment (science.md B2, paper 001 after Muttenthaler et al. 2023): learn
//! `E = XW + b` on the triplets of some concepts and measure the odd-one-out accuracy of `E` on
//! triplets of held-out concepts.
//!
//! Per call: X is standardised by **one scalar** mean and standard deviation over all its values
//! (all concepts, as the reference did); the concepts are split into `folds` seeded folds
//! ([`probe::kfold`]); in fold `f` the training triplets have all three concepts outside fold
//! `f`, the test triplets all three inside, and mixed triplets are dropped ([`partition`]). The
//! probe is trained by the loop of module `train` and scored by the accuracy of `−E·E` (the
//! similarity it was trained with, [`Distance::NegDot`]) on the test triplets, ties wrong; the
//! result is the mean test accuracy over folds.
//!
//! **Early stopping monitor:** by default ([`EarlyStopping::TestLoss`]) the loss monitored for
//! early stopping is the **test-fold** loss, as in the reference code the paper used (Lightning's
//! `val_loss` there is computed on the held-out fold). That lets the test concepts choose the
//! stopping epoch, a mild optimism; [`EarlyStopping::ValidationLoss`] holds out a seeded share
//! of the *training* triplets instead and never looks at the test fold before scoring it.
//!
//! **Penalty:** `λ‖W‖_F` is the Frobenius norm itself, not its square (as in the reference
//! code), so its gradient `λW/‖W‖_F` has norm λ however small W is. With the paper's λ = 0.1,
//! a narrow representation (initial `‖W‖_F ≈ σD`, 0.016 at D = 16) or a weak signal lets the
//! penalty win: W shrinks to about 0, the loss stays at ln 3 and the accuracy at chance. The
//! paper's representations are wide (D ≥ 320); for narrow ones lower `lambda`.
//!
//! **Cost:** W has D² parameters (D = 1,280 gives 1.6 M; a flattened U-Net map of 81,920 values
//! would need 6.7 G): reduce very wide representations before probing.

use candle_core::{Device, Tensor};

use crate::error::AlignmentError;
use crate::matrix::Matrix;
use crate::odd_one_out::{self, Distance};
use crate::rng::{self, Stream};
use crate::train;
use crate::triplets::Triplets;

/// Settings of the linear probe; the defaults are the paper's.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearProbeConfig {
    /// Folds over concepts (3).
    pub folds: usize,
    /// Seed of the folds, the initial weights, the batch order and the validation split (0).
    pub seed: u64,
    /// λ of the penalty `λ‖W‖_F` (0.1; the Frobenius norm itself, not its square).
    pub lambda: f64,
    /// Adam learning rate (1e-4; β = (0.9, 0.999), ε = 1e-8, no weight decay).
    pub learning_rate: f64,
    /// Triplets per batch (256; the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Maximum number of epochs (100).
    pub max_epochs: usize,
    /// Epochs without improvement before stopping (5).
    pub patience: usize,
    /// Least decrease of the monitored loss that counts as an improvement (1e-4).
    pub min_delta: f64,
    /// Maximum global L2 norm of the gradient (1; `f64::INFINITY` disables clipping).
    pub max_grad_norm: f64,
    /// Standard deviation of the initial weights W (1e-3).
    pub init_std: f64,
    /// Initial value of every entry of b (1e-3).
    pub init_bias: f64,
    /// Which loss early stopping monitors.
    pub early_stopping: EarlyStopping,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self {
            folds: 3,
            seed: 0,
            lambda: 0.1,
            learning_rate: 1e-4,
            batch_size: 256,
            max_epochs: 100,
            patience: 5,
            min_delta: 1e-4,
            max_grad_norm: 1.0,
            init_std: 1e-3,
            init_bias: 1e-3,
            early_stopping: EarlyStopping::TestLoss,
        }
    }
}

/// The loss that early stopping monitors (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum EarlyStopping {
    /// The mean loss on the fold's test triplets (the paper's reference code).
    #[default]
    TestLoss,
    /// The mean loss on a seeded share `fraction` (in `(0, 1)`) of the fold's training
    /// triplets, which are then not trained on.
    ValidationLoss {
        /// Share of the training triplets held out for validation.
        fraction: f64,
    },
}

/// The triplets of one fold: both lists keep the file's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Triplets with no concept in the test fold.
    pub train: Vec<[usize; 3]>,
    /// Triplets with all three concepts in the test fold.
    pub test: Vec<[usize; 3]>,
    /// Triplets that mix training and test concepts (dropped).
    pub dropped: usize,
}

/// Splits `triplets` into training and test triplets for the test concepts `test_concepts`.
pub fn partition(triplets: &Triplets, test_concepts: &[usize]) -> Partition {
    let mut in_test = vec![false; triplets.n_concepts()];
    for &c in test_concepts {
        if let Some(slot) = in_test.get_mut(c) {
            *slot = true;
        }
    }
    let mut out = Partition { train: Vec::new(), test: Vec::new(), dropped: 0 };
    for &t in triplets.rows() {
        match t.iter().filter(|&&c| in_test[c]).count() {
            0 => out.train.push(t),
            3 => out.test.push(t),
            _ => out.dropped += 1,
        }
    }
    out
}

/// The outcome of one fold of the linear probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeFold {
    /// 0-based fold index.
    pub fold: usize,
    /// Concepts in the test fold.
    pub n_test_concepts: usize,
    /// Triplets trained on.
    pub n_train: usize,
    /// Training triplets held out for [`EarlyStopping::ValidationLoss`] (0 otherwise).
    pub n_validation: usize,
    /// Test triplets.
    pub n_test: usize,
    /// Mixed triplets dropped.
    pub n_dropped: usize,
    /// Epochs run.
    pub epochs: usize,
    /// Whether early stopping ended training before `max_epochs`.
    pub stopped_early: bool,
    /// Mean cross-entropy of the last epoch's training batches (without the penalty).
    pub train_loss: f64,
    /// Best value of the monitored loss.
    pub best_monitored_loss: f64,
    /// Mean cross-entropy on the test triplets with the final weights.
    pub test_loss: f64,
    /// Odd-one-out accuracy of the final `E` on the test triplets (dot similarity, ties wrong).
    pub test_accuracy: f64,
}

/// The linear probe over all folds.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearProbeResult {
    /// One entry per fold, in fold order.
    pub folds: Vec<ProbeFold>,
    /// Mean of the folds' test accuracies (the paper's probing accuracy).
    pub mean_accuracy: f64,
}

/// Runs every fold of the linear probe of `features` (one row per concept) on `triplets`,
/// computing on `device` (the CPU, or a GPU with a CUDA build of candle).
///
/// # Errors
/// Those of [`linear_probe_fold`].
pub fn linear_probe<T: Copy + Into<f64>>(
    features: &Matrix<'_, T>,
    triplets: &Triplets,
    cfg: &LinearProbeConfig,
    device: &Device,
) -> Result<LinearProbeResult, AlignmentError> {
    let folds = (0..cfg.folds)
        .map(|f| linear_probe_fold(features, triplets, f, cfg, device))
        .collect::<Result<Vec<_>, _>>()?;
    let mean_accuracy = folds.iter().map(|f| f.test_accuracy).sum::<f64>() / folds.len() as f64;
    Ok(LinearProbeResult { folds, mean_accuracy })
}

/// Runs fold `fold` of the linear probe alone (so folds can be separate work units); the
/// result equals the corresponding entry of [`linear_probe`].
///
/// # Errors
/// [`AlignmentError::RowMismatch`] if `features` does not have one row per concept,
/// [`AlignmentError::Config`] for an invalid setting or `fold ≥ cfg.folds`,
/// [`AlignmentError::Probe`] for `cfg.folds` outside `2..=N`, [`AlignmentError::EmptySplit`]
/// if the fold has no training, validation or test triplets, and [`AlignmentError::Tensor`]
/// if the device fails.
pub fn linear_probe_fold<T: Copy + Into<f64>>(
    features: &Matrix<'_, T>,
    triplets: &Triplets,
    fold: usize,
    cfg: &LinearProbeConfig,
    device: &Device,
) -> Result<ProbeFold, AlignmentError> {
    features.check_rows(triplets.n_concepts())?;
    check_config(cfg, fold)?;
    let test_concepts = probe::kfold(features.rows(), cfg.folds, cfg.seed)?.swap_remove(fold);
    let Partition { train, test, dropped } = partition(triplets, &test_concepts);
    let (train, validation) = split_validation(train, cfg, fold);
    let empty = |which| AlignmentError::EmptySplit { fold, which, dropped };
    for (list, which) in [(&train, "training"), (&test, "test")] {
        if list.is_empty() {
            return Err(empty(which));
        }
    }
    let monitor = match cfg.early_stopping {
        EarlyStopping::TestLoss => &test,
        EarlyStopping::ValidationLoss { .. } if validation.is_empty() => {
            return Err(empty("validation"))
        }
        EarlyStopping::ValidationLoss { .. } => &validation,
    };
    let x = Tensor::from_vec(standardize(features), (features.rows(), features.cols()), device)?;
    let trained = train::train(&x, &train, monitor, cfg, fold)?;
    let e = Matrix::new("probe embedding", &trained.embedding, features.rows(), features.cols())?;
    Ok(ProbeFold {
        fold,
        n_test_concepts: test_concepts.len(),
        n_train: train.len(),
        n_validation: validation.len(),
        n_test: test.len(),
        n_dropped: dropped,
        epochs: trained.epochs,
        stopped_early: trained.stopped_early,
        train_loss: trained.train_loss,
        best_monitored_loss: trained.best_monitored_loss,
        test_loss: mean_loss(&e, &test),
        test_accuracy: odd_one_out::evaluate(&e, &test, Distance::NegDot).accuracy,
    })
}

/// X − mean, divided by the standard deviation (population), both over all values, as `f32`.
/// A constant matrix is only centred (to zeros).
fn standardize<T: Copy + Into<f64>>(features: &Matrix<'_, T>) -> Vec<f32> {
    let values = features.values();
    let count = values.len() as f64;
    let mean = values.iter().map(|&v| v.into()).sum::<f64>() / count;
    let var = values.iter().map(|&v| (v.into() - mean).powi(2)).sum::<f64>() / count;
    let scale = if var > 0.0 { 1.0 / var.sqrt() } else { 1.0 };
    values.iter().map(|&v| ((v.into() - mean) * scale) as f32).collect()
}

/// Holds out a seeded share of the training triplets for [`EarlyStopping::ValidationLoss`].
fn split_validation(
    mut train: Vec<[usize; 3]>,
    cfg: &LinearProbeConfig,
    fold: usize,
) -> (Vec<[usize; 3]>, Vec<[usize; 3]>) {
    let EarlyStopping::ValidationLoss { fraction } = cfg.early_stopping else {
        return (train, Vec::new());
    };
    rng::shuffle(&mut train, &mut rng::stream(Stream::Validation, cfg.seed, fold));
    let held = ((train.len() as f64 * fraction).round() as usize).min(train.len());
    let validation = train.split_off(train.len() - held);
    (train, validation)
}

/// Mean cross-entropy (softmax over the three dot products, target pair (0,1)) in `f64`.
fn mean_loss(e: &Matrix<'_, f64>, triplets: &[[usize; 3]]) -> f64 {
    let dot = |a: usize, b: usize| e.row(a).iter().zip(e.row(b)).map(|(x, y)| x * y).sum::<f64>();
    let total: f64 = triplets
        .iter()
        .map(|&[a, p, n]| {
            let s = [dot(a, p), dot(a, n), dot(p, n)];
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            max + s.iter().map(|v| (v - max).exp()).sum::<f64>().ln() - s[0]
        })
        .sum();
    total / triplets.len() as f64
}

fn check_config(cfg: &LinearProbeConfig, fold: usize) -> Result<(), AlignmentError> {
    let bad = |setting, problem: &str| {
        Err(AlignmentError::Config { setting, problem: problem.to_owned() })
    };
    if fold >= cfg.folds {
        return bad("fold", &format!("is {fold}; the probe has {} folds", cfg.folds));
    }
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let non_negative = |v: f64| v.is_finite() && v >= 0.0;
    if !non_negative(cfg.lambda) {
        return bad("lambda", "must be finite and non-negative");
    }
    if !positive(cfg.learning_rate) {
        return bad("learning_rate", "must be finite and positive");
    }
    if cfg.batch_size == 0 || cfg.max_epochs == 0 || cfg.patience == 0 {
        return bad("batch_size / max_epochs / patience", "must be at least 1");
    }
    if !non_negative(cfg.min_delta) || !non_negative(cfg.init_std) || !cfg.init_bias.is_finite() {
        return bad(
            "min_delta / init_std / init_bias",
            "must be finite (and non-negative for the first two)",
        );
    }
    if cfg.max_grad_norm.is_nan() || cfg.max_grad_norm <= 0.0 {
        return bad("max_grad_norm", "must be positive (infinity disables clipping)");
    }
    if let EarlyStopping::ValidationLoss { fraction } = cfg.early_stopping {
        if !(fraction > 0.0 && fraction < 1.0) {
            return bad("early_stopping.fraction", "must lie strictly between 0 and 1");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keeps_pure_triplets_and_drops_mixed_ones() {
        let t =
            Triplets::new(vec![[0, 1, 2], [3, 4, 5], [0, 1, 5], [5, 3, 4], [2, 4, 0]], 6).unwrap();
        let p = partition(&t, &[3, 4, 5]);
        assert_eq!(p.train, vec![[0, 1, 2]]);
        assert_eq!(p.test, vec![[3, 4, 5], [5, 3, 4]]);
        assert_eq!(p.dropped, 2);
    }

    #[test]
    fn standardize_uses_one_scalar_mean_and_std() {
        let values = [1.0, 3.0, 5.0, 7.0];
        let m = Matrix::new("features", &values, 2, 2).unwrap();
        // mean 4, population std √5.
        let s = 5f64.sqrt();
        let want: Vec<f32> = values.iter().map(|v| ((v - 4.0) / s) as f32).collect();
        assert_eq!(standardize(&m), want);
        let c = Matrix::new("features", &[2.0; 4], 2, 2).unwrap();
        assert_eq!(standardize(&c), vec![0.0; 4]);
    }

    #[test]
    fn validation_split_is_seeded_and_disjoint() {
        let cfg = LinearProbeConfig {
            early_stopping: EarlyStopping::ValidationLoss { fraction: 0.25 },
            ..LinearProbeConfig::default()
        };
        let all: Vec<[usize; 3]> = (0..20).map(|i| [i, i + 1, i + 2]).collect();
        let (train, val) = split_validation(all.clone(), &cfg, 0);
        assert_eq!((train.len(), val.len()), (15, 5));
        assert_eq!(split_validation(all.clone(), &cfg, 0), (train.clone(), val.clone()));
        let mut joined = [train, val].concat();
        joined.sort_unstable();
        assert_eq!(joined, all);
    }

    #[test]
    fn settings_are_checked() {
        let x = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let f = Matrix::new("features", &x, 6, 1).unwrap();
        let t = Triplets::new(vec![[0, 1, 2]], 6).unwrap();
        let run = |cfg: LinearProbeConfig, fold| {
            linear_probe_fold(&f, &t, fold, &cfg, &Device::Cpu).unwrap_err().to_string()
        };
        assert_eq!(
            run(LinearProbeConfig::default(), 3),
            "invalid setting fold: is 3; the probe has 3 folds"
        );
        let cfg = LinearProbeConfig { learning_rate: 0.0, ..LinearProbeConfig::default() };
        assert_eq!(run(cfg, 0), "invalid setting learning_rate: must be finite and positive");
        let cfg = LinearProbeConfig { folds: 7, ..LinearProbeConfig::default() };
        assert_eq!(run(cfg, 0), "cannot split 6 stimuli into 7 folds; need 2 ≤ k ≤ 6");
        let msg = run(LinearProbeConfig::default(), 0);
        assert!(msg.starts_with("fold 0 has no "), "{msg}");
        let wrong_rows = Triplets::new(vec![[0, 1, 2]], 5).unwrap();
        let e =
            linear_probe(&f, &wrong_rows, &LinearProbeConfig::default(), &Device::Cpu).unwrap_err();
        assert_eq!(e.to_string(), "features has 6 rows but the triplets index 5 concepts");
    }
}
