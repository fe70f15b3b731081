//! With candle's tanh GELU swapped in, `UNet` must equal candle's stock
//! `UNet2DConditionModel` bit for bit on the same weights; with erf GELU (the default) it must
//! not. Also checks that `forward` records exactly `taps()`, in order, with the listed shapes.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModel, UNet2DConditionModelConfig,
};
use serde_json::json;

use crate::tests::{max_relative_error, wave};
use crate::unet::GateGelu;
use crate::{NoTaps, TapKind, TapRecorder, UNet};

struct Case {
    name: &'static str,
    /// (channels, cross-attention?, heads) per block.
    blocks: &'static [(usize, bool, usize)],
    layers_per_block: usize,
    linear_projection: bool,
    latent: (usize, usize),
}

const CASES: &[Case] = &[
    Case {
        name: "sd1-like, conv projection",
        blocks: &[(32, true, 2), (64, false, 2)],
        layers_per_block: 1,
        linear_projection: false,
        latent: (8, 8),
    },
    Case {
        name: "sd2-like, linear projection, odd latent",
        blocks: &[(32, true, 2), (64, true, 4), (64, false, 4)],
        layers_per_block: 2,
        linear_projection: true,
        latent: (6, 10),
    },
];

const CONTEXT_DIM: usize = 16;

