//! `VaeDecoder`: the decoder half of diffusers' `AutoencoderKL`, to turn generated latents into
//! images. It is assembled in diffusers' `Decoder` wiring from candle's public
//! `UpDecoderBlock2D` and our `VaeMidBlock`: candle's own `AutoEncoderKL::decode` has the
//! attention block whose output for an image depends on its batch neighbours (see
//! `vae_mid.rs`). Encoder weights are never read.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn as nn;
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    UpDecoderBlock2D, UpDecoderBlock2DConfig,
};

use crate::error::SdError;
use crate::files::ComponentFiles;
use crate::vae::VaeConfig;
use crate::vae_mid::VaeMidBlock;

/// The VAE decoder of a Stable Diffusion model.
pub struct VaeDecoder {
    post_quant_conv: Option<nn::Conv2d>,
    conv_in: nn::Conv2d,
    mid_block: VaeMidBlock,
    up_blocks: Vec<UpDecoderBlock2D>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2d,
    scaling_factor: f64,
    dtype: DType,
}

impl VaeDecoder {
    /// Loads `vae_dir/config.json` and its weights (as [`crate::Vae::load`] does).
    pub fn load(vae_dir: &Path, dtype: DType, device: &Device) -> Result<VaeDecoder, SdError> {
        let files = ComponentFiles::locate(vae_dir, "diffusion_pytorch_model")?;
        let config = crate::vae::read_checked_config(&files)?;
        let vb = files.var_builder(dtype, device)?;
        Self::build(vb, &config, dtype).map_err(|e| files.weights_error(e))
    }

    fn build(
        vb: nn::VarBuilder,
        config: &VaeConfig,
        dtype: DType,
    ) -> candle_core::Result<VaeDecoder> {
        let channels = &config.block_out_channels;
        let groups = config.norm_num_groups;
        let latent = config.latent_channels;
        let conv3 = nn::Conv2dConfig { padding: 1, ..Default::default() };
        let post_quant_conv = if config.use_quant_conv {
            Some(nn::conv2d(latent, latent, 1, Default::default(), vb.pp("post_quant_conv"))?)
        } else {
            None
        };
        let dec = vb.pp("decoder");
        let reversed: Vec<usize> = channels.iter().rev().copied().collect();
        let conv_in = nn::conv2d(latent, reversed[0], 3, conv3, dec.pp("conv_in"))?;
        let mid_block = VaeMidBlock::new(dec.pp("mid_block"), reversed[0], groups)?;
        let up_blocks = (0..reversed.len())
            .map(|i| {
                let block = UpDecoderBlock2DConfig {
                    num_layers: config.layers_per_block + 1,
                    resnet_eps: 1e-6,
                    resnet_groups: groups,
                    output_scale_factor: 1.0,
                    add_upsample: i + 1 < reversed.len(),
                };
                let cin = reversed[i.saturating_sub(1)];
                UpDecoderBlock2D::new(dec.pp("up_blocks").pp(i), cin, reversed[i], block)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let conv_norm_out = nn::group_norm(groups, channels[0], 1e-6, dec.pp("conv_norm_out"))?;
        let conv_out = nn::conv2d(channels[0], config.in_channels, 3, conv3, dec.pp("conv_out"))?;
        Ok(VaeDecoder {
            post_quant_conv,
            conv_in,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
            scaling_factor: config.scaling_factor,
            dtype,
        })
    }

    /// Decodes latents as the U-Net sees them (scaled by `scaling_factor`) to images in about
    /// [-1, 1], B × 3 × H × W, in f32.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor, SdError> {
        let unscaled = (latents.to_dtype(self.dtype)? / self.scaling_factor)?;
        let xs = match &self.post_quant_conv {
            Some(conv) => conv.forward(&unscaled)?,
            None => unscaled,
        };
        let mut xs = self.mid_block.forward(&self.conv_in.forward(&xs)?)?;
        for block in &self.up_blocks {
            xs = block.forward(&xs)?;
        }
        let xs = nn::ops::silu(&self.conv_norm_out.forward(&xs)?)?;
        Ok(self.conv_out.forward(&xs)?.to_dtype(DType::F32)?)
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
