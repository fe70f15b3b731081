//! diffusers' `Transformer2DModel` (candle's `SpatialTransformer`) with its
//! `BasicTransformerBlock`s, as used by SD 1.x/2.x cross-attention blocks.
//!
//! Adapted from candle-transformers 0.11.1, `models/stable_diffusion/attention.rs`
//! (<https://github.com/huggingface/candle>, MIT OR Apache-2.0). Changes: the GEGLU gate uses
//! exact erf GELU as diffusers does (candle uses the tanh approximation, a ~1e-4 relative
//! error); `proj_out` of the linear projection has its true `inner_dim → channels` shape; the
//! output of block 0's self-attention (`…transformer_blocks.0.attn1.to_out.0`) and of the whole
//! transformer are taps; flash attention, slicing and tracing spans are gone.
//! The attention itself is candle's public `CrossAttention`, whose output is `to_out.0`'s.

use candle_core::{Module, Result, Tensor, D};
use candle_nn as nn;
use candle_transformers::models::stable_diffusion::attention::CrossAttention;

use crate::taps::{emit, TapSink};

/// Which GELU the feed-forward gate uses: diffusers' exact one, or candle's approximation
/// (kept to prove equality with candle's stock U-Net in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GateGelu {
    Erf,
    #[cfg_attr(not(test), allow(dead_code))]
    Tanh,
}

/// Shape of one `Transformer2DModel`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransformerSpec {
    pub(crate) channels: usize,
    pub(crate) heads: usize,
    pub(crate) depth: usize,
    pub(crate) groups: usize,
    pub(crate) context_dim: usize,
    pub(crate) linear_projection: bool,
    pub(crate) gate_gelu: GateGelu,
}

#[derive(Debug)]
enum Projection {
    Conv(nn::Conv2d),
    Linear(nn::Linear),
}

/// `Transformer2DModel`: group norm, project to tokens, transformer blocks, project back,
/// add the input.
#[derive(Debug)]
pub(crate) struct Transformer2D {
    name: String,
    attn1_tap: String,
    norm: nn::GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

impl Transformer2D {
    /// Builds the transformer stored under `vb`, whose tap name is `name`.
    pub(crate) fn new(vb: nn::VarBuilder, name: String, spec: TransformerSpec) -> Result<Self> {
        let c = spec.channels;
        let norm = nn::group_norm(spec.groups, c, 1e-6, vb.pp("norm"))?;
        let (proj_in, proj_out) = if spec.linear_projection {
            (
                Projection::Linear(nn::linear(c, c, vb.pp("proj_in"))?),
                Projection::Linear(nn::linear(c, c, vb.pp("proj_out"))?),
            )
        } else {
            let conv = |p: &str| nn::conv2d(c, c, 1, Default::default(), vb.pp(p));
            (Projection::Conv(conv("proj_in")?), Projection::Conv(conv("proj_out")?))
        };
        let blocks = (0..spec.depth)
            .map(|i| BasicTransformerBlock::new(vb.pp("transformer_blocks").pp(i), spec))
            .collect::<Result<Vec<_>>>()?;
        Ok(Transformer2D {
            attn1_tap: format!("{name}.transformer_blocks.0.attn1.to_out.0"),
            name,
            norm,
            proj_in,
            blocks,
            proj_out,
        })
    }

    /// The tap name of this transformer's output.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The tap name of block 0's self-attention output.
    pub(crate) fn attn1_tap(&self) -> &str {
        &self.attn1_tap
    }

    pub(crate) fn forward(
        &self,
        xs: &Tensor,
        context: &Tensor,
        sink: &mut dyn TapSink,
    ) -> Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        let to_tokens =
            |t: Tensor| t.permute((0, 2, 3, 1))?.reshape((batch, height * width, channels));
        let to_map = |t: Tensor| {
            t.reshape((batch, height, width, channels))?.permute((0, 3, 1, 2))?.contiguous()
        };
        let normed = self.norm.forward(xs)?;
        let mut tokens = match &self.proj_in {
            Projection::Conv(p) => to_tokens(p.forward(&normed)?)?,
            Projection::Linear(p) => p.forward(&to_tokens(normed)?)?,
        };
        for (i, block) in self.blocks.iter().enumerate() {
            let attn1_tap = (i == 0).then_some(self.attn1_tap.as_str());
            tokens = block.forward(&tokens, context, attn1_tap, sink)?;
        }
        let projected = match &self.proj_out {
            Projection::Conv(p) => p.forward(&to_map(tokens)?)?,
            Projection::Linear(p) => to_map(p.forward(&tokens)?)?,
        };
        let out = (projected + xs)?;
        emit(sink, &self.name, &out)?;
        Ok(out)
    }
}

/// Self-attention, cross-attention and GEGLU feed-forward, each pre-normed and residual.
#[derive(Debug)]
struct BasicTransformerBlock {
    norm1: nn::LayerNorm,
    attn1: CrossAttention,
    norm2: nn::LayerNorm,
    attn2: CrossAttention,
    norm3: nn::LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    fn new(vb: nn::VarBuilder, spec: TransformerSpec) -> Result<Self> {
        let dim = spec.channels;
        let d_head = dim / spec.heads;
        let attention = |p: &str, context_dim: Option<usize>| {
            CrossAttention::new(vb.pp(p), dim, context_dim, spec.heads, d_head, None, false)
        };
        Ok(BasicTransformerBlock {
            norm1: nn::layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: attention("attn1", None)?,
            norm2: nn::layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: attention("attn2", Some(spec.context_dim))?,
            norm3: nn::layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff: FeedForward::new(vb.pp("ff"), dim, spec.gate_gelu)?,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        context: &Tensor,
        attn1_tap: Option<&str>,
        sink: &mut dyn TapSink,
    ) -> Result<Tensor> {
        let attn1 = self.attn1.forward(&self.norm1.forward(xs)?, None)?;
        if let Some(name) = attn1_tap {
            emit(sink, name, &attn1)?;
        }
        let xs = (attn1 + xs)?;
        let xs = (self.attn2.forward(&self.norm2.forward(&xs)?, Some(context))? + xs)?;
        self.ff.forward(&self.norm3.forward(&xs)?)? + xs
    }
}

/// `FeedForward` with `activation_fn = "geglu"`: `net.0.proj` → value · GELU(gate) → `net.2`.
#[derive(Debug)]
struct FeedForward {
    proj: nn::Linear,
    out: nn::Linear,
    gate_gelu: GateGelu,
}

impl FeedForward {
    fn new(vb: nn::VarBuilder, dim: usize, gate_gelu: GateGelu) -> Result<Self> {
        let inner = 4 * dim;
        Ok(FeedForward {
            proj: nn::linear(dim, 2 * inner, vb.pp("net.0.proj"))?,
            out: nn::linear(inner, dim, vb.pp("net.2"))?,
            gate_gelu,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let halves = self.proj.forward(xs)?.chunk(2, D::Minus1)?;
        let gate = match self.gate_gelu {
            GateGelu::Erf => halves[1].gelu_erf()?,
            GateGelu::Tanh => halves[1].gelu()?,
        };
        self.out.forward(&(&halves[0] * gate)?)
    }
}
