//! Invariance of descriptors under a transform T applied to image and mask alike: row i of the
//! transformed set is object i of the untransformed set, seen through T.
//!
//! - **Drift** of object i: δ(f_i, f_iᵀ) / the mean inter-class distance of the untransformed set
//!   (different-class pairs from different images, [`mean_inter_class_distance`]). Exactly 0 for
//!   an unchanged descriptor; **chance** 1 (an unrelated object of another class, on average).
//! - **Cross-retrieval**: each transformed query against the untransformed gallery. *Class top-1*:
//!   the nearest gallery object from another image has the query's class (as 1-NN, ties by index;
//!   **chance** the mean fraction of such gallery objects of the query's class). *Instance top-1*:
//!   the nearest gallery object over the whole gallery is the query's own untransformed self
//!   (**chance** 1/N).

use crate::error::AlignmentError;
use crate::matrix::Matrix;
use crate::odd_one_out::Distance;

use super::distance::{for_each_cross_row, pair_distance, DistanceRows};
use super::items::Items;
use super::pairs::class_sums;
use super::score::{weighted_mean, with_bootstrap, Score, SemanticConfig, Which};
use super::scores::not_scorable;

/// The mean distance of different-class pairs from different images.
///
/// # Errors
/// [`AlignmentError::LabelCount`] if `items` does not match `dm`, [`AlignmentError::NotScorable`]
/// if there is no such pair or all are at distance 0.
pub fn mean_inter_class_distance<R: DistanceRows + ?Sized>(
    dm: &R,
    items: &Items<'_>,
) -> Result<f64, AlignmentError> {
    items.check(dm.len())?;
    let (sum, count) =
        class_sums(dm, items).iter().fold((0.0, 0.0), |(s, c), v| (s + v[0], c + v[1]));
    let mean = sum / count;
    if mean.is_finite() && mean > 0.0 {
        Ok(mean)
    } else {
        Err(not_scorable("drift", "no different-class pair across images at a non-zero distance"))
    }
}

/// Per-object drift of `transformed` from `original`, and its mean as a [`Score`] (module doc);
/// `inter_class` is [`mean_inter_class_distance`] of `original` under `distance`.
///
/// # Errors
/// [`AlignmentError::SetMismatch`] if the shapes differ.
pub fn drift<T: Copy + Into<f64>>(
    original: &Matrix<'_, T>,
    transformed: &Matrix<'_, T>,
    distance: Distance,
    inter_class: f64,
    config: &SemanticConfig,
) -> Result<(Vec<f64>, Score), AlignmentError> {
    check_pair(original, transformed)?;
    let per_item: Vec<f64> = (0..original.rows())
        .map(|i| pair_distance(original.row(i), transformed.row(i), distance) / inter_class)
        .collect();
    let value = per_item.iter().sum::<f64>() / per_item.len() as f64;
    let score = with_bootstrap(value, 1.0, per_item.len(), config, Which::Drift.index(0), |w| {
        weighted_mean(&per_item, w)
    });
    Ok((per_item, score))
}

/// Class and own-instance top-1 of transformed queries against the untransformed gallery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossRetrieval {
    /// The nearest gallery object from another image has the query's class.
    pub class_top1: Score,
    /// The nearest gallery object is the query's own untransformed self.
    pub instance_top1: Score,
}

/// Cross-retrieval of `transformed` (queries) against `original` (gallery) (module doc).
///
/// # Errors
/// [`AlignmentError::SetMismatch`] if the shapes differ, [`AlignmentError::LabelCount`] if `items`
/// does not match, [`AlignmentError::NotScorable`] if no query has a gallery object from another
/// image.
pub fn cross_retrieval<T: Copy + Into<f64>>(
    original: &Matrix<'_, T>,
    transformed: &Matrix<'_, T>,
    items: &Items<'_>,
    distance: Distance,
    config: &SemanticConfig,
) -> Result<CrossRetrieval, AlignmentError> {
    check_pair(original, transformed)?;
    items.check(original.rows())?;
    let n = original.rows();
    let classes = items.classes();
    // The first strict minimum among the kept gallery objects: ties go to the lower index.
    let nearest = |row: &[f64], keep: &dyn Fn(usize) -> bool| -> Option<usize> {
        (0..n).filter(|&j| keep(j)).fold(None, |best: Option<usize>, j| match best {
            Some(b) if row[b] <= row[j] => Some(b),
            _ => Some(j),
        })
    };
    let (mut class_hits, mut class_chance) = (Vec::new(), Vec::new());
    let mut instance_hits = Vec::with_capacity(n);
    for_each_cross_row(transformed, original, distance, &mut |i, row| {
        if let Some(j) = nearest(row, &|j| items.apart(i, j)) {
            class_hits.push(f64::from(u8::from(classes[j] == classes[i])));
            let others = (0..n).filter(|&j| items.apart(i, j));
            let (same, all) = others.fold((0.0, 0.0), |(s, a), j| {
                (s + f64::from(u8::from(classes[j] == classes[i])), a + 1.0)
            });
            class_chance.push(same / all);
        }
        instance_hits.push(f64::from(u8::from(nearest(row, &|_| true) == Some(i))));
    });
    if class_hits.is_empty() {
        return Err(not_scorable(
            "class top-1",
            "no query has a gallery object from another image",
        ));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let class_top1 = with_bootstrap(
        mean(&class_hits),
        mean(&class_chance),
        class_hits.len(),
        config,
        Which::ClassTop1.index(0),
        |w| weighted_mean(&class_hits, w),
    );
    let instance_top1 = with_bootstrap(
        mean(&instance_hits),
        1.0 / n as f64,
        n,
        config,
        Which::InstanceTop1.index(0),
        |w| weighted_mean(&instance_hits, w),
    );
    Ok(CrossRetrieval { class_top1, instance_top1 })
}

fn check_pair<T: Copy + Into<f64>>(
    original: &Matrix<'_, T>,
    transformed: &Matrix<'_, T>,
) -> Result<(), AlignmentError> {
    if (original.rows(), original.cols()) == (transformed.rows(), transformed.cols()) {
        Ok(())
    } else {
        Err(AlignmentError::SetMismatch {
            what: transformed.what(),
            rows: transformed.rows(),
            cols: transformed.cols(),
            want_rows: original.rows(),
            want_cols: original.cols(),
        })
    }
}
