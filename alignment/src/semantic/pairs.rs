//! The pair scores of one descriptor set.
//!
//! - **AUC:** same-class pairs (positives) against different-class pairs (negatives) of objects
//!   from different images, scored by −distance: the Mann–Whitney probability that a positive is
//!   closer than a negative, ties counted ½ (scikit-learn's `roc_auc_score`). **Chance** 0.5.
//!   **CI:** the bootstrap of its first-order (Hájek) projection over items: a replicate weights
//!   each item's negatives, placed against all positives, and each item's positives, placed
//!   against all negatives, by the item's draws; each side equals the AUC at unit weights, and
//!   the replicate is the AUC plus both sides' deviations (the first-order term of a bootstrap
//!   that weights every pair by both its items). Unlike a bootstrap of whole pairs it needs no
//!   pair list, so it streams over blocked distances.
//! - **Ratio:** mean distance of different-class pairs over that of same-class pairs (objects from
//!   different images). **Chance** 1.
//! - **Silhouette:** scikit-learn's `silhouette_score(metric="precomputed")` over all items and
//!   pairs (same image included): s_i = (b_i − a_i) / max(a_i, b_i), a_i the mean distance to the
//!   rest of i's class, b_i the least mean distance to another class, s_i = 0 in a class of one.
//!   **Chance** 0 (the value for exchangeable classes; it is slightly negative in small samples).
//!
//! Each is computed over ordered pairs (i, j), which leaves AUC and ratio unchanged and lets the
//! bootstrap weight a pair by its query item i (`score`).

use crate::error::AlignmentError;

use super::distance::DistanceRows;
use super::items::Items;
use super::pass::{gather, ClassCoding, Wanted};
use super::score::{weighted_mean, with_bootstrap, Score, SemanticConfig, Which};
use super::scores::not_scorable;

/// Same- vs different-class AUC of the pair distances (module doc).
///
/// # Errors
/// [`AlignmentError::LabelCount`] if `items` does not match `dm`, [`AlignmentError::NotScorable`]
/// without both a same-class and a different-class pair from two images.
pub fn pair_auc<R: DistanceRows + ?Sized>(
    dm: &R,
    items: &Items<'_>,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    items.check(dm.len())?;
    let positives = gather(dm, items, Wanted { positives: true, ..Wanted::default() }).positives;
    auc_from(dm, items, positives, config)
}

/// The AUC from the same-class pairs (`pass::RowFacts::positives`) and a second pass over `dm`
/// for the different-class pairs: each is placed among the sorted positives by binary search,
/// so only the positives are held. Counts are kept in half units (a tie is 1, a win 2), exact.
pub(crate) fn auc_from<R: DistanceRows + ?Sized>(
    dm: &R,
    items: &Items<'_>,
    mut positives: Vec<(f64, u32, u32)>,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    let unscorable =
        || not_scorable("pair AUC", "needs same- and different-class pairs across images");
    if positives.is_empty() {
        return Err(unscorable());
    }
    positives.sort_by(|a, b| a.0.total_cmp(&b.0));
    let sorted: Vec<f64> = positives.iter().map(|p| p.0).collect();
    let n = dm.len();
    let classes = items.classes();
    // Per item: its negatives' placements and count; per positive, a difference array of the
    // negatives above it (prefix sums give each positive's placement).
    let (mut neg_place, mut neg_count) = (vec![0u64; n], vec![0u64; n]);
    let mut above = vec![0i64; sorted.len() + 1];
    let mut total = 0u64;
    dm.for_each_row(&mut |i, row| {
        for (j, &d) in row.iter().enumerate().skip(i + 1) {
            if items.apart(i, j) && classes[i] != classes[j] {
                let lo = sorted.partition_point(|&p| p < d);
                let hi = lo + sorted[lo..].partition_point(|&p| p <= d);
                let place = (2 * lo + (hi - lo)) as u64;
                total += place;
                for k in [i, j] {
                    neg_place[k] += place;
                    neg_count[k] += 1;
                }
                above[0] += 2;
                above[lo] -= 1;
                above[hi] -= 1;
            }
        }
    });
    let negatives: u64 = neg_count.iter().sum::<u64>() / 2;
    if negatives == 0 {
        return Err(unscorable());
    }
    let (mut pos_place, mut pos_count) = (vec![0u64; n], vec![0u64; n]);
    let mut running = 0i64;
    for (p, step) in positives.iter().zip(&above) {
        running += step;
        for k in [p.1 as usize, p.2 as usize] {
            pos_place[k] += running as u64;
            pos_count[k] += 1;
        }
    }
    let (pairs_pos, pairs_neg) = (sorted.len() as f64, negatives as f64);
    let value = total as f64 / (2.0 * pairs_pos * pairs_neg);
    // The bootstrap's items: those with a pair across images.
    let scored: Vec<usize> = (0..n).filter(|&i| neg_count[i] + pos_count[i] > 0).collect();
    let f = |v: &[u64]| -> Vec<f64> { scored.iter().map(|&i| v[i] as f64).collect() };
    let (np, nc, pp, pc) = (f(&neg_place), f(&neg_count), f(&pos_place), f(&pos_count));
    let replicate = |w: &[f64]| -> f64 {
        let dot = |v: &[f64]| v.iter().zip(w).map(|(a, b)| a * b).sum::<f64>();
        let negative_side = dot(&np) / (dot(&nc) * 2.0 * pairs_pos);
        let positive_side = dot(&pp) / (dot(&pc) * 2.0 * pairs_neg);
        // Both sides' deviations add, as in the derivative of the pair bootstrap's Σ wᵢwₖCᵢₖ.
        negative_side + positive_side - value
    };
    Ok(with_bootstrap(value, 0.5, scored.len(), config, Which::Auc.index(0), replicate))
}

