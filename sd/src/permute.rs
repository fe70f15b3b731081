//! The weight-permuted control model of seed 002 (science-2.md §D): every tensor whose name
//! ends in `weight` has its elements shuffled, biases are kept. The architecture, the
//! parameter count and each tensor's value distribution stay; every learned arrangement goes.
//!
//! Each tensor's permutation is seeded by the run's seed and the tensor's name, so it does not
//! depend on the order tensors are stored or visited in (a `HashMap` here).

use std::collections::HashMap;

use candle_core::{Result, Tensor};

/// Shuffles the elements of every `*weight` tensor of `weights` in place; other tensors are
/// untouched.
pub(crate) fn permute_weights(weights: &mut HashMap<String, Tensor>, seed: u64) -> Result<()> {
    for (name, tensor) in weights.iter_mut() {
        if !name.ends_with("weight") {
            continue;
        }
        let order = permutation(tensor.elem_count(), seed ^ fnv1a(name.as_bytes()));
        let index = Tensor::from_vec(order, tensor.elem_count(), tensor.device())?;
        *tensor = tensor.flatten_all()?.index_select(&index, 0)?.reshape(tensor.shape())?;
    }
    Ok(())
}

/// A uniformly random permutation of `0..n` (Fisher–Yates on SplitMix64).
fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        // Lemire's multiply-shift: unbiased enough for n ≪ 2⁶⁴.
        let j = ((u128::from(next()) * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

/// FNV-1a of a tensor name: mixes it into the seed.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Weights become a permutation of themselves (same multiset, same shape, different
    /// order), biases stay bit for bit, and the result depends on the seed alone.
    #[test]
    fn weights_are_shuffled_and_biases_kept() {
        let dev = Device::Cpu;
        let w: Vec<f32> = (0..240).map(|i| i as f32 * 0.5 - 7.0).collect();
        let b: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let original = HashMap::from([
            ("conv.weight".to_string(), Tensor::from_vec(w.clone(), (4, 3, 4, 5), &dev).unwrap()),
            ("conv.bias".to_string(), Tensor::from_vec(b.clone(), 12, &dev).unwrap()),
        ]);
        let run = |seed| {
            let mut m = original.clone();
            permute_weights(&mut m, seed).unwrap();
            let get = |k: &str| m[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(m["conv.weight"].dims(), &[4, 3, 4, 5]);
            (get("conv.weight"), get("conv.bias"))
        };
        let (pw, pb) = run(7);
        assert_eq!(pb, b);
        assert_ne!(pw, w);
        let mut sorted = pw.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, w);
        assert_eq!(run(7).0, pw);
        assert_ne!(run(8).0, pw);
    }

    /// Every position is equally likely to receive each element (a χ²-free check: over many
    /// seeds, element 0 lands in each of 4 places about a quarter of the time).
    #[test]
    fn permutations_are_uniform() {
        let mut counts = [0_u32; 4];
        for seed in 0..4000 {
            let p = permutation(4, seed);
            counts[p.iter().position(|&x| x == 0).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| (900..1100).contains(&c)), "{counts:?}");
    }
}
