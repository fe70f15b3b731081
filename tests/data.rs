//! Seeded Gaussian data for the library tests (`probe_lib`, `alignment_lib`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded generator for test data.
pub(crate) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// One standard normal draw (Box–Muller; `1 − u` keeps the logarithm finite).
pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random();
    let v: f64 = rng.random();
    (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// `len` independent standard normal values.
pub(crate) fn normals(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| normal(rng)).collect()
}
