//! The U-Net's down, mid and up blocks, each recording its resnets, attentions, resampler and
//! own output as taps.
//!
//! Adapted from candle-transformers 0.11.1, `models/stable_diffusion/unet_2d_blocks.rs`
//! (<https://github.com/huggingface/candle>, MIT OR Apache-2.0). Changes: `DownBlock2D` and
//! `CrossAttnDownBlock2D` are one `DownBlock` whose attention list may be empty (likewise
//! `UpBlock`); every resnet uses the configured group count (candle's plain blocks always use
//! 32); taps are recorded; encoder/decoder blocks, sliced and flash attention are gone.
//! The resnets are candle's public `ResnetBlock2D`.

use candle_core::{Module, Result, Tensor, D};
use candle_nn as nn;
use candle_transformers::models::stable_diffusion::resnet::{ResnetBlock2D, ResnetBlock2DConfig};

use crate::taps::{emit, TapKind, TapShape, TapSink};
use crate::unet::transformer::{Transformer2D, TransformerSpec};

/// What every resnet of the U-Net shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResnetSpec {
    pub(crate) groups: usize,
    pub(crate) eps: f64,
    pub(crate) temb_channels: usize,
    pub(crate) output_scale_factor: f64,
}

impl ResnetSpec {
    fn build(
        self,
        vb: nn::VarBuilder,
        in_channels: usize,
        out_channels: usize,
    ) -> Result<ResnetBlock2D> {
        let config = ResnetBlock2DConfig {
            out_channels: Some(out_channels),
            temb_channels: Some(self.temb_channels),
            groups: self.groups,
            groups_out: None,
            eps: self.eps,
            use_in_shortcut: None,
            output_scale_factor: self.output_scale_factor,
        };
        ResnetBlock2D::new(vb, in_channels, config)
    }
}

/// A resnet together with its tap name.
#[derive(Debug)]
struct NamedResnet {
    name: String,
    resnet: ResnetBlock2D,
}

impl NamedResnet {
    fn forward(&self, xs: &Tensor, temb: &Tensor, sink: &mut dyn TapSink) -> Result<Tensor> {
        let out = self.resnet.forward(xs, Some(temb))?;
        emit(sink, &self.name, &out)?;
        Ok(out)
    }
}

/// Builds the resnets `prefix.resnets.{j}`, the j-th taking `in_channels(j)` channels.
fn resnets(
    vb: &nn::VarBuilder,
    prefix: &str,
    spec: ResnetSpec,
    count: usize,
    in_channels: impl Fn(usize) -> usize,
    out_channels: usize,
) -> Result<Vec<NamedResnet>> {
    (0..count)
        .map(|j| {
            Ok(NamedResnet {
                name: format!("{prefix}.resnets.{j}"),
                resnet: spec.build(vb.pp("resnets").pp(j), in_channels(j), out_channels)?,
            })
        })
        .collect()
}

/// Builds the transformers `prefix.attentions.{j}`, or none when `spec` is `None`.
fn attentions(
    vb: &nn::VarBuilder,
    prefix: &str,
    spec: Option<TransformerSpec>,
    count: usize,
) -> Result<Vec<Transformer2D>> {
    let Some(spec) = spec else {
        return Ok(Vec::new());
    };
    (0..count)
        .map(|j| {
            let name = format!("{prefix}.attentions.{j}");
            Transformer2D::new(vb.pp("attentions").pp(j), name, spec)
        })
        .collect()
}

/// Appends the taps of resnets interleaved with their attentions, in forward order.
fn layer_taps(
    resnets: &[NamedResnet],
    attentions: &[Transformer2D],
    channels: usize,
    downsample: usize,
    out: &mut Vec<TapShape>,
) {
    for (j, resnet) in resnets.iter().enumerate() {
        out.push(spatial(&resnet.name, channels, downsample));
        if let Some(attention) = attentions.get(j) {
            out.push(TapShape {
                name: attention.attn1_tap().to_string(),
                channels,
                kind: TapKind::Tokens { downsample },
            });
            out.push(spatial(attention.name(), channels, downsample));
        }
    }
}

fn spatial(name: &str, channels: usize, downsample: usize) -> TapShape {
    TapShape { name: name.to_string(), channels, kind: TapKind::Spatial { downsample } }
}

