//! The Latent Consistency Model sampler, diffusers' `LCMScheduler`, as host-side f32 math.
//!
//! An LCM (a distilled U-Net, or SD 1.5 with an LCM-LoRA merged) maps a noisy latent to a clean
//! one in one evaluation; sampling with a few steps alternates that estimate with re-noising:
//!
//! * **timesteps**: the distillation schedule ("origin timesteps") is `k·[1..=N] − 1` with
//!   `N = original_inference_steps` (50) and `k = T // N` (20), i.e. `[19, 39, …, 999]`; `S`
//!   inference steps take the reversed schedule at indices `floor(i·N/S)` (numpy's
//!   `linspace(0, N, S, endpoint=False)`), so 4 steps are `[999, 759, 499, 259]`;
//! * **boundary condition**: with `τ = timestep_scaling · t` (10t) and σ_data = 0.5,
//!   `c_skip = σ²/(τ² + σ²)` and `c_out = τ/√(τ² + σ²)`;
//! * **update**: `x̂₀` from the model output (ε: `(x − √(1−ᾱ_t)·ε̂)/√ᾱ_t`, or v), then
//!   `denoised = c_out·x̂₀ + c_skip·x`, and, except at the last step, the sample for the next
//!   timestep is `√ᾱ_prev·denoised + √(1−ᾱ_prev)·z` with fresh standard normal noise `z`, which
//!   the caller supplies (so that noise can be shared across prompts). At the last step the
//!   sample is `denoised` itself.
//!
//! **Numerics.** diffusers' pipelines pass the timestep as a 0-d int64 tensor, so `τ`, `c_skip`
//! and `c_out` are float32 tensors; every quantity here is f32 in diffusers' operation order,
//! which the tests check against `tests/golden/schedulers.json` (section `lcm`).
//!
//! A `scheduler_config.json` naming `LCMScheduler` takes `LCMScheduler`'s own defaults for the
//! fields it omits ([`apply_lcm_defaults`]); `timestep_spacing` and `steps_offset` do not apply
//! to LCM. Custom timestep lists and img2img `strength` are not implemented.

use super::{err, same_len, PredictionType, SchedulerConfig, SchedulerError};

/// The `_class_name` of diffusers' LCM scheduler.
pub const LCM_CLASS: &str = "LCMScheduler";

/// σ_data of the consistency-model boundary condition (fixed at 0.5 in diffusers).
const SIGMA_DATA: f32 = 0.5;

/// Fills the fields a `LCMScheduler` config omits with `LCMScheduler`'s defaults where they
/// differ from the DDIM defaults that [`SchedulerConfig`] otherwise assumes.
pub(super) fn apply_lcm_defaults(fields: &mut serde_json::Map<String, serde_json::Value>) {
    let defaults = [
        ("beta_start", serde_json::json!(0.00085)),
        ("beta_end", serde_json::json!(0.012)),
        ("beta_schedule", serde_json::json!("scaled_linear")),
        ("clip_sample", serde_json::json!(false)),
    ];
    for (key, value) in defaults {
        fields.entry(key).or_insert(value);
    }
}

/// The distillation schedule `k·[1..=N] − 1` (ascending), `N = original_inference_steps`,
/// `k = num_train_timesteps // N`.
pub fn lcm_origin_timesteps(config: &SchedulerConfig) -> Result<Vec<usize>, SchedulerError> {
    let n = config.original_inference_steps;
    if n == 0 || n > config.num_train_timesteps {
        return err(format!(
            "original_inference_steps {n} must be in 1..={}",
            config.num_train_timesteps
        ));
    }
    let k = config.num_train_timesteps / n;
    Ok((1..=n).map(|i| i * k - 1).collect())
}

