//! Descriptor ranking (§H): score(D) = cos(d(D | b), d(concept | b)) for each descriptor prompt D,
//! with a bootstrap CI over replicates (module `bootstrap`), best first.

use crate::error::AlignmentError;

use super::bootstrap::{estimate, resamples, Analysis, DirectionsConfig, Estimate, PairedGram};
use super::replicates::{cosine, direction, dot, Replicates};

/// One descriptor's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// The descriptor's prompt index.
    pub descriptor: usize,
    /// cos(d(D | b), d(concept | b)).
    pub score: Estimate,
}

/// The descriptors ranked by the cosine of their direction with the concept's, both against
/// `base`, descending (ties keep the order given).
///
/// # Errors
/// [`AlignmentError::PromptIndex`] for an index out of range, [`AlignmentError::NotScorable`] if
/// the concept's direction is zero.
pub fn rank_descriptors<T: Copy + Into<f64>>(
    h: &Replicates<'_, T>,
    descriptors: &[usize],
    concept: usize,
    base: usize,
    config: &DirectionsConfig,
) -> Result<Vec<Ranked>, AlignmentError> {
    h.check(descriptors)?;
    let c = direction(h, concept, base)?;
    if dot(&c, &c) == 0.0 {
        let problem = "the concept's direction is zero (it has the base prompt's h)".into();
        return Err(AlignmentError::NotScorable { score: "descriptor ranking", problem });
    }
    let concept_diffs = h.differences(concept, base);
    let draws = resamples(h.replicates(), config, Analysis::Ranking);
    let mut ranked = Vec::with_capacity(descriptors.len());
    for &descriptor in descriptors {
        let d = direction(h, descriptor, base)?;
        let gram = PairedGram::new(&h.differences(descriptor, base), &concept_diffs);
        let score = estimate(cosine(&d, &c), &draws, |w| gram.cosine(w));
        ranked.push(Ranked { descriptor, score });
    }
    ranked.sort_by(|a, b| b.score.value.total_cmp(&a.score.value));
    Ok(ranked)
}
