//! The paper's training of a dense probe (`analysis.dense_probe.fit = "paper"`, science-2.md §D
//! [CODE]), run with candle on the worker's device: a bias-free linear layer on every token
//! (2 logits for a mask, 1 output for a continuous map), its output nearest-upsampled to the
//! label's size, the per-pixel loss averaged over the batch (cross-entropy for a mask, Huber
//! with δ = 1 for a map), Adam (β = 0.9, 0.999, ε = 1e-8, no weight decay) on batches of
//! images in a seeded order, weights initialised as PyTorch's `nn.Linear` (uniform on
//! ±1/√C). The metrics then score the last epoch's weights, as the paper's.
//!
//! The closed form (`probe::dense`) is the default: it is exact, deterministic and much faster;
//! this exists to reproduce the paper's numbers, including its optimisation error.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use common::settings::PaperFit;
use common::spec::DenseTargetKind;
use probe::SplitMix64;

use crate::error::UnitError;

/// Huber's δ in the paper's depth and shading probes.
const HUBER_DELTA: f64 = 1.0;

/// One training image: its features (`tokens × C`, row-major) and its label map at full
/// resolution (`H × W`, row-major; a mask as 0/1).
pub(crate) struct PaperImage<'a> {
    pub(crate) features: &'a [f32],
    pub(crate) label: Vec<f32>,
}

/// The shapes every image of a fit shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PaperShape {
    /// The token grid `h × w`.
    pub(crate) grid: (usize, usize),
    /// The label's `H × W`, an integer multiple of the grid.
    pub(crate) size: (usize, usize),
    pub(crate) channels: usize,
}

