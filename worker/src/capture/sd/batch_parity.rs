//! Batched parity with diffusers: 64 stimuli captured at batch sizes 1, 2, 3 and 64 must give,
//! row for row, what diffusers computes for the same 64 stimuli in one batch
//! (`tests/golden/sd/batch/{fixture}-batch.*`, written by `scripts/make_sd_batch_golden.py`): the VAE
//! mean of every image, every U-Net tap (mean over positions; `out` in full) in real-image mode
//! at 1 % (empty prompt) and 60 % (the stimulus's prompt), the same along a guided DDIM
//! trajectory, and the decoded images. The fixtures include `tiny-sd-3` (three U-Net levels of
//! 32 / 64 / 96 channels, per-block heads, linear projection), which no other test uses.
//! Before `sd/src/vae_mid.rs`, every real-image row after the first of a batch failed here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::spec::{
    CaptureMode, CaptureSection, Conditioning, GenerateSection, ImageSection, NoiseSeeding,
    Pooling, SamplerKind, StepSelection,
};
use common::unit::Representation;
use serde_json::Value;

use super::image::Noised;
use super::noise::NoiseStreams;
use super::parity::{load, relative_error, repo, TOLERANCE};
use super::SdCapture;

const BATCH_SIZES: [usize; 4] = [1, 2, 3, 64];
/// U-Net rows on one pass, relative to the row's largest value. Looser than the single-stimulus
/// parity's 1e-5: a row here is a tap's mean over positions (the means cancel, so the largest of
/// them is small next to the values averaged), and `tiny-sd-3` is deeper; worst seen 1.1e-5 (the
/// bug this guards against was 1e-3 to 0.3).
const PASS_TOLERANCE: f32 = 2e-5;
/// Along the guided trajectory (step 2 carries step 0 and 1's rounding × guidance 7.5).
const TRAJECTORY_TOLERANCE: f32 = 4e-5;

struct BatchGolden {
    tensors: std::collections::HashMap<String, Tensor>,
    meta: Value,
}

impl BatchGolden {
    fn load(fixture: &str) -> BatchGolden {
        let base = repo().join(format!("tests/golden/sd/batch/{fixture}-batch"));
        let tensors =
            candle_core::safetensors::load(base.with_extension("safetensors"), &Device::Cpu)
                .expect("batch golden tensors");
        let text = std::fs::read_to_string(base.with_extension("json")).unwrap();
        BatchGolden { tensors, meta: serde_json::from_str(&text).unwrap() }
    }

    fn strings(&self, key: &str) -> Vec<String> {
        let list = self.meta[key].as_array().unwrap();
        list.iter().map(|v| v.as_str().unwrap().to_string()).collect()
    }

    fn taps(&self) -> Vec<String> {
        self.strings("unet_taps")
    }

    /// Rows `rows` of a golden tensor, each flattened.
    fn rows(&self, name: &str, rows: &[usize]) -> Vec<Vec<f32>> {
        let t = self.tensors.get(name).unwrap_or_else(|| panic!("golden tensor {name} missing"));
        rows.iter().map(|&r| t.get(r).unwrap().flatten_all().unwrap().to_vec1().unwrap()).collect()
    }

    /// Rows `rows` of a golden tensor, concatenated.
    fn flat(&self, name: &str, rows: &[usize]) -> Vec<f32> {
        self.rows(name, rows).concat()
    }
}

/// A tap as a representation: mean over positions, `out` in full, as the golden stores it.
fn tap_rep(tap: &str) -> Representation {
    let pooling = if tap == "out" { Pooling::Flatten } else { Pooling::Mean };
    Representation::text(tap, pooling)
}

/// Checks every row of `got` (block → `b × D` values) against the golden rows of `chunk`.
fn check_rows(
    what: &str,
    reps: &[(Representation, String)],
    got: Vec<(usize, Vec<f32>)>,
    g: &BatchGolden,
    chunk: &[usize],
    tolerance: f32,
) -> f32 {
    assert_eq!(got.len(), reps.len(), "{what}: every representation recorded");
    let mut worst = 0f32;
    for (block, values) in got {
        let (rep, name) = &reps[block];
        let want = g.rows(name, chunk);
        let dim = values.len() / chunk.len();
        for (j, want) in want.iter().enumerate() {
            let e = relative_error(&values[j * dim..(j + 1) * dim], want);
            assert!(
                e <= tolerance,
                "{what}: {} of stimulus {} (row {j} of a batch of {}): relative error {e:.2e}",
                rep.key(),
                chunk[j],
                chunk.len()
            );
            worst = worst.max(e);
        }
    }
    worst
}

