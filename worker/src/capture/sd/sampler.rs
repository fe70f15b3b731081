//! The samplers' updates as device ops: DDIM, Euler, LMS and LCM step the latents where the
//! U-Net runs, so a denoising step moves nothing to the host. Each update follows the host formulas
//! of `sd::scheduler` operation by operation (the schedules' scalars come from there), so
//! on a CPU the two agree bit for bit.

use candle_core::{Result, Tensor};
use common::spec::SamplerKind;
use sd::scheduler::{
    Ddim, DdimScalars, Euler, Lcm, LcmScalars, Lms, PredictionType, SchedulerConfig, SchedulerError,
};

/// One of the supported samplers.
pub(super) enum Sampler {
    Ddim(Ddim),
    Euler(Euler),
    /// LMS keeps its last derivatives (newest last) on the device.
    Lms(Lms, Vec<Tensor>),
    Lcm(Lcm),
}

impl Sampler {
    pub(super) fn new(
        kind: SamplerKind,
        config: &SchedulerConfig,
        steps: usize,
    ) -> std::result::Result<Sampler, SchedulerError> {
        Ok(match kind {
            SamplerKind::Ddim => Sampler::Ddim(Ddim::new(config, steps)?),
            SamplerKind::Euler => Sampler::Euler(Euler::new(config, steps)?),
            SamplerKind::Lms => Sampler::Lms(Lms::new(config, steps)?, Vec::new()),
            SamplerKind::Lcm => Sampler::Lcm(Lcm::new(config, steps)?),
        })
    }

    pub(super) fn init_noise_sigma(&self) -> f32 {
        match self {
            Sampler::Ddim(s) => s.init_noise_sigma(),
            Sampler::Euler(s) => s.init_noise_sigma(),
            Sampler::Lms(s, _) => s.init_noise_sigma(),
            Sampler::Lcm(s) => s.init_noise_sigma(),
        }
    }

    /// The U-Net timestep of step `k` (fractional for the sigma samplers, as in diffusers).
    pub(super) fn timestep(&self, k: usize) -> f64 {
        match self {
            Sampler::Ddim(s) => s.timesteps()[k] as f64,
            Sampler::Euler(s) => s.timesteps()[k] as f64,
            Sampler::Lms(s, _) => s.timesteps()[k] as f64,
            Sampler::Lcm(s) => s.timesteps()[k] as f64,
        }
    }

    /// The U-Net input at step `k`: the latents, divided by `√(σ_k² + 1)` for the σ samplers.
    pub(super) fn scale_input(&self, x: &Tensor, k: usize) -> Result<Tensor> {
        let sigma = match self {
            Sampler::Ddim(_) | Sampler::Lcm(_) => return Ok(x.clone()),
            Sampler::Euler(s) => s.sigmas()[k],
            Sampler::Lms(s, _) => s.sigmas()[k],
        };
        x.broadcast_div(&scalar(x, (sigma * sigma + 1.0).sqrt())?)
    }

    /// Whether step `k` re-noises, and so needs `fresh` noise in [`Sampler::step`] (LCM, every
    /// step but the last).
    pub(super) fn renoises(&self, k: usize) -> bool {
        match self {
            Sampler::Lcm(s) => k + 1 < s.timesteps().len(),
            _ => false,
        }
    }

    /// The latents after step `k`, from the guided model output `pred`, the latents `x` and, when
    /// [`Sampler::renoises`], standard-normal `fresh` noise (all f32). LMS steps must come in
    /// order `k = 0, 1, …`.
    pub(super) fn step(
        &mut self,
        pred: &Tensor,
        k: usize,
        x: &Tensor,
        fresh: Option<&Tensor>,
    ) -> Result<Tensor> {
        match self {
            Sampler::Ddim(s) => {
                let scalars = s.step_scalars(s.timesteps()[k], 0.0).map_err(msg)?;
                ddim_step(&scalars, pred, x)
            }
            Sampler::Euler(s) => {
                let (sigmas, kind) = (s.sigmas(), s.prediction_type());
                let d = derivative(kind, sigmas[k], pred, x)?;
                x + d.affine(f64::from(sigmas[k + 1] - sigmas[k]), 0.0)?
            }
            Sampler::Lms(s, derivatives) => {
                derivatives.push(derivative(s.prediction_type(), s.sigmas()[k], pred, x)?);
                if derivatives.len() > 4 {
                    derivatives.remove(0);
                }
                let order = (k + 1).min(4);
                // diffusers: sample + sum(coeff * d for coeff, d in zip(coeffs,
                // reversed(derivatives))), Python's sum starting at 0 and adding left to right.
                let mut acc = x.zeros_like()?;
                for (c, d) in (0..order).zip(derivatives.iter().rev()) {
                    let coeff = s.lms_coefficient(order, k, c) as f32;
                    acc = (acc + d.affine(f64::from(coeff), 0.0)?)?;
                }
                x + acc
            }
            Sampler::Lcm(s) => lcm_step(&s.step_scalars(k).map_err(msg)?, pred, x, fresh),
        }
    }
}

