//! Generation mode: the diffusers text-to-image loop with classifier-free guidance. The batch
//! is `[uncond…, cond…]`; taps record the cond half at the selected steps, and the loop stops
//! after the last recorded step since later steps cannot change what was recorded.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use common::spec::SamplerKind;

use super::noise::{seed_for, SeededNormal};
use super::{model_err, Recording, SdCapture};
use crate::capture::scheduler::{Ddim, Euler, Lms, SchedulerError, StepOutput};
use crate::capture::Stimuli;
use crate::error::UnitError;

/// One of the supported samplers, behind one interface.
enum Sampler {
    Ddim(Ddim),
    Euler(Euler),
    Lms(Lms),
}

impl Sampler {
    fn new(kind: SamplerKind, sd: &SdCapture, steps: usize) -> Result<Sampler, SchedulerError> {
        Ok(match kind {
            SamplerKind::Ddim => Sampler::Ddim(Ddim::new(&sd.scheduler, steps)?),
            SamplerKind::Euler => Sampler::Euler(Euler::new(&sd.scheduler, steps)?),
            SamplerKind::Lms => Sampler::Lms(Lms::new(&sd.scheduler, steps)?),
        })
    }

    fn init_noise_sigma(&self) -> f32 {
        match self {
            Sampler::Ddim(s) => s.init_noise_sigma(),
            Sampler::Euler(s) => s.init_noise_sigma(),
            Sampler::Lms(s) => s.init_noise_sigma(),
        }
    }

    /// The U-Net timestep of step `k` (fractional for the sigma samplers, as in diffusers).
    fn timestep(&self, k: usize) -> f64 {
        match self {
            Sampler::Ddim(s) => s.timesteps()[k] as f64,
            Sampler::Euler(s) => s.timesteps()[k] as f64,
            Sampler::Lms(s) => s.timesteps()[k] as f64,
        }
    }

    fn scale_model_input(&self, x: &[f32], k: usize) -> Result<Vec<f32>, SchedulerError> {
        match self {
            Sampler::Ddim(s) => Ok(s.scale_model_input(x)),
            Sampler::Euler(s) => s.scale_model_input(x, k),
            Sampler::Lms(s) => s.scale_model_input(x, k),
        }
    }

    fn step(&mut self, out: &[f32], k: usize, x: &[f32]) -> Result<StepOutput, SchedulerError> {
        match self {
            Sampler::Ddim(s) => {
                let t = s.timesteps()[k];
                s.step(out, t, x)
            }
            Sampler::Euler(s) => s.step(out, k, x),
            Sampler::Lms(s) => s.step(out, k, x),
        }
    }
}

impl SdCapture {
    /// Generates one batch; returns (block, `b × D` values) for every representation.
    pub(super) fn generate_batch(
        &self,
        part: &Stimuli<'_>,
        rec: &Recording,
    ) -> Result<Vec<(usize, Vec<f32>)>, UnitError> {
        let g = &self.capture.generate;
        let b = part.texts.len();
        // diffusers skips the uncond half when guidance_scale ≤ 1.
        let guided = g.guidance > 1.0;
        let uncond = if guided { b } else { 0 };
        let mut out = Vec::new();
        let context = self.encode_text(part.texts, part.first, uncond, true, rec, &mut out)?;
        if rec.steps.is_empty() {
            return Ok(out);
        }
        let mut sums = BTreeMap::new();
        for replicate in 0..g.replicates {
            let noise = self.initial_noise(part.names, replicate);
            self.denoise(noise, &context, rec, b, &mut sums)?;
        }
        self.drain(sums, g.replicates, &mut out)?;
        Ok(out)
    }

    /// Standard-normal initial noise of one replicate, `b × C × h × w`, seeded per stimulus.
    fn initial_noise(&self, names: &[String], replicate: usize) -> Vec<f32> {
        let per = self.latent_len();
        let mut noise = Vec::with_capacity(names.len() * per);
        for name in names {
            let seed = seed_for(self.capture.seed, name, replicate);
            noise.extend(SeededNormal::new(seed).take(per));
        }
        noise
    }

    /// The sampler loop from `noise` up to the last recorded step, adding each recorded step's
    /// reductions of the cond rows to `sums`.
    pub(super) fn denoise(
        &self,
        noise: Vec<f32>,
        context: &Tensor,
        rec: &Recording,
        b: usize,
        sums: &mut BTreeMap<usize, Tensor>,
    ) -> Result<(), UnitError> {
        let g = &self.capture.generate;
        let guided = g.guidance > 1.0;
        let cond = if guided { (b, b) } else { (0, b) };
        let Some(&last) = rec.steps.keys().next_back() else { return Ok(()) };
        let sched_err = |e: SchedulerError| model_err(&self.dir.join("scheduler"), e.0);
        let unet_err = |e: candle_core::Error| model_err(&self.dir.join("unet"), e);
        let mut sampler = Sampler::new(g.scheduler, self, g.steps).map_err(sched_err)?;
        let sigma = sampler.init_noise_sigma();
        let mut latents: Vec<f32> = noise.into_iter().map(|z| z * sigma).collect();
        for k in 0..=last {
            let input = sampler.scale_model_input(&latents, k).map_err(sched_err)?;
            let x = self.latent_tensor(input, b)?;
            let x = if guided { Tensor::cat(&[&x, &x], 0).map_err(unet_err)? } else { x };
            let t = sampler.timestep(k);
            let pred = self.unet_pass(&x, t, context, rec.steps.get(&k), cond, None, sums)?;
            if k == last {
                break;
            }
            let pred = pred
                .to_dtype(DType::F32)
                .and_then(|p| p.flatten_all()?.to_vec1::<f32>())
                .map_err(unet_err)?;
            let noise = if guided {
                let (u, c) = pred.split_at(b * self.latent_len());
                let g = g.guidance as f32;
                u.iter().zip(c).map(|(&u, &c)| u + g * (c - u)).collect()
            } else {
                pred
            };
            latents = sampler.step(&noise, k, &latents).map_err(sched_err)?.prev_sample;
        }
        Ok(())
    }
}