/// Mean inter-class over mean intra-class distance, pairs across images (module doc).
///
/// # Errors
/// As [`pair_auc`].
pub fn inter_intra_ratio<R: DistanceRows + ?Sized>(
    dm: &R,
    items: &Items<'_>,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    items.check(dm.len())?;
    ratio_from(&class_sums(dm, items), config)
}

/// The ratio from each item's pair sums.
pub(crate) fn ratio_from(
    sums: &[[f64; 4]],
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    let ratio = |w: &[f64]| -> f64 {
        let mut t = [0.0; 4];
        for (s, wi) in sums.iter().zip(w) {
            t.iter_mut().zip(s).for_each(|(acc, v)| *acc += wi * v);
        }
        (t[0] / t[1]) / (t[2] / t[3])
    };
    let value = ratio(&vec![1.0; sums.len()]);
    if !value.is_finite() {
        return Err(not_scorable(
            "inter/intra ratio",
            "needs same- and different-class pairs across images at a non-zero distance",
        ));
    }
    Ok(with_bootstrap(value, 1.0, sums.len(), config, Which::Ratio.index(0), ratio))
}

/// Per item with a pair across images: [inter sum, inter count, intra sum, intra count].
pub(crate) fn class_sums<R: DistanceRows + ?Sized>(dm: &R, items: &Items<'_>) -> Vec<[f64; 4]> {
    gather(dm, items, Wanted { sums: true, ..Wanted::default() }).sums
}

/// Mean silhouette over all items, scikit-learn's definition (module doc).
///
/// # Errors
/// [`AlignmentError::LabelCount`] if `items` does not match `dm`, [`AlignmentError::NotScorable`]
/// unless there are 2 to N − 1 classes (scikit-learn's condition).
pub fn silhouette<R: DistanceRows + ?Sized>(
    dm: &R,
    items: &Items<'_>,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    items.check(dm.len())?;
    let values = gather(dm, items, Wanted { silhouette: true, ..Wanted::default() }).silhouette;
    silhouette_from(&values, items, config)
}

/// The mean silhouette from every item's s_i.
pub(crate) fn silhouette_from(
    values: &[f64],
    items: &Items<'_>,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    let n = items.len();
    let classes = ClassCoding::new(items.classes()).size.len();
    if classes < 2 || classes >= n {
        return Err(not_scorable(
            "silhouette",
            &format!("needs 2 to N − 1 = {} classes; found {classes}", n.saturating_sub(1)),
        ));
    }
    let value = values.iter().sum::<f64>() / n as f64;
    Ok(with_bootstrap(value, 0.0, n, config, Which::Silhouette.index(0), |w| {
        weighted_mean(values, w)
    }))
}
