//! Token pooling of text-encoder states (B × T × C → B × C), on the device.

use candle_core::{DType, IndexOp, Tensor, D};
use common::spec::Pooling;

/// Pools token states to one vector per stimulus. `mask` (B × T, u32) marks real tokens;
/// `lengths` (B, u32) counts them, so the end-of-text token sits at `length − 1`.
pub(crate) fn pool(
    h: &Tensor,
    mask: &Tensor,
    lengths: &Tensor,
    pooling: Pooling,
) -> candle_core::Result<Tensor> {
    match pooling {
        Pooling::Cls => h.i((.., 0, ..)),
        Pooling::Mean => {
            let m = mask.to_dtype(h.dtype())?.unsqueeze(D::Minus1)?;
            let sum = h.broadcast_mul(&m)?.sum(1)?;
            sum.broadcast_div(&m.sum(1)?)
        }
        Pooling::Eos => {
            // Gather the last real token of each row: index (length − 1) along the token axis.
            // Subtract in f32: candle's affine on u32 casts the −1 offset to u32 (0 after
            // saturation), which would select the first padding token.
            let last = (lengths.to_dtype(DType::F32)? - 1.0)?.to_dtype(DType::U32)?;
            let (_, _, c) = h.dims3()?;
            let idx = last.reshape(((), 1, 1))?.repeat((1, 1, c))?.contiguous()?;
            h.contiguous()?.gather(&idx, 1)?.squeeze(1)
        }
        other => candle_core::bail!("{} is not a token pooling", other.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn poolings_pick_the_right_tokens() {
        // B = 2, T = 3, C = 1; row 0 has 2 real tokens, row 1 has 3.
        let h = Tensor::new(&[[[1f32], [2.], [9.]], [[4.], [5.], [6.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0], [1, 1, 1]], &Device::Cpu).unwrap();
        let lengths = Tensor::new(&[2u32, 3], &Device::Cpu).unwrap();
        let col = |p| {
            pool(&h, &mask, &lengths, p).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert_eq!(col(Pooling::Cls), vec![1., 4.]);
        assert_eq!(col(Pooling::Mean), vec![1.5, 5.]);
        assert_eq!(col(Pooling::Eos), vec![2., 6.]);
    }
}
