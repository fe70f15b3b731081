//! `[capture.generate]` and `[capture.image]`: how a Stable Diffusion model is driven while its
//! taps are recorded — text-to-image generation with a sampler, or one U-Net pass over real
//! images noised to a chosen level (science.md part A).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::transform::ImageTransform;
use crate::error::SpecError;

/// How stimuli reach a diffusion model.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// Text-to-image: the stimulus text is the prompt; taps are recorded at sampler steps.
    #[default]
    Generate,
    /// Real images: `{folder}/{stimulus}.png` is VAE-encoded, noised and passed through the
    /// U-Net once per noise level.
    Image,
}

/// Samplers for generation mode.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// DDIM, η = 0 (deterministic).
    #[default]
    Ddim,
    /// Euler (`EulerDiscreteScheduler`).
    Euler,
    /// Linear multistep, order 4 (`LMSDiscreteScheduler`).
    Lms,
    /// Latent Consistency Model sampling (`LCMScheduler`), for LCM-distilled U-Nets or SD with
    /// an LCM-LoRA merged (`model.lora`): each step predicts the clean latent and, but at the
    /// last step, re-noises it with seeded noise drawn as `capture.generate.noise` says.
    Lcm,
}

/// Which U-Net rows a guided generation records.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum GuidanceRecord {
    /// The prompt-conditioned pass.
    #[default]
    Cond,
    /// The unconditional (empty-prompt) pass of the same latents.
    Uncond,
    /// cond − uncond, tap by tap before pooling: the guidance direction (needs no base prompt).
    Delta,
}

impl GuidanceRecord {
    fn is_cond(&self) -> bool {
        *self == GuidanceRecord::Cond
    }
}

/// Whose seed the noise of a generated image comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum NoiseSeeding {
    /// Each (stimulus, replicate) its own seed.
    #[default]
    PerStimulus,
    /// Each replicate one seed shared by every stimulus: replicate r of every prompt starts from
    /// the same latent (and LCM re-noises alike), so differences between prompts are paired.
    PerReplicate,
}

impl NoiseSeeding {
    fn is_per_stimulus(&self) -> bool {
        *self == NoiseSeeding::PerStimulus
    }
}

/// The text a real image is conditioned on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Conditioning {
    /// The empty prompt `""`.
    Empty,
    /// The stimulus text (`stimuli.template` applied).
    Prompt,
}

impl Conditioning {
    /// The name used in representation keys.
    pub fn name(self) -> &'static str {
        match self {
            Conditioning::Empty => "empty",
            Conditioning::Prompt => "prompt",
        }
    }
}

/// Sampler steps to record: a list (`[0, 10, 49]`) or a range string (`"0..50"`,
/// `"0..50:10"` = every 10th). Empty = every step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StepSelection {
    /// Explicit 0-based step indices; empty = every step.
    List(Vec<usize>),
    /// `start..end` or `start..end:stride`.
    Range(String),
}

impl Default for StepSelection {
    fn default() -> Self {
        StepSelection::List(Vec::new())
    }
}

impl StepSelection {
    /// The selected steps of an `s`-step run, ascending and unique.
    pub fn resolve(&self, s: usize) -> Result<Vec<usize>, String> {
        let mut steps = match self {
            StepSelection::List(v) if v.is_empty() => (0..s).collect(),
            StepSelection::List(v) => v.clone(),
            StepSelection::Range(text) => parse_range(text)?,
        };
        steps.sort_unstable();
        steps.dedup();
        if let Some(&bad) = steps.iter().find(|&&k| k >= s) {
            return Err(format!("step {bad} is outside 0..{s} (capture.generate.steps = {s})"));
        }
        if steps.is_empty() {
            return Err("selects no step".into());
        }
        Ok(steps)
    }
}

fn parse_range(text: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("expected \"start..end\" or \"start..end:stride\", found {text:?}");
    let (range, stride) = match text.split_once(':') {
        Some((r, s)) => (r, s.trim().parse::<usize>().map_err(|_| bad())?),
        None => (text, 1),
    };
    let (a, b) = range.split_once("..").ok_or_else(bad)?;
    let a: usize = a.trim().parse().map_err(|_| bad())?;
    let b: usize = b.trim().parse().map_err(|_| bad())?;
    if stride == 0 || a >= b {
        return Err(bad());
    }
    Ok((a..b).step_by(stride).collect())
}

