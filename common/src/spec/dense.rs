//! `[analysis.dense_probe]`: dense probes per denoising step (science-2.md §D, seed 002). A
//! linear map from every token of an unreduced U-Net representation (`unet_pooling = "none"`)
//! to a per-pixel label map, fitted in exact closed form (ridge on block means for continuous
//! maps, soft-label logistic regression for masks) and scored per test image at full
//! resolution (`probe::dense`).
//!
//! **Label files** live in `labels`, one per (stimulus, target): `{stimulus}.{target}.png` or
//! `.npy` in real-image mode, `{stimulus}.r0.{target}.png` / `.npy` in generation mode (the image
//! `save_images` wrote as `images/{stimulus}.r0.png`). A mask is a grayscale PNG (foreground =
//! value above 127) or an `.npy` of 0/1; a continuous map is an `.npy` of float32/float64
//! (`H × W`, C order) or a grayscale PNG (its 0–255 values). Every label map has the images'
//! size.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// `[analysis.dense_probe]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DenseProbeSection {
    /// The label folder (relative to the spec; module doc).
    pub labels: PathBuf,
    /// Target name → kind: `mask` (Dice) or `continuous` (Spearman ρ, Pearson r, RMSE).
    pub targets: BTreeMap<String, DenseTargetKind>,
    /// Share of the stimuli the probes train on (a seeded split; the rest are the test images).
    #[serde(default = "default_train_fraction")]
    pub train_fraction: f64,
    /// A fixed split instead (relative to the spec): a CSV with the header `stimulus,split`,
    /// `split` being `train` or `test` for every stimulus (the paper's 246 / 371).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<PathBuf>,
    /// Seed of the split.
    #[serde(default)]
    pub seed: u64,
    /// Ridge penalty α on the per-token objective of continuous targets (α_pix = f²·α).
    #[serde(default = "default_penalty")]
    pub alpha: f64,
    /// L2 penalty λ on the per-token logistic objective of masks (scikit-learn's 1/C).
    #[serde(default = "default_penalty")]
    pub l2: f64,
    /// A control representation probed beside every dense one against the same labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<DenseControl>,
    /// Seed of the control's weight permutation.
    #[serde(default)]
    pub control_seed: u64,
    /// How the probes are fitted: the exact closed form (default) or the paper's training.
    #[serde(default, skip_serializing_if = "DenseFit::is_closed_form")]
    pub fit: DenseFit,
    /// `fit = "paper"`: epochs over the training images.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// `fit = "paper"`: images per Adam step.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// `fit = "paper"`: Adam's learning rate.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// `fit = "paper"`: per-target learning rates overriding `learning_rate` (the paper's
    /// shading probe: 1e-2).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub learning_rates: BTreeMap<String, f64>,
    /// `fit = "paper"`: seed of the initial weights and of the batch order.
    #[serde(default)]
    pub fit_seed: u64,
}

/// `analysis.dense_probe.fit`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DenseFit {
    /// Ridge on block means, soft-label logistic regression (exact; `probe::dense`).
    #[default]
    ClosedForm,
    /// The paper's training: a bias-free linear layer (2 logits for a mask, 1 output for a
    /// map), nearest-upsampled to the label's size, per-pixel cross-entropy or Huber (δ = 1),
    /// Adam, run with candle on the worker's device.
    Paper,
}

impl DenseFit {
    fn is_closed_form(&self) -> bool {
        *self == DenseFit::ClosedForm
    }
}

fn default_epochs() -> usize {
    30
}

fn default_batch() -> usize {
    4
}

fn default_learning_rate() -> f64 {
    1e-3
}

/// `analysis.dense_probe.control`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DenseControl {
    /// The paper's control: the U-Net with every `weight` tensor's elements shuffled (seeded,
    /// biases kept), its trajectory recomputed, probed against the original images' labels.
    PermuteWeights,
}

/// What a dense target is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DenseTargetKind {
    /// A binary mask: soft-label logistic probe, Dice.
    Mask,
    /// A continuous map (depth, shading): ridge probe, Spearman ρ, Pearson r, RMSE.
    Continuous,
}

impl DenseTargetKind {
    /// The name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            DenseTargetKind::Mask => "mask",
            DenseTargetKind::Continuous => "continuous",
        }
    }
}

fn default_train_fraction() -> f64 {
    0.4
}

fn default_penalty() -> f64 {
    1.0
}

impl DenseProbeSection {
    pub(super) fn resolve_paths(&mut self, join: &dyn Fn(&mut PathBuf)) {
        join(&mut self.labels);
        if let Some(split) = &mut self.split {
            join(split);
        }
    }

    pub(super) fn validate(&self, file: &str) -> Result<(), SpecError> {
        let err = |key: &str, msg: String| {
            Err(SpecError::new(file, format!("analysis.dense_probe.{key}"), msg))
        };
        if !self.labels.is_dir() {
            return err("labels", format!("{} is not a folder", self.labels.display()));
        }
        if let Some(split) = self.split.as_ref().filter(|p| !p.is_file()) {
            return err("split", format!("{} is not a file", split.display()));
        }
        if self.targets.is_empty() {
            return err("targets", "expected at least one target".into());
        }
        for name in self.targets.keys() {
            if name.is_empty()
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                return err(
                    "targets",
                    format!("target names are letters, digits, '-' or '_'; found {name:?}"),
                );
            }
        }
        let f = self.train_fraction;
        if !(f > 0.0 && f < 1.0) {
            return err(
                "train_fraction",
                format!("expected a number strictly between 0 and 1, found {f}"),
            );
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return err("alpha", format!("expected a non-negative number, found {}", self.alpha));
        }
        if !(self.l2.is_finite() && self.l2 > 0.0) {
            return err("l2", format!("expected a positive number, found {}", self.l2));
        }
        self.validate_paper(&err)
    }
}

impl DenseProbeSection {
    fn validate_paper(
        &self,
        err: &dyn Fn(&str, String) -> Result<(), SpecError>,
    ) -> Result<(), SpecError> {
        if self.epochs == 0 {
            return err("epochs", "expected at least 1".into());
        }
        if self.batch == 0 {
            return err("batch", "expected at least 1".into());
        }
        let rates = std::iter::once(("learning_rate".to_string(), self.learning_rate))
            .chain(self.learning_rates.iter().map(|(t, &r)| (format!("learning_rates.{t}"), r)));
        for (key, rate) in rates {
            if !(rate.is_finite() && rate > 0.0) {
                return err(&key, format!("expected a positive number, found {rate}"));
            }
        }
        if let Some(t) = self.learning_rates.keys().find(|t| !self.targets.contains_key(*t)) {
            let known: Vec<&str> = self.targets.keys().map(String::as_str).collect();
            return err(
                "learning_rates",
                format!("{t:?} is not a target; targets are {}", known.join(", ")),
            );
        }
        Ok(())
    }
}
