//! Seeded standard-normal noise, generated on the host so that the initial latents are the same
//! on every device and every run. A SplitMix64 stream (`probe::SplitMix64`) feeds Box–Muller in
//! f64; the exact algorithm is specified in `tests/golden/sd/README.md`, and the golden script
//! implements the same one in Python.

use common::spec::NoiseSeeding;
use probe::SplitMix64;

/// A seeded stream of standard-normal values.
pub(crate) struct SeededNormal {
    bits: SplitMix64,
    spare: Option<f64>,
}

impl SeededNormal {
    pub(crate) fn new(seed: u64) -> SeededNormal {
        SeededNormal { bits: SplitMix64::new(seed), spare: None }
    }

    /// Uniform in (0, 1), never 0.
    fn uniform(&mut self) -> f64 {
        ((self.bits.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    fn next_normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }

    /// The next `n` values as f32.
    pub(crate) fn take(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_normal() as f32).collect()
    }
}

/// One noise stream per stimulus of a batch: the first draw is the initial latent, later draws
/// are the re-noising of samplers that need it (LCM), so a stimulus' noise never depends on
/// the batch it runs in.
pub(crate) struct NoiseStreams(Vec<SeededNormal>);

impl NoiseStreams {
    /// The streams of `names`' replicate `replicate`, seeded as `seeding` says.
    pub(crate) fn new(
        base: u64,
        seeding: NoiseSeeding,
        names: &[String],
        replicate: usize,
    ) -> NoiseStreams {
        let seed = |name: &str| match seeding {
            NoiseSeeding::PerStimulus => seed_for(base, name, replicate),
            NoiseSeeding::PerReplicate => seed_for(base, "", replicate),
        };
        NoiseStreams(names.iter().map(|n| SeededNormal::new(seed(n))).collect())
    }

    /// The next `per` values of every stream, stimulus-major (`b × per`).
    pub(crate) fn draw(&mut self, per: usize) -> Vec<f32> {
        self.0.iter_mut().flat_map(|s| s.take(per)).collect()
    }
}

/// The seed of one (stimulus, replicate): a hash of the spec's seed, the stimulus name and the
/// replicate, so it does not change when the stimulus list is reordered or filtered.
pub(crate) fn seed_for(base: u64, stimulus: &str, replicate: usize) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&base.to_le_bytes());
    h.update(&(replicate as u64).to_le_bytes());
    h.update(stimulus.as_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8].try_into().expect("8 bytes");
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_stream_is_seeded_and_standard() {
        let a = SeededNormal::new(42).take(20_001);
        assert_eq!(a, SeededNormal::new(42).take(20_001));
        assert_ne!(a[..8], SeededNormal::new(43).take(8)[..]);
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "var {var}");
    }

    #[test]
    fn seeds_depend_on_every_part() {
        let s = seed_for(1, "cat", 0);
        assert_eq!(s, seed_for(1, "cat", 0));
        assert_ne!(s, seed_for(2, "cat", 0));
        assert_ne!(s, seed_for(1, "dog", 0));
        assert_ne!(s, seed_for(1, "cat", 1));
    }

    /// Per-stimulus streams differ between stimuli and equal each stimulus' own stream in any
    /// batch; per-replicate streams are one stream for every stimulus, and differ by replicate.
    #[test]
    fn streams_are_per_stimulus_or_shared_by_a_replicate() {
        let names: Vec<String> = ["cat", "dog", "fish"].map(String::from).to_vec();
        let mut batch = NoiseStreams::new(5, NoiseSeeding::PerStimulus, &names, 1);
        let (first, second) = (batch.draw(4), batch.draw(4));
        let mut alone = NoiseStreams::new(5, NoiseSeeding::PerStimulus, &names[1..2], 1);
        assert_eq!(alone.draw(4), first[4..8]);
        assert_eq!(alone.draw(4), second[4..8]);
        assert_ne!(first[..4], first[4..8]);
        let mut paired = NoiseStreams::new(5, NoiseSeeding::PerReplicate, &names, 1);
        let shared = paired.draw(4);
        assert!(shared.chunks(4).all(|c| c == &shared[..4]));
        let mut other = NoiseStreams::new(5, NoiseSeeding::PerReplicate, &names, 2);
        assert_ne!(other.draw(4)[..4], shared[..4]);
    }
}
