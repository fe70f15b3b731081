//! `Vae`: the encoder half of diffusers' `AutoencoderKL`, returning the latent distribution's
//! mean (unscaled).
//!
//! candle's `AutoEncoderKL::encode` keeps the mean private (it only samples), so the encoder
//! is assembled here from candle's public `DownEncoderBlock2D` and our `VaeMidBlock` (whose
//! attention, unlike candle's, does not depend on an image's batch neighbours) in diffusers'
//! `Encoder` wiring, followed by `quant_conv` and the first half of its channels.
//! Decoder weights are never read.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn as nn;
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    DownEncoderBlock2D, DownEncoderBlock2DConfig,
};
use serde::{Deserialize, Serialize};

use crate::config_check::{check_fields, Accepted};
use crate::error::SdError;
use crate::files::ComponentFiles;
use crate::vae_mid::VaeMidBlock;

/// The diffusers `AutoencoderKL` config fields the encoder reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    /// Image channels.
    pub in_channels: usize,
    /// `DownEncoderBlock2D` per block.
    pub down_block_types: Vec<String>,
    /// Channels per encoder block.
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder block.
    pub layers_per_block: usize,
    /// Latent channels.
    pub latent_channels: usize,
    /// Group-norm groups.
    pub norm_num_groups: usize,
    /// Whether `quant_conv` follows the encoder.
    pub use_quant_conv: bool,
    /// Multiplier that brings latents to unit variance for the U-Net.
    pub scaling_factor: f64,
}

impl Default for VaeConfig {
    fn default() -> Self {
        VaeConfig {
            in_channels: 3,
            down_block_types: vec![DOWN_ENCODER.to_string()],
            block_out_channels: vec![64],
            layers_per_block: 1,
            latent_channels: 4,
            norm_num_groups: 32,
            use_quant_conv: true,
            scaling_factor: 0.18215,
        }
    }
}

const DOWN_ENCODER: &str = "DownEncoderBlock2D";

const UNSUPPORTED: &[(&str, &[Accepted])] = &[
    ("act_fn", &[Accepted::Text("silu")]),
    ("mid_block_add_attention", &[Accepted::Bool(true)]),
    ("down_block_types", &[Accepted::Text(DOWN_ENCODER)]),
];

/// The VAE encoder of a Stable Diffusion model.
#[derive(Debug)]
pub struct Vae {
    config: VaeConfig,
    dtype: DType,
    conv_in: nn::Conv2d,
    down_blocks: Vec<DownEncoderBlock2D>,
    mid_block: VaeMidBlock,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2d,
    quant_conv: Option<nn::Conv2d>,
}

impl Vae {
    /// Loads `vae_dir/config.json` and `diffusion_pytorch_model.safetensors` (else
    /// `diffusion_pytorch_model.fp16.safetensors`).
    pub fn load(vae_dir: &Path, dtype: DType, device: &Device) -> Result<Vae, SdError> {
        let files = ComponentFiles::locate(vae_dir, "diffusion_pytorch_model")?;
        let config = read_checked_config(&files)?;
        let vb = files.var_builder(dtype, device)?;
        Self::build(vb, config, dtype).map_err(|e| files.weights_error(e))
    }

    /// The config the encoder was built from.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// `scaling_factor` from `config.json` (0.18215 when absent).
    pub fn scaling_factor(&self) -> f64 {
        self.config.scaling_factor
    }

    /// How much smaller the latent is than the image: 2^(blocks − 1).
    pub fn downsample_factor(&self) -> usize {
        1 << (self.config.block_out_channels.len() - 1)
    }