/// `(c_skip, c_out)` at `timestep`, in f32 as diffusers computes them from a tensor timestep.
pub fn lcm_boundary_scalings(config: &SchedulerConfig, timestep: usize) -> (f32, f32) {
    let tau = timestep as f32 * config.timestep_scaling as f32;
    let sd2 = SIGMA_DATA * SIGMA_DATA;
    let c_skip = sd2 / (tau * tau + sd2);
    let c_out = tau / (tau * tau + sd2).sqrt();
    (c_skip, c_out)
}

/// The scalars of one LCM update at step index `k`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LcmScalars {
    /// √ᾱ_t.
    pub sa: f32,
    /// √(1 − ᾱ_t).
    pub sb: f32,
    /// c_skip, the weight of the input sample in `denoised`.
    pub c_skip: f32,
    /// c_out, the weight of x̂₀ in `denoised`.
    pub c_out: f32,
    /// √ᾱ_prev, the weight of `denoised` when re-noising.
    pub sp: f32,
    /// √(1 − ᾱ_prev), the weight of the fresh noise; `None` at the last step (no re-noising).
    pub noise: Option<f32>,
    /// What the model predicts.
    pub prediction_type: PredictionType,
    /// The x̂₀ clipping range, when the config clips.
    pub clip: Option<f32>,
}

/// The result of one LCM step.
#[derive(Debug, Clone, PartialEq)]
pub struct LcmStepOutput {
    /// The sample at the next timestep (re-noised), or `denoised` at the last step.
    pub prev_sample: Vec<f32>,
    /// The consistency estimate `c_out·x̂₀ + c_skip·x` (the image at the last step).
    pub denoised: Vec<f32>,
    /// x̂₀, the plain estimate from the model output.
    pub pred_original_sample: Vec<f32>,
}

/// LCM (`LCMScheduler`) with a fixed number of inference steps. Stateless: steps are addressed
/// by their 0-based index `k` into [`Lcm::timesteps`].
#[derive(Debug, Clone)]
pub struct Lcm {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f32>,
    timesteps: Vec<usize>,
}

impl Lcm {
    /// Builds the schedule for `steps` inference steps (1 ≤ steps ≤ `original_inference_steps`),
    /// exactly as `LCMScheduler.set_timesteps(steps)`.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Lcm, SchedulerError> {
        let origin = lcm_origin_timesteps(config)?;
        if steps == 0 || steps > origin.len() {
            return err(format!(
                "LCM num_inference_steps {steps} must be in 1..={} (original_inference_steps)",
                origin.len()
            ));
        }
        let n = origin.len();
        let step = n as f64 / steps as f64;
        let timesteps =
            (0..steps).map(|i| origin[n - 1 - (i as f64 * step).floor() as usize]).collect();
        Ok(Lcm { config: config.clone(), alphas_cumprod: config.alphas_cumprod(), timesteps })
    }

    /// The timesteps, high to low.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// ᾱ_t for all training timesteps.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// The initial noise's standard deviation (1).
    pub fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// The U-Net input (LCM does not scale it).
    pub fn scale_model_input(&self, sample: &[f32]) -> Vec<f32> {
        sample.to_vec()
    }

    /// The scalars of the update at step index `k`, for a step computed elsewhere (on the
    /// device) in the same order of operations as [`Lcm::step`].
    pub fn step_scalars(&self, k: usize) -> Result<LcmScalars, SchedulerError> {
        let Some(&t) = self.timesteps.get(k) else {
            return err(format!("LCM step {k} outside 0..{}", self.timesteps.len()));
        };
        let last = k + 1 == self.timesteps.len();
        let prev = if last { t } else { self.timesteps[k + 1] };
        let a_t = self.alphas_cumprod[t];
        let a_prev = self.alphas_cumprod[prev];
        let (c_skip, c_out) = lcm_boundary_scalings(&self.config, t);
        Ok(LcmScalars {
            sa: a_t.sqrt(),
            sb: (1.0 - a_t).sqrt(),
            c_skip,
            c_out,
            sp: a_prev.sqrt(),
            noise: (!last).then(|| (1.0 - a_prev).sqrt()),
            prediction_type: self.config.prediction_type,
            clip: self.config.clip_sample.then_some(self.config.clip_sample_range as f32),
        })
    }

    /// One LCM step at index `k`. Every step but the last re-noises and needs `noise`
    /// (standard normal, as long as `sample`); the last ignores it.
    pub fn step(
        &self,
        model_output: &[f32],
        k: usize,
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Result<LcmStepOutput, SchedulerError> {
        same_len(model_output, sample, "model_output", "sample")?;
        let s = self.step_scalars(k)?;
        let mut x0: Vec<f32> = match s.prediction_type {
            PredictionType::Epsilon => {
                sample.iter().zip(model_output).map(|(&x, &m)| (x - s.sb * m) / s.sa).collect()
            }
            PredictionType::VPrediction => {
                sample.iter().zip(model_output).map(|(&x, &m)| s.sa * x - s.sb * m).collect()
            }
        };
        if let Some(r) = s.clip {
            x0.iter_mut().for_each(|v| *v = v.clamp(-r, r));
        }
        let denoised: Vec<f32> =
            x0.iter().zip(sample).map(|(&x0, &x)| s.c_out * x0 + s.c_skip * x).collect();
        let prev_sample = match s.noise {
            None => denoised.clone(),
            Some(sq) => {
                let Some(z) = noise else {
                    return err(format!(
                        "LCM step {k} of {} re-noises and needs noise",
                        self.timesteps.len()
                    ));
                };
                same_len(z, sample, "noise", "sample")?;
                denoised.iter().zip(z).map(|(&d, &z)| s.sp * d + sq * z).collect()
            }
        };
        Ok(LcmStepOutput { prev_sample, denoised, pred_original_sample: x0 })
    }
}

