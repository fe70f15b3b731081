//! The σ samplers, Euler (`EulerDiscreteScheduler`) and linear multistep of order 4
//! (`LMSDiscreteScheduler`), on one shared σ schedule, as host-side f32 math in diffusers' order
//! of operations (LMS coefficients by Gauss–Legendre quadrature, as scipy's `quad` gives them).

use super::{
    err, same_len, PredictionType, SchedulerConfig, SchedulerError, StepOutput, TimestepSpacing,
};

/// Shared σ schedule of Euler and LMS.
#[derive(Debug, Clone)]
struct SigmaSchedule {
    prediction_type: PredictionType,
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    init_noise_sigma: f32,
}

impl SigmaSchedule {
    fn new(config: &SchedulerConfig, steps: usize) -> Result<SigmaSchedule, SchedulerError> {
        let timesteps = config.discrete_timesteps(steps)?;
        let sigmas = config.discrete_sigmas(steps)?;
        let max = sigmas.iter().copied().fold(f32::MIN, f32::max);
        let init_noise_sigma = match config.timestep_spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        };
        Ok(SigmaSchedule {
            prediction_type: config.prediction_type,
            timesteps,
            sigmas,
            init_noise_sigma,
        })
    }

    fn sigma(&self, k: usize) -> Result<f32, SchedulerError> {
        if k >= self.timesteps.len() {
            return err(format!("step index {k} outside 0..{}", self.timesteps.len()));
        }
        Ok(self.sigmas[k])
    }

    fn scale_model_input(&self, sample: &[f32], k: usize) -> Result<Vec<f32>, SchedulerError> {
        let s = self.sigma(k)?;
        let d = (s * s + 1.0).sqrt();
        Ok(sample.iter().map(|&x| x / d).collect())
    }

    /// x₀ estimate and the ODE derivative (x − x₀)/σ at step `k`.
    fn denoise(
        &self,
        model_output: &[f32],
        k: usize,
        sample: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>), SchedulerError> {
        same_len(model_output, sample, "model_output", "sample")?;
        let s = self.sigma(k)?;
        let x0: Vec<f32> = match self.prediction_type {
            PredictionType::Epsilon => {
                sample.iter().zip(model_output).map(|(&x, &m)| x - s * m).collect()
            }
            PredictionType::VPrediction => {
                let c_out = -s / (s * s + 1.0).sqrt();
                let c_skip = s * s + 1.0;
                sample.iter().zip(model_output).map(|(&x, &m)| m * c_out + x / c_skip).collect()
            }
        };
        let d = sample.iter().zip(&x0).map(|(&x, &p)| (x - p) / s).collect();
        Ok((x0, d))
    }
}

/// Euler (`EulerDiscreteScheduler`, no churn: deterministic).
#[derive(Debug, Clone)]
pub struct Euler {
    sched: SigmaSchedule,
}

impl Euler {
    /// What the model predicts.
    pub fn prediction_type(&self) -> PredictionType {
        self.sched.prediction_type
    }

    /// Builds the schedule for `steps` inference steps.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Euler, SchedulerError> {
        Ok(Euler { sched: SigmaSchedule::new(config, steps)? })
    }

    /// The timesteps (the U-Net's `t`), high to low.
    pub fn timesteps(&self) -> &[f32] {
        &self.sched.timesteps
    }

    /// σ at each step, then a final 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.sched.sigmas
    }

    /// Scale for the initial Gaussian noise.
    pub fn init_noise_sigma(&self) -> f32 {
        self.sched.init_noise_sigma
    }

    /// The U-Net input at step index `k`: `sample / √(σ_k² + 1)`.
    pub fn scale_model_input(&self, sample: &[f32], k: usize) -> Result<Vec<f32>, SchedulerError> {
        self.sched.scale_model_input(sample, k)
    }

    /// One Euler update from σ_k to σ_{k+1} (`sample` unscaled, as diffusers).
    pub fn step(
        &self,
        model_output: &[f32],
        k: usize,
        sample: &[f32],
    ) -> Result<StepOutput, SchedulerError> {
        let (x0, d) = self.sched.denoise(model_output, k, sample)?;
        let dt = self.sched.sigmas[k + 1] - self.sched.sigmas[k];
        let prev = sample.iter().zip(&d).map(|(&x, &d)| x + d * dt).collect();
        Ok(StepOutput { prev_sample: prev, pred_original_sample: x0 })
    }
}

