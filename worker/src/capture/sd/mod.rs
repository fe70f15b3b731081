//! Stable Diffusion 1.x / 2.x capture (science.md part A). The models are the `sd` crate's;
//! this module drives them: tokenises prompts, runs the sampler loop (generation mode) or one
//! noised pass per real image (image mode), and turns tap outputs into feature blocks through
//! on-device reductions.

#[cfg(test)]
mod batch_parity;
mod generate;
mod image;
pub use self::image::check_image;
mod noise;
mod objects;
#[cfg(test)]
pub(super) mod parity;
mod reduce;
mod sampler;
mod tokenizer;
pub use self::objects::{MaskSource, ObjectSource, ObjectTable};
mod transform;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::spec::{
    CaptureMode, CaptureSection, Conditioning, ImageTransform, ModelSection, Pooling, StorageDtype,
};
use common::table::FeatureBlock;
use common::unit::Representation;
use sd::scheduler::SchedulerConfig;
use serde_json::Value;

use self::reduce::PassTaps;
use self::tokenizer::ClipTokenizer;
use super::{Stimuli, TapInfo};
use crate::error::UnitError;

/// A loaded Stable Diffusion pipeline.
pub(super) struct SdCapture {
    text: sd::TextEncoder,
    unet: sd::UNet,
    vae: Option<sd::Vae>,
    decoder: Option<sd::VaeDecoder>,
    tokenizer: ClipTokenizer,
    scheduler: SchedulerConfig,
    capture: CaptureSection,
    size: ImageSize,
    device: Device,
    dtype: DType,
    dir: PathBuf,
    /// `capture.image.objects`: several objects per image.
    objects: Option<ObjectTable>,
}

/// Pixel and latent sizes of a run.
#[derive(Debug, Clone, Copy)]
struct ImageSize {
    height: usize,
    width: usize,
    factor: usize,
}

impl ImageSize {
    fn latent(self) -> (usize, usize) {
        (self.height / self.factor, self.width / self.factor)
    }
}

fn model_err(path: &Path, e: impl std::fmt::Display) -> UnitError {
    UnitError::Model { path: path.display().to_string(), message: e.to_string() }
}

fn read_json(path: &Path) -> Result<Value, UnitError> {
    let text = std::fs::read_to_string(path).map_err(|e| model_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| model_err(path, format!("not JSON: {e}")))
}

fn usize_field(config: &Value, file: &Path, key: &str) -> Result<usize, UnitError> {
    config[key]
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| model_err(file, format!("missing or non-integer field {key:?}")))
}

/// The image size of a run: the spec's, else the U-Net's `sample_size` × the VAE's factor.
fn image_size(dir: &Path, capture: &CaptureSection) -> Result<ImageSize, UnitError> {
    let vae_file = dir.join("vae/config.json");
    let blocks = read_json(&vae_file)?["block_out_channels"].as_array().map_or(0, Vec::len);
    if blocks == 0 {
        return Err(model_err(&vae_file, "missing field \"block_out_channels\""));
    }
    let factor = 1 << (blocks - 1);
    let unet_file = dir.join("unet/config.json");
    let unet = read_json(&unet_file)?;
    let native = usize_field(&unet, &unet_file, "sample_size")? * factor;
    let unet_factor = 1 << (unet["block_out_channels"].as_array().map_or(1, Vec::len).max(1) - 1);
    let (section, h, w) = match capture.mode {
        CaptureMode::Generate => {
            ("capture.generate", capture.generate.height, capture.generate.width)
        }
        CaptureMode::Image => ("capture.image", capture.image.height, capture.image.width),
    };
    let (height, width) = (h.unwrap_or(native), w.or(h).unwrap_or(native));
    for (key, v) in [("height", height), ("width", width)] {
        if v % (factor * unet_factor) != 0 {
            return Err(UnitError::Invalid(format!(
                "{section}.{key} = {v} is not a multiple of {} (VAE ×{factor}, U-Net ×{unet_factor})",
                factor * unet_factor
            )));
        }
    }
    Ok(ImageSize { height, width, factor })
}