/// Builds candle's stock U-Net on fresh random weights, perturbs every 1-D tensor (norms,
/// biases) so equality is not trivial, and saves it in the diffusers layout under `dir`.
fn write_stock_model(case: &Case, dir: &Path) -> UNet2DConditionModel {
    let config = UNet2DConditionModelConfig {
        blocks: case
            .blocks
            .iter()
            .map(|&(out_channels, cross, heads)| BlockConfig {
                out_channels,
                use_cross_attn: cross.then_some(1),
                attention_head_dim: heads,
            })
            .collect(),
        layers_per_block: case.layers_per_block,
        cross_attention_dim: CONTEXT_DIM,
        use_linear_projection: case.linear_projection,
        ..Default::default()
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let stock = UNet2DConditionModel::new(vb, 4, 4, false, config).expect("stock U-Net builds");
    for (i, (_, var)) in varmap.data().lock().unwrap().iter().enumerate() {
        if var.rank() == 1 {
            let bump = wave(var.dims(), i as f64).affine(0.1, 0.0).unwrap();
            var.set(&(var.as_tensor() + bump).unwrap()).unwrap();
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    varmap.save(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    let down: Vec<&str> = case
        .blocks
        .iter()
        .map(|b| if b.1 { "CrossAttnDownBlock2D" } else { "DownBlock2D" })
        .collect();
    let up: Vec<&str> = case
        .blocks
        .iter()
        .rev()
        .map(|b| if b.1 { "CrossAttnUpBlock2D" } else { "UpBlock2D" })
        .collect();
    let config = json!({
        "_class_name": "UNet2DConditionModel",
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": case.blocks.iter().map(|b| b.0).collect::<Vec<_>>(),
        "attention_head_dim": case.blocks.iter().map(|b| b.2).collect::<Vec<_>>(),
        "layers_per_block": case.layers_per_block,
        "norm_num_groups": 32,
        "cross_attention_dim": CONTEXT_DIM,
        "use_linear_projection": case.linear_projection,
        "addition_embed_type": null,
        "class_embed_type": null,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    stock
}

/// Writes the first case's stock model into `dir` (for tests that need any valid U-Net).
pub(super) fn write_stock_unet(dir: &Path) {
    write_stock_model(&CASES[0], dir);
}

#[test]
fn tanh_gate_unet_equals_candle_stock_unet_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    for case in CASES {
        let dir = tmp.path().join(case.name.replace([' ', ','], "_"));
        let stock = write_stock_model(case, &dir);
        let ours = UNet::load_with_gate(&dir, DType::F32, &Device::Cpu, GateGelu::Tanh).unwrap();
        let exact = UNet::load(&dir, DType::F32, &Device::Cpu).unwrap();

        let (h, w) = case.latent;
        let sample = wave(&[2, 4, h, w], 0.0);
        let context = wave(&[2, 7, CONTEXT_DIM], 1.0);
        for timestep in [981.0, 1.0, 457.25] {
            let expected = stock.forward(&sample, timestep, &context).unwrap();
            let got = ours.forward(&sample, timestep, &context, &mut NoTaps).unwrap();
            let diff = (&got - &expected).unwrap().abs().unwrap();
            let max = diff.max_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(max, 0.0, "{}: t = {timestep}: max |diff| {max}", case.name);

            let erf = exact.forward(&sample, timestep, &context, &mut NoTaps).unwrap();
            let gap = max_relative_error(&erf, &expected);
            assert!(gap > 0.0 && gap < 1e-2, "{}: erf vs tanh gap {gap}", case.name);
        }
    }
}

#[test]
fn forward_records_exactly_the_listed_taps_with_their_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let case = &CASES[1];
    write_stock_model(case, tmp.path());
    let unet = UNet::load(tmp.path(), DType::F32, &Device::Cpu).unwrap();
    let (h, w) = (8, 12);
    let sample = wave(&[3, 4, h, w], 0.5);
    let context = wave(&[3, 5, CONTEXT_DIM], 2.0);
    let mut recorder = TapRecorder::all();
    let out = unet.forward(&sample, 500.0, &context, &mut recorder).unwrap();

    let listed = unet.taps();
    let recorded: Vec<&str> = recorder.recorded.iter().map(|(n, _)| n.as_str()).collect();
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(recorded, names);
    assert_eq!(names.last(), Some(&"out"));
    for (tap, (_, value)) in listed.iter().zip(&recorder.recorded) {
        let expected = match tap.kind {
            TapKind::Spatial { downsample } => {
                vec![3, tap.channels, h / downsample, w / downsample]
            }
            TapKind::Tokens { downsample } => {
                vec![3, (h / downsample) * (w / downsample), tap.channels]
            }
        };
        assert_eq!(value.dims(), expected.as_slice(), "{}", tap.name);
    }
    let last: &Tensor = &recorder.recorded.last().unwrap().1;
    assert_eq!(max_relative_error(last, &out), 0.0);

    // A sink that wants one tap gets only that one.
    let mut one = TapRecorder::only(["mid_block.attentions.0"]);
    unet.forward(&sample, 500.0, &context, &mut one).unwrap();
    assert_eq!(one.recorded.len(), 1);
    assert_eq!(one.recorded[0].0, "mid_block.attentions.0");
}

#[test]
fn plain_blocks_honour_norm_num_groups_unlike_candle() {
    // 48 and 96 channels divide into 16 groups but not into candle's hard-wired 32.
    let config = json!({
        "block_out_channels": [48, 96],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "attention_head_dim": 2,
        "layers_per_block": 1,
        "norm_num_groups": 16,
        "cross_attention_dim": CONTEXT_DIM,
    });
    let stock_config = UNet2DConditionModelConfig {
        blocks: vec![
            BlockConfig { out_channels: 48, use_cross_attn: Some(1), attention_head_dim: 2 },
            BlockConfig { out_channels: 96, use_cross_attn: None, attention_head_dim: 2 },
        ],
        layers_per_block: 1,
        norm_num_groups: 16,
        cross_attention_dim: CONTEXT_DIM,
        ..Default::default()
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    assert!(UNet2DConditionModel::new(vb, 4, 4, false, stock_config).is_err());

    let tmp = tempfile::tempdir().unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let parsed: crate::UNetConfig = serde_json::from_value(config.clone()).unwrap();
    let plan = parsed.plan().unwrap();
    UNet::build(vb, parsed, &plan, DType::F32, GateGelu::Erf).unwrap();
    varmap.save(tmp.path().join("diffusion_pytorch_model.safetensors")).unwrap();
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    let unet = UNet::load(tmp.path(), DType::F32, &Device::Cpu).unwrap();
    let out = unet
        .forward(&wave(&[1, 4, 8, 8], 0.0), 10.0, &wave(&[1, 3, CONTEXT_DIM], 1.0), &mut NoTaps)
        .unwrap();
    assert_eq!(out.dims(), &[1, 4, 8, 8]);
}
