//! `UNetConfig`: the fields of diffusers' `UNet2DConditionModel` config that SD 1.x/2.x use,
//! and their resolution into per-block shapes.
//!
//! Defaults are diffusers' own. Every other field of `config.json` must be absent or hold its
//! default (`UNSUPPORTED`), so an SDXL or otherwise exotic U-Net is refused by name instead of
//! being run wrongly.

use serde::{Deserialize, Serialize};

use crate::config_check::Accepted;

/// A value given once for all blocks or once per block, as diffusers allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, expecting = "expected an integer, or a list of integers with one per block")]
pub enum PerBlock {
    /// The same value for every block.
    All(usize),
    /// One value per down block (up blocks use them reversed).
    Each(Vec<usize>),
}

impl PerBlock {
    /// The per-down-block values, or a message naming `field` if the list has the wrong length.
    pub fn resolve(&self, blocks: usize, field: &str) -> Result<Vec<usize>, String> {
        match self {
            PerBlock::All(v) => Ok(vec![*v; blocks]),
            PerBlock::Each(v) if v.len() == blocks => Ok(v.clone()),
            PerBlock::Each(v) => {
                Err(format!("{field} has {} entries but there are {blocks} blocks", v.len()))
            }
        }
    }
}

/// The diffusers `UNet2DConditionModel` config fields this crate reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UNetConfig {
    /// Latent channels in.
    pub in_channels: usize,
    /// Channels out (the noise / v prediction).
    pub out_channels: usize,
    /// Default latent side the model was trained at.
    pub sample_size: Option<usize>,
    /// Whether the sample is mapped from [0, 1] to [-1, 1] first.
    pub center_input_sample: bool,
    /// Timestep embedding order: `[cos, sin]` when true.
    pub flip_sin_to_cos: bool,
    /// Timestep embedding frequency shift.
    pub freq_shift: f64,
    /// `CrossAttnDownBlock2D` or `DownBlock2D` per block.
    pub down_block_types: Vec<String>,
    /// `CrossAttnUpBlock2D` or `UpBlock2D` per block.
    pub up_block_types: Vec<String>,
    /// Channels per down block.
    pub block_out_channels: Vec<usize>,
    /// Resnets per down block (up blocks have one more).
    pub layers_per_block: PerBlock,
    /// Padding of the downsampling convolutions.
    pub downsample_padding: usize,
    /// The mid block's resnet output scale.
    pub mid_block_scale_factor: f64,
    /// Group-norm groups everywhere except inside the transformers' layer norms.
    pub norm_num_groups: usize,
    /// Group-norm epsilon of the resnets and the output norm.
    pub norm_eps: f64,
    /// Width of the text encoder states attended to.
    pub cross_attention_dim: usize,
    /// Transformer blocks per `Transformer2DModel`.
    pub transformer_layers_per_block: PerBlock,
    /// The number of attention heads per block (diffusers' historical misnomer in SD 1.x/2.x).
    pub attention_head_dim: PerBlock,
    /// Linear instead of 1×1-convolution projections around the transformers (SD 2.x).
    pub use_linear_projection: bool,
    /// Compute attention scores in f32 (SD 2.1); attention here always runs in f32.
    pub upcast_attention: bool,
}

impl Default for UNetConfig {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        UNetConfig {
            in_channels: 4,
            out_channels: 4,
            sample_size: None,
            center_input_sample: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            down_block_types: strings(&[CROSS_DOWN, CROSS_DOWN, CROSS_DOWN, PLAIN_DOWN]),
            up_block_types: strings(&[PLAIN_UP, CROSS_UP, CROSS_UP, CROSS_UP]),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: PerBlock::All(2),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            cross_attention_dim: 1280,
            transformer_layers_per_block: PerBlock::All(1),
            attention_head_dim: PerBlock::All(8),
            use_linear_projection: false,
            upcast_attention: false,
        }
    }
}

const CROSS_DOWN: &str = "CrossAttnDownBlock2D";
const PLAIN_DOWN: &str = "DownBlock2D";
const CROSS_UP: &str = "CrossAttnUpBlock2D";
const PLAIN_UP: &str = "UpBlock2D";

/// Fields SD 1.x/2.x leave at their defaults; any other value is refused.
pub(crate) const UNSUPPORTED: &[(&str, &[Accepted])] = &[
    ("addition_embed_type", &[Accepted::Null]),
    ("addition_embed_type_num_heads", &[Accepted::Null, Accepted::Number(64.0)]),
    ("addition_time_embed_dim", &[Accepted::Null]),
    ("class_embed_type", &[Accepted::Null]),
    ("num_class_embeds", &[Accepted::Null]),
    ("projection_class_embeddings_input_dim", &[Accepted::Null]),
    ("class_embeddings_concat", &[Accepted::Bool(false)]),
    ("encoder_hid_dim", &[Accepted::Null]),
    ("encoder_hid_dim_type", &[Accepted::Null]),
    ("time_embedding_type", &[Accepted::Text("positional")]),
    ("time_embedding_dim", &[Accepted::Null]),
    ("time_embedding_act_fn", &[Accepted::Null]),
    ("time_cond_proj_dim", &[Accepted::Null]),
    ("timestep_post_act", &[Accepted::Null]),
    ("num_attention_heads", &[Accepted::Null]),
    ("only_cross_attention", &[Accepted::Bool(false)]),
    ("dual_cross_attention", &[Accepted::Bool(false)]),
    ("mid_block_only_cross_attention", &[Accepted::Null, Accepted::Bool(false)]),
    ("mid_block_type", &[Accepted::Text("UNetMidBlock2DCrossAttn")]),
    ("reverse_transformer_layers_per_block", &[Accepted::Null]),
    ("resnet_time_scale_shift", &[Accepted::Text("default")]),
    ("resnet_skip_time_act", &[Accepted::Bool(false)]),
    ("resnet_out_scale_factor", &[Accepted::Number(1.0)]),
    ("act_fn", &[Accepted::Text("silu")]),
    ("attention_type", &[Accepted::Text("default")]),
    ("cross_attention_norm", &[Accepted::Null]),
    ("conv_in_kernel", &[Accepted::Number(3.0)]),
    ("conv_out_kernel", &[Accepted::Number(3.0)]),
];

