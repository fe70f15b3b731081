//! The training loop of the linear probe (science.md B2) on a candle device: `E = XW + b`,
//! softmax cross-entropy over the three pair similarities plus `λ‖W‖_F`, Adam with gradient-norm
//! clipping, early stopping on a monitored loss.
//!
//! **Numerics:** `f32` on the device, as in the PyTorch reference (Muttenthaler et al.'s
//! `Linear` probe, which the paper used). A batch gathers its concepts' rows of X first and
//! multiplies by W after (`3B × D × D` instead of `N × D × D` per step); the gradient is the same.
//! Clipping follows `torch.nn.utils.clip_grad_norm_`: the global norm over W and b, scaled by
//! `max_norm / (norm + 1e-6)` when that is below 1.
//!
//! **Early stopping** follows PyTorch Lightning's `EarlyStopping(mode="min")`: after each epoch
//! the monitored loss (mean cross-entropy, without the penalty) improves if it is below the best
//! so far minus `min_delta`; training stops after `patience` epochs without improvement, or at
//! once if it is not finite. The **last** weights are kept, not the best (the reference never
//! restored a checkpoint).

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};

use crate::error::AlignmentError;
use crate::linear_probe::LinearProbeConfig;
use crate::rng::{self, Stream};

/// Triplets per chunk when a loss is evaluated without gradients (bounds device memory).
const EVAL_CHUNK: usize = 8192;

/// The outcome of training one fold.
#[derive(Debug, Clone)]
pub(crate) struct Trained {
    /// Epochs run.
    pub(crate) epochs: usize,
    /// Whether early stopping ended training before `max_epochs`.
    pub(crate) stopped_early: bool,
    /// Mean cross-entropy over the last epoch's training batches (without the penalty).
    pub(crate) train_loss: f64,
    /// The best monitored loss seen.
    pub(crate) best_monitored_loss: f64,
    /// The final embedding `E = XW + b` of every concept, `N × D` row-major.
    pub(crate) embedding: Vec<f64>,
}

/// The probe's parameters.
struct Probe {
    w: Var,
    b: Var,
}

impl Probe {
    /// `W ~ N(0, init_std²)` from the seeded stream of `fold`, `b = init_bias`.
    fn init(
        d: usize,
        cfg: &LinearProbeConfig,
        fold: usize,
        device: &Device,
    ) -> Result<Self, AlignmentError> {
        let mut stream = rng::stream(Stream::Init, cfg.seed, fold);
        let w: Vec<f32> =
            (0..d * d).map(|_| (cfg.init_std * rng::normal(&mut stream)) as f32).collect();
        let w = Var::from_tensor(&Tensor::from_vec(w, (d, d), device)?)?;
        let b = Var::from_tensor(&Tensor::full(cfg.init_bias as f32, d, device)?)?;
        Ok(Self { w, b })
    }

    /// `XW + b` for the rows of `x`.
    fn embed(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(self.w.as_tensor())?.broadcast_add(self.b.as_tensor())
    }
}

/// Trains on `train`, monitoring the mean loss on `monitor` after every epoch.
pub(crate) fn train(
    x: &Tensor,
    train: &[[usize; 3]],
    monitor: &[[usize; 3]],
    cfg: &LinearProbeConfig,
    fold: usize,
) -> Result<Trained, AlignmentError> {
    let (_, d) = x.dims2()?;
    let device = x.device();
    let probe = Probe::init(d, cfg, fold, device)?;
    let params = ParamsAdamW { lr: cfg.learning_rate, weight_decay: 0.0, ..ParamsAdamW::default() };
    let mut adam = AdamW::new(vec![probe.w.clone(), probe.b.clone()], params)?;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut batches = rng::stream(Stream::Batches, cfg.seed, fold);
    let mut stop = EarlyStop {
        best: f64::INFINITY,
        wait: 0,
        patience: cfg.patience,
        min_delta: cfg.min_delta,
    };
    let (mut epochs, mut stopped_early, mut train_loss) = (0, false, f64::NAN);
    while epochs < cfg.max_epochs {
        rng::shuffle(&mut order, &mut batches);
        let mut total = Tensor::zeros((), DType::F32, device)?;
        for chunk in order.chunks(cfg.batch_size) {
            let idx = gather_index(chunk.iter().map(|&t| train[t]), device)?;
            let ce = cross_entropy(&probe.embed(&x.index_select(&idx, 0)?)?)?;
            let penalty = (probe.w.as_tensor().sqr()?.sum_all()?.sqrt()? * cfg.lambda)?;
            let mut grads = (&ce + penalty)?.backward()?;
            clip(&mut grads, &probe, cfg.max_grad_norm)?;
            adam.step(&grads)?;
            total = (total + (ce.detach() * chunk.len() as f64)?)?;
        }
        epochs += 1;
        train_loss = f64::from(total.to_scalar::<f32>()?) / train.len() as f64;
        if stop.should_stop(mean_loss(x, &probe, monitor)?) {
            stopped_early = epochs < cfg.max_epochs;
            break;
        }
    }
    let embedding = probe.embed(x)?.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    Ok(Trained { epochs, stopped_early, train_loss, best_monitored_loss: stop.best, embedding })
}

fn mean_loss(x: &Tensor, probe: &Probe, triplets: &[[usize; 3]]) -> Result<f64, AlignmentError> {
    chunked_loss(&probe.embed(x)?.detach(), triplets)
}