/// Linear multistep (`LMSDiscreteScheduler`, order 4). Keeps the last derivatives, so steps must
/// be taken in order `k = 0, 1, 2, …` on one instance ([`Lms::reset`] starts over).
#[derive(Debug, Clone)]
pub struct Lms {
    sched: SigmaSchedule,
    order: usize,
    derivatives: Vec<Vec<f32>>,
    next_k: usize,
}

impl Lms {
    /// What the model predicts.
    pub fn prediction_type(&self) -> PredictionType {
        self.sched.prediction_type
    }

    /// Builds the schedule for `steps` inference steps (order 4, as diffusers' default).
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Lms, SchedulerError> {
        Ok(Lms {
            sched: SigmaSchedule::new(config, steps)?,
            order: 4,
            derivatives: Vec::new(),
            next_k: 0,
        })
    }

    /// The timesteps, high to low.
    pub fn timesteps(&self) -> &[f32] {
        &self.sched.timesteps
    }

    /// σ at each step, then a final 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.sched.sigmas
    }

    /// Scale for the initial Gaussian noise.
    pub fn init_noise_sigma(&self) -> f32 {
        self.sched.init_noise_sigma
    }

    /// Forgets the stored derivatives (before a new trajectory).
    pub fn reset(&mut self) {
        self.derivatives.clear();
        self.next_k = 0;
    }

    /// The U-Net input at step index `k`: `sample / √(σ_k² + 1)`.
    pub fn scale_model_input(&self, sample: &[f32], k: usize) -> Result<Vec<f32>, SchedulerError> {
        self.sched.scale_model_input(sample, k)
    }

    /// `∫_{σ_k}^{σ_{k+1}} Π_{j≠c} (τ − σ_{k−j})/(σ_{k−c} − σ_{k−j}) dτ`, the weight of the
    /// derivative from `c` steps back (diffusers' `get_lms_coefficient`; exact Gauss–Legendre).
    pub fn lms_coefficient(&self, order: usize, k: usize, current_order: usize) -> f64 {
        let s = |i: usize| self.sched.sigmas[i] as f64;
        let f = |tau: f64| {
            (0..order)
                .filter(|&j| j != current_order)
                .map(|j| (tau - s(k - j)) / (s(k - current_order) - s(k - j)))
                .product::<f64>()
        };
        gauss_legendre(f, s(k), s(k + 1))
    }

    /// One LMS update from σ_k to σ_{k+1}; `k` must be the next index of this trajectory.
    pub fn step(
        &mut self,
        model_output: &[f32],
        k: usize,
        sample: &[f32],
    ) -> Result<StepOutput, SchedulerError> {
        if k != self.next_k {
            return err(format!(
                "LMS steps must run in order: expected index {}, got {k}",
                self.next_k
            ));
        }
        let (x0, d) = self.sched.denoise(model_output, k, sample)?;
        self.derivatives.push(d);
        if self.derivatives.len() > self.order {
            self.derivatives.remove(0);
        }
        let order = (k + 1).min(self.order);
        let coeffs: Vec<f32> =
            (0..order).map(|c| self.lms_coefficient(order, k, c) as f32).collect();
        // diffusers: sample + sum(coeff * d for coeff, d in zip(coeffs, reversed(derivatives))),
        // where Python's sum starts at 0 and adds left to right.
        let mut acc = vec![0.0f32; sample.len()];
        for (c, d) in coeffs.iter().zip(self.derivatives.iter().rev()) {
            acc.iter_mut().zip(d).for_each(|(a, &d)| *a += c * d);
        }
        let prev = sample.iter().zip(&acc).map(|(&x, &a)| x + a).collect();
        self.next_k += 1;
        Ok(StepOutput { prev_sample: prev, pred_original_sample: x0 })
    }
}

/// ∫_a^b f with 8-point Gauss–Legendre (exact for polynomials of degree ≤ 15).
pub(super) fn gauss_legendre(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    const N: usize = 8;
    let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
    let mut sum = 0.0;
    for i in 0..N / 2 {
        // Newton on P_N from the Chebyshev guess; nodes ±x with weight w.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (N as f64 + 0.5)).cos();
        let mut dp = 0.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for n in 2..=N {
                let p2 = ((2 * n - 1) as f64 * x * p1 - (n - 1) as f64 * p0) / n as f64;
                p0 = p1;
                p1 = p2;
            }
            dp = N as f64 * (x * p1 - p0) / (x * x - 1.0);
            let dx = p1 / dp;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        let w = 2.0 / ((1.0 - x * x) * dp * dp);
        sum += w * (f(mid + half * x) + f(mid - half * x));
    }
    sum * half
}
