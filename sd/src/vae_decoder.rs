//! `VaeDecoder`: the decoder half of diffusers' `AutoencoderKL`, to turn generated latents into
//! images. candle's `AutoEncoderKL::decode` is public and equal to diffusers' decoder (it reads
//! both the old and the new attention weight names), so it is used as is; its encoder weights are
//! loaded too but never run.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::stable_diffusion::vae::{AutoEncoderKL, AutoEncoderKLConfig};

use crate::error::SdError;
use crate::files::ComponentFiles;
use crate::vae::VaeConfig;

/// The VAE decoder of a Stable Diffusion model.
pub struct VaeDecoder {
    inner: AutoEncoderKL,
    scaling_factor: f64,
    dtype: DType,
}

impl VaeDecoder {
    /// Loads `vae_dir/config.json` and its weights (as [`crate::Vae::load`] does).
    pub fn load(vae_dir: &Path, dtype: DType, device: &Device) -> Result<VaeDecoder, SdError> {
        let files = ComponentFiles::locate(vae_dir, "diffusion_pytorch_model")?;
        let (config, _): (VaeConfig, _) = files.read_config()?;
        let vb = files.var_builder(dtype, device)?;
        let cfg = AutoEncoderKLConfig {
            block_out_channels: config.block_out_channels.clone(),
            layers_per_block: config.layers_per_block,
            latent_channels: config.latent_channels,
            norm_num_groups: config.norm_num_groups,
            use_quant_conv: config.use_quant_conv,
            use_post_quant_conv: config.use_quant_conv,
        };
        let inner = AutoEncoderKL::new(vb, config.in_channels, config.in_channels, cfg)
            .map_err(|e| files.weights_error(e))?;
        Ok(VaeDecoder { inner, scaling_factor: config.scaling_factor, dtype })
    }

    /// Decodes latents as the U-Net sees them (scaled by `scaling_factor`) to images in about
    /// [-1, 1], B × 3 × H × W, in f32.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor, SdError> {
        let unscaled = (latents.to_dtype(self.dtype)? / self.scaling_factor)?;
        Ok(self.inner.decode(&unscaled)?.to_dtype(DType::F32)?)
    }

    /// Decodes latents to 8-bit RGB pixels, `H × W × 3` per image, as diffusers' image
    /// processor does: `round(clamp(x / 2 + 0.5, 0, 1) × 255)`.
    pub fn decode_rgb8(&self, latents: &Tensor) -> Result<Vec<Vec<u8>>, SdError> {
        let images = self.decode(latents)?;
        let pixels = ((images / 2.0)? + 0.5)?.clamp(0f32, 1f32)?;
        let pixels = (pixels * 255.0)?.round()?.permute((0, 2, 3, 1))?.contiguous()?;
        let rows = pixels.flatten_from(1)?.to_dtype(DType::U8)?.to_vec2::<u8>()?;
        Ok(rows)
    }
}