/// One down block and, mirrored, the up block at the same depth, resolved from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockPlan {
    pub(crate) channels: usize,
    pub(crate) layers: usize,
    pub(crate) heads: usize,
    pub(crate) transformer_depth: usize,
}

/// The resolved config: per down block, plus which down and up blocks have attention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) blocks: Vec<BlockPlan>,
    pub(crate) down_cross: Vec<bool>,
    pub(crate) up_cross: Vec<bool>,
}

impl UNetConfig {
    /// Resolves per-block values and checks they fit together; errors name the field.
    pub(crate) fn plan(&self) -> Result<Plan, String> {
        let n = self.block_out_channels.len();
        if n == 0 {
            return Err("block_out_channels is empty".to_string());
        }
        let down_cross =
            block_kinds(&self.down_block_types, "down_block_types", n, CROSS_DOWN, PLAIN_DOWN)?;
        let up_cross = block_kinds(&self.up_block_types, "up_block_types", n, CROSS_UP, PLAIN_UP)?;
        let layers = self.layers_per_block.resolve(n, "layers_per_block")?;
        let heads = self.attention_head_dim.resolve(n, "attention_head_dim")?;
        let depth = self.transformer_layers_per_block.resolve(n, "transformer_layers_per_block")?;
        for (field, value) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("norm_num_groups", self.norm_num_groups),
            ("cross_attention_dim", self.cross_attention_dim),
        ] {
            if value == 0 {
                return Err(format!("{field} must be positive"));
            }
        }
        let mut blocks = Vec::with_capacity(n);
        for i in 0..n {
            let channels = self.block_out_channels[i];
            if channels == 0 || !channels.is_multiple_of(self.norm_num_groups) {
                return Err(format!(
                    "block_out_channels[{i}] = {channels} is not a positive multiple of norm_num_groups = {}",
                    self.norm_num_groups
                ));
            }
            if layers[i] == 0 {
                return Err(format!("layers_per_block[{i}] must be positive"));
            }
            // The mid block uses the last block's heads; up block n-1-i mirrors down block i.
            let has_attention = down_cross[i] || up_cross[n - 1 - i] || i + 1 == n;
            if has_attention && (heads[i] == 0 || !channels.is_multiple_of(heads[i])) {
                return Err(format!(
                    "attention_head_dim[{i}] = {} heads do not divide block_out_channels[{i}] = {channels}",
                    heads[i]
                ));
            }
            if depth[i] == 0 {
                return Err(format!("transformer_layers_per_block[{i}] must be positive"));
            }
            blocks.push(BlockPlan {
                channels,
                layers: layers[i],
                heads: heads[i],
                transformer_depth: depth[i],
            });
        }
        Ok(Plan { blocks, down_cross, up_cross })
    }
}

/// Whether each listed block type is the cross-attention kind.
fn block_kinds(
    types: &[String],
    field: &str,
    n: usize,
    cross: &str,
    plain: &str,
) -> Result<Vec<bool>, String> {
    if types.len() != n {
        return Err(format!("{field} has {} entries but block_out_channels has {n}", types.len()));
    }
    types
        .iter()
        .map(|t| match t.as_str() {
            t if t == cross => Ok(true),
            t if t == plain => Ok(false),
            other => Err(format!(
                "{field}: block type {other:?} is not supported (supported: {cross:?}, {plain:?})"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd15_defaults_resolve_to_four_blocks() {
        let plan = UNetConfig::default().plan().unwrap();
        assert_eq!(plan.blocks.len(), 4);
        assert_eq!(plan.down_cross, vec![true, true, true, false]);
        assert_eq!(plan.up_cross, vec![false, true, true, true]);
        assert_eq!(plan.blocks[2].heads, 8);
    }

    #[test]
    fn per_block_lists_must_match_the_block_count() {
        let config =
            UNetConfig { attention_head_dim: PerBlock::Each(vec![5, 10]), ..UNetConfig::default() };
        let message = config.plan().unwrap_err();
        assert!(message.starts_with("attention_head_dim"), "{message}");
    }

    #[test]
    fn heads_must_divide_channels() {
        let config = UNetConfig {
            attention_head_dim: PerBlock::Each(vec![8, 8, 8, 7]),
            ..UNetConfig::default()
        };
        assert!(config.plan().unwrap_err().starts_with("attention_head_dim[3]"));
    }
}
