//! Diffusion noise schedules and samplers, as pure host-side math (no candle, no device).
//!
//! This module reproduces the parts of diffusers' `DDIMScheduler`, `EulerDiscreteScheduler`,
//! `LMSDiscreteScheduler` and `LCMScheduler` that the SD capture needs (DDIM in `scheduler/ddim.rs`,
//! Euler and LMS in `scheduler/sigma.rs`, LCM in `scheduler/lcm.rs`; the schedules here), read
//! from a model's `scheduler/scheduler_config.json` ([`SchedulerConfig`]):
//!
//! * the training schedule: [`SchedulerConfig::betas`], [`SchedulerConfig::alphas_cumprod`]
//!   (`scaled_linear` = `linspace(√β₀, √β₁, T)²`, `linear` = `linspace(β₀, β₁, T)`);
//! * DDIM timesteps for every `timestep_spacing` ([`SchedulerConfig::ddim_timesteps`]; 100 `leading`
//!   steps with offset 1 are `[991, 981, …, 1]`) and the deterministic DDIM update ([`Ddim::step`],
//!   η = 0, or [`Ddim::step_eta`] with caller-supplied noise);
//! * Euler ([`Euler`]) and 4th-order linear multistep ([`Lms`]) over the k-diffusion sigmas
//!   `σ = √((1−ᾱ)/ᾱ)` interpolated onto the timesteps, with a trailing 0;
//! * real-image mode: [`noise_level_to_timestep`] (`n % → 10n − 9`) and [`add_noise`]
//!   (`x_t = √ᾱ_t·z₀ + √(1−ᾱ_t)·ε`).
//!
//! **Numerics.** diffusers keeps its schedules and samples in `float32` torch tensors. To match it to
//! within an ulp or so, this module does the same: `betas` use torch's `linspace` rounding (one
//! rounding of `start + i·step`, i.e. a fused multiply-add, from each end), `alphas_cumprod` is a
//! running product accumulated in f64 and rounded to f32 per element (as torch's CPU `cumprod`
//! does), and every sampler update is done in f32 with diffusers' operation order. Timestep tables
//! follow numpy (`round` = ties-to-even, `arange` = `start + i·delta`, `interp` in f64). The only
//! deliberate difference: LMS coefficients are integrated exactly in f64 with Gauss–Legendre
//! quadrature (the integrand is a polynomial of degree ≤ 3), where diffusers calls
//! `scipy.integrate.quad(epsrel=1e-4)` on an integrand evaluated in f32; the two agree to ~1e-7.
//!
//! Samplers are stateless in the step index: the caller passes the 0-based index `k` into
//! [`Euler::timesteps`] / [`Lms::timesteps`] rather than the timestep value (diffusers looks the
//! index up from the value; [`index_for_timestep`] does the same). Known answers are checked in
//! the tests against `tests/golden/schedulers.json`, written by `scripts/make_scheduler_golden.py`.

use serde::Deserialize;

mod ddim;
mod lcm;
mod sigma;

pub use ddim::{Ddim, DdimScalars};
pub use lcm::{
    lcm_boundary_scalings, lcm_origin_timesteps, Lcm, LcmScalars, LcmStepOutput, LCM_CLASS,
};
pub use sigma::{Euler, Lms};

/// An error from a schedule or a sampler step (bad config, bad arguments).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("scheduler: {0}")]
pub struct SchedulerError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SchedulerError> {
    Err(SchedulerError(msg.into()))
}

/// How β grows over the training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `linspace(β₀, β₁, T)`.
    Linear,
    /// `linspace(√β₀, √β₁, T)²` (Stable Diffusion).
    ScaledLinear,
}

/// What the U-Net predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The added noise ε (SD 1.x, SD 2.x-base).
    Epsilon,
    /// v = √ᾱ·ε − √(1−ᾱ)·x₀ (SD 2.x 768-v).
    VPrediction,
}

