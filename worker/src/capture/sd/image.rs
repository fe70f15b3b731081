//! Real-image mode (papers 001, 003): VAE-encode each image (latent distribution mean × the
//! VAE's scaling factor), noise it to t = 10n − 9 with seeded ε, and run the U-Net once per
//! (noise level, conditioning). Guidance does not change a single pass's activations, so only
//! the conditioning that is recorded is computed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use common::spec::{Conditioning, ImageTransform};
use sd::scheduler::{add_noise, noise_level_to_timestep};

use super::noise::{seed_for, SeededNormal};
use super::objects::MaskSource;
use super::sampler::ddim_step;
use super::transform::{self, Resample};
use super::{model_err, PassRecording, Recording, SdCapture};
use crate::capture::Stimuli;
use crate::error::UnitError;

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// An object's box centre (x, y) in pixels.
type Centre = (f64, f64);

/// Clean latents of a batch, their seeded noise, and the batch's object masks (if recorded).
pub(super) struct Noised<'a> {
    pub(super) z0: &'a [f32],
    pub(super) eps: &'a [f32],
    pub(super) masks: Option<&'a Tensor>,
    /// Several objects per image: each object's image row (masks are per object).
    pub(super) expand: Option<&'a Tensor>,
}

/// The images of a batch of stimuli (module doc of `super::objects`).
struct BatchImages {
    /// Image stems in `capture.image.folder`, distinct, in order of first appearance.
    names: Vec<String>,
    /// Each stimulus's row in `names`.
    of_stimulus: Vec<usize>,
    /// Each stimulus's mask file and, for an instance map, its value there.
    masks: Option<Vec<(PathBuf, Option<u8>)>>,
}

/// The image file of `stimulus` in `folder` (`.png`, `.jpg` or `.jpeg`).
fn image_path(folder: &Path, stimulus: &str) -> Result<PathBuf, String> {
    EXTENSIONS
        .iter()
        .map(|ext| folder.join(format!("{stimulus}.{ext}")))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no image for stimulus {stimulus:?}: {}/{stimulus}.png (or .jpg) is missing",
                folder.display()
            )
        })
}

/// Checks that an image exists and has the run's size, reading only its header.
pub fn check_image(
    folder: &Path,
    stimulus: &str,
    height: usize,
    width: usize,
) -> Result<PathBuf, String> {
    let path = image_path(folder, stimulus)?;
    let (w, h) = ::image::image_dimensions(&path)
        .map_err(|e| format!("{}: cannot read the image: {e}", path.display()))?;
    if (h as usize, w as usize) != (height, width) {
        return Err(format!(
            "{}: image is {w}×{h} px, expected {width}×{height} (capture.image.width × height)",
            path.display()
        ));
    }
    Ok(path)
}

/// Loads object masks through `transform` (nearest) as `b × 1 × H × W` weights in [0, 1], with
/// each object's box centre before the transform (where a crop centres); an empty mask, before
/// or after the transform, is an error.
fn load_masks(
    paths: &[(PathBuf, Option<u8>)],
    transform: Option<ImageTransform>,
) -> Result<(Vec<f32>, Vec<Centre>), UnitError> {
    let mut values = Vec::new();
    let mut centres = Vec::new();
    for (path, value) in paths {
        let mut luma = ::image::open(path)
            .map_err(|e| {
                UnitError::Invalid(format!("{}: cannot read the mask: {e}", path.display()))
            })?
            .to_luma8();
        if let Some(v) = value {
            // An instance map: the object is the pixels of its value.
            luma.pixels_mut().for_each(|p| p.0[0] = if p.0[0] == *v { 255 } else { 0 });
        }
        let centre = transform::box_centre(&luma);
        if let Some(t) = transform {
            luma = transform::apply(&luma, t, centre, Resample::Nearest);
        }
        let before = values.len();
        values.extend(luma.pixels().map(|p| p.0[0] as f32 / 255.0));
        if values[before..].iter().all(|&v| v == 0.0) {
            let seen = transform.map_or(String::new(), |t| format!(" through {t}"));
            let of = value.map_or(String::new(), |v| format!(" (value {v})"));
            return Err(UnitError::Invalid(format!(
                "{}: the mask{of} is empty{seen}",
                path.display()
            )));
        }
        centres.push(centre);
    }
    Ok((values, centres))
}