/// The (height, width) in pixels of a run's images.
pub(super) fn pixel_size(
    dir: &Path,
    capture: &CaptureSection,
) -> Result<(usize, usize), UnitError> {
    let size = image_size(dir, capture)?;
    Ok((size.height, size.width))
}

/// The spec's `model.lora` as the `sd` crate's merges.
fn loras(model: &ModelSection) -> Vec<sd::Lora> {
    model.lora.iter().map(|l| sd::Lora { path: l.path.clone(), scale: l.scale }).collect()
}

/// Text taps (`text.0..=L`, `text.final`) and U-Net taps at the run's image size; checks that
/// the model's LoRAs merge and that its schedule runs the spec's sampler.
pub(super) fn taps(
    model: &ModelSection,
    capture: &CaptureSection,
) -> Result<Vec<TapInfo>, UnitError> {
    let dir = &model.path;
    let text_file = dir.join("text_encoder/config.json");
    let text = read_json(&text_file)?;
    let layers = usize_field(&text, &text_file, "num_hidden_layers")?;
    let width = usize_field(&text, &text_file, "hidden_size")?;
    let size = image_size(dir, capture)?;
    let unet_dir = dir.join("unet");
    // Only the layout is needed: f16 halves what the plan holds in memory.
    let unet = sd::UNet::load_with_loras(&unet_dir, DType::F16, &Device::Cpu, &loras(model))
        .map_err(|e| model_err(&unet_dir, e))?;
    if capture.mode == CaptureMode::Generate {
        let file = dir.join("scheduler/scheduler_config.json");
        let config = SchedulerConfig::from_file(&file).map_err(|e| model_err(&file, e.0))?;
        let g = &capture.generate;
        sampler::Sampler::new(g.scheduler, &config, g.steps).map_err(|e| {
            UnitError::Invalid(format!(
                "capture.generate: the {:?} sampler cannot run {} steps on {}: {}",
                g.scheduler,
                g.steps,
                file.display(),
                e.0
            ))
        })?;
    }
    Ok(tap_infos(layers, width, unet.taps(), size))
}

/// Text taps `text.0..=L`, `text.final`, then the U-Net's taps sized for the run's latents.
fn tap_infos(
    layers: usize,
    width: usize,
    unet: Vec<sd::TapShape>,
    size: ImageSize,
) -> Vec<TapInfo> {
    let mut taps: Vec<TapInfo> =
        (0..=layers).map(|l| TapInfo::text(format!("text.{l}"), width)).collect();
    taps.push(TapInfo::text("text.final".into(), width));
    let (h, w) = size.latent();
    for tap in unet {
        let (sd::TapKind::Spatial { downsample: ds } | sd::TapKind::Tokens { downsample: ds }) =
            tap.kind;
        taps.push(TapInfo {
            name: tap.name,
            channels: tap.channels,
            positions: Some((h / ds) * (w / ds)),
        });
    }
    taps
}

/// What one U-Net pass records: its taps (if any), the batch rows kept, and the object masks
/// of those rows for `mask_mean`.
struct PassRecording<'a> {
    taps: Option<&'a PassTaps>,
    rows: (usize, usize),
    /// The start of rows to subtract from `rows` before reducing (`record = "delta"`).
    minus: Option<usize>,
    masks: Option<&'a Tensor>,
    /// Several objects per image: the image row of each recorded object row.
    expand: Option<&'a Tensor>,
}

/// A real-image pass: (transform, noise %, conditioning).
type ImagePass = (Option<ImageTransform>, u32, Conditioning);

