//! The one error type of the probe crate.
//!
//! Every variant names what is wrong with the caller's input (which matrix, row, column or fold),
//! so a worker can report it verbatim; messages are lowercase without a final period.

use thiserror::Error;

/// Why a probe computation was refused or failed.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A flat buffer does not have the length its stated shape implies.
    #[error("{what} has {got} values; expected {rows} × {cols} = {}", .rows * .cols)]
    Shape {
        /// Which buffer (`"x"` or `"y"`).
        what: &'static str,
        /// Number of values received.
        got: usize,
        /// Stated number of rows.
        rows: usize,
        /// Stated number of columns.
        cols: usize,
    },
    /// The target matrix has no columns.
    #[error("y has no target columns")]
    NoTargets,
    /// A feature value is NaN or infinite.
    #[error("x has {} at row {row}, column {column}", describe(*.value))]
    NonFiniteFeature {
        /// Stimulus (row) index.
        row: usize,
        /// Feature (column) index.
        column: usize,
        /// The offending value.
        value: f64,
    },
    /// A target value is NaN or infinite.
    #[error("target column {column} has {} at row {row}", describe(*.value))]
    NonFiniteTarget {
        /// Target (attribute) index.
        column: usize,
        /// Stimulus (row) index.
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// A train or test index is not a valid stimulus index.
    #[error("{which} index {index} is out of range for {n} stimuli")]
    IndexOutOfRange {
        /// `"train"` or `"test"`.
        which: &'static str,
        /// The offending index.
        index: usize,
        /// Number of stimuli.
        n: usize,
    },
    /// A stimulus appears twice in the train list, twice in the test list, or in both.
    #[error(
        "stimulus {index} appears more than once in the training and test sets of fold {fold}"
    )]
    DuplicateIndex {
        /// The repeated stimulus index.
        index: usize,
        /// The fold being fitted.
        fold: usize,
    },
    /// Too few training stimuli to centre and fit.
    #[error("fold {fold} has {n_train} training {}; need at least 2", plural(*.n_train))]
    TooFewTraining {
        /// The fold being fitted.
        fold: usize,
        /// Number of training stimuli received.
        n_train: usize,
    },
    /// The test fold is empty.
    #[error("fold {fold} has no test stimuli")]
    EmptyTest {
        /// The fold being fitted.
        fold: usize,
    },
    /// The number of folds is not in `2..=n`.
    #[error("cannot split {n} stimuli into {k} folds; need 2 ≤ k ≤ {n}")]
    InvalidFolds {
        /// Requested number of folds.
        k: usize,
        /// Number of stimuli.
        n: usize,
    },
    /// The ridge penalty is negative, NaN or infinite.
    #[error("alpha must be finite and non-negative, got {alpha}")]
    InvalidAlpha {
        /// The offending penalty.
        alpha: f64,
    },
    /// A hyper-parameter grid (of α or of P) has no values.
    #[error("the {what} grid is empty")]
    EmptyGrid {
        /// Which grid (`"alpha"` or `"components"`).
        what: &'static str,
    },
    /// An inner cross-validation fold of [`crate::select_alpha_kfold`] is unusable.
    #[error("inner fold {fold} {problem}")]
    InvalidInnerFold {
        /// Position of the inner fold in the list given.
        fold: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A stimulus of a split is not in the precomputed Gram matrix.
    #[error("stimulus {index} is not in the Gram matrix")]
    NotInGram {
        /// The missing stimulus.
        index: usize,
    },
    /// z-scoring was asked of a precomputed Gram matrix.
    #[error("z-scoring needs each fold's feature statistics; a precomputed Gram matrix cannot be z-scored")]
    GramZscore,
    /// The symmetric eigensolver did not converge.
    #[error("eigendecomposition did not converge in fold {fold}")]
    Eigen {
        /// The fold being fitted.
        fold: usize,
    },
}

fn describe(value: f64) -> &'static str {
    if value.is_nan() {
        "a NaN"
    } else if value > 0.0 {
        "+inf"
    } else {
        "-inf"
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        "stimulus"
    } else {
        "stimuli"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem() {
        let e = ProbeError::NonFiniteTarget { column: 3, row: 17, value: f64::NAN };
        assert_eq!(e.to_string(), "target column 3 has a NaN at row 17");
        let e = ProbeError::NonFiniteFeature { row: 2, column: 5, value: f64::NEG_INFINITY };
        assert_eq!(e.to_string(), "x has -inf at row 2, column 5");
        let e = ProbeError::TooFewTraining { fold: 2, n_train: 1 };
        assert_eq!(e.to_string(), "fold 2 has 1 training stimulus; need at least 2");
        let e = ProbeError::Shape { what: "x", got: 7, rows: 2, cols: 3 };
        assert_eq!(e.to_string(), "x has 7 values; expected 2 × 3 = 6");
    }
}