/// How inference timesteps are spread over the training range (diffusers' `timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// `arange(0, S) · (T // S)`, reversed, `+ steps_offset`.
    Leading,
    /// `round(arange(T, 0, −T/S)) − 1`.
    Trailing,
    /// `round(linspace(0, T − 1, S))`, reversed.
    Linspace,
}

/// Which sampler a config's `_class_name` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// `DDIMScheduler`.
    Ddim,
    /// `EulerDiscreteScheduler`.
    Euler,
    /// `LMSDiscreteScheduler`.
    Lms,
    /// `LCMScheduler`.
    Lcm,
}

/// diffusers' `scheduler/scheduler_config.json`. Unknown fields are ignored; missing fields take
/// `DDIMScheduler`'s defaults (note diffusers' Euler/LMS default to `linspace` spacing, but every
/// SD config states its spacing explicitly).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// The diffusers class (`PNDMScheduler` for SD 1.5, `DDIMScheduler`, …); see [`Self::kind`].
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    /// T, the number of training timesteps (1000).
    pub num_train_timesteps: usize,
    /// β₀.
    pub beta_start: f64,
    /// β₁ (at t = T − 1).
    pub beta_end: f64,
    /// Shape of the β schedule.
    pub beta_schedule: BetaSchedule,
    /// What the model predicts.
    pub prediction_type: PredictionType,
    /// Added to `leading` timesteps (1 for SD).
    pub steps_offset: usize,
    /// Timestep spacing.
    pub timestep_spacing: TimestepSpacing,
    /// DDIM: ᾱ for "before t = 0" is 1 (true) or ᾱ₀ (false; SD).
    pub set_alpha_to_one: bool,
    /// DDIM: clip the predicted x₀ to ±`clip_sample_range` (SD: false).
    pub clip_sample: bool,
    /// DDIM: clipping range.
    pub clip_sample_range: f64,
    /// Explicit β table; not supported ([`Self::from_json`] rejects a non-null one).
    pub trained_betas: Option<Vec<f64>>,
    /// Zero-terminal-SNR rescaling; not supported (rejected when true).
    pub rescale_betas_zero_snr: bool,
    /// DDIM dynamic thresholding; not supported (rejected when true).
    pub thresholding: bool,
    /// LCM: the length N of the distillation schedule `T/N·[1..=N] − 1` (50).
    pub original_inference_steps: usize,
    /// LCM: τ = `timestep_scaling`·t in the boundary condition (10).
    pub timestep_scaling: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            class_name: None,
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            prediction_type: PredictionType::Epsilon,
            steps_offset: 0,
            timestep_spacing: TimestepSpacing::Leading,
            set_alpha_to_one: true,
            clip_sample: true,
            clip_sample_range: 1.0,
            trained_betas: None,
            rescale_betas_zero_snr: false,
            thresholding: false,
            original_inference_steps: 50,
            timestep_scaling: 10.0,
        }
    }
}

impl SchedulerConfig {
    /// Stable Diffusion 1.x's schedule (scaled_linear 0.00085–0.012, leading, offset 1, ε).
    pub fn sd15() -> SchedulerConfig {
        SchedulerConfig {
            class_name: Some("DDIMScheduler".into()),
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            steps_offset: 1,
            set_alpha_to_one: false,
            clip_sample: false,
            ..SchedulerConfig::default()
        }
    }

    /// Parses `scheduler_config.json` text. An `LCMScheduler` config takes that class's
    /// defaults for the fields it omits.
    pub fn from_json(text: &str) -> Result<SchedulerConfig, SchedulerError> {
        let bad = |e: serde_json::Error| SchedulerError(format!("bad scheduler_config.json: {e}"));
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(bad)?;
        if let Some(fields) = value.as_object_mut() {
            if fields.get("_class_name").and_then(|c| c.as_str()) == Some(LCM_CLASS) {
                lcm::apply_lcm_defaults(fields);
            }
        }
        let cfg: SchedulerConfig = serde_json::from_value(value).map_err(bad)?;
        if cfg.num_train_timesteps < 2 {
            return err("num_train_timesteps must be at least 2");
        }
        if cfg.trained_betas.is_some() || cfg.rescale_betas_zero_snr || cfg.thresholding {
            return err("trained_betas, rescale_betas_zero_snr and thresholding are not supported");
        }
        Ok(cfg)
    }