/// Loads images through `transform` (bilinear; a crop centred on `centres[i]`, else on the
/// frame) as `b × 3 × H × W` values in [−1, 1].
fn load_images(
    paths: &[PathBuf],
    height: usize,
    width: usize,
    transform: Option<ImageTransform>,
    centres: Option<&[(f64, f64)]>,
) -> Result<Vec<f32>, UnitError> {
    let mut values = Vec::with_capacity(paths.len() * 3 * height * width);
    for (i, path) in paths.iter().enumerate() {
        let mut rgb = ::image::open(path)
            .map_err(|e| {
                UnitError::Invalid(format!("{}: cannot read the image: {e}", path.display()))
            })?
            .to_rgb8();
        if let Some(t) = transform {
            let frame = (width as f64 / 2.0, height as f64 / 2.0);
            let centre = centres.map_or(frame, |c| c[i]);
            rgb = transform::apply(&rgb, t, centre, Resample::Bilinear);
        }
        for c in 0..3 {
            values.extend(rgb.pixels().map(|p| p.0[c] as f32 / 127.5 - 1.0));
        }
    }
    Ok(values)
}

impl SdCapture {
    /// Runs one batch of real images; returns (block, `b × D` values) per representation.
    pub(super) fn image_batch(
        &self,
        part: &Stimuli<'_>,
        rec: &Recording,
    ) -> Result<Vec<(usize, Vec<f32>)>, UnitError> {
        let b = part.names.len();
        let (height, width) = (self.size.height, self.size.width);
        let folder = &self.capture.image.folder;
        let batch = self.batch_images(part)?;
        let images = batch.names.len();
        let paths: Vec<PathBuf> = batch
            .names
            .iter()
            .map(|s| check_image(folder, s, height, width).map_err(UnitError::Invalid))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        let needs_prompt =
            !rec.text.is_empty() || rec.images.keys().any(|(_, _, c)| *c == Conditioning::Prompt);
        let prompt = if needs_prompt {
            Some(self.encode_text(part.texts, part.first, 0, true, rec, &mut out)?)
        } else {
            None
        };
        let empty = if rec.images.keys().any(|(_, _, c)| *c == Conditioning::Empty) {
            Some(self.encode_text(&[], part.first, images, false, rec, &mut out)?)
        } else {
            None
        };
        let expand = match &self.objects {
            Some(_) => {
                let index: Vec<u32> = batch.of_stimulus.iter().map(|&i| i as u32).collect();
                Some(Tensor::from_vec(index, b, &self.device).map_err(|e| model_err(folder, e))?)
            }
            None => None,
        };
        let transforms: BTreeSet<Option<ImageTransform>> =
            rec.images.keys().map(|(t, _, _)| *t).collect();
        let mut sums = BTreeMap::new();
        for transform in transforms {
            // Masks are read whenever a crop needs the object's centre, loaded when recorded.
            let masks = match &batch.masks {
                Some(m) if rec.masked || transform.is_some() => Some(load_masks(m, transform)?),
                _ => None,
            };
            // Without an objects table, stimulus i is image i: its centre is its object's.
            let centres =
                masks.as_ref().filter(|_| self.objects.is_none()).map(|(_, c)| c.as_slice());
            let pixels = load_images(&paths, height, width, transform, centres)?;
            let z0 = self.encode_pixels(pixels, images)?;
            let per = z0.len() / images;
            // The same noise for every transform of an image: differences are the transform's.
            let eps: Vec<f32> = batch
                .names
                .iter()
                .flat_map(|s| SeededNormal::new(seed_for(self.capture.seed, s, 0)).take(per))
                .collect();
            let masks = match masks {
                Some((values, _)) if rec.masked => {
                    let t = Tensor::from_vec(values, (b, 1, height, width), &self.device);
                    Some(t.map_err(|e| model_err(folder, e))?)
                }
                _ => None,
            };
            let contexts = [empty.as_ref(), prompt.as_ref()];
            let noised =
                Noised { z0: &z0, eps: &eps, masks: masks.as_ref(), expand: expand.as_ref() };
            self.noised_passes(&noised, contexts, rec, transform, images, &mut sums)?;
        }
        self.drain(sums, 1, &mut out)?;
        Ok(out)
    }

    /// The distinct images of a batch (in order of first appearance), each stimulus's image row,
    /// and each stimulus's mask file (with its value in an instance map), if masks are given.
    fn batch_images(&self, part: &Stimuli<'_>) -> Result<BatchImages, UnitError> {
        let (height, width) = (self.size.height, self.size.width);
        let masks_dir = self.capture.image.masks.as_deref();
        let Some(table) = &self.objects else {
            let masks = match masks_dir {
                Some(dir) => Some(
                    part.names
                        .iter()
                        .map(|s| {
                            Ok((
                                check_image(dir, s, height, width).map_err(UnitError::Invalid)?,
                                None,
                            ))
                        })
                        .collect::<Result<Vec<_>, UnitError>>()?,
                ),
                None => None,
            };
            let names = part.names.to_vec();
            return Ok(BatchImages { of_stimulus: (0..names.len()).collect(), names, masks });
        };
        let dir = masks_dir.expect("the spec requires masks with an objects table");
        let mut names: Vec<String> = Vec::new();
        let mut of_stimulus = Vec::new();
        let mut masks = Vec::new();
        for s in part.names {
            let object = table.get(s).ok_or_else(|| {
                UnitError::Invalid(format!("stimulus {s:?} is not in capture.image.objects"))
            })?;
            let row = match names.iter().position(|n| *n == object.image) {
                Some(row) => row,
                None => {
                    names.push(object.image.clone());
                    names.len() - 1
                }
            };
            of_stimulus.push(row);
            masks.push(match &object.mask {
                MaskSource::File(file) => (dir.join(file), None),
                MaskSource::Value(v) => {
                    let path = check_image(dir, &object.image, height, width)
                        .map_err(UnitError::Invalid)?;
                    (path, Some(*v))
                }
            });
        }
        Ok(BatchImages { names, of_stimulus, masks: Some(masks) })
    }