/// `[capture.generate]`: text-to-image generation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenerateSection {
    /// `ddim` (default), `euler`, `lms` or `lcm`.
    #[serde(default)]
    pub scheduler: SamplerKind,
    /// Sampler steps S.
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// Classifier-free guidance scale g.
    #[serde(default = "default_guidance")]
    pub guidance: f64,
    /// Steps to record (0-based): a list or `"start..end[:stride]"`; empty = every step.
    #[serde(default)]
    pub record_steps: StepSelection,
    /// Images per stimulus, each with its own seed; features are averaged over replicates.
    #[serde(default = "default_replicates")]
    pub replicates: usize,
    /// Image height in pixels; default: the U-Net's `sample_size` × the VAE's downsampling.
    #[serde(default)]
    pub height: Option<usize>,
    /// Image width in pixels; default as `height`.
    #[serde(default)]
    pub width: Option<usize>,
    /// Decode each generated image with the VAE and save it as
    /// `images/{stimulus}.r{replicate}.png` in the run directory (runs every step).
    #[serde(default)]
    pub save_images: bool,
    /// Also decode the latents after each of these steps (0-based) and save them as
    /// `images/{stimulus}.r{replicate}.k{k}.png` (for an external classifier per step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub save_step_images: Vec<usize>,
    /// `per_stimulus` (default) or `per_replicate`: see [`NoiseSeeding`].
    #[serde(default, skip_serializing_if = "NoiseSeeding::is_per_stimulus")]
    pub noise: NoiseSeeding,
    /// U-Net taps of the `cond` (default), `uncond` or `delta` rows: see [`GuidanceRecord`].
    #[serde(default, skip_serializing_if = "GuidanceRecord::is_cond")]
    pub record: GuidanceRecord,
    /// Also keep each replicate's U-Net rows (`…/k3/r0`, `…/k3/r1`, …) beside their mean, for
    /// analyses over replicates (`[analysis.directions]`); probes fit on the mean only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_replicates: bool,
}

/// `[capture.image]`: real images, one U-Net pass per noise level.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    /// Folder of `{stimulus}.png` (or `.jpg`) images, all of the model's image size.
    #[serde(default = "default_image_folder")]
    pub folder: PathBuf,
    /// Noise levels n in % (1..=100), each mapped to timestep t = 10n − 9.
    #[serde(default = "default_noise_levels")]
    pub noise_levels: Vec<u32>,
    /// Conditionings, each its own representation: `empty` (the empty prompt) and/or `prompt`
    /// (the stimulus text, `stimuli.template` applied, e.g. `"a photo of a {stimulus}"`).
    #[serde(default = "default_conditioning")]
    pub conditioning: Vec<Conditioning>,
    /// Folder of `{stimulus}.png` object masks (grayscale, the images' size; white = object)
    /// for the `mask_mean` reduction.
    #[serde(default)]
    pub masks: Option<PathBuf>,
    /// Image height in pixels every image must have; default: the model's image size.
    #[serde(default)]
    pub height: Option<usize>,
    /// Image width in pixels; default as `height`.
    #[serde(default)]
    pub width: Option<usize>,
    /// Transforms of image and mask before the VAE, each a sweep value beside the untransformed
    /// image (`super::transform`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<ImageTransform>,
    /// Several objects per image: a CSV with `stimulus`, `image` and `mask` (a file in `masks`)
    /// or `mask_value` (the object's value in `masks/{image}.png`) for every stimulus; each
    /// image is encoded and denoised once, each stimulus (object) pooled by its own mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<PathBuf>,
    /// Steps as a sweep axis (img2img): from each noise level, record after each of these
    /// numbers of deterministic DDIM steps (0: the noised image's own pass), conditioned as
    /// `conditioning`, without guidance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denoise_steps: Vec<u32>,
    /// The DDIM schedule of those steps: its number of inference steps over the training
    /// timesteps (a step moves t down by `num_train_timesteps / denoise_schedule`).
    #[serde(
        default = "default_denoise_schedule",
        skip_serializing_if = "is_default_denoise_schedule"
    )]
    pub denoise_schedule: usize,
}

