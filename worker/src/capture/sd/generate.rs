//! Generation mode: the diffusers text-to-image loop with classifier-free guidance. The batch
//! is `[uncond…, cond…]`; taps record the cond half at the selected steps (or the uncond half,
//! or cond − uncond: `capture.generate.record`), and the loop stops after the last recorded
//! step since later steps cannot change what was recorded.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use common::spec::GuidanceRecord;
use sd::scheduler::SchedulerError;

use super::noise::NoiseStreams;
use super::reduce::PassTaps;
use super::sampler::Sampler;
use super::{model_err, PassRecording, Recording, SdCapture};
use crate::capture::Stimuli;
use crate::error::UnitError;

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
        // Latents to decode: after each of `save_step_images`, and the final one.
        let dir = part.images.filter(|_| self.decoder.is_some());
        let final_step = g.steps - 1;
        let mut keep: Vec<usize> = g.save_step_images.clone();
        if g.save_images {
            keep.push(final_step);
        }
        if dir.is_none() {
            keep.clear();
        }
        if rec.steps.is_empty() && rec.replicate_steps.is_empty() && keep.is_empty() {
            return Ok(out);
        }
        let (mut sums, mut kept) = (BTreeMap::new(), BTreeMap::new());
        for replicate in 0..g.replicates {
            let mut streams = NoiseStreams::new(self.capture.seed, g.noise, part.names, replicate);
            let noise = streams.draw(self.latent_len());
            let own = rec.replicate_steps.get(&replicate);
            let steps = with_replicate(&rec.steps, own);
            let snapshots =
                self.denoise(noise, &mut streams, &context, &steps, b, &keep, &mut sums)?;
            // A replicate's own blocks were added once, in this replicate: move them aside
            // before the mean divides the rest.
            let own_blocks = own.into_iter().flat_map(|s| s.values()).flat_map(|t| t.values());
            for &(block, _) in own_blocks.flatten() {
                kept.extend(sums.remove_entry(&block));
            }
            let Some(dir) = dir else { continue };
            for (k, latents) in snapshots {
                if g.save_images && k == final_step {
                    self.save_images(dir, part.names, replicate, None, latents.clone())?;
                }
                if g.save_step_images.contains(&k) {
                    self.save_images(dir, part.names, replicate, Some(k), latents)?;
                }
            }
        }
        self.drain(sums, g.replicates, &mut out)?;
        self.drain(kept, 1, &mut out)?;
        Ok(out)
    }

    /// The sampler loop from `noise` up to the last recorded step, adding each recorded step's
    /// reductions (`steps`: step k → taps) of the cond rows to `sums`; a sampler that re-noises
    /// (LCM) draws from `streams`. Returns the latents after each step in `keep` (`b` latents,
    /// f32, on the host), running the loop far enough to make them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn denoise(
        &self,
        noise: Vec<f32>,
        streams: &mut NoiseStreams,
        context: &Tensor,
        steps: &BTreeMap<usize, PassTaps>,
        b: usize,
        keep: &[usize],
        sums: &mut BTreeMap<usize, Tensor>,
    ) -> Result<Vec<(usize, Vec<f32>)>, UnitError> {
        let g = &self.capture.generate;
        let guided = g.guidance > 1.0;
        // Validation makes uncond and delta imply guidance.
        let (rows, minus) = match (g.record, guided) {
            (_, false) => ((0, b), None),
            (GuidanceRecord::Cond, true) => ((b, b), None),
            (GuidanceRecord::Uncond, true) => ((0, b), None),
            (GuidanceRecord::Delta, true) => ((b, b), Some(0)),
        };
        // Later steps cannot change what was recorded, so stop after the last recorded one
        // unless a later latent is wanted (which needs that step taken, not only its pass).
        let last_kept = keep.iter().copied().max();
        let last = match (last_kept, steps.keys().next_back()) {
            (Some(s), Some(&k)) => s.max(k),
            (Some(s), None) => s,
            (None, Some(&k)) => k,
            (None, None) => return Ok(Vec::new()),
        };
        let mut snapshots = Vec::new();
        let sched_err = |e: SchedulerError| model_err(&self.dir.join("scheduler"), e.0);
        let unet_err = |e: candle_core::Error| model_err(&self.dir.join("unet"), e);
        let mut sampler = Sampler::new(g.scheduler, &self.scheduler, g.steps).map_err(sched_err)?;
        let sigma = sampler.init_noise_sigma();
        // The latents stay on the device in f32 and every sampler steps there, so a step
        // moves nothing to the host.
        let scaled: Vec<f32> = noise.into_iter().map(|z| z * sigma).collect();
        let mut latents = self.latent_f32(scaled, b)?;
        for k in 0..=last {
            let x = sampler
                .scale_input(&latents, k)
                .and_then(|x| x.to_dtype(self.dtype))
                .map_err(unet_err)?;
            let x = if guided { Tensor::cat(&[&x, &x], 0).map_err(unet_err)? } else { x };
            let t = sampler.timestep(k);
            let what =
                PassRecording { taps: steps.get(&k), rows, minus, masks: None, expand: None };
            let pred = self.unet_pass(&x, t, context, what, sums)?;
            if k == last && last_kept != Some(k) {
                break;
            }
            let pred = pred.to_dtype(DType::F32).map_err(unet_err)?;
            let noise = if guided { guide(&pred, b, g.guidance).map_err(unet_err)? } else { pred };
            let fresh = match sampler.renoises(k) {
                true => Some(self.latent_f32(streams.draw(self.latent_len()), b)?),
                false => None,
            };
            latents = sampler.step(&noise, k, &latents, fresh.as_ref()).map_err(unet_err)?;
            if keep.contains(&k) {
                snapshots
                    .push((k, latents.flatten_all().and_then(|l| l.to_vec1()).map_err(unet_err)?));
            }
        }
        Ok(snapshots)
    }

    /// Decodes latents and writes `dir/{stimulus}.r{replicate}.png` (the final image) or
    /// `dir/{stimulus}.r{replicate}.k{k}.png` (after step k) atomically.
    fn save_images(
        &self,
        dir: &Path,
        names: &[String],
        replicate: usize,
        step: Option<usize>,
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
            let stem = crate::dense_labels::file_stem(name);
            let file = match step {
                Some(k) => dir.join(format!("{stem}.r{replicate}.k{k}.png")),
                None => dir.join(format!("{stem}.r{replicate}.png")),
            };
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

/// The taps of every step: the replicate means' and, when given, one replicate's own.
fn with_replicate<'a>(
    mean: &'a BTreeMap<usize, PassTaps>,
    own: Option<&BTreeMap<usize, PassTaps>>,
) -> Cow<'a, BTreeMap<usize, PassTaps>> {
    let Some(own) = own else { return Cow::Borrowed(mean) };
    let mut steps = mean.clone();
    for (&k, taps) in own {
        let merged = steps.entry(k).or_default();
        for (tap, uses) in taps {
            merged.entry(tap.clone()).or_default().extend(uses.iter().copied());
        }
    }
    Cow::Owned(steps)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Guidance on the device equals the host formula bit for bit (candle's CPU backend).
    #[test]
    fn device_guidance_equals_the_host_bit_for_bit() {
        let n = 64;
        let values = |seed: u32| -> Vec<f32> {
            (0..n)
                .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 137.0 - 3.5)
                .collect()
        };
        let (u, c) = (values(3), values(4));
        let tensor = |v: &[f32]| Tensor::from_slice(v, n, &Device::Cpu).unwrap();
        let host: Vec<f32> = u.iter().zip(&c).map(|(&u, &c)| u + 7.5_f32 * (c - u)).collect();
        let both = Tensor::cat(&[tensor(&u), tensor(&c)], 0).unwrap();
        assert_eq!(guide(&both, n, 7.5).unwrap().to_vec1::<f32>().unwrap(), host);
    }
}
