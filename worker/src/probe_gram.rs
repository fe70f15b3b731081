//! The probe's largest product on the worker's GPU: the stimulus Gram matrix of a
//! representation, which every fold of a probe unit reads its kernel-form PCA from
//! ([`probe::StimulusGram`]). The eigendecompositions and the permutation refits stay on the CPU
//! (small next to the Gram matrix at D ≫ N).

use candle_core::{DType, Device, Tensor};
use probe::{Precision, StimulusGram};

use crate::error::UnitError;

/// Feature columns moved to the device per block (bounds device memory to `N × BLOCK` values
/// whatever D: a flattened early U-Net block has D in the millions).
const BLOCK: usize = 1 << 16;

/// The Gram matrix of `rows` of `x` (`n × d` row-major) on `device`, centred on the rows' mean
/// (computed in `f64` on the host), products in `f64` or `f32` as `precision` says.
pub(crate) fn device_gram(
    x: &[f32],
    n: usize,
    d: usize,
    rows: &[usize],
    precision: Precision,
    device: &Device,
) -> Result<StimulusGram, UnitError> {
    let m = rows.len();
    let mut mean = vec![0.0_f64; d];
    for &r in rows {
        for (s, &v) in mean.iter_mut().zip(&x[r * d..(r + 1) * d]) {
            *s += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|s| *s /= m.max(1) as f64);
    let dtype = match precision {
        Precision::F64 => DType::F64,
        Precision::F32 => DType::F32,
    };
    let mut k = Tensor::zeros((m, m), dtype, device)?;
    for c0 in (0..d).step_by(BLOCK) {
        let c1 = (c0 + BLOCK).min(d);
        let mut block = Vec::with_capacity(m * (c1 - c0));
        for &r in rows {
            let row = &x[r * d + c0..r * d + c1];
            block.extend(row.iter().zip(&mean[c0..c1]).map(|(&v, &mu)| f64::from(v) - mu));
        }
        let block = Tensor::from_vec(block, (m, c1 - c0), device)?.to_dtype(dtype)?;
        k = (k + block.matmul(&block.t()?)?)?;
    }
    let k = k.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    Ok(StimulusGram::from_parts(n, d, rows, &k)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe::{complement, kfold, probe_folds, probe_folds_with_gram, FoldSplit, ProbeConfig};

    /// The device path through candle (here its CPU backend; cuBLAS on a GPU worker) gives the
    /// probe that faer's Gram matrix gives.
    #[test]
    fn device_gram_gives_the_cpu_probe() {
        let (n, d, j) = (36, 70, 2);
        let mut state = 9_u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        let x: Vec<f32> = (0..n * d).map(|i| (next() + 3.0 + (i % 5) as f64) as f32).collect();
        let y: Vec<f64> = (0..n * j).map(|_| next()).collect();
        let splits: Vec<FoldSplit> = kfold(n, 4, 1)
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(fold, test)| FoldSplit { fold, train: complement(n, &test), test })
            .collect();
        let rows: Vec<usize> = (0..n).collect();
        for precision in [Precision::F64, Precision::F32] {
            let cfg = ProbeConfig {
                n_components: 12,
                n_permutations: 40,
                precision,
                ..Default::default()
            };
            let gram = device_gram(&x, n, d, &rows, precision, &Device::Cpu).unwrap();
            let on_device = probe_folds_with_gram(&gram, &y, j, &splits, &cfg).unwrap();
            let on_cpu = probe_folds(&x, n, d, &y, j, &splits, &cfg).unwrap();
            let tol = if precision == Precision::F64 { 1e-9 } else { 1e-4 };
            for (a, b) in on_device.iter().zip(&on_cpu) {
                let diff = a.predictions.iter().zip(&b.predictions).map(|(u, v)| (u - v).abs());
                assert!(diff.fold(0.0, f64::max) < tol, "{precision:?}");
                assert!((a.p_value - b.p_value).abs() <= 2.0 / 41.0);
            }
        }
    }
}