/// The LCM update, in [`Lcm::step`]'s order of operations: x̂₀ as DDIM's, the boundary-condition
/// mix `c_out·x̂₀ + c_skip·x`, then (but at the last step) `√ᾱ_prev·denoised + √(1−ᾱ_prev)·z`.
fn lcm_step(s: &LcmScalars, pred: &Tensor, x: &Tensor, fresh: Option<&Tensor>) -> Result<Tensor> {
    let x0 = match s.prediction_type {
        PredictionType::Epsilon => (x - scale(pred, s.sb)?)?.broadcast_div(&scalar(x, s.sa)?)?,
        PredictionType::VPrediction => (scale(x, s.sa)? - scale(pred, s.sb)?)?,
    };
    let x0 = match s.clip {
        Some(r) => x0.clamp(-r, r)?,
        None => x0,
    };
    let denoised = (scale(&x0, s.c_out)? + scale(x, s.c_skip)?)?;
    match (s.noise, fresh) {
        (None, _) => Ok(denoised),
        (Some(sq), Some(z)) => scale(&denoised, s.sp)? + scale(z, sq)?,
        (Some(_), None) => Err(candle_core::Error::Msg("LCM re-noising needs noise".into())),
    }
}

/// The deterministic DDIM update, in [`Ddim::step_eta`]'s order of operations.
pub(super) fn ddim_step(s: &DdimScalars, pred: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (x0, eps) = match s.prediction_type {
        PredictionType::Epsilon => {
            ((x - scale(pred, s.sb)?)?.broadcast_div(&scalar(x, s.sa)?)?, pred.clone())
        }
        PredictionType::VPrediction => {
            ((scale(x, s.sa)? - scale(pred, s.sb)?)?, (scale(pred, s.sa)? + scale(x, s.sb)?)?)
        }
    };
    let x0 = match s.clip {
        Some(r) => x0.clamp(-r, r)?,
        None => x0,
    };
    scale(&x0, s.sp)? + scale(&eps, s.dir)?
}

/// The ODE derivative `(x − x₀)/σ` of the σ samplers, x₀ as in `SigmaSchedule::denoise`.
fn derivative(kind: PredictionType, sigma: f32, pred: &Tensor, x: &Tensor) -> Result<Tensor> {
    let x0 = match kind {
        PredictionType::Epsilon => (x - scale(pred, sigma)?)?,
        PredictionType::VPrediction => {
            let c_out = -sigma / (sigma * sigma + 1.0).sqrt();
            let c_skip = sigma * sigma + 1.0;
            (scale(pred, c_out)? + x.broadcast_div(&scalar(x, c_skip)?)?)?
        }
    };
    (x - x0)?.broadcast_div(&scalar(x, sigma)?)
}

/// `t · v` in f32, rounded once as the host's `v * t`.
fn scale(t: &Tensor, v: f32) -> Result<Tensor> {
    t.affine(f64::from(v), 0.0)
}

/// A 0-dimensional f32 on `like`'s device, for exact division by a scalar.
fn scalar(like: &Tensor, v: f32) -> Result<Tensor> {
    Tensor::new(v, like.device())
}

fn msg(e: SchedulerError) -> candle_core::Error {
    candle_core::Error::Msg(format!("scheduler: {}", e.0))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 137.0 - 3.5)
            .collect()
    }

    /// Every sampler's device update equals the host scheduler's bit for bit (candle's CPU
    /// backend), over whole trajectories, for ε and v prediction (and DDIM's x₀ clipping).
    #[test]
    fn device_steps_equal_the_host_bit_for_bit() {
        let n = 64;
        let tensor = |v: &[f32]| Tensor::from_slice(v, n, &Device::Cpu).unwrap();
        let cases = [
            (PredictionType::Epsilon, false),
            (PredictionType::Epsilon, true),
            (PredictionType::VPrediction, false),
        ];
        for (prediction_type, clip_sample) in cases {
            let config =
                SchedulerConfig { prediction_type, clip_sample, ..SchedulerConfig::sd15() };
            for kind in [SamplerKind::Ddim, SamplerKind::Euler, SamplerKind::Lms, SamplerKind::Lcm]
            {
                let mut device = Sampler::new(kind, &config, 8).unwrap();
                let mut host = Sampler::new(kind, &config, 8).unwrap();
                let (mut x_host, mut x_dev) = (values(n, 1), tensor(&values(n, 1)));
                for k in 0..8 {
                    let pred = values(n, 10 + k as u32);
                    let scaled = device.scale_input(&x_dev, k).unwrap();
                    assert_eq!(scaled.to_vec1::<f32>().unwrap(), host_scale(&host, &x_host, k));
                    let z = values(n, 100 + k as u32);
                    let fresh = device.renoises(k).then(|| tensor(&z));
                    x_dev = device.step(&tensor(&pred), k, &x_dev, fresh.as_ref()).unwrap();
                    x_host = host_step(&mut host, &pred, k, &x_host, &z);
                    let what = format!("{kind:?} {prediction_type:?} clip {clip_sample} k {k}");
                    assert_eq!(x_dev.to_vec1::<f32>().unwrap(), x_host, "{what}");
                }
            }
        }
    }

    fn host_scale(s: &Sampler, x: &[f32], k: usize) -> Vec<f32> {
        match s {
            Sampler::Ddim(s) => s.scale_model_input(x),
            Sampler::Euler(s) => s.scale_model_input(x, k).unwrap(),
            Sampler::Lms(s, _) => s.scale_model_input(x, k).unwrap(),
            Sampler::Lcm(s) => s.scale_model_input(x),
        }
    }

    fn host_step(s: &mut Sampler, pred: &[f32], k: usize, x: &[f32], z: &[f32]) -> Vec<f32> {
        match s {
            Sampler::Ddim(s) => s.step(pred, s.timesteps()[k], x).unwrap().prev_sample,
            Sampler::Euler(s) => s.step(pred, k, x).unwrap().prev_sample,
            Sampler::Lms(s, _) => s.step(pred, k, x).unwrap().prev_sample,
            Sampler::Lcm(s) => s.step(pred, k, x, Some(z)).unwrap().prev_sample,
        }
    }
}
