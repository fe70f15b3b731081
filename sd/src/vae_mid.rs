//! `VaeMidBlock`: the middle of diffusers' VAE encoder and decoder (resnet, single-head
//! self-attention over all positions, resnet), shared by [`crate::Vae`] and
//! [`crate::VaeDecoder`].
//!
//! candle-transformers has the same block (`UNetMidBlock2D` with its `AttentionBlock`), but that
//! attention applies `Linear` to a transposed view of the feature map. candle-core 0.11.1's CPU
//! matmul folds a batched product whose right-hand side is shared into one large product
//! whenever the left-hand side's batch stride is m·k, without checking that its rows are
//! contiguous (huggingface/candle#3758): every image after the first of a batch then read the
//! first image's memory, shifted by one channel per row. Here the tokens are made contiguous
//! before any projection, so an image's latent does not depend on its batch neighbours. The
//! arithmetic is otherwise candle's, operation for operation (scale applied to q and k,
//! attention in f32).
//! `tests/batched_matmul.rs` (in this crate) pins the candle behaviour, so an upgrade that changes it is noticed.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn as nn;
use candle_transformers::models::stable_diffusion::resnet::{ResnetBlock2D, ResnetBlock2DConfig};

/// Resnet, attention, resnet, as diffusers' `UNetMidBlock2D` in an `AutoencoderKL`.
#[derive(Debug)]
pub(crate) struct VaeMidBlock {
    first: ResnetBlock2D,
    attention: VaeAttention,
    second: ResnetBlock2D,
}

impl VaeMidBlock {
    /// Reads `{vb}.resnets.{0,1}` and `{vb}.attentions.0`, with group norms of `groups` groups
    /// and eps 1e-6 as diffusers' VAE.
    pub(crate) fn new(vb: nn::VarBuilder, channels: usize, groups: usize) -> Result<VaeMidBlock> {
        let resnet = ResnetBlock2DConfig {
            eps: EPS,
            groups,
            output_scale_factor: 1.0,
            temb_channels: None,
            ..Default::default()
        };
        let resnets = vb.pp("resnets");
        Ok(VaeMidBlock {
            first: ResnetBlock2D::new(resnets.pp("0"), channels, resnet)?,
            attention: VaeAttention::new(vb.pp("attentions").pp("0"), channels, groups)?,
            second: ResnetBlock2D::new(resnets.pp("1"), channels, resnet)?,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.first.forward(xs, None)?;
        let xs = self.attention.forward(&xs)?;
        self.second.forward(&xs, None)
    }
}

const EPS: f64 = 1e-6;

/// Single-head self-attention over the H·W positions of a B × C × H × W map, residual.
#[derive(Debug)]
struct VaeAttention {
    group_norm: nn::GroupNorm,
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    out: nn::Linear,
    channels: usize,
}

impl VaeAttention {
    fn new(vb: nn::VarBuilder, channels: usize, groups: usize) -> Result<VaeAttention> {
        let group_norm = nn::group_norm(groups, channels, EPS, vb.pp("group_norm"))?;
        // diffusers' current names, else the names of checkpoints saved before diffusers 0.15.
        let names = if vb.contains_tensor("to_q.weight") {
            ["to_q", "to_k", "to_v", "to_out.0"]
        } else {
            ["query", "key", "value", "proj_attn"]
        };
        let [query, key, value, out] = names.map(|name| projection(channels, vb.pp(name)));
        Ok(VaeAttention {
            group_norm,
            query: query?,
            key: key?,
            value: value?,
            out: out?,
            channels,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let in_dtype = xs.dtype();
        let (batch, channels, height, width) = xs.dims4()?;
        // `.contiguous()` is the point of this module (see the header): B × HW × C rows.
        let tokens = self
            .group_norm
            .forward(xs)?
            .reshape((batch, channels, height * width))?
            .transpose(1, 2)?
            .contiguous()?;
        let heads = |t: Tensor| t.unsqueeze(1)?.to_dtype(DType::F32);
        let query = heads(self.query.forward(&tokens)?)?;
        let key = heads(self.key.forward(&tokens)?)?;
        let value = heads(self.value.forward(&tokens)?)?;
        let scale = f64::powf(self.channels as f64, -0.25);
        let scores = (query * scale)?.matmul(&(key.t()? * scale)?)?;
        let probs = nn::ops::softmax(&scores, D::Minus1)?;
        let attended = probs.matmul(&value)?.to_dtype(in_dtype)?.squeeze(1)?.contiguous()?;
        let projected =
            self.out.forward(&attended)?.t()?.reshape((batch, channels, height, width))?;
        projected + xs
    }
}

/// A C → C projection stored as a linear layer, or as a 1 × 1 convolution (C × C × 1 × 1) as some
/// converted checkpoints have it.
fn projection(channels: usize, vb: nn::VarBuilder) -> Result<nn::Linear> {
    if vb.contains_tensor("weight") && vb.get((channels, channels), "weight").is_err() {
        let weight = vb.get((channels, channels, 1, 1), "weight")?.reshape((channels, channels))?;
        return Ok(nn::Linear::new(weight, Some(vb.get(channels, "bias")?)));
    }
    nn::linear(channels, channels, vb)
}
