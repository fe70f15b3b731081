//! Seeded K-fold assignment of stimuli, shaped like scikit-learn's `KFold(shuffle=True)`.
//!
//! **Invariant:** the folds are a pure function of `(n, k, seed)`; they partition `0..n`, the
//! first `n % k` folds hold one stimulus more than the others, and each list is sorted.

use crate::error::ProbeError;
use crate::rng;

/// A seeded train/test split of `0..n`: the first ⌈fraction·n⌉ of a shuffle train; each side
/// sorted. Depends on `seed` alone (its own stream).
pub fn train_test_split(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    rng::shuffle(&mut order, &mut rng::split_rng(seed));
    let k = ((fraction * n as f64).ceil() as usize).min(n);
    let (mut train, mut test) = (order[..k].to_vec(), order[k..].to_vec());
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Splits `n` stimuli into `k` folds after a seeded shuffle and returns each fold's test indices.
///
/// Like scikit-learn's `KFold(shuffle=True)`, the shuffled order is cut into consecutive
/// chunks; the first `n % k` folds get `n / k + 1` stimuli and the rest `n / k`. Each returned
/// list is sorted ascending; the training set of fold `f` is [`complement`]`(n, &folds[f])`.
/// The shuffle is our own (see the `rng` module), so the folds do not equal scikit-learn's for
/// the same seed.
///
/// # Errors
/// [`ProbeError::InvalidFolds`] unless `2 ≤ k ≤ n`.
pub fn kfold(n: usize, k: usize, seed: u64) -> Result<Vec<Vec<usize>>, ProbeError> {
    if k < 2 || k > n {
        return Err(ProbeError::InvalidFolds { k, n });
    }
    let mut order: Vec<usize> = (0..n).collect();
    rng::shuffle(&mut order, &mut rng::kfold_rng(seed));
    let (base, extra) = (n / k, n % k);
    let mut folds = Vec::with_capacity(k);
    let mut start = 0;
    for f in 0..k {
        let size = base + usize::from(f < extra);
        let mut fold = order[start..start + size].to_vec();
        fold.sort_unstable();
        folds.push(fold);
        start += size;
    }
    Ok(folds)
}

/// The seeded inner K-fold split of a training set: the validation folds that
/// [`crate::probe_fold`] uses to choose α when `cfg.alpha_inner_folds = k > 0`, for outer fold
/// `fold` and seed `seed` (= `cfg.seed`).
///
/// The positions `0..train.len()` are split by [`kfold`]`(train.len(), k, s)` with
/// `s` a fixed mix of `(seed, fold)` (its own stream, distinct from the outer split's), and
/// mapped back to stimuli: fold `f` is `{train[q] : q in that fold}`, sorted. The folds
/// partition `train`; pass them to [`crate::select_alpha_kfold`] to reproduce the choice.
///
/// # Errors
/// [`ProbeError::InvalidFolds`] unless `2 ≤ k ≤ train.len()`.
pub fn inner_kfold(
    train: &[usize],
    k: usize,
    seed: u64,
    fold: usize,
) -> Result<Vec<Vec<usize>>, ProbeError> {
    let positions = kfold(train.len(), k, rng::inner_kfold_seed(seed, fold))?;
    Ok(positions
        .into_iter()
        .map(|f| {
            let mut stimuli: Vec<usize> = f.into_iter().map(|q| train[q]).collect();
            stimuli.sort_unstable();
            stimuli
        })
        .collect())
}

/// The indices in `0..n` that are not in `test`, ascending: the training set of a fold.
///
/// Indices in `test` that are `≥ n` are ignored.
pub fn complement(n: usize, test: &[usize]) -> Vec<usize> {
    let mut in_test = vec![false; n];
    for &i in test {
        if i < n {
            in_test[i] = true;
        }
    }
    (0..n).filter(|&i| !in_test[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complement_of_a_fold() {
        assert_eq!(complement(6, &[1, 4]), vec![0, 2, 3, 5]);
        assert_eq!(complement(3, &[]), vec![0, 1, 2]);
    }
}