    /// Reads and parses a `scheduler_config.json` file.
    pub fn from_file(path: &std::path::Path) -> Result<SchedulerConfig, SchedulerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SchedulerError(format!("{}: {e}", path.display())))?;
        SchedulerConfig::from_json(&text)
    }

    /// The sampler `_class_name` names, `None` for any other class (e.g. SD 1.5's
    /// `PNDMScheduler`; the capture then uses DDIM, its default).
    pub fn kind(&self) -> Option<SchedulerKind> {
        match self.class_name.as_deref()? {
            "DDIMScheduler" => Some(SchedulerKind::Ddim),
            "EulerDiscreteScheduler" => Some(SchedulerKind::Euler),
            "LMSDiscreteScheduler" => Some(SchedulerKind::Lms),
            LCM_CLASS => Some(SchedulerKind::Lcm),
            _ => None,
        }
    }

    /// β_t for t = 0..T, f32 as torch computes them.
    pub fn betas(&self) -> Vec<f32> {
        let t = self.num_train_timesteps;
        match self.beta_schedule {
            BetaSchedule::Linear => torch_linspace_f32(self.beta_start, self.beta_end, t),
            BetaSchedule::ScaledLinear => {
                torch_linspace_f32(self.beta_start.sqrt(), self.beta_end.sqrt(), t)
                    .into_iter()
                    .map(|b| b * b)
                    .collect()
            }
        }
    }

    /// ᾱ_t = Π_{s ≤ t}(1 − β_s) for t = 0..T (f64 running product, each element rounded to f32).
    pub fn alphas_cumprod(&self) -> Vec<f32> {
        let mut acc = 1.0f64;
        self.betas()
            .into_iter()
            .map(|b| {
                acc *= (1.0f32 - b) as f64;
                acc as f32
            })
            .collect()
    }

    fn check_steps(&self, steps: usize) -> Result<(), SchedulerError> {
        if steps == 0 || steps > self.num_train_timesteps {
            return err(format!(
                "num_inference_steps {steps} must be in 1..={}",
                self.num_train_timesteps
            ));
        }
        Ok(())
    }

    /// DDIM's timesteps for `steps` inference steps, high to low, exactly as
    /// `DDIMScheduler.set_timesteps`.
    pub fn ddim_timesteps(&self, steps: usize) -> Result<Vec<usize>, SchedulerError> {
        self.check_steps(steps)?;
        let tt = self.num_train_timesteps;
        let ts: Vec<i64> = match self.timestep_spacing {
            TimestepSpacing::Linspace => numpy_linspace(0.0, (tt - 1) as f64, steps)
                .into_iter()
                .rev()
                .map(|x| x.round_ties_even() as i64)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = tt / steps;
                (0..steps).rev().map(|i| (i * ratio + self.steps_offset) as i64).collect()
            }
            TimestepSpacing::Trailing => {
                trailing(tt, steps).into_iter().map(|x| x as i64 - 1).collect()
            }
        };
        ts.into_iter()
            .map(|t| {
                usize::try_from(t)
                    .ok()
                    .filter(|&t| t < tt)
                    .ok_or_else(|| SchedulerError(format!("timestep {t} outside 0..{tt}")))
            })
            .collect()
    }

    /// Euler/LMS timesteps (f32, may be fractional for `linspace`), as their `set_timesteps`.
    pub fn discrete_timesteps(&self, steps: usize) -> Result<Vec<f32>, SchedulerError> {
        self.check_steps(steps)?;
        let tt = self.num_train_timesteps;
        Ok(match self.timestep_spacing {
            TimestepSpacing::Linspace => numpy_linspace(0.0, (tt - 1) as f64, steps)
                .into_iter()
                .rev()
                .map(|x| x as f32)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = tt / steps;
                (0..steps).rev().map(|i| (i * ratio) as f32 + self.steps_offset as f32).collect()
            }
            TimestepSpacing::Trailing => {
                trailing(tt, steps).into_iter().map(|x| x as f32 - 1.0).collect()
            }
        })
    }

    /// σ_t = √((1 − ᾱ_t)/ᾱ_t) for t = 0..T (f32).
    pub fn train_sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod().into_iter().map(|a| ((1.0 - a) / a).sqrt()).collect()
    }

    /// Euler/LMS sigmas for `steps` steps: [`Self::train_sigmas`] linearly interpolated at
    /// [`Self::discrete_timesteps`], then a final 0 (length `steps + 1`).
    pub fn discrete_sigmas(&self, steps: usize) -> Result<Vec<f32>, SchedulerError> {
        let ts = self.discrete_timesteps(steps)?;
        let table = self.train_sigmas();
        let mut out: Vec<f32> = ts.iter().map(|&t| numpy_interp(t as f64, &table) as f32).collect();
        out.push(0.0);
        Ok(out)
    }
}

