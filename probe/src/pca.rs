//! Principal component scores of a small point set (N × D, N ≪ D): the eigenvectors of the
//! centred N × N Gram matrix scaled by √λ, so the work is N²·D, not D³. Used to reduce concept
//! vectors before clustering and to draw them on a 2-D map.
//!
//! **Sign:** each component's sign makes its largest-magnitude score positive (ties: the first),
//! so equal inputs give equal maps on every machine.

use faer::Mat;

use crate::error::ProbeError;
use crate::ridge::sym_eigen;

/// The scores of `x` (`n × d` row-major) on its first `k` principal components, `n × k'`
/// row-major with k' = min(k, n − 1, d) (components past the data's rank are 0).
///
/// # Errors
/// [`ProbeError::Eigen`] if the eigensolver fails.
pub fn pca_scores(
    x: &[f64],
    n: usize,
    d: usize,
    k: usize,
) -> Result<(Vec<f64>, usize), ProbeError> {
    assert_eq!(x.len(), n * d, "pca_scores: {n} × {d} points");
    let k = k.min(n.saturating_sub(1)).min(d);
    let mut mean = vec![0.0; d];
    for row in x.chunks_exact(d) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v / n as f64);
    }
    let centred: Vec<f64> =
        x.chunks_exact(d).flat_map(|row| row.iter().zip(&mean).map(|(v, m)| v - m)).collect();
    let row = |i: usize| &centred[i * d..(i + 1) * d];
    let gram =
        Mat::<f64>::from_fn(n, n, |i, j| row(i).iter().zip(row(j)).map(|(a, b)| a * b).sum());
    let (values, vectors) = sym_eigen(gram.as_ref()).ok_or(ProbeError::Eigen { fold: 0 })?;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut scores = vec![0.0; n * k];
    for (c, &e) in order.iter().take(k).enumerate() {
        let scale = values[e].max(0.0).sqrt();
        let column: Vec<f64> = (0..n).map(|i| vectors[(i, e)] * scale).collect();
        let largest =
            column.iter().copied().fold(0.0_f64, |m, v| if v.abs() > m.abs() { v } else { m });
        let sign = if largest < 0.0 { -1.0 } else { 1.0 };
        for (i, v) in column.into_iter().enumerate() {
            scores[i * k + c] = sign * v;
        }
    }
    Ok((scores, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every component kept, the scores keep every pairwise distance (a rotation of the
    /// centred points); points on a line give one component that orders them.
    #[test]
    fn scores_keep_distances_and_order_a_line() {
        let (n, d) = (6, 9);
        let x: Vec<f64> =
            (0..n * d).map(|i| ((i * 2654435761_usize) % 1000) as f64 / 250.0 - 2.0).collect();
        let (s, k) = pca_scores(&x, n, d, 10).unwrap();
        assert_eq!(k, n - 1);
        let dist = |m: &[f64], w: usize, a: usize, b: usize| -> f64 {
            (0..w).map(|j| (m[a * w + j] - m[b * w + j]).powi(2)).sum::<f64>().sqrt()
        };
        for a in 0..n {
            for b in 0..n {
                let (want, got) = (dist(&x, d, a, b), dist(&s, k, a, b));
                assert!((want - got).abs() < 1e-10, "{a},{b}: {want} vs {got}");
            }
        }
        let line: Vec<f64> = (0..5).flat_map(|i| [i as f64, 2.0 * i as f64, 0.5]).collect();
        let (s, k) = pca_scores(&line, 5, 3, 2).unwrap();
        let first: Vec<f64> = (0..5).map(|i| s[i * k]).collect();
        assert!(first.windows(2).all(|w| (w[0] - w[1]).abs() > 1.0), "{first:?}");
        assert!((0..5).all(|i| s[i * k + 1].abs() < 1e-6), "one component: {s:?}");
    }
}