#[cfg(test)]
mod tests {
    use super::super::SchedulerKind;
    use super::*;
    use serde_json::Value;

    const GOLDEN: &str = include_str!("../../../tests/golden/schedulers.json");

    fn lcm_golden() -> Value {
        let mut g: Value = serde_json::from_str(GOLDEN).unwrap();
        g["lcm"].take()
    }

    fn f32s(v: &Value) -> Vec<f32> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    }

    fn max_abs(v: &[f32]) -> f32 {
        v.iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    /// Equal to within 1e-6 of the larger of the value and `scale` (f32 cancellation).
    fn close(what: &str, got: &[f32], want: &Value, scale: f32) {
        let want = f32s(want);
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let tol = 1e-6 * w.abs().max(scale);
            assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w}");
        }
    }

    fn config(g: &Value) -> SchedulerConfig {
        SchedulerConfig::from_json(&g["config"].to_string()).unwrap()
    }

    #[test]
    fn four_steps_known_answer() {
        let cfg = SchedulerConfig::from_json(r#"{"_class_name": "LCMScheduler"}"#).unwrap();
        assert_eq!(cfg.kind(), Some(SchedulerKind::Lcm));
        assert_eq!(Lcm::new(&cfg, 4).unwrap().timesteps(), &[999, 759, 499, 259]);
        let origin = lcm_origin_timesteps(&cfg).unwrap();
        assert_eq!((origin.len(), origin[0], origin[49]), (50, 19, 999));
        // c_skip → 1 and c_out → 0 at t = 0 (the boundary condition), c_out ≈ 1 at large t.
        assert_eq!(lcm_boundary_scalings(&cfg, 0), (1.0, 0.0));
    }

    #[test]
    fn lcm_defaults_fill_only_missing_fields() {
        let bare = SchedulerConfig::from_json(r#"{"_class_name": "LCMScheduler"}"#).unwrap();
        let sd = SchedulerConfig::sd15();
        assert_eq!(bare.alphas_cumprod(), sd.alphas_cumprod());
        assert!(!bare.clip_sample);
        assert_eq!((bare.original_inference_steps, bare.timestep_scaling), (50, 10.0));
        let own = r#"{"_class_name": "LCMScheduler", "beta_schedule": "linear",
            "original_inference_steps": 25, "timestep_scaling": 5.0}"#;
        let own = SchedulerConfig::from_json(own).unwrap();
        assert_eq!(own.beta_schedule, super::super::BetaSchedule::Linear);
        assert_eq!(Lcm::new(&own, 2).unwrap().timesteps(), &[999, 519]);
        // Other classes keep the DDIM defaults.
        let ddim = SchedulerConfig::from_json(r#"{"_class_name": "DDIMScheduler"}"#).unwrap();
        assert_eq!(ddim.beta_schedule, super::super::BetaSchedule::Linear);
    }

    #[test]
    fn golden_timesteps_and_scalings() {
        let g = lcm_golden();
        let cfg = config(&g);
        assert_eq!(cfg.kind(), Some(SchedulerKind::Lcm));
        for (steps, want) in g["timesteps"].as_object().unwrap() {
            let want: Vec<usize> =
                want.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as usize).collect();
            let lcm = Lcm::new(&cfg, steps.parse().unwrap()).unwrap();
            assert_eq!(lcm.timesteps(), want, "{steps} steps");
        }
        for (t, want) in g["scalings"].as_object().unwrap() {
            let (c_skip, c_out) = lcm_boundary_scalings(&cfg, t.parse().unwrap());
            // Both are f32 in diffusers: equal bit for bit.
            assert_eq!([c_skip, c_out], f32s(want).as_slice(), "t={t}");
        }
    }

    #[test]
    fn golden_trajectories() {
        let g = lcm_golden();
        let cfg = config(&g);
        for seq in g["seqs"].as_array().unwrap() {
            let n = seq["num_inference_steps"].as_u64().unwrap() as usize;
            let lcm = Lcm::new(&cfg, n).unwrap();
            let mut x = f32s(&seq["sample0"]);
            for (k, s) in seq["steps"].as_array().unwrap().iter().enumerate() {
                assert_eq!(lcm.timesteps()[k] as u64, s["timestep"].as_u64().unwrap());
                let m = f32s(&s["model_output"]);
                let z = f32s(&s["noise"]);
                let out = lcm.step(&m, k, &x, Some(&z)).unwrap();
                let what = format!("{n} steps k={k}");
                let scale = max_abs(&x).max(max_abs(&m)).max(max_abs(&z));
                close(&format!("{what} denoised"), &out.denoised, &s["denoised"], scale);
                close(&format!("{what} prev"), &out.prev_sample, &s["prev_sample"], scale);
                if k + 1 == n {
                    assert_eq!(out.prev_sample, out.denoised, "the last step does not re-noise");
                }
                // Continue from our own output, as a caller would.
                x = out.prev_sample;
            }
        }
    }

    #[test]
    fn errors_are_reported() {
        let cfg = SchedulerConfig::from_json(r#"{"_class_name": "LCMScheduler"}"#).unwrap();
        assert!(Lcm::new(&cfg, 0).is_err());
        assert!(Lcm::new(&cfg, 51).is_err());
        assert!(Lcm::new(&cfg, 50).is_ok());
        let lcm = Lcm::new(&cfg, 4).unwrap();
        let e = lcm.step(&[0.0; 4], 0, &[0.0; 4], None).unwrap_err();
        assert!(e.0.contains("needs noise"), "{e}");
        assert!(lcm.step(&[0.0; 4], 3, &[0.0; 4], None).is_ok());
        assert!(lcm.step(&[0.0; 4], 4, &[0.0; 4], None).is_err());
        assert!(lcm.step(&[0.0; 3], 3, &[0.0; 4], None).is_err());
        assert!(lcm.step(&[0.0; 4], 0, &[0.0; 4], Some(&[0.0; 3])).is_err());
        let bad = r#"{"_class_name": "LCMScheduler", "original_inference_steps": 1001}"#;
        assert!(Lcm::new(&SchedulerConfig::from_json(bad).unwrap(), 4).is_err());
    }
}
