//! `TextEncoder`: transformers' `CLIPTextModel` (the SD 1.x CLIP-L and SD 2.x OpenCLIP-H
//! text towers), returning every layer's hidden states.
//!
//! Written for this crate: candle's SD CLIP knows only QuickGELU plus a tanh "gelu", adds all
//! 77 position embeddings whatever the length, and exposes one intermediate layer per pass.
//! Here the activation follows `hidden_act` exactly (`gelu` is erf GELU as in transformers),
//! position embeddings cover the first T positions, and one pass yields all L+1 hidden states.
//! SD 2.x's "penultimate layer" is already baked into its config (23 stored layers), so every
//! stored layer always runs.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn as nn;
use serde::{Deserialize, Serialize};

use crate::error::SdError;
use crate::files::ComponentFiles;
use crate::lora::{self, Lora};

/// The `CLIPTextConfig` fields this crate reads (transformers' defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Encoder layers stored (and run).
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Longest token sequence.
    pub max_position_embeddings: usize,
    /// MLP activation.
    pub hidden_act: HiddenAct,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: HiddenAct::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

/// The MLP activations CLIP text towers use, by their transformers names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// `x · sigmoid(1.702 x)` (OpenAI CLIP, SD 1.x).
    QuickGelu,
    /// Exact erf GELU (OpenCLIP, SD 2.x).
    Gelu,
    /// Tanh-approximate GELU.
    GeluNew,
    /// Tanh-approximate GELU, under PyTorch's name.
    GeluPytorchTanh,
}

impl HiddenAct {
    fn apply(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            HiddenAct::QuickGelu => xs * nn::ops::sigmoid(&(xs * 1.702)?)?,
            HiddenAct::Gelu => xs.gelu_erf(),
            HiddenAct::GeluNew | HiddenAct::GeluPytorchTanh => xs.gelu(),
        }
    }
}

/// What one text-encoder pass returns.
#[derive(Debug, Clone)]
pub struct TextOutput {
    /// L+1 tensors of B × T × D: `[0]` is the embedding output, `[l]` layer l's output.
    pub hidden_states: Vec<Tensor>,
    /// The last layer's output after the final layer norm (what SD conditions on).
    pub last_hidden_state: Tensor,
}

/// A CLIP text encoder.
#[derive(Debug)]
pub struct TextEncoder {
    config: TextConfig,
    token_embedding: nn::Embedding,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: nn::LayerNorm,
}

impl TextEncoder {
    /// Loads `text_encoder_dir/config.json` and `model.safetensors` (else
    /// `model.fp16.safetensors`); tensor names may carry the `text_model.` prefix or not.
    pub fn load(
        text_encoder_dir: &Path,
        dtype: DType,
        device: &Device,
    ) -> Result<TextEncoder, SdError> {
        Self::load_with_loras(text_encoder_dir, dtype, device, &[])
    }

