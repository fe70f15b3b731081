//! The capture invariant: a stimulus's representation does not depend on its batch neighbours,
//! the batch size or the order of the stimuli. One table over every model and capture mode
//! (BERT, CLIP text, U-Net generation with DDIM and LCM, U-Net real image, VAE encode, VAE decode) × batch sizes
//! {1, 2, 3, 64} × two stimulus orders, each row checked against the same stimulus captured in
//! a batch of one. 67 stimuli, so the last batch of 2, 3 and 64 is a partial one.
//!
//! Tolerances, per model, relative to the largest magnitude of the reference row. Text encoders
//! (BERT, CLIP) and the VAE (encoder, decoder) are bit-identical here; they are held to
//! `ROW_TOLERANCE` (1e-6) because a CPU with other cache sizes may block the batched products
//! differently. The U-Net is not bit-identical: its products over B × positions rows are blocked
//! by the batch's size, which moves single passes in the last bits (worst 2.2e-6 seen, on the
//! smallest values of a row), and a guided trajectory amplifies that (step 2: 1.1e-5 seen).
//! Before the fix in `sd/src/vae_mid.rs`, real-image rows after the first of a batch were off by
//! 1e-3 to 0.3.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::spec::{
    CaptureMode, CaptureSection, Conditioning, DeviceChoice, GenerateSection, ImageSection,
    ModelKind, ModelSection, Pooling, SamplerKind, StepSelection, StorageDtype,
};
use common::unit::Representation;

use super::sd::parity::{relative_error, repo};
use super::{available_taps, Capturer, Stimuli};

const STIMULI: usize = 67;
const BATCH_SIZES: [usize; 4] = [1, 2, 3, 64];
/// Text encoders and the VAE: bit-identical here (see the header).
const ROW_TOLERANCE: f32 = 1e-6;
/// One U-Net pass (real-image mode, the first step of a trajectory).
const PASS_TOLERANCE: f32 = 5e-6;
/// Later steps of a guided trajectory.
const TRAJECTORY_TOLERANCE: f32 = 3e-5;

/// A second order: odd positions reversed after the even ones, so every stimulus gets new
/// neighbours and a new position within its batch.
fn shuffled() -> Vec<usize> {
    let mut order: Vec<usize> = (0..STIMULI).step_by(2).collect();
    order.extend((1..STIMULI).step_by(2).rev());
    order
}

/// Prompts of 1 to 6 words, so batches pad differently.
fn texts() -> Vec<String> {
    let words = ["cat", "small", "red", "house", "river", "old", "glass", "quiet", "tree"];
    (0..STIMULI)
        .map(|i| (0..=i % 6).map(|j| words[(i * 7 + j * 5) % words.len()]).collect::<Vec<_>>())
        .map(|w| w.join(" "))
        .collect()
}

/// Captures `order` with `batch` and returns one row per stimulus, in `order`: every
/// representation's values, concatenated.
type CaptureFn<'a> = Box<dyn Fn(&[usize], usize) -> Vec<Vec<f32>> + 'a>;

struct Case<'a> {
    name: String,
    tolerance: f32,
    capture: CaptureFn<'a>,
}

/// Rows of `Capturer::capture` over the stimuli in `order`.
fn capturer_rows(
    capturer: &Capturer,
    names: &[String],
    texts: &[String],
    reps: &[Representation],
    order: &[usize],
    batch: usize,
) -> Vec<Vec<f32>> {
    let names: Vec<String> = order.iter().map(|&i| names[i].clone()).collect();
    let texts: Vec<String> = order.iter().map(|&i| texts[i].clone()).collect();
    let stimuli = Stimuli { names: &names, texts: &texts, first: 0, images: None };
    let blocks = capturer.capture(&stimuli, batch, reps).expect("capture");
    (0..order.len())
        .map(|i| {
            let mut row = Vec::new();
            for b in &blocks {
                assert_eq!(b.stimuli[i] as usize, i, "{}: rows in the given order", b.key);
                row.extend_from_slice(&b.values[i * b.dim..(i + 1) * b.dim]);
            }
            row
        })
        .collect()
}

fn model(kind: ModelKind, path: PathBuf) -> ModelSection {
    ModelSection {
        kind,
        path,
        device: DeviceChoice::Cpu,
        dtype: StorageDtype::F32,
        lora: Vec::new(),
    }
}

