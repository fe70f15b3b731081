//! [`Matrix`], a borrowed row-major N × D matrix (features or a human embedding) whose shape and
//! values are checked once, at construction.
//!
//! **Invariant:** a `Matrix` has at least one row and one column, `rows × cols` values, and no
//! NaN or infinite value, so the analyses never meet one (science.md: NaN is an error, never
//! imputed or skipped).

use crate::error::AlignmentError;

/// A row-major `rows × cols` matrix borrowed from the caller, as `f32` or `f64`.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a, T> {
    what: &'static str,
    values: &'a [T],
    rows: usize,
    cols: usize,
}

impl<'a, T: Copy + Into<f64>> Matrix<'a, T> {
    /// Wraps `values` as a `rows × cols` row-major matrix called `what` in error messages
    /// (`"features"`, `"embedding"`).
    ///
    /// # Errors
    /// [`AlignmentError::Shape`] if `values.len() ≠ rows × cols`, [`AlignmentError::EmptyMatrix`]
    /// if either dimension is 0, and [`AlignmentError::NonFinite`] at the first NaN or infinite
    /// value (row-major order).
    pub fn new(
        what: &'static str,
        values: &'a [T],
        rows: usize,
        cols: usize,
    ) -> Result<Self, AlignmentError> {
        if rows.checked_mul(cols) != Some(values.len()) {
            return Err(AlignmentError::Shape { what, got: values.len(), rows, cols });
        }
        if rows == 0 || cols == 0 {
            return Err(AlignmentError::EmptyMatrix { what, rows, cols });
        }
        if let Some(k) = values.iter().position(|&v| !v.into().is_finite()) {
            let value = values[k].into();
            return Err(AlignmentError::NonFinite { what, row: k / cols, column: k % cols, value });
        }
        Ok(Self { what, values, rows, cols })
    }

    /// Number of rows (concepts).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (feature or embedding dimensions).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The name used in error messages.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The row-major values.
    pub fn values(&self) -> &'a [T] {
        self.values
    }

    /// Row `i` (panics if `i ≥ rows`).
    pub fn row(&self, i: usize) -> &'a [T] {
        &self.values[i * self.cols..(i + 1) * self.cols]
    }

    /// Checks that the matrix has one row per concept.
    pub(crate) fn check_rows(&self, concepts: usize) -> Result<(), AlignmentError> {
        if self.rows == concepts {
            Ok(())
        } else {
            Err(AlignmentError::RowMismatch { what: self.what, rows: self.rows, concepts })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_emptiness_and_non_finite_values_are_refused() {
        let e = Matrix::new("features", &[1.0_f64; 5], 2, 3).unwrap_err();
        assert_eq!(e.to_string(), "features has 5 values; expected 2 × 3 = 6");
        let e = Matrix::<f64>::new("features", &[], 0, 3).unwrap_err();
        assert_eq!(e.to_string(), "features is empty (0 × 3)");
        let e = Matrix::new("embedding", &[0.0, 1.0, f32::NAN, 2.0], 2, 2).unwrap_err();
        assert_eq!(e.to_string(), "embedding has a NaN at row 1, column 0");
        let e = Matrix::new("features", &[0.0, f64::NEG_INFINITY], 1, 2).unwrap_err();
        assert_eq!(e.to_string(), "features has -inf at row 0, column 1");
        let m = Matrix::new("features", &[1.0_f32, 2.0, 3.0, 4.0], 2, 2).unwrap();
        assert_eq!(m.row(1), &[3.0, 4.0]);
        assert_eq!(
            m.check_rows(3).unwrap_err().to_string(),
            "features has 2 rows but the triplets index 3 concepts"
        );
    }
}
