//! Seeded randomness for fold assignment and permutation tests.
//!
//! **Invariant:** every random stream is a ChaCha8 generator seeded from a documented, stable mix
//! of integers (SplitMix64 finaliser), and shuffles use our own Fisher–Yates with Lemire's
//! unbiased bounded integers on `next_u64`. Nothing depends on `rand`'s shuffle or range
//! algorithms, which may change between releases, so the same seed gives the same folds and the
//! same permutations on every platform and version.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Domain tag separating fold-assignment streams from permutation streams.
const TAG_KFOLD: u64 = 0x6b66_6f6c_6473_0001;
/// Domain tag of the per-fold permutation streams.
const TAG_PERMUTE: u64 = 0x7065_726d_7574_0002;
/// Domain tag of the permutation streams shared by all folds.
const TAG_PERMUTE_POOL: u64 = 0x7065_726d_7574_0003;

/// SplitMix64 (Steele, Lea & Flood 2014), the workspace's one copy: the state advances by the
/// golden-ratio increment and each output is the finaliser of the new state.
///
/// It seeds the ChaCha8 streams here and in `alignment` ([`SplitMix64::mix`], [`seed_of`]) and
/// is the worker's host-side noise stream, whose algorithm `tests/golden/sd/README.md` specifies.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The first value of the stream from `z`: a bijective 64-bit mixer.
    pub fn mix(z: u64) -> u64 {
        SplitMix64::new(z).next_u64()
    }
}

/// Mixes a domain tag and a list of integers into one seed, order-sensitively.
pub fn seed_of(tag: u64, parts: &[u64]) -> u64 {
    let mix = SplitMix64::mix;
    parts.iter().fold(mix(tag), |h, &p| mix(h ^ mix(p)))
}

/// Domain tag of the inner cross-validation splits.
const TAG_INNER_KFOLD: u64 = 0x696e_6e65_7266_0004;

/// The seed of the inner K-fold split of outer fold `fold` (fed to [`kfold_rng`] via `kfold`).
pub(crate) fn inner_kfold_seed(seed: u64, fold: usize) -> u64 {
    seed_of(TAG_INNER_KFOLD, &[seed, fold as u64])
}

/// The generator that assigns stimuli to folds for `seed`.
/// The stream of the dense probes' train/test split.
const TAG_SPLIT: u64 = 0x7370_6c69_7400_0005;

pub(crate) fn split_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed_of(TAG_SPLIT, &[seed]))
}

pub(crate) fn kfold_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed_of(TAG_KFOLD, &[seed]))
}

/// The generator of the permutations of the targets, per fold (`Some(fold)`) or shared by all
/// folds (`None`); one permutation reorders every attribute.
///
/// It never depends on the representation or the attributes, so every representation is tested
/// against the same permutations, whatever the grouping of folds into work units.
pub(crate) fn permutation_rng(seed: u64, fold: Option<usize>) -> ChaCha8Rng {
    let seed = match fold {
        Some(fold) => seed_of(TAG_PERMUTE, &[seed, fold as u64]),
        None => seed_of(TAG_PERMUTE_POOL, &[seed]),
    };
    ChaCha8Rng::seed_from_u64(seed)
}

/// A uniform integer in `0..n` (`n > 0`), by Lemire's multiply-and-reject method.
fn below(rng: &mut impl RngCore, n: u64) -> u64 {
    debug_assert!(n > 0);
    let mut m = u128::from(rng.next_u64()) * u128::from(n);
    if (m as u64) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u64) < threshold {
            m = u128::from(rng.next_u64()) * u128::from(n);
        }
    }
    (m >> 64) as u64
}

/// Shuffles `v` uniformly in place (Fisher–Yates, from the back), the same on every platform
/// and `rand` version.
pub fn shuffle<T>(v: &mut [T], rng: &mut impl RngCore) {
    for i in (1..v.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_seed_and_fold() {
        let a = permutation_rng(1, Some(0)).next_u64();
        assert_ne!(a, permutation_rng(1, Some(1)).next_u64());
        assert_ne!(a, permutation_rng(2, Some(0)).next_u64());
        assert_ne!(a, permutation_rng(1, None).next_u64());
        assert_eq!(a, permutation_rng(1, Some(0)).next_u64());
        assert_ne!(kfold_rng(1).next_u64(), permutation_rng(1, None).next_u64());
    }

    #[test]
    fn shuffle_is_uniform_on_three_elements() {
        // 6 permutations of 3 elements, 60 000 draws: each count should be 10 000 ± ~300 (3 sd).
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..60_000 {
            let mut v = [0u8, 1, 2];
            shuffle(&mut v, &mut rng);
            *counts.entry(v).or_insert(0usize) += 1;
        }
        assert_eq!(counts.len(), 6);
        for (perm, c) in counts {
            assert!((9_700..=10_300).contains(&c), "{perm:?} drawn {c} times");
        }
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let k = below(&mut rng, 7) as usize;
            seen[k] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