    /// VAE latents of images: the distribution mean × the scaling factor, `b × C × h × w`.
    #[cfg(test)]
    pub(super) fn encode_images(&self, paths: &[PathBuf]) -> Result<Vec<f32>, UnitError> {
        let (height, width) = (self.size.height, self.size.width);
        self.encode_pixels(load_images(paths, height, width, None, None)?, paths.len())
    }

    /// VAE latents of `b` images given as `b × 3 × H × W` values in [−1, 1].
    fn encode_pixels(&self, pixels: Vec<f32>, b: usize) -> Result<Vec<f32>, UnitError> {
        let (height, width) = (self.size.height, self.size.width);
        let vae = self.vae.as_ref().expect("image mode loads the VAE");
        let vae_err = |e: &dyn std::fmt::Display| model_err(&self.dir.join("vae"), e);
        let pixels = Tensor::from_vec(pixels, (b, 3, height, width), &self.device)
            .and_then(|t| t.to_dtype(self.dtype))
            .map_err(|e| vae_err(&e))?;
        let z0 = vae.encode_mean(&pixels).map_err(|e| vae_err(&e))?;
        (z0 * vae.scaling_factor())
            .and_then(|z| z.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| vae_err(&e))
    }

    /// One U-Net pass per (noise level, conditioning) of `rec` under `transform`, then with
    /// `denoise_steps` deterministic DDIM steps from there (img2img, no guidance), recording
    /// after each step asked; `contexts` holds the encoded empty prompt and stimulus prompts
    /// (each present when some pass needs it).
    pub(super) fn noised_passes(
        &self,
        noised: &Noised<'_>,
        contexts: [Option<&Tensor>; 2],
        rec: &Recording,
        transform: Option<ImageTransform>,
        b: usize,
        sums: &mut BTreeMap<usize, Tensor>,
    ) -> Result<(), UnitError> {
        let alphas = self.scheduler.alphas_cumprod();
        let passes = rec.images.iter().filter(|((t, _, _), _)| *t == transform);
        for (&(_, n, cond), steps) in passes {
            let t = noise_level_to_timestep(n).map_err(|e| UnitError::Invalid(e.0))?;
            let noisy = add_noise(&alphas, noised.z0, noised.eps, t)
                .map_err(|e| UnitError::Invalid(e.0))?;
            let context = match cond {
                Conditioning::Empty => contexts[0],
                Conditioning::Prompt => contexts[1],
            }
            .expect("the caller encoded every conditioning it records");
            let mut latents = self.latent_f32(noisy, b)?;
            let last = steps.keys().filter_map(|d| *d).max().unwrap_or(0);
            let ddim = match last {
                0 => None,
                _ => Some(self.img2img_schedule()?),
            };
            let mut t = t;
            for d in 0..=last {
                let taps = steps.get(&Some(d)).or(if d == 0 { steps.get(&None) } else { None });
                let what = PassRecording {
                    taps,
                    rows: (0, b),
                    minus: None,
                    masks: noised.masks,
                    expand: noised.expand,
                };
                let x = latents.to_dtype(self.dtype).map_err(|e| self.unet_error(e))?;
                let pred = self.unet_pass(&x, t as f64, context, what, sums)?;
                let Some(ddim) = ddim.as_ref().filter(|_| d < last) else { break };
                let s = ddim.step_scalars(t, 0.0).map_err(|e| UnitError::Invalid(e.0))?;
                let pred =
                    pred.to_dtype(candle_core::DType::F32).map_err(|e| self.unet_error(e))?;
                latents = ddim_step(&s, &pred, &latents).map_err(|e| self.unet_error(e))?;
                t -= self.scheduler.num_train_timesteps / self.capture.image.denoise_schedule;
            }
        }
        Ok(())
    }

    /// The DDIM schedule of `capture.image.denoise_steps`.
    fn img2img_schedule(&self) -> Result<sd::scheduler::Ddim, UnitError> {
        sd::scheduler::Ddim::new(&self.scheduler, self.capture.image.denoise_schedule)
            .map_err(|e| model_err(&self.dir.join("scheduler"), e.0))
    }

    fn unet_error(&self, e: candle_core::Error) -> UnitError {
        model_err(&self.dir.join("unet"), e)
    }
}