fn bert_case<'a>() -> Case<'a> {
    let model = model(ModelKind::Bert, repo().join("data/demo/minilm"));
    assert!(model.path.join("model.safetensors").exists(), "data/demo: run ./scripts/setup.sh");
    let capture = CaptureSection::default();
    let capturer = Capturer::load(&model, &capture).unwrap();
    let reps: Vec<Representation> = ["text.0", "text.3", "text.6"]
        .iter()
        .flat_map(|t| {
            [Pooling::Cls, Pooling::Mean, Pooling::Eos].map(|p| Representation::text(*t, p))
        })
        .collect();
    let (names, texts) = (texts(), texts());
    Case {
        name: "BERT (all-MiniLM-L6-v2)".into(),
        tolerance: ROW_TOLERANCE,
        capture: Box::new(move |order, batch| {
            capturer_rows(&capturer, &names, &texts, &reps, order, batch)
        }),
    }
}

fn sd_model(fixture: &str) -> ModelSection {
    model(ModelKind::Sd, repo().join("tests/fixtures").join(fixture))
}

/// Every U-Net tap the fixture has, pooled by `pooling`, plus the full `out` map.
fn unet_reps(
    model: &ModelSection,
    capture: &CaptureSection,
    each: impl Fn(Representation) -> Vec<Representation>,
) -> Vec<Representation> {
    let taps = available_taps(model, capture).unwrap();
    let mut reps: Vec<Representation> = taps
        .iter()
        .filter(|t| !t.is_text())
        .flat_map(|t| each(Representation::text(t.name.clone(), Pooling::Mean)))
        .collect();
    reps.extend(each(Representation::text("out", Pooling::Flatten)));
    reps
}

/// Generation mode: the text taps (`step` = None) or every U-Net tap at `step` of a guided
/// 3-step trajectory of `sampler` (LCM re-noises between steps, from each stimulus's stream).
fn generation_case<'a>(fixture: &str, step: Option<usize>, sampler: SamplerKind) -> Case<'a> {
    let model = sd_model(fixture);
    let generate = GenerateSection {
        scheduler: sampler,
        steps: 3,
        guidance: 7.5,
        record_steps: StepSelection::List(step.into_iter().collect()),
        height: Some(16),
        width: Some(16),
        ..GenerateSection::default()
    };
    let capture =
        CaptureSection { mode: CaptureMode::Generate, generate, ..CaptureSection::default() };
    let (reps, what, tolerance) = match step {
        None => {
            let reps = ["text.0", "text.1", "text.final"]
                .iter()
                .flat_map(|t| [Pooling::Eos, Pooling::Mean].map(|p| Representation::text(*t, p)))
                .collect();
            (reps, "CLIP text".to_string(), ROW_TOLERANCE)
        }
        Some(k) => {
            let reps = unet_reps(&model, &capture, |r| vec![Representation { step: Some(k), ..r }]);
            let tolerance = if k == 0 { PASS_TOLERANCE } else { TRAJECTORY_TOLERANCE };
            (reps, format!("U-Net generation, {sampler:?} step {k} of 3"), tolerance)
        }
    };
    let capturer = Capturer::load(&model, &capture).unwrap();
    let names: Vec<String> = (0..STIMULI).map(|i| format!("s{i}")).collect();
    let texts = texts();
    Case {
        name: format!("{fixture} {what}"),
        tolerance,
        capture: Box::new(move |order, batch| {
            capturer_rows(&capturer, &names, &texts, &reps, order, batch)
        }),
    }
}

/// `STIMULI` distinct 16 × 16 images in `dir`, named `img{i}.png`.
fn write_images(dir: &Path) -> Vec<String> {
    (0..STIMULI)
        .map(|i| {
            let image = ::image::RgbImage::from_fn(16, 16, |x, y| {
                let i = i as u32;
                let v = |c: u32| ((x * (3 + c) + y * (5 + i) + c * 40 + i * 13) % 256) as u8;
                ::image::Rgb([v(0), v(1), v(2)])
            });
            let name = format!("img{i}");
            image.save(dir.join(format!("{name}.png"))).unwrap();
            name
        })
        .collect()
}

fn image_case<'a>(fixture: &str, images: &Path, names: &[String]) -> Case<'a> {
    let model = sd_model(fixture);
    let image = ImageSection {
        folder: images.to_path_buf(),
        noise_levels: vec![1, 60],
        conditioning: vec![Conditioning::Empty, Conditioning::Prompt],
        height: Some(16),
        width: Some(16),
        ..ImageSection::default()
    };
    let capture = CaptureSection { mode: CaptureMode::Image, image, ..CaptureSection::default() };
    let reps = unet_reps(&model, &capture, |r| {
        [(1, Conditioning::Empty), (60, Conditioning::Prompt)]
            .map(|(n, c)| Representation { noise: Some(n), conditioning: Some(c), ..r.clone() })
            .to_vec()
    });
    let capturer = Capturer::load(&model, &capture).unwrap();
    let (names, texts) = (names.to_vec(), texts());
    Case {
        name: format!("{fixture} U-Net real image, noise 1 % and 60 %"),
        tolerance: PASS_TOLERANCE,
        capture: Box::new(move |order, batch| {
            capturer_rows(&capturer, &names, &texts, &reps, order, batch)
        }),
    }
}