fn image_passes(sd: &SdCapture, g: &BatchGolden, batch: usize) -> f32 {
    let mut reps = Vec::new();
    for (level, cond, prefix) in
        [(1, Conditioning::Empty, "img.n1"), (60, Conditioning::Prompt, "img.n60")]
    {
        for tap in g.taps() {
            let rep =
                Representation { noise: Some(level), conditioning: Some(cond), ..tap_rep(&tap) };
            reps.push((rep, format!("{prefix}.{tap}")));
        }
    }
    let only: Vec<Representation> = reps.iter().map(|(r, _)| r.clone()).collect();
    let rec = sd.recording(&only).unwrap();
    let (names, prompts) = (g.strings("stimuli"), g.strings("prompts"));
    let folder = repo().join(g.meta["image_folder"].as_str().unwrap());
    let scale = sd.vae.as_ref().unwrap().scaling_factor() as f32;
    let index: Vec<usize> = (0..names.len()).collect();
    let mut worst = 0f32;
    for chunk in index.chunks(batch) {
        let b = chunk.len();
        let paths: Vec<PathBuf> =
            chunk.iter().map(|&i| folder.join(format!("{}.png", names[i]))).collect();
        let z0 = sd.encode_images(&paths).unwrap();
        let mean: Vec<f32> = z0.iter().map(|z| z / scale).collect();
        let per = mean.len() / b;
        for (j, want) in g.rows("vae_mean", chunk).iter().enumerate() {
            let e = relative_error(&mean[j * per..(j + 1) * per], want);
            assert!(e <= TOLERANCE, "vae_mean of stimulus {}: {e:.2e}", chunk[j]);
            worst = worst.max(e);
        }
        let texts: Vec<String> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        let prompt = sd.encode_text(&texts, 0, 0, false, &rec, &mut Vec::new()).unwrap();
        let empty = sd.encode_text(&[], 0, b, false, &rec, &mut Vec::new()).unwrap();
        let eps = g.flat("img.eps", chunk);
        let noised = Noised { z0: &z0, eps: &eps, masks: None, expand: None };
        let mut sums = BTreeMap::new();
        sd.noised_passes(&noised, [Some(&empty), Some(&prompt)], &rec, None, b, &mut sums).unwrap();
        let mut out = Vec::new();
        sd.drain(sums, 1, &mut out).unwrap();
        let e = check_rows("real image", &reps, out, g, chunk, PASS_TOLERANCE);
        worst = worst.max(e);
    }
    worst
}

fn generation(sd: &SdCapture, g: &BatchGolden, batch: usize) -> f32 {
    let mut reps = Vec::new();
    for k in [0, 2] {
        for tap in g.taps() {
            reps.push((
                Representation { step: Some(k), ..tap_rep(&tap) },
                format!("gen.k{k}.{tap}"),
            ));
        }
    }
    let only: Vec<Representation> = reps.iter().map(|(r, _)| r.clone()).collect();
    let rec = sd.recording(&only).unwrap();
    let prompts = g.strings("prompts");
    let index: Vec<usize> = (0..prompts.len()).collect();
    let mut worst = 0f32;
    for chunk in index.chunks(batch) {
        let b = chunk.len();
        let texts: Vec<String> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        let context = sd.encode_text(&texts, 0, b, false, &rec, &mut Vec::new()).unwrap();
        let mut sums = BTreeMap::new();
        let noise = g.flat("gen.noise", chunk);
        let mut streams = NoiseStreams::new(0, NoiseSeeding::PerStimulus, &texts, 0);
        sd.denoise(noise, &mut streams, &context, &rec.steps, b, &[], &mut sums).unwrap();
        let mut out = Vec::new();
        sd.drain(sums, 1, &mut out).unwrap();
        let e = check_rows("generation", &reps, out, g, chunk, TRAJECTORY_TOLERANCE);
        worst = worst.max(e);
    }
    worst
}

fn decoding(fixture: &str, g: &BatchGolden, batch: usize) -> f32 {
    let dir = repo().join("tests/fixtures").join(fixture).join("vae");
    let decoder = sd::VaeDecoder::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let latents = g.tensors.get("gen.latents_final").unwrap();
    let n = latents.dim(0).unwrap();
    let mut worst = 0f32;
    for start in (0..n).step_by(batch) {
        let b = batch.min(n - start);
        let decoded = decoder.decode(&latents.narrow(0, start, b).unwrap()).unwrap();
        let chunk: Vec<usize> = (start..start + b).collect();
        for (j, want) in g.rows("decoded", &chunk).iter().enumerate() {
            let got: Vec<f32> = decoded.get(j).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let e = relative_error(&got, want);
            assert!(e <= TOLERANCE, "decoded image {}: relative error {e:.2e}", start + j);
            worst = worst.max(e);
        }
    }
    worst
}

#[test]
fn batched_capture_matches_diffusers_row_for_row() {
    for fixture in ["tiny-sd-1", "tiny-sd-2", "tiny-sd-3"] {
        let g = BatchGolden::load(fixture);
        let image = ImageSection { height: Some(16), width: Some(16), ..ImageSection::default() };
        let capture =
            CaptureSection { mode: CaptureMode::Image, image, ..CaptureSection::default() };
        let sd_image = load(fixture, &capture);
        let generate = GenerateSection {
            scheduler: SamplerKind::Ddim,
            steps: 3,
            guidance: 7.5,
            record_steps: StepSelection::List(vec![0, 2]),
            height: Some(16),
            width: Some(16),
            ..GenerateSection::default()
        };
        let capture =
            CaptureSection { mode: CaptureMode::Generate, generate, ..CaptureSection::default() };
        let sd_generate = load(fixture, &capture);
        for batch in BATCH_SIZES {
            let img = image_passes(&sd_image, &g, batch);
            let gen = generation(&sd_generate, &g, batch);
            let dec = decoding(fixture, &g, batch);
            eprintln!(
                "{fixture} batch {batch}: worst relative error real image {img:.2e}, \
                 generation {gen:.2e}, decoded {dec:.2e}"
            );
        }
    }
}
