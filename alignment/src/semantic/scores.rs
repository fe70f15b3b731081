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

use super::distance::DistanceMatrix;
use super::items::Items;
use super::pairs::{inter_intra_ratio, pair_auc, silhouette};
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

/// All scores of the descriptor set whose distances are `dm`.
///
/// # Errors
/// The first error of the single scores, in field order.
pub fn scores(
    dm: &DistanceMatrix,
    items: &Items<'_>,
    config: &SemanticConfig,
) -> Result<SemanticScores, AlignmentError> {
    Ok(SemanticScores {
        knn1: knn_accuracy(dm, items, 1, config)?,
        knn5: knn_accuracy(dm, items, 5, config)?,
        map_at_r: map_at_r(dm, items, config)?,
        auc: pair_auc(dm, items, config)?,
        ratio: inter_intra_ratio(dm, items, config)?,
        silhouette: silhouette(dm, items, config)?,
    })
}

/// The neighbours of item `i`: items from other images, nearest first, ties by index.
pub(crate) fn ranked(dm: &DistanceMatrix, items: &Items<'_>, i: usize) -> Vec<usize> {
    let row = dm.row(i);
    let mut order: Vec<usize> = (0..dm.len()).filter(|&j| items.apart(i, j)).collect();
    // A stable sort of ascending indices: equal distances stay in index order.
    order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
    order
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
pub fn knn_accuracy(
    dm: &DistanceMatrix,
    items: &Items<'_>,
    k: usize,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    items.check(dm.len())?;
    if k == 0 {
        return Err(AlignmentError::Config { setting: "k", problem: "must be at least 1".into() });
    }
    let classes = items.classes();
    let lists: Vec<(usize, Vec<usize>)> = (0..dm.len())
        .map(|i| (i, ranked(dm, items, i).into_iter().take(k).collect::<Vec<_>>()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if lists.is_empty() {
        return Err(not_scorable("k-NN accuracy", "no item has a neighbour from another image"));
    }
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
pub fn map_at_r(
    dm: &DistanceMatrix,
    items: &Items<'_>,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    items.check(dm.len())?;
    let classes = items.classes();
    let (mut aps, mut chances) = (Vec::new(), Vec::new());
    for i in 0..dm.len() {
        let order = ranked(dm, items, i);
        let r = order.iter().filter(|&&j| classes[j] == classes[i]).count();
        if r == 0 {
            continue;
        }
        let mut hits = 0usize;
        let mut sum = 0.0;
        for (k, &j) in order.iter().take(r).enumerate() {
            if classes[j] == classes[i] {
                hits += 1;
                sum += hits as f64 / (k + 1) as f64;
            }
        }
        aps.push(sum / r as f64);
        chances.push(random_ranking_ap(r, order.len()));
    }
    if aps.is_empty() {
        return Err(not_scorable("mAP@R", "no item has a same-class item in another image"));
    }
    let n = aps.len() as f64;
    let value = aps.iter().sum::<f64>() / n;
    let chance = chances.iter().sum::<f64>() / n;
    Ok(with_bootstrap(value, chance, aps.len(), config, Which::MapAtR.index(0), |w| {
        weighted_mean(&aps, w)
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
