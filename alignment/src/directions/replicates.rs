//! [`Replicates`] (h rows per prompt and replicate) and the directions between prompts.
//!
//! **Pairing:** replicate r of every prompt starts from the same noise, so h(p, r) and h(b, r)
//! share the per-replicate term and their difference cancels it exactly; the mean of paired
//! differences is the direction. The unpaired estimate (the difference of two means over
//! independent replicate sets) keeps that term's variance and is here only to show it.

use crate::error::AlignmentError;
use crate::matrix::Matrix;

/// h of `prompts × replicates` rows, row `p · replicates + r` = prompt p, replicate r.
#[derive(Debug, Clone, Copy)]
pub struct Replicates<'a, T> {
    h: Matrix<'a, T>,
    replicates: usize,
}

impl<'a, T: Copy + Into<f64>> Replicates<'a, T> {
    /// Splits the rows of `h` into prompts of `replicates` consecutive rows each.
    ///
    /// # Errors
    /// [`AlignmentError::ReplicateLayout`] unless `replicates > 0` divides the row count.
    pub fn new(h: Matrix<'a, T>, replicates: usize) -> Result<Self, AlignmentError> {
        if replicates == 0 || !h.rows().is_multiple_of(replicates) {
            return Err(AlignmentError::ReplicateLayout {
                what: h.what(),
                rows: h.rows(),
                replicates,
            });
        }
        Ok(Self { h, replicates })
    }

    /// Number of prompts.
    pub fn prompts(&self) -> usize {
        self.h.rows() / self.replicates
    }

    /// Replicates per prompt.
    pub fn replicates(&self) -> usize {
        self.replicates
    }

    /// Width of an h row.
    pub fn dim(&self) -> usize {
        self.h.cols()
    }

    /// The h row of prompt `p`, replicate `r` (panics when out of range).
    pub fn row(&self, p: usize, r: usize) -> &'a [T] {
        self.h.row(p * self.replicates + r)
    }

    /// Checks that every prompt index is in range.
    pub(crate) fn check(&self, prompts: &[usize]) -> Result<(), AlignmentError> {
        match prompts.iter().find(|&&p| p >= self.prompts()) {
            Some(&index) => Err(AlignmentError::PromptIndex { index, prompts: self.prompts() }),
            None => Ok(()),
        }
    }

    /// Per replicate, h(p, r) − h(b, r).
    pub(crate) fn differences(&self, p: usize, b: usize) -> Vec<Vec<f64>> {
        (0..self.replicates)
            .map(|r| {
                self.row(p, r)
                    .iter()
                    .zip(self.row(b, r))
                    .map(|(&x, &y)| x.into() - y.into())
                    .collect()
            })
            .collect()
    }
}

/// d(p | b): the mean over replicates of the paired differences h(p, r) − h(b, r); exactly 0
/// when `p == b` or the two prompts' rows are equal.
///
/// # Errors
/// [`AlignmentError::PromptIndex`] if `p` or `b` is out of range.
pub fn direction<T: Copy + Into<f64>>(
    h: &Replicates<'_, T>,
    p: usize,
    b: usize,
) -> Result<Vec<f64>, AlignmentError> {
    h.check(&[p, b])?;
    let mut sum = vec![0.0; h.dim()];
    for diff in h.differences(p, b) {
        sum.iter_mut().zip(diff).for_each(|(s, d)| *s += d);
    }
    let r = h.replicates() as f64;
    Ok(sum.into_iter().map(|s| s / r).collect())
}

/// mean(h(p)) − mean(h(b)) over two independent replicate sets (rows = replicates; the counts may
/// differ). Only a comparison for the paired [`direction`].
///
/// # Errors
/// [`AlignmentError::WidthMismatch`] if the widths differ.
pub fn unpaired_direction<T: Copy + Into<f64>>(
    prompt: &Matrix<'_, T>,
    base: &Matrix<'_, T>,
) -> Result<Vec<f64>, AlignmentError> {
    if prompt.cols() != base.cols() {
        let (what, cols, want) = (base.what(), base.cols(), prompt.cols());
        return Err(AlignmentError::WidthMismatch { what, cols, want });
    }
    let (mp, mb) = (column_means(prompt), column_means(base));
    Ok(mp.iter().zip(&mb).map(|(a, b)| a - b).collect())
}

fn column_means<T: Copy + Into<f64>>(m: &Matrix<'_, T>) -> Vec<f64> {
    let mut sum = vec![0.0; m.cols()];
    for i in 0..m.rows() {
        sum.iter_mut().zip(m.row(i)).for_each(|(s, &v)| *s += v.into());
    }
    sum.into_iter().map(|s| s / m.rows() as f64).collect()
}

/// cos(a, b), 0 when either is a zero vector.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (dot(a, a).sqrt(), dot(b, b).sqrt());
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot(a, b) / (na * nb)
    }
}

/// The rows of `m` scaled to unit L2 norm, row-major; a zero row stays zero.
pub fn l2_normalized<T: Copy + Into<f64>>(m: &Matrix<'_, T>) -> Vec<f64> {
    (0..m.rows())
        .flat_map(|i| {
            let row: Vec<f64> = m.row(i).iter().map(|&v| v.into()).collect();
            let norm = dot(&row, &row).sqrt();
            row.into_iter().map(move |v| if norm == 0.0 { 0.0 } else { v / norm })
        })
        .collect()
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}