/// `DownBlock2D` or, with attentions, `CrossAttnDownBlock2D`.
#[derive(Debug)]
pub(crate) struct DownBlock {
    name: String,
    downsampler_name: String,
    resnets: Vec<NamedResnet>,
    attentions: Vec<Transformer2D>,
    downsampler: Option<nn::Conv2d>,
    padding: usize,
    channels: usize,
}

/// Shape of one down or up block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockSpec {
    pub(crate) in_channels: usize,
    pub(crate) out_channels: usize,
    pub(crate) layers: usize,
    pub(crate) resample: bool,
    pub(crate) resnet: ResnetSpec,
    pub(crate) transformer: Option<TransformerSpec>,
}

impl DownBlock {
    /// Builds `down_blocks.{index}`; `padding` is diffusers' `downsample_padding`.
    pub(crate) fn new(
        vb: nn::VarBuilder,
        index: usize,
        spec: BlockSpec,
        padding: usize,
    ) -> Result<Self> {
        let name = format!("down_blocks.{index}");
        let (cin, cout) = (spec.in_channels, spec.out_channels);
        let in_channels = |j| if j == 0 { cin } else { cout };
        let resnets = resnets(&vb, &name, spec.resnet, spec.layers, in_channels, cout)?;
        let attentions = attentions(&vb, &name, spec.transformer, spec.layers)?;
        let downsampler = if spec.resample {
            let config = nn::Conv2dConfig { stride: 2, padding, ..Default::default() };
            Some(nn::conv2d(cout, cout, 3, config, vb.pp("downsamplers.0.conv"))?)
        } else {
            None
        };
        Ok(DownBlock {
            downsampler_name: format!("{name}.downsamplers.0"),
            name,
            resnets,
            attentions,
            downsampler,
            padding,
            channels: cout,
        })
    }

    /// Appends this block's taps; `downsample` is the input's factor relative to the latent.
    /// Returns the output's factor.
    pub(crate) fn taps(&self, downsample: usize, out: &mut Vec<TapShape>) -> usize {
        let channels = self.channels;
        layer_taps(&self.resnets, &self.attentions, channels, downsample, out);
        let block_downsample = if self.downsampler.is_some() {
            out.push(spatial(&self.downsampler_name, channels, 2 * downsample));
            2 * downsample
        } else {
            downsample
        };
        out.push(spatial(&self.name, channels, block_downsample));
        block_downsample
    }

    /// Runs the block; returns its output and the skip connections it adds, in order.
    pub(crate) fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        sink: &mut dyn TapSink,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut xs = xs.clone();
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        for (j, resnet) in self.resnets.iter().enumerate() {
            xs = resnet.forward(&xs, temb, sink)?;
            if let Some(attention) = self.attentions.get(j) {
                xs = attention.forward(&xs, context, sink)?;
            }
            skips.push(xs.clone());
        }
        if let Some(conv) = &self.downsampler {
            let padded = if self.padding == 0 {
                xs.pad_with_zeros(D::Minus1, 0, 1)?.pad_with_zeros(D::Minus2, 0, 1)?
            } else {
                xs
            };
            xs = conv.forward(&padded)?;
            emit(sink, &self.downsampler_name, &xs)?;
            skips.push(xs.clone());
        }
        emit(sink, &self.name, &xs)?;
        Ok((xs, skips))
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) pairs.
#[derive(Debug)]
pub(crate) struct MidBlock {
    resnets: Vec<NamedResnet>,
    attentions: Vec<Transformer2D>,
    channels: usize,
}

impl MidBlock {
    pub(crate) const NAME: &'static str = "mid_block";

    /// Builds `mid_block` with one transformer (diffusers' default `num_layers = 1`).
    pub(crate) fn new(
        vb: nn::VarBuilder,
        channels: usize,
        resnet: ResnetSpec,
        transformer: TransformerSpec,
    ) -> Result<Self> {
        let resnets = resnets(&vb, Self::NAME, resnet, 2, |_| channels, channels)?;
        let attentions = attentions(&vb, Self::NAME, Some(transformer), 1)?;
        Ok(MidBlock { resnets, attentions, channels })
    }