    /// [`TextEncoder::load`] with `loras` merged into the weights first (see [`crate::lora`]);
    /// their `unet` keys are skipped. With no LoRAs this is exactly [`TextEncoder::load`].
    pub fn load_with_loras(
        text_encoder_dir: &Path,
        dtype: DType,
        device: &Device,
        loras: &[Lora],
    ) -> Result<TextEncoder, SdError> {
        let files = ComponentFiles::locate(text_encoder_dir, "model")?;
        let (config, _raw): (TextConfig, _) = files.read_config()?;
        check_config(&config).map_err(|m| files.config_error(m))?;
        let vb = files.var_builder_modified(dtype, device, loras, lora::TEXT_ENCODER, None)?;
        let vb = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
            vb.pp("text_model")
        } else {
            vb
        };
        Self::build(vb, config).map_err(|e| files.weights_error(e))
    }

    /// The config the encoder was built from.
    pub fn config(&self) -> &TextConfig {
        &self.config
    }

    /// Encodes token ids (B × T, any integer dtype, T ≤ `max_position_embeddings`) with a
    /// causal mask and no padding mask, as Stable Diffusion pipelines do.
    pub fn forward(&self, ids: &Tensor) -> Result<TextOutput, SdError> {
        let (batch, len) = self.check_ids(ids)?;
        let ids = ids.to_dtype(DType::U32)?;
        let positions = self.position_embedding.narrow(0, 0, len)?.unsqueeze(0)?;
        let mut xs = self.token_embedding.forward(&ids)?.broadcast_add(&positions)?;
        let mask = causal_mask(len, xs.device())?;
        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        hidden_states.push(xs.clone());
        for layer in &self.layers {
            xs = layer.forward(&xs, &mask, batch, len)?;
            hidden_states.push(xs.clone());
        }
        let last_hidden_state = self.final_layer_norm.forward(&xs)?;
        Ok(TextOutput { hidden_states, last_hidden_state })
    }

    fn check_ids(&self, ids: &Tensor) -> Result<(usize, usize), SdError> {
        let (batch, len) = ids
            .dims2()
            .map_err(|_| SdError::input(format!("token ids must be B×T, got {:?}", ids.dims())))?;
        if batch == 0 {
            return Err(SdError::input("token ids have an empty batch"));
        }
        if len == 0 || len > self.config.max_position_embeddings {
            return Err(SdError::input(format!(
                "{len} tokens; the text encoder takes 1 to {}",
                self.config.max_position_embeddings
            )));
        }
        if ids.dtype().is_float() {
            return Err(SdError::input(format!("token ids have float dtype {:?}", ids.dtype())));
        }
        let values = ids.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
        let vocab = self.config.vocab_size as i64;
        if let Some(bad) = values.iter().find(|&&id| id < 0 || id >= vocab) {
            return Err(SdError::input(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        Ok((batch, len))
    }

    pub(crate) fn build(
        vb: nn::VarBuilder,
        config: TextConfig,
    ) -> candle_core::Result<TextEncoder> {
        let d = config.hidden_size;
        let token_embedding =
            nn::embedding(config.vocab_size, d, vb.pp("embeddings.token_embedding"))?;
        let position_embedding =
            vb.get((config.max_position_embeddings, d), "embeddings.position_embedding.weight")?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| EncoderLayer::new(vb.pp("encoder.layers").pp(i), &config))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_layer_norm = nn::layer_norm(d, config.layer_norm_eps, vb.pp("final_layer_norm"))?;
        Ok(TextEncoder { config, token_embedding, position_embedding, layers, final_layer_norm })
    }
}

fn check_config(config: &TextConfig) -> Result<(), String> {
    let heads = config.num_attention_heads;
    if heads == 0 || !config.hidden_size.is_multiple_of(heads) {
        return Err(format!(
            "num_attention_heads = {heads} does not divide hidden_size = {}",
            config.hidden_size
        ));
    }
    if config.max_position_embeddings == 0 {
        return Err("max_position_embeddings must be positive".to_string());
    }
    Ok(())
}

/// `T × T`, 0 on and below the diagonal, −∞ above.
fn causal_mask(len: usize, device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (len, len), device)
}

/// Pre-norm self-attention and MLP, each residual.
#[derive(Debug)]
struct EncoderLayer {
    layer_norm1: nn::LayerNorm,
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    out_proj: nn::Linear,
    layer_norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: usize,
    act: HiddenAct,
}

impl EncoderLayer {
    fn new(vb: nn::VarBuilder, config: &TextConfig) -> candle_core::Result<Self> {
        let (d, eps) = (config.hidden_size, config.layer_norm_eps);
        let attn = vb.pp("self_attn");
        let square = |p: &str| nn::linear(d, d, attn.pp(p));
        Ok(EncoderLayer {
            layer_norm1: nn::layer_norm(d, eps, vb.pp("layer_norm1"))?,
            q_proj: square("q_proj")?,
            k_proj: square("k_proj")?,
            v_proj: square("v_proj")?,
            out_proj: square("out_proj")?,
            layer_norm2: nn::layer_norm(d, eps, vb.pp("layer_norm2"))?,
            fc1: nn::linear(d, config.intermediate_size, vb.pp("mlp.fc1"))?,
            fc2: nn::linear(config.intermediate_size, d, vb.pp("mlp.fc2"))?,
            heads: config.num_attention_heads,
            act: config.hidden_act,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        mask: &Tensor,
        batch: usize,
        len: usize,
    ) -> candle_core::Result<Tensor> {
        let xs = (self.attention(&self.layer_norm1.forward(xs)?, mask, batch, len)? + xs)?;
        let mlp = self
            .fc2
            .forward(&self.act.apply(&self.fc1.forward(&self.layer_norm2.forward(&xs)?)?)?)?;
        mlp + xs
    }

    fn attention(
        &self,
        xs: &Tensor,
        mask: &Tensor,
        batch: usize,
        len: usize,
    ) -> candle_core::Result<Tensor> {
        let dim = xs.dim(D::Minus1)?;
        let head_dim = dim / self.heads;
        let in_dtype = xs.dtype();
        let split = |t: Tensor| {
            t.reshape((batch, len, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()?
                .to_dtype(DType::F32)
        };
        let q = split(self.q_proj.forward(xs)?)?;
        let k = split(self.k_proj.forward(xs)?)?;
        let v = split(self.v_proj.forward(xs)?)?;
        let scale = (head_dim as f64).powf(-0.5);
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
        let probs = nn::ops::softmax_last_dim(&scores)?;
        let out =
            probs.matmul(&v)?.to_dtype(in_dtype)?.transpose(1, 2)?.reshape((batch, len, dim))?;
        self.out_proj.forward(&out)
    }
}