/// A deterministic, non-trivial input of `STIMULI` × `per` values in about [-1, 1].
fn inputs(per: usize) -> Vec<f32> {
    (0..STIMULI * per)
        .map(|i| ((i as f32) * 0.377).sin() * ((i / per) as f32 * 0.1).cos())
        .collect()
}

/// Runs `forward` on the rows of `values` (each `shape`) in `order`, `batch` at a time.
fn batched_rows(
    values: &[f32],
    shape: (usize, usize, usize),
    order: &[usize],
    batch: usize,
    forward: impl Fn(&Tensor) -> Tensor,
) -> Vec<Vec<f32>> {
    let per = shape.0 * shape.1 * shape.2;
    let mut rows = Vec::new();
    for chunk in order.chunks(batch) {
        let data: Vec<f32> =
            chunk.iter().flat_map(|&i| values[i * per..(i + 1) * per].iter().copied()).collect();
        let x = Tensor::from_vec(data, (chunk.len(), shape.0, shape.1, shape.2), &Device::Cpu);
        let y = forward(&x.unwrap()).to_dtype(DType::F32).unwrap();
        rows.extend(y.flatten_from(1).unwrap().to_vec2::<f32>().unwrap());
    }
    rows
}

fn vae_cases<'a>(fixture: &str) -> [Case<'a>; 2] {
    let dir = repo().join("tests/fixtures").join(fixture).join("vae");
    let encoder = sd::Vae::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let decoder = sd::VaeDecoder::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let (pixels, latents) = (inputs(3 * 16 * 16), inputs(4 * 8 * 8));
    [
        Case {
            name: format!("{fixture} VAE encode"),
            tolerance: ROW_TOLERANCE,
            capture: Box::new(move |order, batch| {
                batched_rows(&pixels, (3, 16, 16), order, batch, |x| {
                    encoder.encode_mean(x).unwrap()
                })
            }),
        },
        Case {
            name: format!("{fixture} VAE decode"),
            tolerance: ROW_TOLERANCE,
            capture: Box::new(move |order, batch| {
                batched_rows(&latents, (4, 8, 8), order, batch, |x| decoder.decode(x).unwrap())
            }),
        },
    ]
}

fn check(case: &Case<'_>) {
    let identity: Vec<usize> = (0..STIMULI).collect();
    let alone = (case.capture)(&identity, 1);
    for order in [identity.clone(), shuffled()] {
        for batch in BATCH_SIZES {
            let rows = (case.capture)(&order, batch);
            let mut worst = 0f32;
            for (row, &stimulus) in rows.iter().zip(&order) {
                let e = relative_error(row, &alone[stimulus]);
                assert!(
                    e <= case.tolerance,
                    "{}: stimulus {stimulus} at batch size {batch} ({}) differs from its batch \
                     of one by {e:.2e} (tolerance {:.0e})",
                    case.name,
                    if order == identity { "in order" } else { "shuffled" },
                    case.tolerance
                );
                worst = worst.max(e);
            }
            eprintln!("{}: batch {batch}: worst relative error {worst:.2e}", case.name);
        }
    }
}

#[test]
fn representations_do_not_depend_on_batch_neighbours() {
    let images = tempfile::tempdir().unwrap();
    let names = write_images(images.path());
    let mut cases = vec![bert_case()];
    for fixture in ["tiny-sd-1", "tiny-sd-2"] {
        cases.push(generation_case(fixture, None, SamplerKind::Ddim));
        cases.push(generation_case(fixture, Some(0), SamplerKind::Ddim));
        cases.push(generation_case(fixture, Some(2), SamplerKind::Ddim));
        cases.push(generation_case(fixture, Some(2), SamplerKind::Lcm));
        cases.push(image_case(fixture, images.path(), &names));
        cases.extend(vae_cases(fixture));
    }
    for case in &cases {
        check(case);
    }
}