fn chunked_loss(e: &Tensor, triplets: &[[usize; 3]]) -> Result<f64, AlignmentError> {
    let mut sum = 0.0;
    for chunk in triplets.chunks(EVAL_CHUNK) {
        let idx = gather_index(chunk.iter().copied(), e.device())?;
        let ce = cross_entropy(&e.index_select(&idx, 0)?)?;
        sum += f64::from(ce.to_scalar::<f32>()?) * chunk.len() as f64;
    }
    Ok(sum / triplets.len() as f64)
}

/// The rows of a batch's concepts, triplet by triplet: `[a₀, p₀, n₀, a₁, …]` as a `u32` tensor.
fn gather_index(
    triplets: impl Iterator<Item = [usize; 3]>,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let idx: Vec<u32> = triplets.flat_map(|t| t.map(|i| i as u32)).collect();
    let len = idx.len();
    Tensor::from_vec(idx, len, device)
}

/// Mean cross-entropy of the softmax over `[e_a·e_p, e_a·e_n, e_p·e_n]` with target 0, for
/// embeddings `e` of shape `3B × D` laid out as [`gather_index`] makes them.
fn cross_entropy(e: &Tensor) -> candle_core::Result<Tensor> {
    let (rows, d) = e.dims2()?;
    let e = e.reshape((rows / 3, 3, d))?;
    let part = |k: usize| e.narrow(1, k, 1)?.squeeze(1);
    let (a, p, n) = (part(0)?, part(1)?, part(2)?);
    let sims = Tensor::stack(&[(&a * &p)?.sum(1)?, (&a * &n)?.sum(1)?, (&p * &n)?.sum(1)?], 1)?;
    // log-sum-exp with the (constant) row maximum taken out for stability.
    let max = sims.max_keepdim(1)?.detach();
    let lse = (sims.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + &max)?;
    (lse - sims.narrow(1, 0, 1)?)?.mean_all()
}

/// Scales the gradients of W and b so that their global L2 norm is at most `max_norm`.
fn clip(grads: &mut GradStore, probe: &Probe, max_norm: f64) -> Result<(), AlignmentError> {
    if max_norm.is_infinite() {
        return Ok(());
    }
    let vars = [probe.w.as_tensor(), probe.b.as_tensor()];
    let mut squares = Vec::with_capacity(2);
    for v in vars {
        if let Some(g) = grads.get(v) {
            squares.push(g.sqr()?.sum_all()?);
        }
    }
    if squares.is_empty() {
        return Ok(());
    }
    let norm = f64::from(Tensor::stack(&squares, 0)?.sum_all()?.to_scalar::<f32>()?).sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.remove(v) {
                grads.insert(v, (g * coef)?);
            }
        }
    }
    Ok(())
}

/// PyTorch Lightning's `EarlyStopping(mode="min")` bookkeeping.
#[derive(Debug)]
struct EarlyStop {
    best: f64,
    wait: usize,
    patience: usize,
    min_delta: f64,
}

impl EarlyStop {
    /// Records one epoch's monitored loss; `true` when training should stop.
    fn should_stop(&mut self, loss: f64) -> bool {
        if !loss.is_finite() {
            return true;
        }
        if loss < self.best - self.min_delta {
            self.best = loss;
            self.wait = 0;
            false
        } else {
            self.wait += 1;
            self.wait >= self.patience
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stop_waits_patience_epochs_without_improvement() {
        let mut s = EarlyStop { best: f64::INFINITY, wait: 0, patience: 2, min_delta: 0.1 };
        assert!(!s.should_stop(1.0));
        assert!(!s.should_stop(0.95), "not better by min_delta: wait 1");
        assert!(!s.should_stop(0.5), "improved: wait reset");
        assert!(!s.should_stop(0.45));
        assert!(s.should_stop(0.41), "second epoch without improvement");
        assert_eq!(s.best, 0.5);
        let mut s = EarlyStop { best: f64::INFINITY, wait: 0, patience: 5, min_delta: 0.0 };
        assert!(s.should_stop(f64::NAN));
    }

    #[test]
    fn cross_entropy_matches_the_formula() {
        // One triplet: a = (1, 0), p = (2, 0), n = (0, 1): sims [2, 0, 0].
        let e =
            Tensor::from_vec(vec![1.0f32, 0.0, 2.0, 0.0, 0.0, 1.0], (3, 2), &Device::Cpu).unwrap();
        let ce = f64::from(cross_entropy(&e).unwrap().to_scalar::<f32>().unwrap());
        let want = (2f64.exp() + 2.0).ln() - 2.0;
        assert!((ce - want).abs() < 1e-6, "{ce} vs {want}");
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let probe = Probe {
            w: Var::from_tensor(&Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap()).unwrap(),
            b: Var::from_tensor(&Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap()).unwrap(),
        };
        // loss = 3 Σw + 4 Σb: gradient norm √(4·9 + 2·16) = √68.
        let loss = ((probe.w.as_tensor().sum_all().unwrap() * 3.0).unwrap()
            + (probe.b.as_tensor().sum_all().unwrap() * 4.0).unwrap())
        .unwrap();
        let mut grads = loss.backward().unwrap();
        clip(&mut grads, &probe, 1.0).unwrap();
        let g = |t: &Tensor| {
            grads.get(t).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()
        };
        let norm = (g(probe.w.as_tensor()) + g(probe.b.as_tensor())).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
}
