//! `UNet`: diffusers' `UNet2DConditionModel` for SD 1.x/2.x, with every block, resnet,
//! attention, self-attention and resampler output available as a tap.
//!
//! Adapted from candle-transformers 0.11.1, `models/stable_diffusion/unet_2d.rs`
//! (<https://github.com/huggingface/candle>, MIT OR Apache-2.0): the same wiring, built from
//! diffusers' `config.json` instead of a hand-written config, and recording taps in forward
//! order. `taps()` lists them in exactly the order `forward` records them.

mod blocks;
mod config;
mod transformer;

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn as nn;
use candle_transformers::models::stable_diffusion::embeddings::{TimestepEmbedding, Timesteps};

use self::blocks::{BlockSpec, DownBlock, MidBlock, ResnetSpec, UpBlock};
use self::config::Plan;
pub use self::config::{PerBlock, UNetConfig};
pub(crate) use self::transformer::GateGelu;
use self::transformer::TransformerSpec;
use crate::config_check::check_fields;
use crate::error::SdError;
use crate::files::ComponentFiles;
use crate::lora::{self, Lora};
use crate::taps::{emit, TapKind, TapShape, TapSink};

/// The tap name of the U-Net's output.
pub const OUT_TAP: &str = "out";

/// A Stable Diffusion 1.x/2.x denoising U-Net.
#[derive(Debug)]
pub struct UNet {
    config: UNetConfig,
    dtype: DType,
    conv_in: nn::Conv2d,
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2d,
}

impl UNet {
    /// Loads `unet_dir/config.json` and `unet_dir/diffusion_pytorch_model.safetensors` (else
    /// `diffusion_pytorch_model.fp16.safetensors`), memory-mapped and converted to `dtype`.
    pub fn load(unet_dir: &Path, dtype: DType, device: &Device) -> Result<UNet, SdError> {
        Self::load_with_gate(unet_dir, dtype, device, GateGelu::Erf)
    }

    /// [`UNet::load`] with `loras` merged into the weights first (see [`crate::lora`]); their
    /// `text_encoder` keys are skipped. With no LoRAs this is exactly [`UNet::load`].
    pub fn load_with_loras(
        unet_dir: &Path,
        dtype: DType,
        device: &Device,
        loras: &[Lora],
    ) -> Result<UNet, SdError> {
        Self::load_inner(unet_dir, dtype, device, GateGelu::Erf, loras, None)
    }

    /// [`UNet::load_with_loras`], then every `*weight` tensor's elements shuffled with `seed`,
    /// biases kept: seed 002's weight-permuted control model.
    pub fn load_permuted(
        unet_dir: &Path,
        dtype: DType,
        device: &Device,
        loras: &[Lora],
        seed: u64,
    ) -> Result<UNet, SdError> {
        Self::load_inner(unet_dir, dtype, device, GateGelu::Erf, loras, Some(seed))
    }

    pub(crate) fn load_with_gate(
        unet_dir: &Path,
        dtype: DType,
        device: &Device,
        gate_gelu: GateGelu,
    ) -> Result<UNet, SdError> {
        Self::load_inner(unet_dir, dtype, device, gate_gelu, &[], None)
    }

    fn load_inner(
        unet_dir: &Path,
        dtype: DType,
        device: &Device,
        gate_gelu: GateGelu,
        loras: &[Lora],
        permute: Option<u64>,
    ) -> Result<UNet, SdError> {
        let files = ComponentFiles::locate(unet_dir, "diffusion_pytorch_model")?;
        let (config, raw): (UNetConfig, _) = files.read_config()?;
        check_fields(&raw, config::UNSUPPORTED).map_err(|m| files.config_error(m))?;
        let plan = config.plan().map_err(|m| files.config_error(m))?;
        let vb = files.var_builder_modified(dtype, device, loras, lora::UNET, permute)?;
        Self::build(vb, config, &plan, dtype, gate_gelu).map_err(|e| files.weights_error(e))
    }

