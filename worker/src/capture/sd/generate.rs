//! Generation mode: the diffusers text-to-image loop with classifier-free guidance. The batch
//! is `[uncond…, cond…]`; taps record the cond half at the selected steps, and the loop stops
//! after the last recorded step since later steps cannot change what was recorded.

use std::collections::BTreeMap;

use std::path::Path;

use candle_core::{DType, Tensor};
use common::spec::SamplerKind;

use super::noise::{seed_for, SeededNormal};
use super::{model_err, PassRecording, Recording, SdCapture};
use crate::capture::scheduler::{
    Ddim, DdimScalars, Euler, Lms, PredictionType, SchedulerError, StepOutput,
};
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
        let save = part.images.filter(|_| self.decoder.is_some());
        if rec.steps.is_empty() && save.is_none() {
            return Ok(out);
        }
        let mut sums = BTreeMap::new();
        for replicate in 0..g.replicates {
            let noise = self.initial_noise(part.names, replicate);
            let last = self.denoise(noise, &context, rec, b, save.is_some(), &mut sums)?;
            if let (Some(dir), Some(latents)) = (save, last) {
                self.save_images(dir, part.names, replicate, latents)?;
            }
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
        to_the_end: bool,
        sums: &mut BTreeMap<usize, Tensor>,
    ) -> Result<Option<Vec<f32>>, UnitError> {
        let g = &self.capture.generate;
        let guided = g.guidance > 1.0;
        let cond = if guided { (b, b) } else { (0, b) };
        // Later steps cannot change what was recorded, so stop after the last recorded one
        // unless the final image is wanted.
        let last = match (to_the_end, rec.steps.keys().next_back()) {
            (true, _) => g.steps - 1,
            (false, Some(&k)) => k,
            (false, None) => return Ok(None),
        };
        let sched_err = |e: SchedulerError| model_err(&self.dir.join("scheduler"), e.0);
        let unet_err = |e: candle_core::Error| model_err(&self.dir.join("unet"), e);
        let mut sampler = Sampler::new(g.scheduler, self, g.steps).map_err(sched_err)?;
        let sigma = sampler.init_noise_sigma();
        // The latents stay on the device in f32; DDIM steps there too, so a step moves nothing
        // to the host. Euler and LMS step on the host (one round trip per step).
        let scaled: Vec<f32> = noise.into_iter().map(|z| z * sigma).collect();
        let mut latents = self.latent_f32(scaled, b)?;
        for k in 0..=last {
            let x = match &sampler {
                Sampler::Ddim(_) => latents.to_dtype(self.dtype).map_err(unet_err)?,
                _ => {
                    let host = latents.flatten_all().and_then(|l| l.to_vec1()).map_err(unet_err)?;
                    let input = sampler.scale_model_input(&host, k).map_err(sched_err)?;
                    self.latent_tensor(input, b)?
                }
            };
            let x = if guided { Tensor::cat(&[&x, &x], 0).map_err(unet_err)? } else { x };
            let t = sampler.timestep(k);
            let what = PassRecording { taps: rec.steps.get(&k), rows: cond, masks: None };
            let pred = self.unet_pass(&x, t, context, what, sums)?;
            if k == last && !to_the_end {
                break;
            }
            let pred = pred.to_dtype(DType::F32).map_err(unet_err)?;
            let noise = if guided { guide(&pred, b, g.guidance).map_err(unet_err)? } else { pred };
            latents = match &mut sampler {
                Sampler::Ddim(s) => {
                    let scalars = s.step_scalars(s.timesteps()[k], 0.0).map_err(sched_err)?;
                    ddim_step(&scalars, &noise, &latents).map_err(unet_err)?
                }
                _ => {
                    let to_host = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>());
                    let (noise, host) =
                        (to_host(&noise).map_err(unet_err)?, to_host(&latents).map_err(unet_err)?);
                    let prev = sampler.step(&noise, k, &host).map_err(sched_err)?.prev_sample;
                    self.latent_f32(prev, b)?
                }
            };
        }
        let latents = match to_the_end {
            true => Some(latents.flatten_all().and_then(|l| l.to_vec1()).map_err(unet_err)?),
            false => None,
        };
        Ok(latents)
    }

    /// Decodes final latents and writes `dir/{stimulus}.r{replicate}.png` atomically.
    fn save_images(
        &self,
        dir: &Path,
        names: &[String],
        replicate: usize,
        latents: Vec<f32>,
    ) -> Result<(), UnitError> {
        let decoder = self.decoder.as_ref().expect("loaded when images are saved");
        let latents = self.latent_tensor(latents, names.len())?;
        let pixels =
            decoder.decode_rgb8(&latents).map_err(|e| model_err(&self.dir.join("vae"), e))?;
        let (h, w) = (self.size.height as u32, self.size.width as u32);
        std::fs::create_dir_all(dir)
            .map_err(|e| common::error::DataError::Io { path: dir.into(), source: e })?;
        for (name, rgb) in names.iter().zip(pixels) {
            let image = ::image::RgbImage::from_raw(w, h, rgb).expect("H × W × 3 pixels");
            let mut png = std::io::Cursor::new(Vec::new());
            image
                .write_to(&mut png, ::image::ImageFormat::Png)
                .map_err(|e| UnitError::Invalid(format!("cannot encode a PNG: {e}")))?;
            let file = dir.join(format!("{}.r{replicate}.png", file_stem(name)));
            common::fs::write_bytes_atomic(&file, png.get_ref())?;
        }
        Ok(())
    }
}

