//! Small statistics shared by the probe and the report: Pearson correlation, Benjamini–Hochberg
//! q-values and the fold-pooled permutation p-value.
//!
//! These take already-validated numbers; a wrong *shape* is a programming error and panics, as
//! documented on each function.

/// Pearson correlation of `a` and `b`; NaN when it is undefined (fewer than 2 values, or either
/// side constant). Constant means all values equal, checked exactly: the mean of equal values
/// can be off by an ulp, which would otherwise leave rounding noise to correlate.
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "pearson: inputs differ in length");
    let n = a.len();
    let constant = |v: &[f64]| v.iter().all(|&x| x == v[0]);
    if n < 2 || constant(a) || constant(b) {
        return f64::NAN;
    }
    let ma = a.iter().sum::<f64>() / n as f64;
    let mb = b.iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return f64::NAN;
    }
    (sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0)
}

/// Benjamini–Hochberg adjusted p-values (q-values), in the order of `p`.
///
/// `q_(i) = min_{k ≥ i} min(1, p_(k) · m / k)` over the ascending order of the p-values, so the
/// q-values are monotone in p and capped at 1. The input is expected to be NaN-free; a NaN
/// p-value gets a NaN q-value and does not count towards `m` (R's `p.adjust` does the same).
pub fn bh_qvalues(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = order.len() as f64;
    let mut q = vec![f64::NAN; p.len()];
    let mut running = 1.0_f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m / (rank + 1) as f64);
        q[i] = running;
    }
    q
}

/// Permutation p-value of a statistic pooled over folds.
///
/// `obs[f]` is fold `f`'s observed RMSE and `nulls[f][b]` its RMSE under permutation `b`. The
/// pooled statistic is the mean over folds; permutation `b`'s pooled null is the mean over folds
/// of `nulls[f][b]`. Returns `(1 + #{null_b ≤ obs}) / (B + 1)`; with `B = 0` this is 1.
///
/// This is an exact test only when permutation `b` is the same permutation of the stimuli in
/// every fold ([`crate::Permute::Pool`]). With independent per-fold permutations
/// ([`crate::Permute::TrainingPerFold`]) the folds' observed RMSEs share targets but their nulls
/// do not, and the p-value is anti-conservative (about 10 % below 0.05 on null data).
///
/// # Panics
/// If `obs` is empty, `nulls.len() != obs.len()`, or the null vectors differ in length.
pub fn pooled_p_value(obs: &[f64], nulls: &[&[f64]]) -> f64 {
    assert!(!obs.is_empty(), "pooled_p_value: no folds");
    assert_eq!(obs.len(), nulls.len(), "pooled_p_value: one null vector per fold is required");
    let b = nulls[0].len();
    assert!(nulls.iter().all(|v| v.len() == b), "pooled_p_value: null vectors differ in length");
    // Sums instead of means: the same order of additions on both sides keeps exact ties exact
    // (a probe that predicts the mean has null == observed in every fold).
    let obs_sum: f64 = obs.iter().sum();
    let hits = (0..b).filter(|&k| nulls.iter().map(|v| v[k]).sum::<f64>() <= obs_sum).count();
    (1 + hits) as f64 / (b + 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_known_values() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-15);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-15);
        // x = [1,2,3,4], y = [1,3,2,4]: cov = 4, var = 5 each ⇒ r = 0.8.
        assert!((pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]) - 0.8).abs() < 1e-15);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
        // A constant whose mean is not exactly representable: NaN, not rounding noise.
        let flat = [0.1 + 0.2; 7];
        assert!(pearson(&flat, &[1.0, 3.0, 2.0, 5.0, 4.0, 7.0, 6.0]).is_nan());
        assert!(pearson(&[1.0], &[1.0]).is_nan());
    }

    #[test]
    fn bh_hand_computed() {
        // m = 5. Sorted p: 0.01 0.02 0.03 0.04 0.50 → p·m/k: 0.05 0.05 0.05 0.05 0.50;
        // running minimum from the top keeps them. Input order is scrambled.
        let p = [0.04, 0.5, 0.01, 0.03, 0.02];
        let q = bh_qvalues(&p);
        let want = [0.05, 0.5, 0.05, 0.05, 0.05];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        // Monotonicity step: sorted p 0.01 0.04 0.045 → raw 0.03 0.06 0.045 → q 0.03 0.045 0.045.
        let q = bh_qvalues(&[0.045, 0.01, 0.04]);
        let want = [0.045, 0.03, 0.045];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        // Cap at 1 and NaN passthrough (m = 2).
        let q = bh_qvalues(&[0.9, f64::NAN, 0.8]);
        assert!((q[0] - 0.9).abs() < 1e-12 && (q[2] - 0.9).abs() < 1e-12 && q[1].is_nan());
        let q = bh_qvalues(&[0.7, 0.9]);
        assert!(q.iter().all(|&v| (v - 0.9).abs() < 1e-12), "{q:?}");
        assert!(bh_qvalues(&[]).is_empty());
    }

    #[test]
    fn pooled_p_tiny_example() {
        // Two folds, B = 4. obs mean = (1.0 + 2.0)/2 = 1.5.
        // Null means: (0.5+2.0)/2 = 1.25 ≤ 1.5 ✓, (2.0+2.0)/2 = 2.0 ✗, (1.0+2.0)/2 = 1.5 ≤ ✓ (tie),
        // (3.0+3.0)/2 = 3.0 ✗ ⇒ 2 hits ⇒ p = 3/5.
        let obs = [1.0, 2.0];
        let n0 = [0.5, 2.0, 1.0, 3.0];
        let n1 = [2.0, 2.0, 2.0, 3.0];
        assert!((pooled_p_value(&obs, &[&n0, &n1]) - 0.6).abs() < 1e-15);
        assert_eq!(pooled_p_value(&[1.0], &[&[]]), 1.0);
    }
}
