//! Stable Diffusion through the coordinator: the tiny random SD fixtures in generation and
//! real-image mode, and the bad input a researcher pointing at a real checkpoint can hit.

use std::path::{Path, PathBuf};

use crate::util;

fn fixture(name: &str) -> PathBuf {
    util::repo().join("tests/fixtures").join(name)
}

/// `n` stimuli with seeded pseudo-random ratings, and a spec for `model` with `capture`.
fn sd_spec(dir: &Path, n: usize, model: &Path, capture: &str) -> PathBuf {
    let mut csv = String::from("word,a,b\n");
    let mut x = 12345u64;
    for i in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let (a, b) = ((x >> 40) % 1000, (x >> 20) % 1000);
        csv.push_str(&format!("item{i},{}.{a:03},{}.{b:03}\n", i % 5, i % 3));
    }
    std::fs::write(dir.join("ratings.csv"), csv).unwrap();
    let spec = format!(
        r#"[job]
name = "sd"
output_dir = "{out}"

[model]
kind = "sd"
path = "{model}"
device = "cpu"

[stimuli]
file = "ratings.csv"
template = "a photo of a {{stimulus}}"

[targets]
file = "ratings.csv"
[targets.columns]
a = "a"
b = "b"

[analysis.attribute_probe]
folds = 3
components = 8
permutations = 19
seed = 3

[sweep]
stimuli_per_unit = 6
folds_per_unit = 3
lease_ttl_s = 10.0
heartbeat_s = 0.5
retry_backoff_s = 0.2

{capture}"#,
        out = dir.join("runs").display(),
        model = model.display(),
    );
    let path = dir.join("spec.toml");
    std::fs::write(&path, spec).unwrap();
    path
}