/// Captures `texts` (named `s0, s1, …`) at step `k` of a guided 3-step DDIM trajectory on
/// tiny-sd-1 with `generate`'s record and noise settings: one row per stimulus.
fn generated_rows(
    generate: GenerateSection,
    texts: &[&str],
    reps: &[Representation],
) -> Vec<Vec<f32>> {
    let generate = GenerateSection {
        steps: 3,
        guidance: 7.5,
        record_steps: StepSelection::List(vec![1]),
        height: Some(16),
        width: Some(16),
        ..generate
    };
    let capture =
        CaptureSection { mode: CaptureMode::Generate, generate, ..CaptureSection::default() };
    let capturer = Capturer::load(&sd_model("tiny-sd-1"), &capture).unwrap();
    let names: Vec<String> = (0..texts.len()).map(|i| format!("s{i}")).collect();
    let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    let order: Vec<usize> = (0..texts.len()).collect();
    capturer_rows(&capturer, &names, &texts, reps, &order, texts.len())
}

/// `record = "delta"` is cond − uncond tap by tap (bit for bit before a linear pooling, to
/// rounding after a mean); `noise = "per_replicate"` gives one prompt under two names the same
/// trajectory, bit for bit, where per-stimulus seeds give two.
#[test]
fn guidance_delta_and_paired_noise() {
    use common::spec::{GuidanceRecord, NoiseSeeding};
    let reps = [
        Representation { step: Some(1), ..Representation::text("out", Pooling::Flatten) },
        Representation { step: Some(1), ..Representation::text("mid_block", Pooling::Mean) },
    ];
    let texts = ["a red house", "an old tree"];
    let with = |record| {
        generated_rows(GenerateSection { record, ..GenerateSection::default() }, &texts, &reps)
    };
    let (cond, uncond, delta) =
        (with(GuidanceRecord::Cond), with(GuidanceRecord::Uncond), with(GuidanceRecord::Delta));
    let out_len = 4 * 8 * 8;
    for i in 0..texts.len() {
        let diff: Vec<f32> = cond[i].iter().zip(&uncond[i]).map(|(c, u)| c - u).collect();
        assert_eq!(delta[i][..out_len], diff[..out_len], "flatten: stimulus {i}");
        let e = relative_error(&delta[i][out_len..], &diff[out_len..]);
        assert!(e < 1e-5, "mean of the delta vs delta of the means: {e}");
        assert!(diff.iter().any(|d| d.abs() > 1e-3), "cond and uncond rows are distinct");
    }
    let same = ["a red house", "a red house"];
    let seeded = |noise| {
        generated_rows(GenerateSection { noise, ..GenerateSection::default() }, &same, &reps)
    };
    let paired = seeded(NoiseSeeding::PerReplicate);
    assert_eq!(paired[0], paired[1], "one prompt, paired noise: one trajectory");
    let unpaired = seeded(NoiseSeeding::PerStimulus);
    assert_ne!(unpaired[0], unpaired[1], "per-stimulus seeds: two trajectories");
}

/// `keep_replicates` rows are each replicate's own trajectory: their mean is the mean row (to
/// rounding), replicate 0 of three equals the only replicate of a one-replicate run bit for bit
/// (the seed of a replicate does not depend on how many there are), and replicates differ.
#[test]
fn kept_replicates_average_to_the_mean_row() {
    let mean = [
        Representation { step: Some(1), ..Representation::text("out", Pooling::Flatten) },
        Representation { step: Some(1), ..Representation::text("mid_block", Pooling::Mean) },
    ];
    let per_rep = |r| mean.iter().map(|m| m.of_replicate(r)).collect::<Vec<_>>();
    let mut reps = mean.to_vec();
    for r in 0..3 {
        reps.extend(per_rep(r));
    }
    let texts = ["a red house", "an old tree"];
    let three = GenerateSection { replicates: 3, keep_replicates: true, ..Default::default() };
    let rows = generated_rows(three, &texts, &reps);
    let one = generated_rows(GenerateSection::default(), &texts, &mean);
    let width = rows[0].len() / 4;
    for (i, row) in rows.iter().enumerate() {
        let part = |r: usize| &row[(r + 1) * width..(r + 2) * width];
        let avg: Vec<f32> =
            (0..width).map(|j| (part(0)[j] + part(1)[j] + part(2)[j]) / 3.0).collect();
        let e = relative_error(&row[..width], &avg);
        assert!(e < 1e-6, "stimulus {i}: mean row vs mean of the kept replicates: {e}");
        assert_eq!(part(0), &one[i][..], "stimulus {i}: replicate 0 of 3 = the only replicate");
        assert_ne!(part(0), part(1), "stimulus {i}: replicates 0 and 1 differ");
    }
}