fn default_denoise_schedule() -> usize {
    50
}

// Left out of the resolved spec at its default, so that the capture ids of earlier runs (which
// hash `[capture]`) stay as they were.
fn is_default_denoise_schedule(steps: &usize) -> bool {
    *steps == default_denoise_schedule()
}

fn default_steps() -> usize {
    50
}
fn default_guidance() -> f64 {
    7.5
}
fn default_replicates() -> usize {
    1
}
fn default_image_folder() -> PathBuf {
    PathBuf::from("images")
}
fn default_noise_levels() -> Vec<u32> {
    vec![20]
}
fn default_conditioning() -> Vec<Conditioning> {
    vec![Conditioning::Empty]
}

impl Default for GenerateSection {
    fn default() -> Self {
        GenerateSection {
            scheduler: SamplerKind::default(),
            steps: default_steps(),
            guidance: default_guidance(),
            record_steps: StepSelection::default(),
            replicates: default_replicates(),
            height: None,
            width: None,
            save_images: false,
            save_step_images: Vec::new(),
            noise: NoiseSeeding::PerStimulus,
            record: GuidanceRecord::Cond,
            keep_replicates: false,
        }
    }
}

impl Default for ImageSection {
    fn default() -> Self {
        ImageSection {
            folder: default_image_folder(),
            noise_levels: default_noise_levels(),
            conditioning: default_conditioning(),
            masks: None,
            height: None,
            width: None,
            transforms: Vec::new(),
            objects: None,
            denoise_steps: Vec::new(),
            denoise_schedule: default_denoise_schedule(),
        }
    }
}

impl GenerateSection {
    pub(super) fn validate(&self, file: &str) -> Result<(), SpecError> {
        let err = |key: &str, msg: String| Err(SpecError::new(file, key, msg));
        if self.steps == 0 {
            return err("capture.generate.steps", "expected at least 1, found 0".into());
        }
        if !(self.guidance.is_finite() && self.guidance >= 0.0) {
            return err(
                "capture.generate.guidance",
                format!("expected a number ≥ 0, found {}", self.guidance),
            );
        }
        if let Err(msg) = self.record_steps.resolve(self.steps) {
            return err("capture.generate.record_steps", msg);
        }
        if self.replicates == 0 {
            return err("capture.generate.replicates", "expected at least 1, found 0".into());
        }
        if let Some(k) = self.save_step_images.iter().find(|&&k| k >= self.steps) {
            let msg = format!("step {k} is not below steps = {}", self.steps);
            return err("capture.generate.save_step_images", msg);
        }
        if !self.record.is_cond() && self.guidance <= 1.0 {
            return err(
                "capture.generate.record",
                format!(
                    "{:?} needs the unconditional pass, which runs only with guidance > 1 (found {})",
                    self.record, self.guidance
                ),
            );
        }
        check_size(file, "capture.generate", self.height, self.width)
    }
}

