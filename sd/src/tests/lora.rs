//! LoRA merging against diffusers: the tiny SD 1 fixture with a LoRA in diffusers/PEFT and in
//! kohya layout, and with diffusers' `lora_adapter_metadata` (`tests/fixtures/tiny-sd-1-lora-*.safetensors`) must give the U-Net output and
//! `mid_block` output of diffusers' `load_lora_weights` + `fuse_lora(lora_scale=0.7)`
//! (`tests/golden/sd/lora/`, written by `scripts/make_lora_golden.py`); scale 0 must give the
//! plain model bit for bit; a key that matches nothing is an error naming it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::tests::{max_relative_error, wave, workspace_tests_dir};
use crate::{Lora, SdError, TapRecorder, TextEncoder, UNet};

const TOLERANCE: f64 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    workspace_tests_dir().join("fixtures").join(name)
}

fn unet_dir() -> PathBuf {
    fixture("tiny-sd-1").join("unet")
}

fn lora(layout: &str, scale: f64) -> Lora {
    Lora { path: fixture(&format!("tiny-sd-1-lora-{layout}.safetensors")), scale }
}

fn golden() -> HashMap<String, Tensor> {
    let path = workspace_tests_dir().join("golden/sd/lora/tiny-sd-1-lora.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu).expect("LoRA golden loads")
}

/// The U-Net output and `mid_block` output on the golden's inputs.
fn run(unet: &UNet, g: &HashMap<String, Tensor>) -> (Tensor, Tensor) {
    let t = g["timestep"].to_vec1::<f32>().unwrap()[0] as f64;
    let mut recorder = TapRecorder::only(["mid_block"]);
    let out = unet.forward(&g["sample"], t, &g["context"], &mut recorder).unwrap();
    (out, recorder.get("mid_block").expect("mid_block recorded").clone())
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn merged_lora_matches_diffusers_fuse_lora() {
    let g = golden();
    let base = UNet::load(&unet_dir(), DType::F32, &Device::Cpu).unwrap();
    let (out, mid) = run(&base, &g);
    let mut worst = vec![
        ("base out", max_relative_error(&out, &g["base.out"])),
        ("base mid_block", max_relative_error(&mid, &g["base.mid_block"])),
    ];
    for layout in ["peft", "peft-meta", "kohya"] {
        let unet =
            UNet::load_with_loras(&unet_dir(), DType::F32, &Device::Cpu, &[lora(layout, 0.7)])
                .unwrap_or_else(|e| panic!("{layout}: {e}"));
        let (out, mid) = run(&unet, &g);
        let (want_out, want_mid) =
            (&g[&format!("{layout}.out")], &g[&format!("{layout}.mid_block")]);
        worst.push((layout, max_relative_error(&out, want_out)));
        worst.push((layout, max_relative_error(&mid, want_mid)));
        // The LoRA must matter: the merged output is far from the plain one.
        assert!(max_relative_error(&out, &g["base.out"]) > 1e-2, "{layout}: LoRA had no effect");
    }
    println!("LoRA vs diffusers fuse_lora, relative errors: {worst:?}");
    assert!(worst.iter().all(|(_, e)| *e <= TOLERANCE), "{worst:?}");
}

#[test]
fn scale_zero_is_the_plain_model_bit_for_bit() {
    let g = golden();
    let plain = UNet::load(&unet_dir(), DType::F32, &Device::Cpu).unwrap();
    let zero = [lora("peft", 0.0), lora("kohya", 0.0)];
    let merged = UNet::load_with_loras(&unet_dir(), DType::F32, &Device::Cpu, &zero).unwrap();
    let (a, b) = (run(&plain, &g), run(&merged, &g));
    assert_eq!(values(&a.0), values(&b.0));
    assert_eq!(values(&a.1), values(&b.1));
    // Two LoRAs add up: peft at s and kohya (alpha/r = 1/2, same matrices) at 2s are both 1·s.
    let twice = [lora("peft", 0.35), lora("kohya", 0.7)];
    let merged = UNet::load_with_loras(&unet_dir(), DType::F32, &Device::Cpu, &twice).unwrap();
    let full =
        UNet::load_with_loras(&unet_dir(), DType::F32, &Device::Cpu, &[lora("peft", 0.7)]).unwrap();
    assert!(max_relative_error(&run(&merged, &g).0, &run(&full, &g).0) < 1e-5);
}

fn write_lora(dir: &Path, name: &str, tensors: &[(&str, Tensor)]) -> PathBuf {
    let path = dir.join(name);
    let map: HashMap<String, Tensor> =
        tensors.iter().map(|(k, t)| (k.to_string(), t.clone())).collect();
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

fn lora_error(path: &Path, scale: f64) -> (String, String) {
    let loras = [Lora { path: path.to_path_buf(), scale }];
    match UNet::load_with_loras(&unet_dir(), DType::F32, &Device::Cpu, &loras) {
        Err(e @ SdError::Lora { .. }) => {
            let SdError::Lora { ref key, .. } = e else { unreachable!() };
            (key.clone(), e.to_string())
        }
        Err(e) => panic!("expected a Lora error, got {e}"),
        Ok(_) => panic!("{} loaded", path.display()),
    }
}

#[test]
fn bad_keys_are_errors_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = wave(&[2, 32], 0.1);
    let b = wave(&[32, 2], 0.2);
    let q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1";
    let cases = [
        (format!("unet.{q}.to_zz.lora_A.weight"), "matches no weight of the U-Net"),
        ("lora_unet_down_blocks_9_resnets_0_conv1.lora_down.weight".into(), "matches no weight"),
        (format!("unet.{q}.to_q.weight"), "is not a LoRA tensor"),
        (format!("vae.{q}.to_q.lora_A.weight"), "belongs to no component"),
    ];
    for (i, (key, why)) in cases.iter().enumerate() {
        let path = write_lora(dir.path(), &format!("bad{i}.safetensors"), &[(key, a.clone())]);
        // Checked even at scale 0.
        let (named, message) = lora_error(&path, 0.0);
        assert_eq!(&named, key);
        assert!(message.contains(key.as_str()) && message.contains(why), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
    // Shapes that do not fit, and a matrix without its partner.
    let to_q = format!("unet.{q}.to_q");
    let path = write_lora(
        dir.path(),
        "shape.safetensors",
        &[
            (&format!("{to_q}.lora_A.weight"), a.clone()),
            (&format!("{to_q}.lora_B.weight"), a.clone()),
        ],
    );
    assert!(lora_error(&path, 1.0).1.contains("do not fit"));
    let path = write_lora(
        dir.path(),
        "half.safetensors",
        &[(&format!("{to_q}.lora_B.weight"), b.clone())],
    );
    assert!(lora_error(&path, 1.0).1.contains("has no down"));
    // Text-encoder keys are skipped by the U-Net (and merged by the text encoder).
    let te_key = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj";
    let path = write_lora(
        dir.path(),
        "both.safetensors",
        &[
            (&format!("{to_q}.lora_A.weight"), a.clone()),
            (&format!("{to_q}.lora_B.weight"), b.clone()),
            (&format!("{te_key}.lora_A.weight"), wave(&[2, 16], 0.3)),
            (&format!("{te_key}.lora_B.weight"), wave(&[16, 2], 0.4)),
        ],
    );
    let loras = [Lora { path: path.clone(), scale: 1.0 }];
    UNet::load_with_loras(&unet_dir(), DType::F32, &Device::Cpu, &loras).unwrap();
    let text_dir = fixture("tiny-sd-1").join("text_encoder");
    let ids = Tensor::new(&[[0u32, 5, 9, 2]], &Device::Cpu).unwrap();
    let plain = TextEncoder::load(&text_dir, DType::F32, &Device::Cpu).unwrap();
    let merged = TextEncoder::load_with_loras(&text_dir, DType::F32, &Device::Cpu, &loras).unwrap();
    let zero = [Lora { path, scale: 0.0 }];
    let zero = TextEncoder::load_with_loras(&text_dir, DType::F32, &Device::Cpu, &zero).unwrap();
    let h = |t: &TextEncoder| values(&t.forward(&ids).unwrap().last_hidden_state);
    assert_eq!(h(&plain), h(&zero));
    assert_ne!(h(&plain), h(&merged));
}

/// A one-tensor LoRA file whose header carries `lora_adapter_metadata` = `meta` (candle cannot
/// write safetensors metadata, so the header is written by hand).
fn write_with_metadata(path: &Path, key: &str, meta: &str) {
    let header = serde_json::json!({
        "__metadata__": { "lora_adapter_metadata": meta },
        key: { "dtype": "F32", "shape": [1, 32], "data_offsets": [0, 128] },
    })
    .to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 128]);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn unsupported_adapter_metadata_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight";
    for (i, meta) in [
        r#"{"unet.use_dora": true}"#,
        r#"{"unet.rank_pattern": {"to_q": 8}}"#,
        r#"{"unet.lora_alpha": "eight"}"#,
    ]
    .iter()
    .enumerate()
    {
        let path = dir.path().join(format!("meta{i}.safetensors"));
        write_with_metadata(&path, key, meta);
        let (named, message) = lora_error(&path, 1.0);
        assert_eq!(named, "lora_adapter_metadata", "{message}");
    }
    // Text-encoder settings do not concern the U-Net.
    let path = dir.path().join("te.safetensors");
    write_with_metadata(&path, key, r#"{"text_encoder.use_dora": true, "unet.r": 4}"#);
    // (The one tensor has no partner: the error is about that, not the metadata.)
    assert!(lora_error(&path, 1.0).1.contains("has no up"));
}

#[test]
fn lcm_distilled_unet_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let unet = dir.path().join("unet");
    std::fs::create_dir(&unet).unwrap();
    let config = std::fs::read_to_string(unet_dir().join("config.json")).unwrap();
    let config = config.replace("\"time_cond_proj_dim\": null", "\"time_cond_proj_dim\": 256");
    std::fs::write(unet.join("config.json"), config).unwrap();
    std::fs::copy(
        unet_dir().join("diffusion_pytorch_model.safetensors"),
        unet.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let e = UNet::load(&unet, DType::F32, &Device::Cpu).unwrap_err();
    assert!(
        matches!(e, SdError::Config { .. }) && e.to_string().contains("time_cond_proj_dim"),
        "{e}"
    );
}
