//! Seeded randomness of the linear probe: weight initialisation, batch order and the
//! validation split.
//!
//! **Invariant:** every stream is a ChaCha8 generator seeded from a documented mix of integers
//! (`probe::seed_of`, SplitMix64) over `(tag, seed, fold)`; uniforms, normals (Box–Muller) and shuffles
//! (Fisher–Yates with Lemire's bounded integers) are our own code on `next_u64`, so a seed gives
//! the same numbers on every platform and `rand` version. Candle's own RNG is never used (its
//! CPU generator cannot be seeded).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which stream: one per use, so changing one use never shifts another's numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    /// The initial weights of a fold.
    Init = 1,
    /// The batch order of a fold (all epochs).
    Batches = 2,
    /// The training / validation split of a fold's triplets.
    Validation = 3,
    /// The bootstrap resamples of a semantic score (`fold` = which score).
    Bootstrap = 4,
    /// The label permutations of a semantic score's chance level (`fold` = which score).
    Permutation = 5,
    /// The replicate resamples of the prompt-direction bootstrap (`fold` = which analysis).
    Replicates = 6,
    /// The k-means++ seeding of the direction clusters (`fold` = which restart).
    KMeans = 7,
}

/// The generator of `stream` for `seed` and `fold`.
pub(crate) fn stream(which: Stream, seed: u64, fold: usize) -> ChaCha8Rng {
    let tag = 0x616c_6967_6e00_0000 | which as u64;
    ChaCha8Rng::seed_from_u64(probe::seed_of(tag, &[seed, fold as u64]))
}

/// A uniform value in `[0, 1)` with 53 random bits.
pub(crate) fn uniform(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// One standard normal value (Box–Muller; `1 − u` keeps the logarithm finite).
pub(crate) fn normal(rng: &mut impl RngCore) -> f64 {
    let (u, v) = (uniform(rng), uniform(rng));
    (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A uniform integer in `0..n` (`n > 0`), by Lemire's multiply-and-reject method.
pub(crate) fn below(rng: &mut impl RngCore, n: usize) -> usize {
    let n = n as u64;
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as usize;
        }
    }
}

/// Seeded Fisher–Yates shuffle: the probe crate's, so both crates shuffle alike.
pub(crate) use probe::shuffle;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let first = |w, s, f| stream(w, s, f).next_u64();
        assert_eq!(first(Stream::Init, 1, 0), first(Stream::Init, 1, 0));
        assert_ne!(first(Stream::Init, 1, 0), first(Stream::Init, 1, 1));
        assert_ne!(first(Stream::Init, 1, 0), first(Stream::Init, 2, 0));
        assert_ne!(first(Stream::Init, 1, 0), first(Stream::Batches, 1, 0));
    }

    #[test]
    fn normals_have_unit_variance_and_shuffles_permute() {
        let mut rng = stream(Stream::Init, 7, 0);
        let x: Vec<f64> = (0..20_000).map(|_| normal(&mut rng)).collect();
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, var {var}");
        let mut v: Vec<usize> = (0..50).collect();
        shuffle(&mut v, &mut rng);
        assert_ne!(v, (0..50).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }
}
