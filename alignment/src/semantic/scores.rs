//! The class-semantics scores of one descriptor set, from its [`DistanceMatrix`].
//!
//! **Neighbours** of item i: every item from another image (so never i), ranked by distance, ties
//! by index (lower first).
//! - **k-NN accuracy** (leave-one-out): the majority class of i's first k neighbours (all of them
//!   when fewer than k) against i's class; a tied vote goes to the tied class whose member ranks
//!   first. Items with no neighbour are not scored. **Chance:** the mean accuracy over
//!   `permutations` random permutations of the class labels across items, with the neighbour
//!   lists kept (the expected accuracy of a label-permuted predictor; for k = 1 it is close to
//!   Σ n_c(n_c − 1) / (N(N − 1))).
//! - **mAP@R** (Musgrave et al. 2020): with R the number of i's neighbours of its class, AP@R =
//!   (1/R) Σ_{k ≤ R} rel(k)·P@k over the ranked neighbours; items with R = 0 are not scored.
//!   Same-image items are excluded from both the ranking and R. **Chance:** the exact expectation
//!   under a random ranking of i's M neighbours, (Σ_{k ≤ R} (1/k)(1/M + (k − 1)(R − 1) /
//!   (M(M − 1)))), averaged over the scored items.
//!
//! Pair scores (AUC, ratio, silhouette) live in `pairs`; CIs are bootstrap CIs (`score`).

use crate::error::AlignmentError;
use crate::rng::{shuffle, stream, Stream};

use super::distance::DistanceRows;
use super::items::Items;
use super::pairs::{auc_from, ratio_from, silhouette_from};
use super::pass::{gather, Wanted};
use super::score::{weighted_mean, with_bootstrap, Score, SemanticConfig, Which};

/// Every score of one descriptor set.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticScores {
    /// Leave-one-out 1-NN class accuracy.
    pub knn1: Score,
    /// Leave-one-out 5-NN class accuracy.
    pub knn5: Score,
    /// mAP@R.
    pub map_at_r: Score,
    /// Same- vs different-class AUC of the pair distances.
    pub auc: Score,
    /// Mean inter-class over mean intra-class distance.
    pub ratio: Score,
    /// Mean silhouette.
    pub silhouette: Score,
}