    /// The config the model was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// The dtype the weights were loaded into (and the output's dtype).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Every recordable tap in forward order, `out` last.
    pub fn taps(&self) -> Vec<TapShape> {
        let mut out = Vec::new();
        let mut downsample = 1;
        for block in &self.down_blocks {
            downsample = block.taps(downsample, &mut out);
        }
        self.mid_block.taps(downsample, &mut out);
        for block in &self.up_blocks {
            downsample = block.taps(downsample, &mut out);
        }
        out.push(TapShape {
            name: OUT_TAP.to_string(),
            channels: self.config.out_channels,
            kind: TapKind::Spatial { downsample: 1 },
        });
        out
    }

    /// Predicts noise (or v) for `sample` (B × in_channels × h × w) at `timestep`, attending to
    /// `encoder_hidden_states` (B × T × cross_attention_dim); taps go to `sink`.
    /// Inputs are converted to the model's dtype.
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        encoder_hidden_states: &Tensor,
        sink: &mut dyn TapSink,
    ) -> Result<Tensor, SdError> {
        self.check_inputs(sample, timestep, encoder_hidden_states)?;
        let sample = sample.to_dtype(self.dtype)?;
        let context = encoder_hidden_states.to_dtype(self.dtype)?;
        let (batch, _, height, width) = sample.dims4()?;
        let sample =
            if self.config.center_input_sample { ((sample * 2.0)? - 1.0)? } else { sample };
        // diffusers embeds the timestep in f32 and casts the embedding to the model's dtype.
        let t = Tensor::full(timestep as f32, batch, sample.device())?;
        let t_emb = self.time_proj.forward(&t)?.to_dtype(self.dtype)?;
        let temb = self.time_embedding.forward(&t_emb)?;

        let mut xs = self.conv_in.forward(&sample)?;
        let mut skips = vec![xs.clone()];
        for block in &self.down_blocks {
            let (out, block_skips) = block.forward(&xs, &temb, &context, sink)?;
            skips.extend(block_skips);
            xs = out;
        }
        xs = self.mid_block.forward(&xs, &temb, &context, sink)?;

        // A latent that is not a multiple of the total factor makes diffusers upsample to the
        // skip connection's size instead of doubling.
        let factor = 1usize << (self.up_blocks.len() - 1);
        let odd_size = !height.is_multiple_of(factor) || !width.is_multiple_of(factor);
        let last = self.up_blocks.len() - 1;
        for (i, block) in self.up_blocks.iter().enumerate() {
            let block_skips = skips.split_off(skips.len() - block.skip_count());
            let upsample_size = match skips.last() {
                Some(next) if odd_size && i < last => {
                    let (_, _, h, w) = next.dims4()?;
                    Some((h, w))
                }
                _ => None,
            };
            xs = block.forward(&xs, &block_skips, &temb, &context, upsample_size, sink)?;
        }
        let xs = nn::ops::silu(&self.conv_norm_out.forward(&xs)?)?;
        let out = self.conv_out.forward(&xs)?;
        emit(sink, OUT_TAP, &out)?;
        Ok(out)
    }

    fn check_inputs(
        &self,
        sample: &Tensor,
        timestep: f64,
        context: &Tensor,
    ) -> Result<(), SdError> {
        let (batch, channels, height, width) = sample.dims4().map_err(|_| {
            SdError::input(format!("sample must be B×C×H×W, got {:?}", sample.dims()))
        })?;
        // With `downsample_padding = 0` a side of 1 would leave a 3×3 stride-2 convolution
        // nothing to cover; with the usual padding of 1 any side works.
        let min_side =
            if self.config.downsample_padding == 0 { 1 << (self.up_blocks.len() - 1) } else { 1 };
        if batch == 0 || height < min_side || width < min_side {
            return Err(SdError::input(format!(
                "sample is {:?}; it needs a batch and sides of at least {min_side}",
                sample.dims()
            )));
        }
        if channels != self.config.in_channels {
            return Err(SdError::input(format!(
                "sample has {channels} channels, the U-Net takes {}",
                self.config.in_channels
            )));
        }
        let (context_batch, tokens, context_width) = context.dims3().map_err(|_| {
            SdError::input(format!("encoder_hidden_states must be B×T×D, got {:?}", context.dims()))
        })?;
        if context_batch != batch || tokens == 0 || context_width != self.config.cross_attention_dim
        {
            return Err(SdError::input(format!(
                "encoder_hidden_states is {:?}, expected {batch}×T×{} with T ≥ 1",
                context.dims(),
                self.config.cross_attention_dim
            )));
        }
        if !timestep.is_finite() {
            return Err(SdError::input(format!("timestep {timestep} is not finite")));
        }
        Ok(())
    }

    pub(crate) fn build(
        vb: nn::VarBuilder,
        config: UNetConfig,
        plan: &Plan,
        dtype: DType,
        gate_gelu: GateGelu,
    ) -> candle_core::Result<UNet> {
        let blocks = &plan.blocks;
        let n = blocks.len();
        let first = blocks[0].channels;
        let temb_channels = 4 * first;
        let conv3 = nn::Conv2dConfig { padding: 1, ..Default::default() };
        let conv_in = nn::conv2d(config.in_channels, first, 3, conv3, vb.pp("conv_in"))?;
        let time_proj = Timesteps::new(first, config.flip_sin_to_cos, config.freq_shift);
        let time_embedding = TimestepEmbedding::new(vb.pp("time_embedding"), first, temb_channels)?;
        let resnet = ResnetSpec {
            groups: config.norm_num_groups,
            eps: config.norm_eps,
            temb_channels,
            output_scale_factor: 1.0,
        };
        let transformer = |block: usize| TransformerSpec {
            channels: blocks[block].channels,
            heads: blocks[block].heads,
            depth: blocks[block].transformer_depth,
            groups: config.norm_num_groups,
            context_dim: config.cross_attention_dim,
            linear_projection: config.use_linear_projection,
            gate_gelu,
        };

        let vb_down = vb.pp("down_blocks");
        let down_blocks = (0..n)
            .map(|i| {
                let spec = BlockSpec {
                    in_channels: if i == 0 { first } else { blocks[i - 1].channels },
                    out_channels: blocks[i].channels,
                    layers: blocks[i].layers,
                    resample: i + 1 < n,
                    resnet,
                    transformer: plan.down_cross[i].then(|| transformer(i)),
                };
                DownBlock::new(vb_down.pp(i), i, spec, config.downsample_padding)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;

        let mid_resnet =
            ResnetSpec { output_scale_factor: config.mid_block_scale_factor, ..resnet };
        let mid_block = MidBlock::new(
            vb.pp("mid_block"),
            blocks[n - 1].channels,
            mid_resnet,
            transformer(n - 1),
        )?;

        let vb_up = vb.pp("up_blocks");
        let up_blocks = (0..n)
            .map(|i| {
                // Up block i mirrors down block n-1-i; its last resnet takes the skip from
                // the down block before that one (or conv_in's output for the last up block).
                let mirror = n - 1 - i;
                let spec = BlockSpec {
                    in_channels: blocks[mirror.saturating_sub(1)].channels,
                    out_channels: blocks[mirror].channels,
                    layers: blocks[mirror].layers + 1,
                    resample: i + 1 < n,
                    resnet,
                    transformer: plan.up_cross[i].then(|| transformer(mirror)),
                };
                let prev_channels =
                    if i == 0 { blocks[n - 1].channels } else { blocks[mirror + 1].channels };
                UpBlock::new(vb_up.pp(i), i, spec, prev_channels)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;

        let conv_norm_out =
            nn::group_norm(config.norm_num_groups, first, config.norm_eps, vb.pp("conv_norm_out"))?;
        let conv_out = nn::conv2d(first, config.out_channels, 3, conv3, vb.pp("conv_out"))?;
        Ok(UNet {
            config,
            dtype,
            conv_in,
            time_proj,
            time_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
        })
    }
}
