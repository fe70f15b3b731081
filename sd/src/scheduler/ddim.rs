//! DDIM (`DDIMScheduler`), deterministic at η = 0, as host-side f32 math in diffusers' order of
//! operations; the update's scalars are exposed for the device step in the worker.

use super::{err, same_len, PredictionType, SchedulerConfig, SchedulerError, StepOutput};

/// The scalars of one DDIM update: `x₀ = (x − sb·ε̂)/sa` (ε) or `sa·x − sb·v` (v), clipped to
/// `±clip`, then `x_prev = sp·x₀ + dir·ε + std·z`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdimScalars {
    /// √ᾱ_t.
    pub sa: f32,
    /// √(1 − ᾱ_t).
    pub sb: f32,
    /// √ᾱ_prev.
    pub sp: f32,
    /// The coefficient of ε, √(1 − ᾱ_prev − std²).
    pub dir: f32,
    /// η times the DDIM standard deviation.
    pub std: f32,
    /// What the model predicts.
    pub prediction_type: PredictionType,
    /// The x₀ clipping range, when the config clips.
    pub clip: Option<f32>,
}

/// DDIM (`DDIMScheduler`) with a fixed number of inference steps.
#[derive(Debug, Clone)]
pub struct Ddim {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    num_inference_steps: usize,
    timesteps: Vec<usize>,
}

impl Ddim {
    /// Builds the schedule for `steps` inference steps.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Ddim, SchedulerError> {
        let timesteps = config.ddim_timesteps(steps)?;
        let alphas_cumprod = config.alphas_cumprod();
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] };
        Ok(Ddim {
            config: config.clone(),
            alphas_cumprod,
            final_alpha_cumprod,
            num_inference_steps: steps,
            timesteps,
        })
    }

    /// The timesteps, high to low.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// ᾱ_t for all training timesteps.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// The initial noise's standard deviation (1 for DDIM).
    pub fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// The U-Net input at `timestep` (DDIM does not scale it).
    pub fn scale_model_input(&self, sample: &[f32]) -> Vec<f32> {
        sample.to_vec()
    }

    /// One deterministic (η = 0) DDIM update from `timestep` to `timestep − T // steps`.
    pub fn step(
        &self,
        model_output: &[f32],
        timestep: usize,
        sample: &[f32],
    ) -> Result<StepOutput, SchedulerError> {
        self.step_eta(model_output, timestep, sample, 0.0, None)
    }

    /// The scalars of the update at `timestep` with stochasticity η, for a step computed
    /// elsewhere (on the device) in the same order of operations as [`Ddim::step_eta`].
    pub fn step_scalars(&self, timestep: usize, eta: f32) -> Result<DdimScalars, SchedulerError> {
        if timestep >= self.alphas_cumprod.len() {
            return err(format!("timestep {timestep} outside 0..{}", self.alphas_cumprod.len()));
        }
        let prev =
            timestep as i64 - (self.config.num_train_timesteps / self.num_inference_steps) as i64;
        let a_t = self.alphas_cumprod[timestep];
        let a_prev =
            if prev >= 0 { self.alphas_cumprod[prev as usize] } else { self.final_alpha_cumprod };
        let b_t = 1.0 - a_t;
        let b_prev = 1.0 - a_prev;
        let variance = (b_prev / b_t) * (1.0 - a_t / a_prev);
        let std = eta * variance.sqrt();
        Ok(DdimScalars {
            sa: a_t.sqrt(),
            sb: b_t.sqrt(),
            sp: a_prev.sqrt(),
            dir: (1.0 - a_prev - std * std).sqrt(),
            std,
            prediction_type: self.config.prediction_type,
            clip: self.config.clip_sample.then_some(self.config.clip_sample_range as f32),
        })
    }

    /// One DDIM update with stochasticity η; η > 0 needs `variance_noise` (standard normal, same
    /// length as `sample`).
    pub fn step_eta(
        &self,
        model_output: &[f32],
        timestep: usize,
        sample: &[f32],
        eta: f32,
        variance_noise: Option<&[f32]>,
    ) -> Result<StepOutput, SchedulerError> {
        same_len(model_output, sample, "model_output", "sample")?;
        let DdimScalars { sa, sb, sp, dir, std, prediction_type, clip } =
            self.step_scalars(timestep, eta)?;
        let (mut x0, eps): (Vec<f32>, Vec<f32>) = match prediction_type {
            PredictionType::Epsilon => (
                sample.iter().zip(model_output).map(|(&x, &m)| (x - sb * m) / sa).collect(),
                model_output.to_vec(),
            ),
            PredictionType::VPrediction => (
                sample.iter().zip(model_output).map(|(&x, &m)| sa * x - sb * m).collect(),
                sample.iter().zip(model_output).map(|(&x, &m)| sa * m + sb * x).collect(),
            ),
        };
        if let Some(r) = clip {
            x0.iter_mut().for_each(|v| *v = v.clamp(-r, r));
        }
        let mut out: Vec<f32> = x0.iter().zip(&eps).map(|(&x, &e)| sp * x + dir * e).collect();
        if eta > 0.0 {
            let Some(noise) = variance_noise else {
                return err("DDIM with eta > 0 needs variance_noise");
            };
            same_len(noise, sample, "variance_noise", "sample")?;
            out.iter_mut().zip(noise).for_each(|(o, &n)| *o += std * n);
        }
        Ok(StepOutput { prev_sample: out, pred_original_sample: x0 })
    }
}