/// What one batch must record: text representations, and the U-Net taps of each pass.
struct Recording {
    /// (block, hidden-state index (L + 1 = final), pooling).
    text: Vec<(usize, usize, Pooling)>,
    /// Generation: step k → taps. Image: (noise %, conditioning) → taps.
    steps: BTreeMap<usize, PassTaps>,
    /// Generation with `keep_replicates`: replicate → step k → the taps of that replicate's
    /// own rows (blocks that are not averaged).
    replicate_steps: BTreeMap<usize, BTreeMap<usize, PassTaps>>,
    /// Image: (transform, noise %, conditioning) → DDIM steps taken (`None` without
    /// `denoise_steps`) → taps.
    images: BTreeMap<ImagePass, BTreeMap<Option<u32>, PassTaps>>,
    /// Whether some representation is `mask_mean` (object masks must be loaded).
    masked: bool,
}

impl SdCapture {
    pub(super) fn load(
        model: &ModelSection,
        capture: &CaptureSection,
        device: Device,
        permuted: Option<u64>,
    ) -> Result<SdCapture, UnitError> {
        let dir = model.path.clone();
        let dtype = match model.dtype {
            StorageDtype::F32 => DType::F32,
            StorageDtype::F16 => DType::F16,
        };
        let at = |sub: &str| dir.join(sub);
        let sd_err = |sub: &str, e: sd::SdError| model_err(&at(sub), e);
        let loras = loras(model);
        let text = sd::TextEncoder::load_with_loras(&at("text_encoder"), dtype, &device, &loras)
            .map_err(|e| sd_err("text_encoder", e))?;
        let unet = match permuted {
            None => sd::UNet::load_with_loras(&at("unet"), dtype, &device, &loras),
            Some(seed) => sd::UNet::load_permuted(&at("unet"), dtype, &device, &loras, seed),
        }
        .map_err(|e| sd_err("unet", e))?;
        let vae = match capture.mode {
            CaptureMode::Image => {
                Some(sd::Vae::load(&at("vae"), dtype, &device).map_err(|e| sd_err("vae", e))?)
            }
            CaptureMode::Generate => None,
        };
        let decoder = match capture.mode {
            CaptureMode::Generate
                if capture.generate.save_images
                    || !capture.generate.save_step_images.is_empty() =>
            {
                Some(
                    sd::VaeDecoder::load(&at("vae"), dtype, &device)
                        .map_err(|e| sd_err("vae", e))?,
                )
            }
            _ => None,
        };
        let tokenizer = ClipTokenizer::load(&at("tokenizer"))?;
        let sched_file = at("scheduler/scheduler_config.json");
        let scheduler =
            SchedulerConfig::from_file(&sched_file).map_err(|e| model_err(&sched_file, e.0))?;
        let size = image_size(&dir, capture)?;
        let objects = match (&capture.image.objects, capture.mode) {
            (Some(path), CaptureMode::Image) => {
                Some(ObjectTable::read(path).map_err(UnitError::Invalid)?)
            }
            _ => None,
        };
        Ok(SdCapture {
            text,
            unet,
            vae,
            decoder,
            tokenizer,
            scheduler,
            capture: capture.clone(),
            size,
            device,
            dtype,
            dir,
            objects,
        })
    }

