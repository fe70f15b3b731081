//! The pair scores of one descriptor set.
//!
//! - **AUC:** same-class pairs (positives) against different-class pairs (negatives) of objects
//!   from different images, scored by −distance: the Mann–Whitney probability that a positive is
//!   closer than a negative, ties counted ½ (scikit-learn's `roc_auc_score`). **Chance** 0.5.
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

use super::distance::DistanceMatrix;
use super::items::Items;
use super::score::{weighted_mean, with_bootstrap, Score, SemanticConfig, Which};
use super::scores::not_scorable;

/// Same- vs different-class AUC of the pair distances (module doc).
///
/// # Errors
/// [`AlignmentError::LabelCount`] if `items` does not match `dm`, [`AlignmentError::NotScorable`]
/// without both a same-class and a different-class pair from two images.
pub fn pair_auc(
    dm: &DistanceMatrix,
    items: &Items<'_>,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    items.check(dm.len())?;
    let classes = items.classes();
    // Per ordered pair: distance, positive, the slot of its query item among the scored items.
    let mut slot = vec![usize::MAX; dm.len()];
    let mut pairs = Vec::new();
    let mut n = 0;
    for i in 0..dm.len() {
        for (j, &d) in dm.row(i).iter().enumerate() {
            if items.apart(i, j) {
                if slot[i] == usize::MAX {
                    slot[i] = n;
                    n += 1;
                }
                pairs.push((d, classes[i] == classes[j], slot[i]));
            }
        }
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let auc = |w: &[f64]| -> f64 {
        let (mut u, mut pos_below, mut pos_total, mut neg_total) = (0.0, 0.0, 0.0, 0.0);
        let mut start = 0;
        while start < pairs.len() {
            let end = start + pairs[start..].iter().take_while(|p| p.0 == pairs[start].0).count();
            let (mut pos, mut neg) = (0.0, 0.0);
            for &(_, positive, s) in &pairs[start..end] {
                if positive {
                    pos += w[s];
                } else {
                    neg += w[s];
                }
            }
            // Each negative beats the positives strictly closer and half of those tied with it.
            u += neg * (pos_below + 0.5 * pos);
            pos_below += pos;
            pos_total += pos;
            neg_total += neg;
            start = end;
        }
        u / (pos_total * neg_total)
    };
    let value = auc(&vec![1.0; n]);
    if !value.is_finite() {
        return Err(not_scorable(
            "pair AUC",
            "needs same- and different-class pairs across images",
        ));
    }
    Ok(with_bootstrap(value, 0.5, n, config, Which::Auc.index(0), auc))
}

/// Mean inter-class over mean intra-class distance, pairs across images (module doc).
///
/// # Errors
/// As [`pair_auc`].
pub fn inter_intra_ratio(
    dm: &DistanceMatrix,
    items: &Items<'_>,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    items.check(dm.len())?;
    let sums = class_sums(dm, items);
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
pub(crate) fn class_sums(dm: &DistanceMatrix, items: &Items<'_>) -> Vec<[f64; 4]> {
    let classes = items.classes();
    (0..dm.len())
        .filter_map(|i| {
            let mut s = [0.0; 4];
            let mut any = false;
            for (j, &d) in dm.row(i).iter().enumerate() {
                if items.apart(i, j) {
                    any = true;
                    let k = if classes[i] == classes[j] { 2 } else { 0 };
                    s[k] += d;
                    s[k + 1] += 1.0;
                }
            }
            any.then_some(s)
        })
        .collect()
}

/// Mean silhouette over all items, scikit-learn's definition (module doc).
///
/// # Errors
/// [`AlignmentError::LabelCount`] if `items` does not match `dm`, [`AlignmentError::NotScorable`]
/// unless there are 2 to N − 1 classes (scikit-learn's condition).
pub fn silhouette(
    dm: &DistanceMatrix,
    items: &Items<'_>,
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    items.check(dm.len())?;
    let n = dm.len();
    let mut labels: Vec<usize> = items.classes().to_vec();
    labels.sort_unstable();
    labels.dedup();
    if labels.len() < 2 || labels.len() >= n {
        return Err(not_scorable(
            "silhouette",
            &format!("needs 2 to N − 1 = {} classes; found {}", n.saturating_sub(1), labels.len()),
        ));
    }
    let code: Vec<usize> =
        items.classes().iter().map(|c| labels.binary_search(c).unwrap_or(0)).collect();
    let mut size = vec![0.0; labels.len()];
    code.iter().for_each(|&c| size[c] += 1.0);
    let values: Vec<f64> = (0..n)
        .map(|i| {
            let mut sum = vec![0.0; labels.len()];
            dm.row(i).iter().zip(&code).for_each(|(d, &c)| sum[c] += d);
            let own = code[i];
            if size[own] <= 1.0 {
                return 0.0;
            }
            let a = sum[own] / (size[own] - 1.0);
            let b = (0..labels.len())
                .filter(|&c| c != own)
                .map(|c| sum[c] / size[c])
                .fold(f64::INFINITY, f64::min);
            let s = (b - a) / a.max(b);
            if s.is_nan() {
                0.0
            } else {
                s
            }
        })
        .collect();
    let value = values.iter().sum::<f64>() / n as f64;
    Ok(with_bootstrap(value, 0.0, n, config, Which::Silhouette.index(0), |w| {
        weighted_mean(&values, w)
    }))
}