impl SemanticScores {
    /// The scores by their row names in `semantic.parquet` (`knn1`, `knn5`, `map_at_r`, `auc`,
    /// `ratio`, `silhouette`), in field order.
    pub fn named(&self) -> [(&'static str, Score); 6] {
        [
            ("knn1", self.knn1),
            ("knn5", self.knn5),
            ("map_at_r", self.map_at_r),
            ("auc", self.auc),
            ("ratio", self.ratio),
            ("silhouette", self.silhouette),
        ]
    }
}

/// All scores of the descriptor set whose distances are `dm`, in one pass over its rows (and a
/// second for the AUC's different-class pairs).
///
/// # Errors
/// The first error of the single scores, in field order.
pub fn scores<R: DistanceRows + ?Sized>(
    dm: &R,
    items: &Items<'_>,
    config: &SemanticConfig,
) -> Result<SemanticScores, AlignmentError> {
    items.check(dm.len())?;
    let wanted = Wanted { knn: 5, map: true, sums: true, silhouette: true, positives: true };
    let facts = gather(dm, items, wanted);
    let first: Vec<(usize, Vec<usize>)> =
        facts.lists.iter().map(|(i, l)| (*i, l[..1].to_vec())).collect();
    Ok(SemanticScores {
        knn1: knn_from(&first, items, 1, config)?,
        knn5: knn_from(&facts.lists, items, 5, config)?,
        map_at_r: map_from(&facts.aps, config)?,
        auc: auc_from(dm, items, facts.positives, config)?,
        ratio: ratio_from(&facts.sums, config)?,
        silhouette: silhouette_from(&facts.silhouette, items, config)?,
    })
}

/// The class chosen by `neighbours` (nearest first): the most frequent, a tie to the tied class
/// whose member comes first.
pub(crate) fn vote(neighbours: &[usize], classes: &[usize]) -> usize {
    let count = |c: usize| neighbours.iter().filter(|&&j| classes[j] == c).count();
    let best = neighbours.iter().map(|&j| count(classes[j])).max().unwrap_or(0);
    let first = neighbours.iter().find(|&&j| count(classes[j]) == best);
    first.map_or(usize::MAX, |&j| classes[j])
}

/// Leave-one-out k-NN class accuracy, excluding same-image neighbours (module doc).
///
/// # Errors
/// [`AlignmentError::LabelCount`] if `items` does not match `dm`, [`AlignmentError::Config`] for
/// `k = 0`, [`AlignmentError::NotScorable`] if no item has a neighbour from another image.
pub fn knn_accuracy<R: DistanceRows + ?Sized>(
    dm: &R,
    items: &Items<'_>,
    k: usize,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    items.check(dm.len())?;
    if k == 0 {
        return Err(AlignmentError::Config { setting: "k", problem: "must be at least 1".into() });
    }
    let facts = gather(dm, items, Wanted { knn: k, ..Wanted::default() });
    knn_from(&facts.lists, items, k, config)
}

/// k-NN accuracy from each scored item's first `k` neighbours.
fn knn_from(
    lists: &[(usize, Vec<usize>)],
    items: &Items<'_>,
    k: usize,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    if lists.is_empty() {
        return Err(not_scorable("k-NN accuracy", "no item has a neighbour from another image"));
    }
    let classes = items.classes();
    let accuracy = |labels: &[usize]| -> Vec<f64> {
        lists.iter().map(|(i, l)| f64::from(u8::from(vote(l, labels) == labels[*i]))).collect()
    };
    let hits = accuracy(classes);
    let value = hits.iter().sum::<f64>() / hits.len() as f64;
    let chance = if config.permutations == 0 {
        f64::NAN
    } else {
        let mut rng = stream(Stream::Permutation, config.seed, Which::Knn.index(k));
        let mut labels = classes.to_vec();
        let total: f64 = (0..config.permutations)
            .map(|_| {
                shuffle(&mut labels, &mut rng);
                accuracy(&labels).iter().sum::<f64>() / lists.len() as f64
            })
            .sum();
        total / config.permutations as f64
    };
    Ok(with_bootstrap(value, chance, hits.len(), config, Which::Knn.index(k), |w| {
        weighted_mean(&hits, w)
    }))
}

/// mAP@R, excluding same-image items from the ranking and from R (module doc).
///
/// # Errors
/// [`AlignmentError::LabelCount`] if `items` does not match `dm`, [`AlignmentError::NotScorable`]
/// if no item has a same-class item in another image.
pub fn map_at_r<R: DistanceRows + ?Sized>(
    dm: &R,
    items: &Items<'_>,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    items.check(dm.len())?;
    map_from(&gather(dm, items, Wanted { map: true, ..Wanted::default() }).aps, config)
}

/// mAP@R from each scored item's (AP@R, chance).
fn map_from(aps: &[(f64, f64)], config: &SemanticConfig) -> Result<Score, AlignmentError> {
    if aps.is_empty() {
        return Err(not_scorable("mAP@R", "no item has a same-class item in another image"));
    }
    let n = aps.len() as f64;
    let value = aps.iter().map(|a| a.0).sum::<f64>() / n;
    let chance = aps.iter().map(|a| a.1).sum::<f64>() / n;
    let values: Vec<f64> = aps.iter().map(|a| a.0).collect();
    Ok(with_bootstrap(value, chance, aps.len(), config, Which::MapAtR.index(0), |w| {
        weighted_mean(&values, w)
    }))
}

/// The expected AP@R of `r` relevant items among `m` ranked at random (module doc).
pub(crate) fn random_ranking_ap(r: usize, m: usize) -> f64 {
    let (rf, mf) = (r as f64, m as f64);
    (1..=r)
        .map(|k| {
            let pair = if m > 1 { (k - 1) as f64 * (rf - 1.0) / (mf * (mf - 1.0)) } else { 0.0 };
            (1.0 / mf + pair) / k as f64
        })
        .sum()
}

pub(crate) fn not_scorable(score: &'static str, problem: &str) -> AlignmentError {
    AlignmentError::NotScorable { score, problem: problem.into() }
}