impl ImageSection {
    pub(super) fn validate(&self, file: &str) -> Result<(), SpecError> {
        let err = |key: &str, msg: String| Err(SpecError::new(file, key, msg));
        if !self.folder.is_dir() {
            return err(
                "capture.image.folder",
                format!("{} is not a folder", self.folder.display()),
            );
        }
        if self.noise_levels.is_empty() {
            return err("capture.image.noise_levels", "expected at least one level".into());
        }
        if let Some(bad) = self.noise_levels.iter().find(|n| !(1..=100).contains(*n)) {
            return err(
                "capture.image.noise_levels",
                format!("expected percentages in 1..=100, found {bad}"),
            );
        }
        if self.conditioning.is_empty() {
            return err("capture.image.conditioning", "expected at least one".into());
        }
        if let Some(masks) = self.masks.as_ref().filter(|m| !m.is_dir()) {
            return err("capture.image.masks", format!("{} is not a folder", masks.display()));
        }
        let quarter = self.transforms.iter().find(|t| t.needs_square());
        if let (Some(t), Some(h), Some(w)) = (quarter, self.height, self.width.or(self.height)) {
            if h != w {
                let msg =
                    format!("{t} turns a {w}×{h} image into {h}×{w}; it needs a square image");
                return err("capture.image.transforms", msg);
            }
        }
        if let Some(objects) = &self.objects {
            if !objects.is_file() {
                return err(
                    "capture.image.objects",
                    format!("{} is not a file", objects.display()),
                );
            }
            if self.masks.is_none() {
                return err("capture.image.objects", "needs capture.image.masks".into());
            }
            if self.conditioning.contains(&Conditioning::Prompt) {
                let msg = "an image of several objects is denoised once, so it cannot be \
                           conditioned on each object's own prompt; use [\"empty\"]"
                    .to_string();
                return err("capture.image.conditioning", msg);
            }
            if self.transforms.iter().any(|t| matches!(t, ImageTransform::Crop(_))) {
                let msg = "a crop centres on one object; with several objects per image it would \
                           centre on one of them for all"
                    .to_string();
                return err("capture.image.transforms", msg);
            }
        }
        self.validate_steps(file)?;
        let mut seen = std::collections::BTreeSet::new();
        if let Some(t) = self.transforms.iter().find(|t| !seen.insert(**t)) {
            return err("capture.image.transforms", format!("{t} is listed twice"));
        }
        check_size(file, "capture.image", self.height, self.width)
    }
}

impl ImageSection {
    /// Every noise level has room for the most denoising steps asked (t = 10n − 9 on 1000
    /// training timesteps, down by 1000 / `denoise_schedule` per step), and no step repeats.
    fn validate_steps(&self, file: &str) -> Result<(), SpecError> {
        let err = |key: &str, msg: String| Err(SpecError::new(file, key, msg));
        if self.denoise_steps.is_empty() {
            return Ok(());
        }
        if !(1..=1000).contains(&self.denoise_schedule) {
            let msg = format!("expected 1..=1000 steps, found {}", self.denoise_schedule);
            return err("capture.image.denoise_schedule", msg);
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(d) = self.denoise_steps.iter().find(|d| !seen.insert(**d)) {
            return err("capture.image.denoise_steps", format!("{d} is listed twice"));
        }
        let most = u64::from(*seen.last().unwrap_or(&0));
        let stride = (1000 / self.denoise_schedule) as u64;
        for &n in &self.noise_levels {
            let t = u64::from(n) * 10 - 9;
            if most * stride > t {
                let msg = format!(
                    "{most} steps of {stride} timesteps go below t = 0 from noise level {n} % \
                     (t = {t})"
                );
                return err("capture.image.denoise_steps", msg);
            }
        }
        Ok(())
    }
}

fn check_size(
    file: &str,
    section: &str,
    height: Option<usize>,
    width: Option<usize>,
) -> Result<(), SpecError> {
    for (key, v) in [("height", height), ("width", width)] {
        if let Some(v) = v.filter(|&v| v == 0 || v % 8 != 0) {
            return Err(SpecError::new(
                file,
                format!("{section}.{key}"),
                format!("expected a positive multiple of 8, found {v}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_selection_resolves_lists_and_ranges() {
        assert_eq!(StepSelection::default().resolve(3).unwrap(), vec![0, 1, 2]);
        assert_eq!(StepSelection::List(vec![4, 0, 4]).resolve(5).unwrap(), vec![0, 4]);
        assert_eq!(
            StepSelection::Range("0..50:10".into()).resolve(50).unwrap(),
            vec![0, 10, 20, 30, 40]
        );
        assert_eq!(StepSelection::Range("2..4".into()).resolve(50).unwrap(), vec![2, 3]);
        let e = StepSelection::List(vec![50]).resolve(50).unwrap_err();
        assert!(e.contains("step 50 is outside 0..50"), "{e}");
        assert!(StepSelection::Range("5..2".into()).resolve(50).is_err());
        assert!(StepSelection::Range("0..5:0".into()).resolve(50).is_err());
        assert!(StepSelection::Range("zero..5".into()).resolve(50).is_err());
    }
}
