//! Tests that need whole models: equality with candle's stock U-Net, with the diffusers /
//! transformers golden activations, and the loading-error table.
//!
//! Unit tests of single pieces sit next to their code.

mod batched_matmul;
mod candle_stock;
mod errors;
mod golden;
mod lora;
mod variants;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// `tests/` at the workspace root.
fn workspace_tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

/// `max |ours − reference| / max |reference|`, both read as f32 on the CPU.
fn max_relative_error(ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.dims(), reference.dims(), "shape mismatch");
    let as_f32 = |t: &Tensor| {
        t.to_device(&Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("tensor converts to f32")
    };
    let (a, b) = (as_f32(ours), as_f32(reference));
    let scale = b.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
    let diff =
        a.iter().zip(&b).fold(0f64, |m, (&x, &y)| m.max((f64::from(x) - f64::from(y)).abs()));
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

/// A deterministic, non-trivial test tensor (candle's CPU RNG cannot be seeded).
fn wave(shape: &[usize], phase: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| {
            (1.7 * ((i as f64) * 0.731 + phase).sin() + 0.3 * ((i as f64) * 0.113).cos()) as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).expect("shape matches")
}
