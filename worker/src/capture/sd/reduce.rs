//! On-device reductions of U-Net taps. A [`ReducingSink`] is handed to the U-Net for one pass:
//! it keeps the rows of the batch that are recorded (the cond half under guidance), reduces each
//! wanted tap the ways the representations ask for, and holds the small results on the device
//! until the pass is over. Nothing of the full-size activation is copied to the host.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use common::spec::Pooling;

/// Which representations (by block index) one pass fills, per tap name.
pub(crate) type PassTaps = HashMap<String, Vec<(usize, Pooling)>>;

/// A [`sd::TapSink`] that reduces wanted taps as they are produced.
pub(crate) struct ReducingSink<'a> {
    taps: &'a PassTaps,
    rows: (usize, usize),
    minus: Option<usize>,
    masks: Option<&'a Tensor>,
    expand: Option<&'a Tensor>,
    reduced: Vec<(usize, Tensor)>,
}

impl<'a> ReducingSink<'a> {
    /// Records batch rows `start..start + len` of every tap in `taps`; `masks` (`len × 1 × H × W`
    /// in pixels, f32) weight the `mask_mean` reduction.
    pub(crate) fn new(
        taps: &'a PassTaps,
        start: usize,
        len: usize,
        masks: Option<&'a Tensor>,
    ) -> ReducingSink<'a> {
        ReducingSink {
            taps,
            rows: (start, len),
            minus: None,
            masks,
            expand: None,
            reduced: Vec::new(),
        }
    }

    /// Several objects per image: row `i` of the reduced values is kept row `expand[i]` (a `u32`
    /// index tensor), pooled by mask `i`.
    pub(crate) fn expand(self, expand: Option<&'a Tensor>) -> ReducingSink<'a> {
        ReducingSink { expand, ..self }
    }

    /// Records `rows − rows starting at minus` instead (the guidance delta cond − uncond),
    /// element by element before any reduction.
    pub(crate) fn minus(self, minus: Option<usize>) -> ReducingSink<'a> {
        ReducingSink { minus, ..self }
    }

    /// The reduced values as (block index, `len × D` f32 tensor on the device).
    pub(crate) fn finish(self) -> Vec<(usize, Tensor)> {
        self.reduced
    }
}

impl sd::TapSink for ReducingSink<'_> {
    fn wants(&self, name: &str) -> bool {
        self.taps.contains_key(name)
    }

    fn record(&mut self, name: &str, value: &Tensor) -> candle_core::Result<()> {
        let Some(wanted) = self.taps.get(name) else { return Ok(()) };
        let kept = value.narrow(0, self.rows.0, self.rows.1)?;
        let kept = match self.minus {
            // In f32: an f16 difference of two close activations loses digits.
            Some(start) => {
                let other = value.narrow(0, start, self.rows.1)?.to_dtype(DType::F32)?;
                (kept.to_dtype(DType::F32)? - other)?
            }
            None => kept,
        };
        let kept = match self.expand {
            Some(index) => kept.index_select(index, 0)?,
            None => kept,
        };
        for &(block, pooling) in wanted {
            let value = match (pooling, self.masks) {
                (Pooling::MaskMean, Some(masks)) => mask_mean(&kept, masks)?,
                _ => reduce(&kept, pooling)?,
            };
            self.reduced.push((block, value));
        }
        Ok(())
    }
}

/// Reduces `B × C × H × W` (spatial) or `B × T × C` (tokens) to `B × D`, in f32.
pub(crate) fn reduce(x: &Tensor, pooling: Pooling) -> candle_core::Result<Tensor> {
    let b = x.dim(0)?;
    // Reduce in f32: an f16 mean over 4,096 positions loses digits.
    let x = x.to_dtype(DType::F32)?;
    let spatial = x.rank() == 4;
    match pooling {
        Pooling::Mean if spatial => x.flatten_from(2)?.mean(2),
        Pooling::Max if spatial => x.flatten_from(2)?.max(2),
        Pooling::Mean => x.mean(1),
        Pooling::Max => x.max(1),
        Pooling::Flatten => x.reshape((b, ())),
        Pooling::None if spatial => x.permute((0, 2, 3, 1))?.contiguous()?.reshape((b, ())),
        Pooling::None => x.contiguous()?.reshape((b, ())),
        Pooling::MaskMean => candle_core::bail!("mask_mean needs object masks"),
        Pooling::Cls | Pooling::Eos => {
            candle_core::bail!("{} is a text pooling, not a U-Net reduction", pooling.name())
        }
    }
}