    pub(super) fn capture(
        &self,
        stimuli: &Stimuli<'_>,
        batch: usize,
        reps: &[Representation],
    ) -> Result<Vec<FeatureBlock>, UnitError> {
        let taps = self.tap_table();
        let mut blocks = Vec::with_capacity(reps.len());
        for r in reps {
            let tap = taps.iter().find(|t| t.name == r.tap).ok_or_else(|| {
                let names: Vec<&str> = taps.iter().map(|t| t.name.as_str()).collect();
                UnitError::Invalid(format!(
                    "unknown tap {:?}; valid taps are {}",
                    r.tap,
                    names.join(", ")
                ))
            })?;
            let dim = tap.dim(r.pooling);
            blocks.push(FeatureBlock {
                key: r.key(),
                dim,
                stimuli: Vec::new(),
                values: Vec::new(),
            });
        }
        let recording = self.recording(reps)?;
        let n = stimuli.texts.len();
        for start in (0..n).step_by(batch) {
            let end = (start + batch).min(n);
            let part = Stimuli {
                names: &stimuli.names[start..end],
                texts: &stimuli.texts[start..end],
                first: stimuli.first + start,
                images: stimuli.images,
            };
            let rows = match self.capture.mode {
                CaptureMode::Generate => self.generate_batch(&part, &recording)?,
                CaptureMode::Image => self.image_batch(&part, &recording)?,
            };
            for (block, values) in rows {
                let b = &mut blocks[block];
                debug_assert_eq!(values.len(), (end - start) * b.dim);
                b.stimuli.extend((part.first..part.first + end - start).map(|i| i as u32));
                b.values.extend(values);
            }
        }
        Ok(blocks)
    }

    fn tap_table(&self) -> Vec<TapInfo> {
        let cfg = self.text.config();
        tap_infos(cfg.num_hidden_layers, cfg.hidden_size, self.unet.taps(), self.size)
    }

    fn recording(&self, reps: &[Representation]) -> Result<Recording, UnitError> {
        let layers = self.text.config().num_hidden_layers;
        let mut rec = Recording {
            text: Vec::new(),
            steps: BTreeMap::new(),
            replicate_steps: BTreeMap::new(),
            images: BTreeMap::new(),
            masked: reps.iter().any(|r| r.pooling == Pooling::MaskMean),
        };
        for (block, r) in reps.iter().enumerate() {
            if let Some(layer) = r.tap.strip_prefix("text.") {
                let l =
                    if layer == "final" { layers + 1 } else { layer.parse().unwrap_or(usize::MAX) };
                rec.text.push((block, l, r.pooling));
                continue;
            }
            let entry = (block, r.pooling);
            match (self.capture.mode, r.step, r.noise, r.conditioning, r.replicate) {
                (CaptureMode::Generate, Some(k), None, None, None) => {
                    rec.steps.entry(k).or_default().entry(r.tap.clone()).or_default().push(entry)
                }
                (CaptureMode::Generate, Some(k), None, None, Some(replicate))
                    if (replicate as usize) < self.capture.generate.replicates =>
                {
                    let steps = rec.replicate_steps.entry(replicate as usize).or_default();
                    steps.entry(k).or_default().entry(r.tap.clone()).or_default().push(entry)
                }
                (CaptureMode::Image, None, Some(n), Some(c), None) => rec
                    .images
                    .entry((r.transform, n, c))
                    .or_default()
                    .entry(r.denoised)
                    .or_default()
                    .entry(r.tap.clone())
                    .or_default()
                    .push(entry),
                _ => {
                    return Err(UnitError::Invalid(format!(
                        "representation {} does not fit capture.mode = {:?}",
                        r.key(),
                        self.capture.mode
                    )))
                }
            }
        }
        Ok(rec)
    }