    /// `latent_dist.mean` (unscaled) of `image`, B × 3 × H × W in [-1, 1], with H and W
    /// multiples of `downsample_factor()`.
    pub fn encode_mean(&self, image: &Tensor) -> Result<Tensor, SdError> {
        let (batch, channels, height, width) = image.dims4().map_err(|_| {
            SdError::input(format!("image must be B×C×H×W, got {:?}", image.dims()))
        })?;
        let factor = self.downsample_factor();
        if batch == 0
            || height == 0
            || width == 0
            || !height.is_multiple_of(factor)
            || !width.is_multiple_of(factor)
        {
            return Err(SdError::input(format!(
                "image is {:?}; it needs a batch and sides that are positive multiples of {factor}",
                image.dims()
            )));
        }
        if channels != self.config.in_channels {
            return Err(SdError::input(format!(
                "image has {channels} channels, the VAE takes {}",
                self.config.in_channels
            )));
        }
        let mut xs = self.conv_in.forward(&image.to_dtype(self.dtype)?)?;
        for block in &self.down_blocks {
            xs = block.forward(&xs)?;
        }
        let xs = self.mid_block.forward(&xs)?;
        let xs = nn::ops::silu(&self.conv_norm_out.forward(&xs)?)?;
        let moments = self.conv_out.forward(&xs)?;
        let moments = match &self.quant_conv {
            Some(conv) => conv.forward(&moments)?,
            None => moments,
        };
        Ok(moments.narrow(1, 0, self.config.latent_channels)?)
    }

    pub(crate) fn build(
        vb: nn::VarBuilder,
        config: VaeConfig,
        dtype: DType,
    ) -> candle_core::Result<Vae> {
        let channels = &config.block_out_channels;
        let groups = config.norm_num_groups;
        let last = channels[channels.len() - 1];
        let latent2 = 2 * config.latent_channels;
        let conv3 = nn::Conv2dConfig { padding: 1, ..Default::default() };
        let enc = vb.pp("encoder");
        let conv_in = nn::conv2d(config.in_channels, channels[0], 3, conv3, enc.pp("conv_in"))?;
        let down_blocks = (0..channels.len())
            .map(|i| {
                let block = DownEncoderBlock2DConfig {
                    num_layers: config.layers_per_block,
                    resnet_eps: 1e-6,
                    resnet_groups: groups,
                    output_scale_factor: 1.0,
                    add_downsample: i + 1 < channels.len(),
                    downsample_padding: 0,
                };
                let cin = if i == 0 { channels[0] } else { channels[i - 1] };
                DownEncoderBlock2D::new(enc.pp("down_blocks").pp(i), cin, channels[i], block)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mid_block = VaeMidBlock::new(enc.pp("mid_block"), last, groups)?;
        let conv_norm_out = nn::group_norm(groups, last, 1e-6, enc.pp("conv_norm_out"))?;
        let conv_out = nn::conv2d(last, latent2, 3, conv3, enc.pp("conv_out"))?;
        let quant_conv = if config.use_quant_conv {
            Some(nn::conv2d(latent2, latent2, 1, Default::default(), vb.pp("quant_conv"))?)
        } else {
            None
        };
        Ok(Vae {
            config,
            dtype,
            conv_in,
            down_blocks,
            mid_block,
            conv_norm_out,
            conv_out,
            quant_conv,
        })
    }
}

/// `config.json` of a VAE folder, with unsupported fields and impossible shapes refused (the
/// encoder and the decoder read the same file).
pub(crate) fn read_checked_config(files: &ComponentFiles) -> Result<VaeConfig, SdError> {
    let (config, raw): (VaeConfig, _) = files.read_config()?;
    check_fields(&raw, UNSUPPORTED).map_err(|m| files.config_error(m))?;
    check_config(&config).map_err(|m| files.config_error(m))?;
    Ok(config)
}

fn check_config(config: &VaeConfig) -> Result<(), String> {
    let channels = &config.block_out_channels;
    if channels.is_empty() {
        return Err("block_out_channels is empty".to_string());
    }
    if config.down_block_types.len() != channels.len() {
        return Err(format!(
            "down_block_types has {} entries but block_out_channels has {}",
            config.down_block_types.len(),
            channels.len()
        ));
    }
    let groups = config.norm_num_groups;
    if let Some((i, c)) = channels
        .iter()
        .enumerate()
        .find(|(_, &c)| groups == 0 || c == 0 || !c.is_multiple_of(groups))
    {
        return Err(format!(
            "block_out_channels[{i}] = {c} is not a positive multiple of norm_num_groups = {groups}"
        ));
    }
    for (field, value) in [
        ("in_channels", config.in_channels),
        ("latent_channels", config.latent_channels),
        ("layers_per_block", config.layers_per_block),
    ] {
        if value == 0 {
            return Err(format!("{field} must be positive"));
        }
    }
    Ok(())
}
