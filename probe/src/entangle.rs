//! Entanglement of a representation's attribute probes (science.md B1; the paper's formula is
//! not public, so both measures are ours): identification accuracy of the out-of-fold
//! predictions, and the change in the correlation structure of predicted versus human ratings.
//!
//! Both take `pred` and `truth` as `n × j` row-major matrices (stimuli × attributes), usually
//! the out-of-fold predictions of every stimulus and the human ratings, and `folds`, the test
//! fold of each stimulus. Each fold's mean is removed from every column of both before any
//! correlation: every fold's predictions carry that fold's own intercept (its training mean),
//! and pooled over folds those intercepts alone correlate with the ratings (negatively, since a
//! fold's training mean is high where its test mean is low), which would make a probe that
//! predicts its training mean look entangled. Within folds such a probe is constant, its
//! correlations are undefined, and both measures leave it out.
//!
//! Like the other statistics they expect validated numbers; a wrong shape panics. An undefined
//! correlation (a column constant within every fold, or `n < 2`) is NaN; how each measure
//! treats it is documented on it.

use std::collections::BTreeMap;

use crate::stats::pearson;

/// The correlation structure of predicted versus human ratings; see [`correlation_structure`].
#[derive(Debug, Clone, PartialEq)]
pub struct CorrStructure {
    /// `mean |offdiag C_p| − mean |offdiag C_h|` over the attribute pairs where both
    /// correlations are defined: positive when the predictions are more correlated with each
    /// other than the ratings are. That is expected even of a perfect model of the noise-free
    /// ratings, because ridge predictions carry none of the rating noise that attenuates the
    /// human correlations, so a positive delta is not by itself evidence of entanglement. NaN
    /// when no pair is defined (`j < 2`, or predictions constant within folds).
    pub delta: f64,
    /// One entry per pair `a < b`, in lexicographic order: `(a, b, C_h[a][b], C_p[a][b])`, the
    /// human and the model correlation (NaN where undefined). The per-pair delta is
    /// `|model| − |human|`.
    pub pairs: Vec<(usize, usize, f64, f64)>,
}

fn check(pred: &[f64], truth: &[f64], n: usize, j: usize, folds: &[usize], who: &str) {
    assert_eq!(pred.len(), n * j, "{who}: pred is not n × j");
    assert_eq!(truth.len(), n * j, "{who}: truth is not n × j");
    assert_eq!(folds.len(), n, "{who}: folds does not give one fold per row");
}

/// The columns of an `n × j` row-major matrix with each fold's mean removed. A column that is
/// constant within a fold becomes exactly 0 there (its mean could be off by an ulp), so a
/// column constant within every fold has an undefined (NaN) correlation with anything.
fn within_fold_columns(m: &[f64], j: usize, folds: &[usize]) -> Vec<Vec<f64>> {
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (row, &f) in folds.iter().enumerate() {
        members.entry(f).or_default().push(row);
    }
    (0..j)
        .map(|c| {
            let mut out = vec![0.0; folds.len()];
            for rows in members.values() {
                let first = m[rows[0] * j + c];
                if rows.iter().all(|&r| m[r * j + c] == first) {
                    continue;
                }
                let mean = rows.iter().map(|&r| m[r * j + c]).sum::<f64>() / rows.len() as f64;
                for &r in rows {
                    out[r] = m[r * j + c] - mean;
                }
            }
            out
        })
        .collect()
}

/// Identification accuracy: over the ordered pairs `a ≠ b` of attributes, the fraction with
/// `corr(ŷ_a, y_a) > corr(ŷ_a, y_b)`, i.e. the prediction of `a` is closer to its own ratings
/// than to those of `b`, both correlations within folds (see the module header). Chance is
/// 0.5; lower means more entangled.
///
/// A tie counts as a failure. A pair whose correlations are not both defined (a prediction or
/// rating column constant within every fold) is left out: a probe that predicts its training
/// mean has no code to identify, which is not the same as an entangled one. Returns NaN when
/// no pair is defined (`j < 2`, or every prediction constant within folds).
///
/// # Panics
/// If `pred` or `truth` is not `n × j`, or `folds` does not have `n` entries.
pub fn identification_accuracy(
    pred: &[f64],
    truth: &[f64],
    n: usize,
    j: usize,
    folds: &[usize],
) -> f64 {
    check(pred, truth, n, j, folds, "identification_accuracy");
    let truth_cols = within_fold_columns(truth, j, folds);
    let pred_cols = within_fold_columns(pred, j, folds);
    let (mut hits, mut defined) = (0usize, 0usize);
    for (a, p) in pred_cols.iter().enumerate() {
        let own = pearson(p, &truth_cols[a]);
        for (b, other) in truth_cols.iter().enumerate() {
            let cross = pearson(p, other);
            if b == a || own.is_nan() || cross.is_nan() {
                continue;
            }
            defined += 1;
            hits += usize::from(own > cross);
        }
    }
    if defined == 0 {
        return f64::NAN;
    }
    hits as f64 / defined as f64
}