/// torch.linspace in f32: `start + i·step` for the first half, `end − (n−1−i)·step` for the rest,
/// each with a single rounding (torch's vectorised kernel uses FMA).
fn torch_linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (s, e) = (start as f32, end as f32);
    if n == 1 {
        return vec![s];
    }
    let step = (e - s) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                step.mul_add(i as f32, s)
            } else {
                (-step).mul_add((n - 1 - i) as f32, e)
            }
        })
        .collect()
}

/// numpy.linspace in f64 (`i·step + start`, last element exactly `stop`).
fn numpy_linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    v[n - 1] = stop;
    v
}

/// `np.round(np.arange(T, 0, -T/S))` (numpy's length and fill rule, ties to even).
fn trailing(tt: usize, steps: usize) -> Vec<f64> {
    let ratio = tt as f64 / steps as f64;
    let start = tt as f64;
    let len = ((0.0 - start) / -ratio).ceil().max(0.0) as usize;
    let delta = (start - ratio) - start;
    (0..len).map(|i| (start + i as f64 * delta).round_ties_even()).collect()
}

/// `np.interp(x, arange(len), table)` (f64; clamped at the ends).
fn numpy_interp(x: f64, table: &[f32]) -> f64 {
    let last = table.len() - 1;
    if x <= 0.0 {
        return table[0] as f64;
    }
    if x >= last as f64 {
        return table[last] as f64;
    }
    let j = x.floor() as usize;
    if x == j as f64 {
        return table[j] as f64;
    }
    let slope = (table[j + 1] as f64 - table[j] as f64) / 1.0;
    slope * (x - j as f64) + table[j] as f64
}

/// Index of `timestep` in a schedule (diffusers' `index_for_timestep`: the second match if the
/// value occurs twice, else the first).
pub fn index_for_timestep(timesteps: &[f32], timestep: f32) -> Option<usize> {
    let hits: Vec<usize> = (0..timesteps.len()).filter(|&i| timesteps[i] == timestep).collect();
    hits.get(if hits.len() > 1 { 1 } else { 0 }).copied()
}

/// Real-image mode: noise level `percent` % (1..=100) → DDIM-100-leading timestep `10n − 9`
/// (1 % → 1, 20 % → 191, 90 % → 891).
pub fn noise_level_to_timestep(percent: u32) -> Result<usize, SchedulerError> {
    if !(1..=100).contains(&percent) {
        return err(format!("noise level {percent} % must be in 1..=100"));
    }
    Ok(10 * percent as usize - 9)
}

/// `x_t = √ᾱ_t·z₀ + √(1−ᾱ_t)·ε` (diffusers' `add_noise`, in f32). `alphas_cumprod` comes from
/// [`SchedulerConfig::alphas_cumprod`].
pub fn add_noise(
    alphas_cumprod: &[f32],
    z0: &[f32],
    eps: &[f32],
    t: usize,
) -> Result<Vec<f32>, SchedulerError> {
    same_len(z0, eps, "z0", "eps")?;
    let Some(&a) = alphas_cumprod.get(t) else {
        return err(format!("timestep {t} outside 0..{}", alphas_cumprod.len()));
    };
    let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
    Ok(z0.iter().zip(eps).map(|(&z, &e)| sa * z + sb * e).collect())
}

