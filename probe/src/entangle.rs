//! Entanglement of a representation's attribute probes (science.md B1; the paper's formula is
//! not public, so both measures are ours): identification accuracy of the out-of-fold
//! predictions, and the change in the correlation structure of predicted versus human ratings.
//!
//! Both take `pred` and `truth` as `n × j` row-major matrices (stimuli × attributes), usually
//! the out-of-fold predictions of every stimulus and the human ratings. Like the other
//! statistics they expect validated numbers; a wrong shape panics. An undefined correlation
//! (a constant column, or `n < 2`) is NaN; how each measure treats it is documented on it.

use crate::stats::pearson;

/// The correlation structure of predicted versus human ratings; see [`correlation_structure`].
#[derive(Debug, Clone, PartialEq)]
pub struct CorrStructure {
    /// `mean |offdiag C_p| − mean |offdiag C_h|` over the attribute pairs where both
    /// correlations are defined: positive when the model entangles what humans keep apart. NaN
    /// when no pair is defined (`j < 2`).
    pub delta: f64,
    /// One entry per pair `a < b`, in lexicographic order: `(a, b, C_h[a][b], C_p[a][b])`, the
    /// human and the model correlation (NaN where undefined). The per-pair delta is
    /// `|model| − |human|`.
    pub pairs: Vec<(usize, usize, f64, f64)>,
}

/// Column `c` of an `n × j` row-major matrix.
fn column(m: &[f64], j: usize, c: usize) -> Vec<f64> {
    m.iter().skip(c).step_by(j).copied().collect()
}

fn check(pred: &[f64], truth: &[f64], n: usize, j: usize, who: &str) {
    assert_eq!(pred.len(), n * j, "{who}: pred is not n × j");
    assert_eq!(truth.len(), n * j, "{who}: truth is not n × j");
}

/// Identification accuracy: over the ordered pairs `a ≠ b` of attributes, the fraction with
/// `corr(ŷ_a, y_a) > corr(ŷ_a, y_b)`, i.e. the prediction of `a` is closer to its own ratings
/// than to those of `b`. Chance is 0.5; lower means more entangled.
///
/// Ties and undefined correlations (NaN: a constant prediction or rating column) count as
/// failures, so a probe that predicts a constant scores 0 on its pairs. Returns NaN when
/// `j < 2` (no pair).
///
/// # Panics
/// If `pred` or `truth` is not `n × j`.
pub fn identification_accuracy(pred: &[f64], truth: &[f64], n: usize, j: usize) -> f64 {
    check(pred, truth, n, j, "identification_accuracy");
    if j < 2 {
        return f64::NAN;
    }
    let truth_cols: Vec<Vec<f64>> = (0..j).map(|c| column(truth, j, c)).collect();
    let mut hits = 0usize;
    for a in 0..j {
        let p = column(pred, j, a);
        let own = pearson(&p, &truth_cols[a]);
        for (b, other) in truth_cols.iter().enumerate() {
            if b != a && own > pearson(&p, other) {
                hits += 1;
            }
        }
    }
    hits as f64 / (j * (j - 1)) as f64
}

/// The correlation structure: `C_h = corr(truth)`, `C_p = corr(pred)` (`j × j`, Pearson over
/// stimuli), their off-diagonal pairs and the difference of mean absolute off-diagonal
/// correlations ([`CorrStructure::delta`]). Pairs where either correlation is NaN are listed
/// but left out of both means.
///
/// # Panics
/// If `pred` or `truth` is not `n × j`.
pub fn correlation_structure(pred: &[f64], truth: &[f64], n: usize, j: usize) -> CorrStructure {
    check(pred, truth, n, j, "correlation_structure");
    let p_cols: Vec<Vec<f64>> = (0..j).map(|c| column(pred, j, c)).collect();
    let h_cols: Vec<Vec<f64>> = (0..j).map(|c| column(truth, j, c)).collect();
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

    #[test]
    fn perfect_predictions_identify_every_attribute() {
        let (y, n, j) = ratings();
        assert_eq!(identification_accuracy(&y, &y, n, j), 1.0);
        // An affine transform of each column keeps every correlation.
        let pred: Vec<f64> = y.iter().enumerate().map(|(k, v)| 3.0 * v - k as f64 % 3.0).collect();
        assert_eq!(identification_accuracy(&pred, &y, n, j), 1.0);
        let s = correlation_structure(&y, &y, n, j);
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
        assert_eq!(identification_accuracy(&swapped, &y, n, 2), 0.0);
    }

    #[test]
    fn hand_computed_correlation_structure() {
        // Human columns: y_0 = [1,2,3,4], y_1 = [1,3,2,4] (r = 0.8). Predictions: both equal to
        // y_0 (r = 1): the model entangles them, delta = 1 − 0.8 = 0.2.
        let y = [1.0, 1.0, 2.0, 3.0, 3.0, 2.0, 4.0, 4.0];
        let pred = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0];
        let s = correlation_structure(&pred, &y, 4, 2);
        assert!((s.delta - 0.2).abs() < 1e-15, "{s:?}");
        let (a, b, human, model) = s.pairs[0];
        assert_eq!((a, b), (0, 1));
        assert!((human - 0.8).abs() < 1e-15 && (model - 1.0).abs() < 1e-15);
        // Identical predictions: corr(ŷ_0, y_0) = 1 > 0.8 holds, corr(ŷ_1, y_1) = 0.8 < 1 fails.
        assert_eq!(identification_accuracy(&pred, &y, 4, 2), 0.5);
    }

    #[test]
    fn undefined_correlations_are_documented_cases() {
        let (y, n, j) = ratings();
        // A constant prediction for attribute 2: its pairs fail and leave the means.
        let pred: Vec<f64> =
            y.iter().enumerate().map(|(k, &v)| if k % j == 2 { 7.0 } else { v }).collect();
        assert!((identification_accuracy(&pred, &y, n, j) - 4.0 / 6.0).abs() < 1e-15);
        let s = correlation_structure(&pred, &y, n, j);
        assert!(s.pairs[1].3.is_nan() && s.pairs[2].3.is_nan());
        assert_eq!(s.delta, 0.0, "only the defined pair (0, 1) counts, and it is unchanged");
        assert!(identification_accuracy(&y[..n], &y[..n], n, 1).is_nan());
        assert!(correlation_structure(&y[..n], &y[..n], n, 1).delta.is_nan());
    }
}