const GENERATE: &str = r#"[capture]
taps = ["text.final", "mid_block", "up_blocks.*", "out"]
batch_size = 4
seed = 11
[capture.generate]
steps = 4
record_steps = "0..4:2"
height = 16
width = 16
"#;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn features(run: &Path) -> Vec<(String, usize)> {
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(run.join("features")).unwrap() {
        let path = entry.unwrap().path();
        keys.extend(common::table::feature_index(&path).unwrap());
    }
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn tiny_sd_generation_sweep_through_the_coordinator() {
    let dir = util::scratch("sd_generation");
    let spec = sd_spec(&dir, 18, &fixture("tiny-sd-1"), GENERATE);
    let s = spec.to_str().unwrap();
    let plan = util::run(&["plan", s], &dir);
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    let text = stdout(&plan);
    // 8×8 latents: mid_block is 64 channels × 4 × 4; `out` is 4 × 8 × 8.
    for line in ["text.final/eos", "mid_block/flatten/k0", "mid_block/flatten/k2", "out/flatten/k2"]
    {
        assert!(text.contains(line), "plan lacks {line}:\n{text}");
    }
    assert!(text.contains("D = 1024"), "{text}");
    let out = util::run(&["run", s, "--workers", "2"], &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = dir.join("runs/sd");
    for f in util::REPORT_FILES {
        assert!(run.join("report").join(f).exists(), "missing {f}");
    }
    let keys = features(&run);
    assert!(keys.contains(&("mid_block/flatten/k2".to_string(), 1024)), "{keys:?}");
    assert!(keys.contains(&("out/flatten/k0".to_string(), 256)), "{keys:?}");
    assert!(keys.contains(&("up_blocks.1/mean/k0".to_string(), 32)), "{keys:?}");
    assert!(!keys.iter().any(|(k, _)| k.contains("/k1") || k.contains("/k3")), "{keys:?}");
    // Seeds come from (capture.seed, stimulus, replicate): a second run is bit-identical, also
    // when it runs every step to save the images, and the images after steps 0 and 3 (the
    // last: the final image, byte for byte).
    let sets = [
        "--set",
        "job.name=sd-again",
        "--set",
        "capture.generate.save_images=true",
        "--set",
        "capture.generate.save_step_images=[0, 3]",
    ];
    let again = util::run(&[&["run", s, "--workers", "1"][..], &sets].concat(), &dir);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let images = dir.join("runs/sd-again/images");
    for i in 0..18 {
        let png = image::open(images.join(format!("item{i}.r0.png"))).unwrap();
        assert_eq!((png.width(), png.height()), (16, 16));
        let read = |name: String| std::fs::read(images.join(name)).unwrap();
        assert_eq!(read(format!("item{i}.r0.k3.png")), read(format!("item{i}.r0.png")));
        assert_ne!(read(format!("item{i}.r0.k0.png")), read(format!("item{i}.r0.png")));
    }
    let report = |name: &str| {
        std::fs::read(dir.join("runs").join(name).join("report/rmse.parquet")).unwrap()
    };
    assert_eq!(report("sd"), report("sd-again"));
}

#[test]
fn tiny_sd_real_image_mode_through_the_coordinator() {
    let dir = util::scratch("sd_image");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let sources = ["cat", "dog", "car"];
    for i in 0..12 {
        let from = fixture("images").join(format!("{}.png", sources[i % 3]));
        std::fs::copy(from, images.join(format!("item{i}.png"))).unwrap();
    }
    // Object masks: the left half of each 16 × 16 image.
    let masks = dir.join("masks");
    std::fs::create_dir_all(&masks).unwrap();
    let half = image::GrayImage::from_fn(16, 16, |x, _| image::Luma([if x < 8 { 255 } else { 0 }]));
    for i in 0..12 {
        half.save(masks.join(format!("item{i}.png"))).unwrap();
    }
    let capture = r#"[capture]
taps = ["text.final", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0", "mid_block"]
unet_pooling = ["mean", "max", "mask_mean"]
mode = "image"
[capture.image]
masks = "masks"
noise_levels = [1, 50]
conditioning = ["empty", "prompt"]
height = 16
width = 16
"#;
    // Odd-one-out alignment over the 12 items: every representation, noise level and
    // conditioning is scored, and the report tabulates tap × (noise level / conditioning).
    let triplets: String = (0..40)
        .map(|i| format!("{},{},{}\n", i % 12, (i * 5 + 1) % 12, (i * 7 + 3) % 12))
        .filter(|l| {
            let v: Vec<&str> = l.trim().split(',').collect();
            v[0] != v[1] && v[0] != v[2] && v[1] != v[2]
        })
        .collect();
    std::fs::write(dir.join("triplets.csv"), triplets).unwrap();
    let capture = format!(
        "{capture}\n[analysis.alignment]\ntriplets = \"triplets.csv\"\ndistances = [\"cosine\", \"euclidean\"]\n"
    );
    let spec = sd_spec(&dir, 12, &fixture("tiny-sd-2"), &capture);
    let s = spec.to_str().unwrap();
    let out = util::run(&["run", s, "--workers", "2"], &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keys = features(&dir.join("runs/sd"));
    // 1 text + 2 taps × 3 poolings × 2 levels × 2 conditionings.
    assert_eq!(keys.len(), 25, "{keys:?}");
    assert!(keys.contains(&("mid_block/mask_mean/n1/empty".to_string(), 64)), "{keys:?}");
    assert!(keys.contains(&("mid_block/max/n50/prompt".to_string(), 64)), "{keys:?}");
    assert!(keys.contains(&("text.final/eos".to_string(), 16)), "{keys:?}");
    let rows =
        common::table::read_alignment_rows(&dir.join("runs/sd/report/alignment.parquet")).unwrap();
    assert_eq!(rows.len(), 25 * 2, "one row per representation and distance");
    let md = std::fs::read_to_string(dir.join("runs/sd/report/report.md")).unwrap();
    assert!(md.contains("| tap | n1/empty | n1/prompt | n50/empty | n50/prompt |"), "{md}");
    assert!(md.contains("| `mid_block/max` |"), "{md}");

    // A wrong-size image and a missing one are refused at plan time, naming the file.
    std::fs::copy(fixture("images/wrong_size.png"), images.join("item3.png")).unwrap();
    let e = util::plan_error(&dir, &spec, &[]);
    assert!(e.contains("item3.png: image is 20×16 px, expected 16×16"), "{e}");
    std::fs::remove_file(images.join("item3.png")).unwrap();
    let e = util::plan_error(&dir, &spec, &[]);
    assert!(
        e.contains("capture.image.folder") && e.contains("item3.png (or .jpg) is missing"),
        "{e}"
    );
}

#[test]
fn bad_sd_models_and_taps_are_named() {
    let dir = util::scratch("sd_bad");
    let spec = sd_spec(&dir, 6, &fixture("tiny-sd-1"), GENERATE);
    let e = util::plan_error(&dir, &spec, &["capture.taps=[\"mid_blok\"]"]);
    assert!(e.contains("capture.taps: no tap matches \"mid_blok\"; valid taps are text.0,"), "{e}");
    for tap in [" mid_block,", " mid_block.resnets.0,", " up_blocks.1.attentions.1,", " out"] {
        assert!(e.contains(tap), "{tap} missing from {e}");
    }
    let e = util::plan_error(&dir, &spec, &["capture.generate.record_steps=[4]"]);
    assert!(e.contains("capture.generate.record_steps: step 4 is outside 0..4"), "{e}");
    let e = util::plan_error(&dir, &spec, &["capture.pooling=[\"max\"]"]);
    assert!(e.contains("capture.pooling: \"max\" is not a text pooling"), "{e}");

    // A model folder without unet/: the missing file is named.
    let model = dir.join("no-unet");
    for sub in ["text_encoder", "tokenizer", "vae", "scheduler"] {
        copy_dir(&fixture("tiny-sd-1").join(sub), &model.join(sub));
    }
    let set = format!("model.path={:?}", model.display().to_string());
    let e = util::plan_error(&dir, &spec, &[&set]);
    assert!(e.contains("model.path") && e.contains("no-unet/unet/config.json"), "{e}");

    // Weights of the wrong shape (SD 2's U-Net under SD 1's config) are named, not a panic.
    copy_dir(&fixture("tiny-sd-1").join("unet"), &model.join("unet"));
    std::fs::copy(
        fixture("tiny-sd-2").join("unet/diffusion_pytorch_model.safetensors"),
        model.join("unet/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let e = util::plan_error(&dir, &spec, &[&set]);
    assert!(e.contains("model.path") && e.contains("diffusion_pytorch_model.safetensors"), "{e}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// LCM sampling with paired noise on a LoRA-merged tiny SD: a LoRA merged at scale 0 gives the
/// base model's results bit for bit, at scale 1 other ones; a LoRA that does not fit the model, a
/// missing LoRA file and more LCM steps than its schedule has are refused at plan time by name.
#[test]
fn tiny_sd_lcm_with_a_merged_lora_through_the_coordinator() {
    let dir = util::scratch("sd_lcm_lora");
    let capture =
        format!("{GENERATE}scheduler = \"lcm\"\nguidance = 1.0\nnoise = \"per_replicate\"\n");
    let spec = sd_spec(&dir, 12, &fixture("tiny-sd-1"), &capture);
    let s = spec.to_str().unwrap();
    let lora = fixture("tiny-sd-1-lora-kohya.safetensors");
    let with_lora = |scale: f64| format!("model.lora=[{{ path = {:?}, scale = {scale} }}]", lora);
    let run = |name: &str, sets: &[String]| {
        let mut args = vec!["run".to_string(), s.to_string(), "--workers".into(), "2".into()];
        args.extend(["--set".into(), format!("job.name={name:?}")]);
        for set in sets {
            args.extend(["--set".into(), set.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = util::run(&args, &dir);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(dir.join("runs").join(name).join("report/rmse.parquet")).unwrap()
    };
    let base = run("base", &[]);
    assert_eq!(run("lora0", &[with_lora(0.0)]), base, "a LoRA at scale 0 changed the results");
    assert_ne!(run("lora1", &[with_lora(1.0)]), base, "a LoRA at scale 1 changed nothing");

    let e = util::plan_error(&dir, &spec, &["model.lora=[{ path = \"nowhere.safetensors\" }]"]);
    assert!(e.contains("model.lora[0].path") && e.contains("nowhere.safetensors"), "{e}");
    let e = util::plan_error(&dir, &spec, &["capture.generate.steps=60"]);
    assert!(e.contains("capture.generate") && e.contains("60 steps"), "{e}");
    // Last: this rewrites the spec for tiny-sd-3 (other widths), which tiny-sd-1's LoRA does
    // not fit. (tiny-sd-2 shares tiny-sd-1's widths, and a 1×1-conv LoRA merges into its linear
    // projections as the same map.)
    let other = sd_spec(&dir, 12, &fixture("tiny-sd-3"), &capture);
    let e = util::plan_error(&dir, &other, &[&with_lora(1.0)]);
    assert!(e.contains("tiny-sd-1-lora-kohya.safetensors") && e.contains("do not fit"), "{e}");
}