fn same_len(a: &[f32], b: &[f32], na: &str, nb: &str) -> Result<(), SchedulerError> {
    if a.len() != b.len() {
        return err(format!("{na} has {} values, {nb} {}", a.len(), b.len()));
    }
    Ok(())
}

/// The result of one sampler step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// The sample at the next (lower-noise) timestep.
    pub prev_sample: Vec<f32>,
    /// The model's estimate of the clean sample x₀.
    pub pred_original_sample: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const GOLDEN: &str = include_str!("../../tests/golden/schedulers.json");

    fn golden() -> Value {
        serde_json::from_str(GOLDEN).unwrap()
    }

    fn f64s(v: &Value) -> Vec<f64> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    }

    fn f32s(v: &Value) -> Vec<f32> {
        f64s(v).into_iter().map(|x| x as f32).collect()
    }

    /// |a − b| ≤ 1e-6 · max(|b|, floor): relative, with an absolute floor for values near 0.
    fn close(what: &str, got: &[f64], want: &[f64], floor: f64) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let tol = 1e-6 * w.abs().max(floor);
            assert!(
                (g - w).abs() <= tol,
                "{what}[{i}]: got {g}, want {w} (diff {:e})",
                (g - w).abs()
            );
        }
    }

    fn close32(what: &str, got: &[f32], want: &Value, floor: f64) {
        let g: Vec<f64> = got.iter().map(|&x| x as f64).collect();
        close(what, &g, &f64s(want), floor);
    }

    fn config(c: &Value) -> SchedulerConfig {
        SchedulerConfig::from_json(&c["config"].to_string()).unwrap()
    }

    #[test]
    fn ddim_100_leading_known_answer() {
        let ts = SchedulerConfig::sd15().ddim_timesteps(100).unwrap();
        let want: Vec<usize> = (0..100).rev().map(|i| 10 * i + 1).collect();
        assert_eq!(ts, want);
        assert_eq!((ts[0], ts[1], ts[99]), (991, 981, 1));
    }

    #[test]
    fn noise_levels_known_answers() {
        assert_eq!(noise_level_to_timestep(1).unwrap(), 1);
        assert_eq!(noise_level_to_timestep(20).unwrap(), 191);
        assert_eq!(noise_level_to_timestep(90).unwrap(), 891);
        assert!(noise_level_to_timestep(0).is_err());
        assert!(noise_level_to_timestep(101).is_err());
        // Every noise level is a DDIM-100 leading timestep.
        let ts = SchedulerConfig::sd15().ddim_timesteps(100).unwrap();
        assert!((1..=100).all(|n| ts.contains(&noise_level_to_timestep(n).unwrap())));
    }

    #[test]
    fn config_parses_diffusers_json() {
        let text = r#"{"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0",
            "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true,
            "steps_offset": 1, "trained_betas": null, "clip_sample": false}"#;
        let c = SchedulerConfig::from_json(text).unwrap();
        assert_eq!(c.kind(), None);
        assert_eq!(c.beta_schedule, BetaSchedule::ScaledLinear);
        assert_eq!(c.timestep_spacing, TimestepSpacing::Leading);
        assert_eq!(c.prediction_type, PredictionType::Epsilon);
        assert_eq!(
            SchedulerConfig { class_name: Some("DDIMScheduler".into()), ..c.clone() },
            SchedulerConfig::sd15()
        );
        let v = r#"{"_class_name": "EulerDiscreteScheduler", "prediction_type": "v_prediction",
            "timestep_spacing": "trailing"}"#;
        let c = SchedulerConfig::from_json(v).unwrap();
        assert_eq!(c.kind(), Some(SchedulerKind::Euler));
        assert_eq!(c.prediction_type, PredictionType::VPrediction);
        assert!(SchedulerConfig::from_json(r#"{"beta_schedule": "squaredcos_cap_v2"}"#).is_err());
        assert!(SchedulerConfig::from_json(r#"{"trained_betas": [0.1, 0.2]}"#).is_err());
        assert!(SchedulerConfig::from_json(r#"{"rescale_betas_zero_snr": true}"#).is_err());
    }

    #[test]
    fn gauss_legendre_is_exact_for_cubics() {
        let f = |x: f64| 3.0 * x * x * x - x * x + 0.5;
        let exact = |x: f64| 0.75 * x.powi(4) - x.powi(3) / 3.0 + 0.5 * x;
        let (a, b) = (14.6, 0.03);
        assert!(
            (sigma::gauss_legendre(f, a, b) - (exact(b) - exact(a))).abs() < 1e-9 * exact(a).abs()
        );
    }

    #[test]
    fn golden_tables() {
        let g = golden();
        for (name, c) in g["configs"].as_object().unwrap() {
            let cfg = config(c);
            let ac = cfg.alphas_cumprod();
            let betas = cfg.betas();
            for (t, want) in c["alphas_cumprod"].as_object().unwrap() {
                let t: usize = t.parse().unwrap();
                close(&format!("{name} ac[{t}]"), &[ac[t] as f64], &[want.as_f64().unwrap()], 0.0);
                let wb = c["betas"][t.to_string()].as_f64().unwrap();
                close(&format!("{name} beta[{t}]"), &[betas[t] as f64], &[wb], 0.0);
            }
            for (steps, want) in c["ddim_timesteps"].as_object().unwrap() {
                let ts = cfg.ddim_timesteps(steps.parse().unwrap()).unwrap();
                let want: Vec<usize> = f64s(want).into_iter().map(|x| x as usize).collect();
                assert_eq!(ts, want, "{name} ddim {steps}");
            }
            for which in ["euler", "lms"] {
                for (steps, want) in c[which].as_object().unwrap() {
                    let n: usize = steps.parse().unwrap();
                    let (ts, sig, init) = if which == "euler" {
                        let e = Euler::new(&cfg, n).unwrap();
                        (e.timesteps().to_vec(), e.sigmas().to_vec(), e.init_noise_sigma())
                    } else {
                        let l = Lms::new(&cfg, n).unwrap();
                        (l.timesteps().to_vec(), l.sigmas().to_vec(), l.init_noise_sigma())
                    };
                    let what = format!("{name} {which} {steps}");
                    close32(&format!("{what} timesteps"), &ts, &want["timesteps"], 1.0);
                    close32(&format!("{what} sigmas"), &sig, &want["sigmas"], 0.0);
                    close(
                        &format!("{what} init"),
                        &[init as f64],
                        &[want["init_noise_sigma"].as_f64().unwrap()],
                        0.0,
                    );
                }
            }
        }
    }

    /// Step outputs: 1e-6 relative to the larger of |value| and the sample's scale (values that
    /// cancel to near 0 in f32 carry the absolute error of their inputs).
    fn close_out(what: &str, got: &[f32], want: &Value, scale: f64) {
        close32(what, got, want, scale);
    }

    fn max_abs(v: &Value) -> f64 {
        f64s(v).into_iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    #[test]
    fn golden_steps() {
        let g = golden();
        for name in ["sd15", "sd2v"] {
            let c = &g["configs"][name];
            let cfg = config(c);
            for s in c["ddim_step"].as_array().unwrap() {
                let d =
                    Ddim::new(&cfg, s["num_inference_steps"].as_u64().unwrap() as usize).unwrap();
                let t = s["timestep"].as_u64().unwrap() as usize;
                let out = d.step(&f32s(&s["model_output"]), t, &f32s(&s["sample"])).unwrap();
                let what = format!("{name} ddim t={t}");
                let scale = max_abs(&s["prev_sample"]).max(1.0);
                close_out(&format!("{what} prev"), &out.prev_sample, &s["prev_sample"], scale);
                let scale = max_abs(&s["pred_original_sample"]).max(1.0);
                close_out(
                    &format!("{what} x0"),
                    &out.pred_original_sample,
                    &s["pred_original_sample"],
                    scale,
                );
            }
            for which in ["euler_seq", "lms_seq"] {
                let seq = &c[which];
                let n = seq["num_inference_steps"].as_u64().unwrap() as usize;
                let euler = Euler::new(&cfg, n).unwrap();
                let mut lms = Lms::new(&cfg, n).unwrap();
                let mut x = f32s(&seq["sample0"]);
                for (k, s) in seq["steps"].as_array().unwrap().iter().enumerate() {
                    let what = format!("{name} {which} k={k}");
                    let m = f32s(&s["model_output"]);
                    let (scaled, out) = if which == "euler_seq" {
                        assert_eq!(euler.timesteps()[k] as f64, s["timestep"].as_f64().unwrap());
                        (euler.scale_model_input(&x, k).unwrap(), euler.step(&m, k, &x).unwrap())
                    } else {
                        assert_eq!(lms.timesteps()[k] as f64, s["timestep"].as_f64().unwrap());
                        let order = (k + 1).min(4);
                        let coeffs: Vec<f64> =
                            (0..order).map(|c| lms.lms_coefficient(order, k, c)).collect();
                        let cscale = f64s(&s["lms_coeffs"])
                            .into_iter()
                            .fold(0.0, |m: f64, x| m.max(x.abs()));
                        close(&format!("{what} coeffs"), &coeffs, &f64s(&s["lms_coeffs"]), cscale);
                        (lms.scale_model_input(&x, k).unwrap(), lms.step(&m, k, &x).unwrap())
                    };
                    close_out(
                        &format!("{what} scaled"),
                        &scaled,
                        &s["scaled_input"],
                        max_abs(&s["scaled_input"]),
                    );
                    let scale = max_abs(&s["prev_sample"]).max(max_abs(&s["model_output"]));
                    close_out(&format!("{what} prev"), &out.prev_sample, &s["prev_sample"], scale);
                    let scale =
                        max_abs(&s["pred_original_sample"]).max(max_abs(&s["model_output"]));
                    close_out(
                        &format!("{what} x0"),
                        &out.pred_original_sample,
                        &s["pred_original_sample"],
                        scale,
                    );
                    // Continue from our own output, as a caller would.
                    x = out.prev_sample;
                }
            }
            let ac = cfg.alphas_cumprod();
            for s in c["add_noise"].as_array().unwrap() {
                let t = s["timestep"].as_u64().unwrap() as usize;
                let got = add_noise(&ac, &f32s(&s["z0"]), &f32s(&s["eps"]), t).unwrap();
                close_out(
                    &format!("{name} add_noise t={t}"),
                    &got,
                    &s["noisy"],
                    max_abs(&s["noisy"]),
                );
            }
        }
    }

    #[test]
    fn errors_are_reported() {
        let cfg = SchedulerConfig::sd15();
        assert!(cfg.ddim_timesteps(0).is_err());
        assert!(cfg.ddim_timesteps(1001).is_err());
        let d = Ddim::new(&cfg, 50).unwrap();
        assert!(d.step(&[0.0; 3], 981, &[0.0; 4]).is_err());
        assert!(d.step(&[0.0; 4], 1000, &[0.0; 4]).is_err());
        assert!(d.step_eta(&[0.0; 4], 981, &[0.0; 4], 1.0, None).is_err());
        let mut l = Lms::new(&cfg, 15).unwrap();
        assert!(l.step(&[0.0; 4], 1, &[1.0; 4]).is_err());
        assert!(add_noise(&cfg.alphas_cumprod(), &[0.0; 2], &[0.0; 2], 1000).is_err());
    }

    #[test]
    fn index_lookup() {
        let e = Euler::new(&SchedulerConfig::sd15(), 50).unwrap();
        assert_eq!(index_for_timestep(e.timesteps(), 961.0), Some(1));
        assert_eq!(index_for_timestep(e.timesteps(), 5.0), None);
    }
}