    /// Encodes `uncond` empty prompts followed by `prompts` (stimuli `first..`), records the text
    /// representations of the prompts when `record` is set, and returns the encoder's last
    /// hidden state (the U-Net's conditioning) for every row.
    fn encode_text(
        &self,
        prompts: &[String],
        first: usize,
        uncond: usize,
        record: bool,
        rec: &Recording,
        out: &mut Vec<(usize, Vec<f32>)>,
    ) -> Result<Tensor, UnitError> {
        let enc = self.tokenizer.encode(prompts, first)?;
        let empty = self.tokenizer.encode(&[String::new()], 0)?;
        let t = self.tokenizer.max_len();
        let mut ids: Vec<u32> = empty.ids.repeat(uncond);
        ids.extend(&enc.ids);
        let b = uncond + prompts.len();
        let fail = |e: candle_core::Error| model_err(&self.dir.join("text_encoder"), e);
        let ids = Tensor::from_vec(ids, (b, t), &self.device).map_err(fail)?;
        let states =
            self.text.forward(&ids).map_err(|e| model_err(&self.dir.join("text_encoder"), e))?;
        let text_rows = (record && !rec.text.is_empty()).then_some((uncond, prompts.len()));
        if let Some((start, len)) = text_rows {
            let lengths: Vec<u32> = enc.lengths.iter().map(|&l| l as u32).collect();
            let mask: Vec<u32> = lengths
                .iter()
                .flat_map(|&l| (0..t as u32).map(move |i| u32::from(i < l)))
                .collect();
            let run = || -> candle_core::Result<Vec<(usize, Vec<f32>)>> {
                let lengths = Tensor::from_vec(lengths, len, &self.device)?;
                let mask = Tensor::from_vec(mask, (len, t), &self.device)?;
                let mut rows = Vec::new();
                for &(block, l, pooling) in &rec.text {
                    let h = if l > states.hidden_states.len() - 1 {
                        &states.last_hidden_state
                    } else {
                        &states.hidden_states[l]
                    };
                    let h = h.narrow(0, start, len)?.to_dtype(DType::F32)?;
                    let pooled = super::tokens::pool(&h, &mask, &lengths, pooling)?;
                    rows.push((block, pooled.flatten_all()?.to_vec1::<f32>()?));
                }
                Ok(rows)
            };
            out.extend(run().map_err(fail)?);
        }
        Ok(states.last_hidden_state)
    }

    /// Runs one U-Net pass, recording what `what` asks for; returns the output.
    fn unet_pass(
        &self,
        sample: &Tensor,
        timestep: f64,
        context: &Tensor,
        what: PassRecording<'_>,
        sums: &mut BTreeMap<usize, Tensor>,
    ) -> Result<Tensor, UnitError> {
        let fail = |e: &dyn std::fmt::Display| model_err(&self.dir.join("unet"), e);
        let empty = PassTaps::new();
        let (start, len) = what.rows;
        let taps = what.taps.unwrap_or(&empty);
        let mut sink = reduce::ReducingSink::new(taps, start, len, what.masks)
            .minus(what.minus)
            .expand(what.expand);
        let out = self.unet.forward(sample, timestep, context, &mut sink).map_err(|e| fail(&e))?;
        for (block, value) in sink.finish() {
            let sum = match sums.remove(&block) {
                Some(prev) => (prev + value).map_err(|e| fail(&e))?,
                None => value,
            };
            sums.insert(block, sum);
        }
        Ok(out)
    }

    /// Copies accumulated reductions to the host, divided by `count`.
    fn drain(
        &self,
        sums: BTreeMap<usize, Tensor>,
        count: usize,
        out: &mut Vec<(usize, Vec<f32>)>,
    ) -> Result<(), UnitError> {
        for (block, sum) in sums {
            let mean = (sum / count as f64)
                .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                .map_err(|e| model_err(&self.dir.join("unet"), e))?;
            out.push((block, mean));
        }
        Ok(())
    }

    /// Values in one stimulus's latent (C × h × w).
    fn latent_len(&self) -> usize {
        let (h, w) = self.size.latent();
        self.unet.config().in_channels * h * w
    }

    fn latent_tensor(&self, values: Vec<f32>, b: usize) -> Result<Tensor, UnitError> {
        self.latent_f32(values, b)?
            .to_dtype(self.dtype)
            .map_err(|e| model_err(&self.dir.join("unet"), e))
    }

    /// `b` latents (`b × C × h × w`, f32) on the device.
    fn latent_f32(&self, values: Vec<f32>, b: usize) -> Result<Tensor, UnitError> {
        let (h, w) = self.size.latent();
        let c = self.unet.config().in_channels;
        Tensor::from_vec(values, (b, c, h, w), &self.device)
            .map_err(|e| model_err(&self.dir.join("unet"), e))
    }
}