/// Trains one target's probe and returns its `C` weights as the closed form's are used: a
/// mask's logit difference (foreground − background), a map's single output.
pub(crate) fn fit_paper(
    images: &[PaperImage<'_>],
    shape: PaperShape,
    kind: DenseTargetKind,
    learning_rate: f64,
    settings: &PaperFit,
    seed: u64,
    device: &Device,
) -> Result<Vec<f64>, UnitError> {
    let err = |e: candle_core::Error| UnitError::Invalid(format!("dense probe (fit = paper): {e}"));
    let c = shape.channels;
    let k = match kind {
        DenseTargetKind::Mask => 2,
        DenseTargetKind::Continuous => 1,
    };
    let mut rng = SplitMix64::new(seed);
    let bound = 1.0 / (c as f64).sqrt();
    let init: Vec<f32> =
        (0..c * k).map(|_| ((2.0 * unit(&mut rng) - 1.0) * bound) as f32).collect();
    let w = Var::from_tensor(&Tensor::from_vec(init, (c, k), device).map_err(err)?).map_err(err)?;
    let params =
        ParamsAdamW { lr: learning_rate, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
    let mut adam = AdamW::new(vec![w.clone()], params).map_err(err)?;
    let mut order: Vec<usize> = (0..images.len()).collect();
    for _ in 0..settings.epochs {
        shuffle(&mut order, &mut rng);
        for batch in order.chunks(settings.batch.max(1)) {
            let loss =
                batch_loss(images, batch, shape, kind, w.as_tensor(), device).map_err(err)?;
            adam.backward_step(&loss).map_err(err)?;
        }
    }
    let w: Vec<Vec<f32>> =
        w.as_tensor().to_dtype(DType::F32).map_err(err)?.to_vec2().map_err(err)?;
    Ok(match kind {
        DenseTargetKind::Mask => w.iter().map(|r| f64::from(r[1]) - f64::from(r[0])).collect(),
        DenseTargetKind::Continuous => w.iter().map(|r| f64::from(r[0])).collect(),
    })
}

/// The mean per-pixel loss of one batch at the weights `w` (`C × K`).
fn batch_loss(
    images: &[PaperImage<'_>],
    batch: &[usize],
    shape: PaperShape,
    kind: DenseTargetKind,
    w: &Tensor,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let ((h, gw), (height, width), c) = (shape.grid, shape.size, shape.channels);
    let b = batch.len();
    let x: Vec<f32> = batch.iter().flat_map(|&i| images[i].features.iter().copied()).collect();
    let x = Tensor::from_vec(x, (b, h * gw, c), device)?;
    let k = w.dim(1)?;
    // (B, tokens, K) → (B, K, h, w) → nearest-upsampled (B, K, H, W).
    let out = x.broadcast_matmul(w)?.reshape((b, h, gw, k))?.permute((0, 3, 1, 2))?;
    let out = out.contiguous()?.upsample_nearest2d(height, width)?;
    let labels: Vec<f32> = batch.iter().flat_map(|&i| images[i].label.iter().copied()).collect();
    let labels = Tensor::from_vec(labels, (b, height, width), device)?;
    match kind {
        DenseTargetKind::Mask => {
            let logits = out.permute((0, 2, 3, 1))?.reshape((b * height * width, 2))?;
            let classes = labels.flatten_all()?.to_dtype(DType::U32)?;
            candle_nn::loss::cross_entropy(&logits, &classes)
        }
        DenseTargetKind::Continuous => {
            let r = (out.squeeze(1)? - labels)?;
            let a = r.abs()?;
            let quadratic = (r.sqr()? * 0.5)?;
            let linear = ((a.clone() - 0.5 * HUBER_DELTA)? * HUBER_DELTA)?;
            a.le(HUBER_DELTA)?.where_cond(&quadratic, &linear)?.mean_all()
        }
    }
}

/// A uniform draw on [0, 1) with 53 random bits.
fn unit(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
}

/// Fisher–Yates with Lemire's multiply-shift (no `rand` in the worker).
fn shuffle(v: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map that is an exact linear function of the tokens, nearest-upsampled: Adam on the
    /// Huber loss (quadratic near the optimum) reaches the planted weights; a mask thresholding
    /// a linear function is learned to its sign; the same seed gives the same weights bit for
    /// bit, another seed other weights.
    #[test]
    fn the_paper_fit_recovers_planted_probes_and_is_seeded() {
        let (h, w, c, f, n) = (4, 4, 3, 2, 12);
        let planted = [0.5, -0.25, 0.8];
        let mut rng = SplitMix64::new(3);
        let features: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..h * w * c).map(|_| (2.0 * unit(&mut rng) - 1.0) as f32).collect())
            .collect();
        let per_token = |x: &[f32]| -> Vec<f64> {
            x.chunks(c)
                .map(|t| t.iter().zip(&planted).map(|(&a, b)| f64::from(a) * b).sum())
                .collect()
        };
        let up = |z: &[f64], g: &dyn Fn(f64) -> f32| -> Vec<f32> {
            (0..h * f * w * f).map(|p| g(z[(p / (w * f) / f) * w + (p % (w * f)) / f])).collect()
        };
        let shape = PaperShape { grid: (h, w), size: (h * f, w * f), channels: c };
        let settings = PaperFit { epochs: 400, batch: 4, learning_rates: vec![], seed: 0 };
        let images = |g: &dyn Fn(f64) -> f32| -> Vec<PaperImage<'_>> {
            features
                .iter()
                .map(|x| PaperImage { features: x, label: up(&per_token(x), g) })
                .collect()
        };
        let map = images(&|v| v as f32);
        let fit = |imgs: &[PaperImage<'_>], kind, seed| {
            fit_paper(imgs, shape, kind, 1e-2, &settings, seed, &Device::Cpu).unwrap()
        };
        let got = fit(&map, DenseTargetKind::Continuous, 7);
        for (g, p) in got.iter().zip(&planted) {
            assert!((g - p).abs() < 1e-3, "{got:?} vs {planted:?}");
        }
        assert_eq!(fit(&map, DenseTargetKind::Continuous, 7), got);
        assert_ne!(fit(&map, DenseTargetKind::Continuous, 8), got);
        let mask = images(&|v| f32::from(u8::from(v > 0.0)));
        let logit = fit(&mask, DenseTargetKind::Mask, 7);
        for x in &features {
            for (z, t) in per_token(x).iter().zip(x.chunks(c)) {
                let pred: f64 = t.iter().zip(&logit).map(|(&a, b)| f64::from(a) * b).sum();
                if z.abs() > 0.05 {
                    assert_eq!(pred > 0.0, *z > 0.0, "token {t:?}: logit {pred}, planted {z}");
                }
            }
        }
    }
}
