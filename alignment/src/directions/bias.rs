//! Bias along a contrast axis (§H): a = d(x | n) − d(y | n) for a user pair (x, y) against a
//! neutral n (e.g. "man", "woman" against "person"); per query q, β(q) = cos(d(q | b), a) and the
//! projection ⟨d(q | b), a / ‖a‖⟩, each with a bootstrap CI over replicates (module
//! `bootstrap`); over the query set, a two-sided exact sign test of the β.
//!
//! **Sign test:** of the queries with β ≠ 0, k are positive out of m; under H0 (no preferred
//! side) k ~ Binomial(m, ½) and p = min(1, 2 · P(X ≤ min(k, m − k))), which for p = ½ equals
//! scipy's `binomtest(k, m).pvalue`; m = 0 gives p = 1.

use crate::error::AlignmentError;

use super::bootstrap::{estimate, resamples, Analysis, DirectionsConfig, Estimate, PairedGram};
use super::replicates::{cosine, direction, dot, Replicates};

/// A contrast axis a = d(positive | neutral) − d(negative | neutral), as prompt indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis {
    /// x, the prompt on the positive side ("man").
    pub positive: usize,
    /// y, the prompt on the negative side ("woman").
    pub negative: usize,
    /// n, the neutral prompt of the pair ("person").
    pub neutral: usize,
}

/// The bias of one query prompt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bias {
    /// The query's prompt index.
    pub query: usize,
    /// β = cos(d(q | b), a).
    pub beta: Estimate,
    /// ⟨d(q | b), a / ‖a‖⟩, in h units.
    pub projection: Estimate,
}

/// The exact two-sided sign test of a set of values (module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignTest {
    /// Values > 0.
    pub positive: usize,
    /// Values ≠ 0.
    pub nonzero: usize,
    /// Two-sided binomial p-value.
    pub p_value: f64,
}

/// The biases of a query set and their sign test.
#[derive(Debug, Clone, PartialEq)]
pub struct BiasReport {
    /// One per query, in the order given.
    pub biases: Vec<Bias>,
    /// The sign test of the β values.
    pub sign_test: SignTest,
}

/// β(q) and the projection of every query's direction d(q | `base`) on `axis` (module doc).
///
/// # Errors
/// [`AlignmentError::PromptIndex`] for an index out of range, [`AlignmentError::NotScorable`] if
/// the axis is zero (x and y have equal h).
pub fn bias<T: Copy + Into<f64>>(
    h: &Replicates<'_, T>,
    axis: Axis,
    queries: &[usize],
    base: usize,
    config: &DirectionsConfig,
) -> Result<BiasReport, AlignmentError> {
    h.check(&[axis.positive, axis.negative, axis.neutral, base])?;
    h.check(queries)?;
    let (dx, dy) =
        (direction(h, axis.positive, axis.neutral)?, direction(h, axis.negative, axis.neutral)?);
    let a: Vec<f64> = dx.iter().zip(&dy).map(|(x, y)| x - y).collect();
    let norm = dot(&a, &a).sqrt();
    if norm == 0.0 {
        let problem = "the axis is zero (its two prompts have equal h)".into();
        return Err(AlignmentError::NotScorable { score: "bias", problem });
    }
    let per_replicate: Vec<Vec<f64>> = {
        let (x, y) = (
            h.differences(axis.positive, axis.neutral),
            h.differences(axis.negative, axis.neutral),
        );
        x.iter().zip(&y).map(|(u, v)| u.iter().zip(v).map(|(p, q)| p - q).collect()).collect()
    };
    let draws = resamples(h.replicates(), config, Analysis::Bias);
    let mut biases = Vec::with_capacity(queries.len());
    for &q in queries {
        let d = direction(h, q, base)?;
        let gram = PairedGram::new(&h.differences(q, base), &per_replicate);
        biases.push(Bias {
            query: q,
            beta: estimate(cosine(&d, &a), &draws, |w| gram.cosine(w)),
            projection: estimate(dot(&d, &a) / norm, &draws, |w| gram.projection(w)),
        });
    }
    let betas: Vec<f64> = biases.iter().map(|b| b.beta.value).collect();
    Ok(BiasReport { sign_test: sign_test(&betas), biases })
}

/// The exact two-sided sign test of `values` (module doc).
pub fn sign_test(values: &[f64]) -> SignTest {
    let positive = values.iter().filter(|&&v| v > 0.0).count();
    let nonzero = values.iter().filter(|&&v| v != 0.0).count();
    let k = positive.min(nonzero - positive);
    // P(X ≤ k) for X ~ Binomial(m, ½), summed in log space so that large m cannot underflow.
    let m = nonzero as f64;
    let (mut ln_choose, mut tail) = (0.0_f64, 0.0);
    for i in 0..=k {
        if i > 0 {
            ln_choose += (m - i as f64 + 1.0).ln() - (i as f64).ln();
        }
        tail += (ln_choose - m * std::f64::consts::LN_2).exp();
    }
    SignTest { positive, nonzero, p_value: (2.0 * tail).min(1.0) }
}