    pub(crate) fn taps(&self, downsample: usize, out: &mut Vec<TapShape>) {
        layer_taps(&self.resnets, &self.attentions, self.channels, downsample, out);
        out.push(spatial(Self::NAME, self.channels, downsample));
    }

    pub(crate) fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        sink: &mut dyn TapSink,
    ) -> Result<Tensor> {
        let mut xs = xs.clone();
        for (j, resnet) in self.resnets.iter().enumerate() {
            if j > 0 {
                xs = self.attentions[j - 1].forward(&xs, context, sink)?;
            }
            xs = resnet.forward(&xs, temb, sink)?;
        }
        emit(sink, Self::NAME, &xs)?;
        Ok(xs)
    }
}

/// `UpBlock2D` or, with attentions, `CrossAttnUpBlock2D`.
#[derive(Debug)]
pub(crate) struct UpBlock {
    name: String,
    upsampler_name: String,
    resnets: Vec<NamedResnet>,
    attentions: Vec<Transformer2D>,
    upsampler: Option<nn::Conv2d>,
    channels: usize,
}

impl UpBlock {
    /// Builds `up_blocks.{index}`. `spec.in_channels` is diffusers' `in_channels` (the skip
    /// width of the last resnet), `prev_channels` the width of the incoming hidden states.
    pub(crate) fn new(
        vb: nn::VarBuilder,
        index: usize,
        spec: BlockSpec,
        prev_channels: usize,
    ) -> Result<Self> {
        let name = format!("up_blocks.{index}");
        let (cin, cout, layers) = (spec.in_channels, spec.out_channels, spec.layers);
        let in_channels = |j: usize| {
            let skip = if j + 1 == layers { cin } else { cout };
            let hidden = if j == 0 { prev_channels } else { cout };
            skip + hidden
        };
        let resnets = resnets(&vb, &name, spec.resnet, layers, in_channels, cout)?;
        let attentions = attentions(&vb, &name, spec.transformer, layers)?;
        let upsampler = if spec.resample {
            let config = nn::Conv2dConfig { padding: 1, ..Default::default() };
            Some(nn::conv2d(cout, cout, 3, config, vb.pp("upsamplers.0.conv"))?)
        } else {
            None
        };
        Ok(UpBlock {
            upsampler_name: format!("{name}.upsamplers.0"),
            name,
            resnets,
            attentions,
            upsampler,
            channels: cout,
        })
    }

    /// How many skip connections the block consumes.
    pub(crate) fn skip_count(&self) -> usize {
        self.resnets.len()
    }

    /// Appends this block's taps and returns the output's downsampling factor.
    pub(crate) fn taps(&self, downsample: usize, out: &mut Vec<TapShape>) -> usize {
        layer_taps(&self.resnets, &self.attentions, self.channels, downsample, out);
        let block_downsample = if self.upsampler.is_some() {
            let up = (downsample / 2).max(1);
            out.push(spatial(&self.upsampler_name, self.channels, up));
            up
        } else {
            downsample
        };
        out.push(spatial(&self.name, self.channels, block_downsample));
        block_downsample
    }

    /// Runs the block on `xs` and its `skips` (consumed last first); `upsample_size` forces
    /// the upsampler's output size when the latent is not a multiple of the total factor.
    pub(crate) fn forward(
        &self,
        xs: &Tensor,
        skips: &[Tensor],
        temb: &Tensor,
        context: &Tensor,
        upsample_size: Option<(usize, usize)>,
        sink: &mut dyn TapSink,
    ) -> Result<Tensor> {
        let mut xs = xs.clone();
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = &skips[skips.len() - j - 1];
            xs = Tensor::cat(&[&xs, skip], 1)?.contiguous()?;
            xs = resnet.forward(&xs, temb, sink)?;
            if let Some(attention) = self.attentions.get(j) {
                xs = attention.forward(&xs, context, sink)?;
            }
        }
        if let Some(conv) = &self.upsampler {
            let (h, w) = match upsample_size {
                Some(size) => size,
                None => {
                    let (_, _, h, w) = xs.dims4()?;
                    (2 * h, 2 * w)
                }
            };
            xs = conv.forward(&xs.upsample_nearest2d(h, w)?)?;
            emit(sink, &self.upsampler_name, &xs)?;
        }
        emit(sink, &self.name, &xs)?;
        Ok(xs)
    }
}