/// The correlation structure: `C_h = corr(truth)`, `C_p = corr(pred)` (`j × j`, Pearson over
/// stimuli within folds, see the module header), their off-diagonal pairs and the difference of
/// mean absolute off-diagonal correlations ([`CorrStructure::delta`]). Pairs where either
/// correlation is NaN are listed but left out of both means.
///
/// # Panics
/// If `pred` or `truth` is not `n × j`, or `folds` does not have `n` entries.
pub fn correlation_structure(
    pred: &[f64],
    truth: &[f64],
    n: usize,
    j: usize,
    folds: &[usize],
) -> CorrStructure {
    check(pred, truth, n, j, folds, "correlation_structure");
    let p_cols = within_fold_columns(pred, j, folds);
    let h_cols = within_fold_columns(truth, j, folds);
    let mut pairs = Vec::with_capacity(j * j.saturating_sub(1) / 2);
    let (mut sum_h, mut sum_p, mut count) = (0.0, 0.0, 0usize);
    for a in 0..j {
        for b in a + 1..j {
            let human = pearson(&h_cols[a], &h_cols[b]);
            let model = pearson(&p_cols[a], &p_cols[b]);
            if !(human.is_nan() || model.is_nan()) {
                sum_h += human.abs();
                sum_p += model.abs();
                count += 1;
            }
            pairs.push((a, b, human, model));
        }
    }
    let delta = if count == 0 { f64::NAN } else { (sum_p - sum_h) / count as f64 };
    CorrStructure { delta, pairs }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three distinct, partly correlated rating columns over 6 stimuli, row-major.
    fn ratings() -> (Vec<f64>, usize, usize) {
        let cols = [
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            [2.0, 1.0, 4.0, 3.0, 6.0, 5.0],
            [6.0, 1.0, 5.0, 2.0, 4.0, 3.0],
        ];
        let (n, j) = (6, 3);
        ((0..n * j).map(|k| cols[k % j][k / j]).collect(), n, j)
    }

    /// One fold for every row: the plain (pooled) correlations.
    fn one_fold(n: usize) -> Vec<usize> {
        vec![0; n]
    }

    #[test]
    fn perfect_predictions_identify_every_attribute() {
        let (y, n, j) = ratings();
        let f = one_fold(n);
        assert_eq!(identification_accuracy(&y, &y, n, j, &f), 1.0);
        // An affine transform of each column keeps every correlation.
        let pred: Vec<f64> = y.iter().enumerate().map(|(k, v)| 3.0 * v - k as f64 % 3.0).collect();
        assert_eq!(identification_accuracy(&pred, &y, n, j, &f), 1.0);
        let s = correlation_structure(&y, &y, n, j, &f);
        assert_eq!(s.delta, 0.0);
        assert_eq!(s.pairs.len(), 3);
    }

    #[test]
    fn swapped_columns_are_never_identified() {
        // Two attributes with predictions swapped: ŷ_0 = y_1, ŷ_1 = y_0 ⇒ corr(ŷ_a, y_a) = r,
        // corr(ŷ_a, y_b) = 1 > r: both ordered pairs fail.
        let (y3, n, _) = ratings();
        let y: Vec<f64> = (0..n).flat_map(|i| [y3[i * 3], y3[i * 3 + 1]]).collect();
        let swapped: Vec<f64> = (0..n).flat_map(|i| [y[i * 2 + 1], y[i * 2]]).collect();
        assert_eq!(identification_accuracy(&swapped, &y, n, 2, &one_fold(n)), 0.0);
    }

    #[test]
    fn hand_computed_correlation_structure() {
        // Human columns: y_0 = [1,2,3,4], y_1 = [1,3,2,4] (r = 0.8). Predictions: both equal to
        // y_0 (r = 1): the predictions are more correlated, delta = 1 − 0.8 = 0.2.
        let y = [1.0, 1.0, 2.0, 3.0, 3.0, 2.0, 4.0, 4.0];
        let pred = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0];
        let s = correlation_structure(&pred, &y, 4, 2, &one_fold(4));
        assert!((s.delta - 0.2).abs() < 1e-15, "{s:?}");
        let (a, b, human, model) = s.pairs[0];
        assert_eq!((a, b), (0, 1));
        assert!((human - 0.8).abs() < 1e-15 && (model - 1.0).abs() < 1e-15);
        // Identical predictions: corr(ŷ_0, y_0) = 1 > 0.8 holds, corr(ŷ_1, y_1) = 0.8 < 1 fails.
        assert_eq!(identification_accuracy(&pred, &y, 4, 2, &one_fold(4)), 0.5);
    }

    #[test]
    fn undefined_correlations_are_documented_cases() {
        let (y, n, j) = ratings();
        let f = one_fold(n);
        // A constant prediction for attribute 2: its pairs leave both measures; the other four
        // ordered pairs are all identified.
        let pred: Vec<f64> =
            y.iter().enumerate().map(|(k, &v)| if k % j == 2 { 7.0 } else { v }).collect();
        assert_eq!(identification_accuracy(&pred, &y, n, j, &f), 1.0);
        let s = correlation_structure(&pred, &y, n, j, &f);
        assert!(s.pairs[1].3.is_nan() && s.pairs[2].3.is_nan());
        assert_eq!(s.delta, 0.0, "only the defined pair (0, 1) counts, and it is unchanged");
        assert!(identification_accuracy(&y[..n], &y[..n], n, 1, &f).is_nan());
        assert!(correlation_structure(&y[..n], &y[..n], n, 1, &f).delta.is_nan());
    }

    /// 24 stimuli in 4 folds of 6 (fold = i % 4) and three rating columns, the first two
    /// correlated, row-major.
    fn folded_ratings() -> (Vec<f64>, Vec<usize>, usize, usize) {
        let (n, j) = (24, 3);
        let y = (0..n)
            .flat_map(|i| {
                let t = i as f64;
                [
                    (t * 0.7).sin() * 2.0 + t * 0.05,
                    (t * 0.7).sin() + (t * 1.3).cos(),
                    (t * 2.9).sin(),
                ]
            })
            .collect();
        (y, (0..n).map(|i| i % 4).collect(), n, j)
    }

    /// The training mean of each column in each fold (what a fully shrunk probe predicts):
    /// constant within a fold, different between folds.
    fn training_means(y: &[f64], folds: &[usize], n: usize, j: usize) -> Vec<f64> {
        (0..n * j)
            .map(|k| {
                let (i, c) = (k / j, k % j);
                let train: Vec<f64> =
                    (0..n).filter(|&r| folds[r] != folds[i]).map(|r| y[r * j + c]).collect();
                train.iter().sum::<f64>() / train.len() as f64
            })
            .collect()
    }

    #[test]
    fn a_probe_that_predicts_its_training_mean_is_undefined_not_entangled() {
        let (y, folds, n, j) = folded_ratings();
        let pred = training_means(&y, &folds, n, j);
        assert!(identification_accuracy(&pred, &y, n, j, &folds).is_nan());
        let s = correlation_structure(&pred, &y, n, j, &folds);
        assert!(s.delta.is_nan(), "{s:?}");
        assert!(s.pairs.iter().all(|p| p.3.is_nan() && p.2.is_finite()));
        // Pooled over folds the intercepts alone give defined correlations: the artifact.
        let pooled = correlation_structure(&pred, &y, n, j, &one_fold(n));
        assert!(pooled.delta.is_finite(), "{pooled:?}");
        assert!(identification_accuracy(&pred, &y, n, j, &one_fold(n)).is_finite());
    }

    #[test]
    fn a_planted_one_attribute_code_is_identified_on_its_pairs() {
        // The representation codes attribute 0 only: its prediction is the rating plus each
        // fold's own intercept; attributes 1 and 2 are predicted by their training means.
        let (y, folds, n, j) = folded_ratings();
        let means = training_means(&y, &folds, n, j);
        let pred: Vec<f64> =
            (0..n * j).map(|k| if k % j == 0 { 0.5 * y[k] + means[k] } else { means[k] }).collect();
        assert_eq!(identification_accuracy(&pred, &y, n, j, &folds), 1.0);
        let s = correlation_structure(&pred, &y, n, j, &folds);
        assert!(s.delta.is_nan(), "no pair has two varying predictions: {s:?}");
    }
}
