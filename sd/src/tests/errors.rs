//! The loading-error table: each broken checkpoint gives the right `SdError`, naming the path,
//! field or tensor at fault. Models are written on the fly into temporary folders.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{json, Value};

use crate::tests::candle_stock::write_stock_unet;
use crate::tests::wave;
use crate::{SdError, TextEncoder, UNet, Vae, VaeDecoder};

/// What a load is expected to fail with.
#[derive(Debug)]
enum Expect {
    Io(PathBuf),
    MissingWeights(PathBuf),
    Config { path: PathBuf, mentions: &'static str },
    Weights { path: PathBuf, mentions: &'static str },
}

fn check(what: &str, result: Result<(), SdError>, expect: Expect) {
    let error = match result {
        Ok(()) => panic!("{what}: loaded, expected {expect:?}"),
        Err(e) => e,
    };
    let shown = error.to_string();
    let ok = match (&error, &expect) {
        (SdError::Io { path, .. }, Expect::Io(p)) => path == p,
        (SdError::MissingWeights { path }, Expect::MissingWeights(p)) => path == p,
        (SdError::Config { path, message }, Expect::Config { path: p, mentions }) => {
            path == p && message.contains(mentions)
        }
        (SdError::Weights { path, message }, Expect::Weights { path: p, mentions }) => {
            path == p && message.contains(mentions)
        }
        _ => false,
    };
    assert!(ok, "{what}: got {error:?} ({shown}), expected {expect:?}");
    if let Expect::Config { mentions, .. } | Expect::Weights { mentions, .. } = &expect {
        assert!(shown.contains(mentions), "{what}: message {shown:?}");
    }
}

/// Rewrites `file` with `tensor` replaced by one of `shape`.
fn tamper(file: &Path, tensor: &str, shape: &[usize]) {
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(file, &Device::Cpu).unwrap();
    assert!(tensors.contains_key(tensor), "{tensor} not in {}", file.display());
    tensors.insert(tensor.to_string(), wave(shape, 0.0));
    candle_core::safetensors::save(&tensors, file).unwrap();
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn load_unet(dir: &Path) -> Result<(), SdError> {
    UNet::load(dir, DType::F32, &Device::Cpu).map(drop)
}

#[test]
fn unet_loading_errors_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good/unet");
    write_stock_unet(&good);
    load_unet(&good).expect("the untouched model loads");
    let weights = "diffusion_pytorch_model.safetensors";
    let fresh = |name: &str| {
        let dir = tmp.path().join(name).join("unet");
        copy_dir(&good, &dir);
        dir
    };

    let missing = tmp.path().join("nowhere/unet");
    check("missing unet dir", load_unet(&missing), Expect::Io(missing.clone()));

    let dir = fresh("no-weights");
    std::fs::remove_file(dir.join(weights)).unwrap();
    check("missing weights", load_unet(&dir), Expect::MissingWeights(dir.join(weights)));

    let dir = fresh("fp16-name");
    std::fs::rename(dir.join(weights), dir.join("diffusion_pytorch_model.fp16.safetensors"))
        .unwrap();
    load_unet(&dir).expect("the .fp16.safetensors name is found");

    let dir = fresh("no-config");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    check("missing config", load_unet(&dir), Expect::Io(dir.join("config.json")));

    let dir = fresh("bad-shape");
    let tensor = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight";
    tamper(&dir.join(weights), tensor, &[32, 17]);
    let expect = Expect::Weights { path: dir.join(weights), mentions: tensor };
    check("wrong tensor shape", load_unet(&dir), expect);

    let dir = fresh("missing-tensor");
    let mut tensors = candle_core::safetensors::load(dir.join(weights), &Device::Cpu).unwrap();
    tensors.remove("mid_block.resnets.1.conv2.bias");
    candle_core::safetensors::save(&tensors, dir.join(weights)).unwrap();
    let expect =
        Expect::Weights { path: dir.join(weights), mentions: "mid_block.resnets.1.conv2.bias" };
    check("missing tensor", load_unet(&dir), expect);

    let config_cases: [(&str, &str, Value); 5] = [
        ("sdxl", "addition_embed_type", json!("text_time")),
        ("class-embed", "class_embed_type", json!("timestep")),
        ("heads-list", "attention_head_dim", json!([2, 4, 8])),
        ("block-type", "down_block_types", json!(["CrossAttnDownBlock2D", "SimpleDownBlock2D"])),
        ("wrong-type", "layers_per_block", json!("two")),
    ];
    for (name, field, value) in config_cases {
        let dir = fresh(name);
        edit_config(&dir, |c| c[field] = value);
        let expect = Expect::Config { path: dir.join("config.json"), mentions: field };
        check(name, load_unet(&dir), expect);
    }
}

/// Writes a random CLIP text encoder (keys without the `text_model.` prefix, as
/// transformers 5 saves them).
pub(super) fn write_text_encoder(dir: &Path, hidden_act: &str) {
    let config = json!({
        "vocab_size": 100,
        "hidden_size": 16,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "hidden_act": hidden_act,
        "projection_dim": 16,
    });
    write_random_component(dir, "model.safetensors", &config, |vb| {
        TextEncoder::build(vb, serde_json::from_value(config.clone()).unwrap()).map(drop)
    });
}

/// Writes a random VAE encoder in the diffusers layout.
pub(super) fn write_vae(dir: &Path) {
    let config = json!({
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "scaling_factor": 0.13025,
    });
    write_random_component(dir, "diffusion_pytorch_model.safetensors", &config, |vb| {
        Vae::build(vb, serde_json::from_value(config.clone()).unwrap(), DType::F32).map(drop)
    });
}

/// Builds a component on a `VarMap` (which creates every tensor it is asked for), then saves
/// the tensors and `config` into `dir`.
fn write_random_component(
    dir: &Path,
    weights: &str,
    config: &Value,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<()>,
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    build(vb).unwrap();
    varmap.save(dir.join(weights)).unwrap();
}

#[test]
fn text_encoder_and_vae_loading_errors_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("text_encoder");
    write_text_encoder(&text, "gelu");
    TextEncoder::load(&text, DType::F32, &Device::Cpu).expect("the untouched encoder loads");

    let missing = tmp.path().join("nowhere");
    let result = TextEncoder::load(&missing, DType::F32, &Device::Cpu).map(drop);
    check("missing text encoder dir", result, Expect::Io(missing));

    let weights = text.join("model.safetensors");
    tamper(&weights, "encoder.layers.1.mlp.fc1.weight", &[64, 8]);
    let result = TextEncoder::load(&text, DType::F32, &Device::Cpu).map(drop);
    let expect = Expect::Weights { path: weights, mentions: "encoder.layers.1.mlp.fc1.weight" };
    check("wrong text tensor shape", result, expect);

    edit_config(&text, |c| c["hidden_act"] = json!("relu"));
    let result = TextEncoder::load(&text, DType::F32, &Device::Cpu).map(drop);
    let expect = Expect::Config { path: text.join("config.json"), mentions: "hidden_act" };
    check("unknown activation", result, expect);

    let vae = tmp.path().join("vae");
    write_vae(&vae);
    let loaded = Vae::load(&vae, DType::F32, &Device::Cpu).expect("the untouched VAE loads");
    assert_eq!(loaded.scaling_factor(), 0.13025);
    assert_eq!(loaded.downsample_factor(), 2);
    edit_config(&vae, |c| c["mid_block_add_attention"] = json!(false));
    let result = Vae::load(&vae, DType::F32, &Device::Cpu).map(drop);
    let expect =
        Expect::Config { path: vae.join("config.json"), mentions: "mid_block_add_attention" };
    check("vae without mid attention", result, expect);
    // The decoder reads the same config and refuses it the same way (not a panic).
    let result = VaeDecoder::load(&vae, DType::F32, &Device::Cpu).map(drop);
    let expect =
        Expect::Config { path: vae.join("config.json"), mentions: "mid_block_add_attention" };
    check("vae decoder without mid attention", result, expect);
    edit_config(&vae, |c| {
        c["mid_block_add_attention"] = json!(true);
        c["block_out_channels"] = json!([]);
    });
    let result = VaeDecoder::load(&vae, DType::F32, &Device::Cpu).map(drop);
    let expect = Expect::Config { path: vae.join("config.json"), mentions: "block_out_channels" };
    check("vae decoder without blocks", result, expect);
}