/// Classifier-free guidance on the device: `u + g·(c − u)` over the `[uncond…, cond…]` halves of
/// `pred` (f32), in the host formula's order of operations.
fn guide(pred: &Tensor, b: usize, guidance: f64) -> candle_core::Result<Tensor> {
    let (u, c) = (pred.narrow(0, 0, b)?, pred.narrow(0, b, b)?);
    &u + (c - &u)?.affine(f64::from(guidance as f32), 0.0)?
}

/// The deterministic DDIM update on the device, in [`Ddim::step_eta`]'s order of operations
/// (so it gives the host's values bit for bit on a CPU).
fn ddim_step(s: &DdimScalars, pred: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    let scale = |t: &Tensor, v: f32| t.affine(f64::from(v), 0.0);
    let (x0, eps) = match s.prediction_type {
        PredictionType::Epsilon => {
            let sa = Tensor::new(s.sa, x.device())?;
            ((x - scale(pred, s.sb)?)?.broadcast_div(&sa)?, pred.clone())
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

/// A file-name-safe form of a stimulus name.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::capture::scheduler::SchedulerConfig;

    /// The device DDIM update and guidance give the host's values bit for bit (on candle's CPU
    /// backend), for ε and v prediction, with and without x₀ clipping.
    #[test]
    fn device_ddim_step_and_guidance_equal_the_host_bit_for_bit() {
        let n = 64;
        let values = |seed: u32| -> Vec<f32> {
            (0..n)
                .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 137.0 - 3.5)
                .collect()
        };
        let (x, m, u, c) = (values(1), values(2), values(3), values(4));
        let dev = Device::Cpu;
        let tensor = |v: &[f32]| Tensor::from_slice(v, n, &dev).unwrap();
        for (prediction_type, clip_sample) in [
            (PredictionType::Epsilon, false),
            (PredictionType::Epsilon, true),
            (PredictionType::VPrediction, false),
        ] {
            let config =
                SchedulerConfig { prediction_type, clip_sample, ..SchedulerConfig::sd15() };
            let ddim = Ddim::new(&config, 10).unwrap();
            for &t in ddim.timesteps() {
                let host = ddim.step(&m, t, &x).unwrap().prev_sample;
                let scalars = ddim.step_scalars(t, 0.0).unwrap();
                let device = ddim_step(&scalars, &tensor(&m), &tensor(&x)).unwrap();
                assert_eq!(device.to_vec1::<f32>().unwrap(), host, "{prediction_type:?} t = {t}");
            }
        }
        let host: Vec<f32> = u.iter().zip(&c).map(|(&u, &c)| u + 7.5_f32 * (c - u)).collect();
        let both = Tensor::cat(&[tensor(&u), tensor(&c)], 0).unwrap();
        assert_eq!(guide(&both, n, 7.5).unwrap().to_vec1::<f32>().unwrap(), host);
    }
}