/// The mean over positions weighted by `masks` (`B × 1 × H × W` in pixels, f32), area-averaged
/// down to the tap's resolution; `x` is `B × C × h × w` or `B × h·w × C`.
pub(crate) fn mask_mean(x: &Tensor, masks: &Tensor) -> candle_core::Result<Tensor> {
    let (b, _, mh, mw) = masks.dims4()?;
    let x = x.to_dtype(DType::F32)?;
    let (x, positions) = if x.rank() == 4 {
        let positions = x.dim(2)? * x.dim(3)?;
        (x.flatten_from(2)?, positions)
    } else {
        let positions = x.dim(1)?;
        (x.transpose(1, 2)?.contiguous()?, positions)
    };
    // Taps keep the pixel grid's aspect ratio, so one factor k maps pixels to positions.
    let k = ((mh * mw) as f64 / positions as f64).sqrt().round() as usize;
    if k == 0 || mh % k != 0 || mw % k != 0 || (mh / k) * (mw / k) != positions {
        candle_core::bail!("a {mh}×{mw} mask does not tile a tap of {positions} positions");
    }
    let m = masks.avg_pool2d((k, k))?.reshape((b, 1, positions))?;
    x.broadcast_mul(&m)?.sum(2)?.broadcast_div(&m.sum(2)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn reductions_match_their_definitions() {
        // B = 1, C = 2, H = 1, W = 3.
        let x = Tensor::new(&[[[[1f32, 2., 6.]], [[0., -4., 1.]]]], &Device::Cpu).unwrap();
        let row = |p| reduce(&x, p).unwrap().to_vec2::<f32>().unwrap().remove(0);
        assert_eq!(row(Pooling::Mean), vec![3., -1.]);
        assert_eq!(row(Pooling::Max), vec![6., 1.]);
        assert_eq!(row(Pooling::Flatten), vec![1., 2., 6., 0., -4., 1.]);
        assert_eq!(row(Pooling::None), vec![1., 0., 2., -4., 6., 1.]);
        // Tokens: B = 1, T = 2, C = 2.
        let t = Tensor::new(&[[[1f32, 5.], [3., -1.]]], &Device::Cpu).unwrap();
        let row = |p| reduce(&t, p).unwrap().to_vec2::<f32>().unwrap().remove(0);
        assert_eq!(row(Pooling::Mean), vec![2., 2.]);
        assert_eq!(row(Pooling::Max), vec![3., 5.]);
        assert_eq!(row(Pooling::None), vec![1., 5., 3., -1.]);
        assert!(reduce(&t, Pooling::Eos).is_err());
    }

    #[test]
    fn mask_mean_weights_positions_by_the_downsampled_mask() {
        // B = 1, C = 1, a 2×2 tap under a 4×4 mask: the top-left cell is 3/4 object, the
        // bottom-right 1/4, the others empty.
        let x = Tensor::new(&[[[[10f32, 20.], [30., 40.]]]], &Device::Cpu).unwrap();
        let m = Tensor::new(
            &[[[[1f32, 1., 0., 0.], [1., 0., 0., 0.], [0., 0., 0., 0.], [0., 0., 0., 1.]]]],
            &Device::Cpu,
        )
        .unwrap();
        let got = mask_mean(&x, &m).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, vec![(0.75 * 10. + 0.25 * 40.) / 1.0]);
        // The same tap as tokens (B × 4 × C) gives the same answer.
        let t = x.flatten_from(2).unwrap().transpose(1, 2).unwrap();
        let got = mask_mean(&t, &m).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, vec![17.5]);
        assert!(
            mask_mean(&x, &Tensor::zeros((1, 1, 3, 3), DType::F32, &Device::Cpu).unwrap()).is_err()
        );
    }
}
