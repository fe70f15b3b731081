//! The one error type of the alignment crate, [`AlignmentError`], and the problems a triplet
//! entry can have, [`TripletProblem`].
//!
//! Every variant names what is wrong with the caller's input (which file, line and field, which
//! matrix, row and column, which fold or setting), so a worker can report it verbatim; messages
//! are lowercase without a final period.

use std::path::PathBuf;

use thiserror::Error;

/// Why an alignment computation was refused or failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AlignmentError {
    /// A triplet file could not be read, or one of its entries is invalid.
    #[error("{}{}: {problem}", .path.display(), location(*.line, *.field))]
    TripletFile {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending record, when there is one.
        line: Option<u64>,
        /// 0-based field (column) of the offending entry; field 2 is the odd one out.
        field: Option<usize>,
        /// What is wrong.
        problem: TripletProblem,
    },
    /// A triplet given in memory is invalid.
    #[error("triplet {triplet}, field {field}: {problem}")]
    InvalidTriplet {
        /// 0-based triplet (row) index.
        triplet: usize,
        /// 0-based field (column); field 2 is the odd one out.
        field: usize,
        /// What is wrong.
        problem: TripletProblem,
    },
    /// A flat buffer does not have the length its stated shape implies.
    #[error("{what} has {got} values; expected {rows} × {cols} = {}", .rows * .cols)]
    Shape {
        /// Which matrix (`"features"`, `"embedding"`).
        what: &'static str,
        /// Number of values received.
        got: usize,
        /// Stated number of rows.
        rows: usize,
        /// Stated number of columns.
        cols: usize,
    },
    /// A matrix has no rows or no columns.
    #[error("{what} is empty ({rows} × {cols})")]
    EmptyMatrix {
        /// Which matrix.
        what: &'static str,
        /// Number of rows.
        rows: usize,
        /// Number of columns.
        cols: usize,
    },
    /// A matrix holds a NaN or an infinite value.
    #[error("{what} has {} at row {row}, column {column}", describe(*.value))]
    NonFinite {
        /// Which matrix.
        what: &'static str,
        /// 0-based row (concept) index.
        row: usize,
        /// 0-based column index.
        column: usize,
        /// The offending value.
        value: f64,
    },
    /// A matrix does not have one row per concept of the triplets.
    #[error("{what} has {rows} rows but the triplets index {concepts} concepts")]
    RowMismatch {
        /// Which matrix.
        what: &'static str,
        /// Its number of rows.
        rows: usize,
        /// Number of concepts the triplets index.
        concepts: usize,
    },
    /// A concept list names the same concept twice.
    #[error("the {list} names concept {name:?} twice (entries {first} and {second})")]
    DuplicateConcept {
        /// Which list (`"concept list"`, `"index list"`).
        list: &'static str,
        /// The repeated name.
        name: String,
        /// 0-based position of its first occurrence.
        first: usize,
        /// 0-based position of its second occurrence.
        second: usize,
    },
    /// A setting is out of its valid range.
    #[error("invalid setting {setting}: {problem}")]
    Config {
        /// The setting's field name.
        setting: &'static str,
        /// Why it is invalid.
        problem: String,
    },
    /// Explicit cross-validation folds do not partition the concepts.
    #[error("fold {fold} {problem}")]
    InvalidFold {
        /// 0-based fold index.
        fold: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A fold of the linear probe keeps no triplet for training or testing.
    #[error("fold {fold} has no {which} triplets ({dropped} mixed triplets dropped); use more triplets or fewer folds")]
    EmptySplit {
        /// 0-based fold index.
        fold: usize,
        /// `"training"`, `"validation"` or `"test"`.
        which: &'static str,
        /// Triplets dropped in this fold because they mix training and test concepts.
        dropped: usize,
    },
    /// Per-item labels (classes, images) do not have one entry per descriptor row.
    #[error("{what} has {got} entries but the descriptors have {rows} rows")]
    LabelCount {
        /// Which labels (`"classes"`, `"images"`).
        what: &'static str,
        /// Number of entries.
        got: usize,
        /// Number of descriptor rows.
        rows: usize,
    },
    /// Two descriptor sets that must match row for row (a set and its transform) do not.
    #[error("{what} is {rows} × {cols} but the untransformed set is {want_rows} × {want_cols}")]
    SetMismatch {
        /// Which set.
        what: &'static str,
        /// Its rows.
        rows: usize,
        /// Its columns.
        cols: usize,
        /// Rows of the untransformed set.
        want_rows: usize,
        /// Columns of the untransformed set.
        want_cols: usize,
    },
    /// A semantic score is undefined on these labels (one class, no pair from two images, ...).
    #[error("cannot compute {score}: {problem}")]
    NotScorable {
        /// The score (`"silhouette"`, `"pair AUC"`, ...).
        score: &'static str,
        /// Why.
        problem: String,
    },
    /// Per-replicate h rows cannot be split into prompts × replicates.
    #[error("{what} has {rows} rows, not a positive multiple of {replicates} replicates")]
    ReplicateLayout {
        /// Which matrix (`"h"`).
        what: &'static str,
        /// Its number of rows.
        rows: usize,
        /// Replicates per prompt.
        replicates: usize,
    },
    /// A prompt index is not below the number of prompts.
    #[error("prompt {index} is out of range for {prompts} prompts")]
    PromptIndex {
        /// The index.
        index: usize,
        /// Number of prompts.
        prompts: usize,
    },
    /// Two matrices that must have the same width (points and centroids, two replicate sets) do
    /// not.
    #[error("{what} has {cols} columns but {want} are expected")]
    WidthMismatch {
        /// Which matrix.
        what: &'static str,
        /// Its columns.
        cols: usize,
        /// The width expected.
        want: usize,
    },
    /// A clustering was asked for a number of clusters it cannot make.
    #[error("cannot make {k} clusters of {points} points (need 1 ≤ k ≤ points)")]
    ClusterCount {
        /// Clusters asked for.
        k: usize,
        /// Number of points.
        points: usize,
    },
    /// Two labellings compared by a cluster metric differ in length.
    #[error("the true labels have {truth} entries but the predicted labels {predicted}")]
    LabelMismatch {
        /// Entries of the true labels.
        truth: usize,
        /// Entries of the predicted labels.
        predicted: usize,
    },
    /// The ridge regression of the `probe` crate refused its input.
    #[error(transparent)]
    Probe(#[from] probe::ProbeError),
    /// A tensor operation failed (device out of memory, a missing CUDA build, ...).
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// What is wrong with one triplet entry or a whole triplet file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TripletProblem {
    /// The file could not be opened or read.
    #[error("cannot read the file: {0}")]
    Io(String),
    /// The CSV parser failed (for example invalid UTF-8).
    #[error("malformed CSV: {0}")]
    Csv(String),
    /// A record does not have exactly three fields.
    #[error("found {got} fields; expected 3 (two kept together, then the odd one out)")]
    FieldCount {
        /// Number of fields found.
        got: usize,
    },
    /// An index field is not a non-negative integer (for example `NaN`, `1.5`, `-1`, `dog`).
    #[error("{value:?} is not a concept index (a non-negative integer)")]
    NotAnIndex {
        /// The field as written.
        value: String,
    },
    /// An index is not below the number of concepts.
    #[error("index {index} is out of range for {n} concepts")]
    OutOfRange {
        /// The index.
        index: usize,
        /// Number of concepts it indexes.
        n: usize,
    },
    /// The same concept appears twice in one triplet.
    #[error("concept {concept} repeats field {first}")]
    Duplicate {
        /// The concept, as written (index or name).
        concept: String,
        /// The earlier field holding it.
        first: usize,
    },
    /// A name is neither among the stimuli nor in the index list.
    #[error("unknown concept name {name:?}")]
    UnknownConcept {
        /// The name as written.
        name: String,
    },
    /// A concept is known (in the index list) but no stimulus (feature row) stands for it.
    #[error("concept {name:?} has no stimulus (no row in the features)")]
    NoStimulus {
        /// The concept's name.
        name: String,
    },
    /// The file holds no triplets.
    #[error("the file holds no triplets")]
    Empty,
}

fn location(line: Option<u64>, field: Option<usize>) -> String {
    match (line, field) {
        (Some(line), Some(field)) => format!(", line {line}, field {field}"),
        (Some(line), None) => format!(", line {line}"),
        (None, _) => String::new(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_line_and_field() {
        let e = AlignmentError::TripletFile {
            path: "t.csv".into(),
            line: Some(4),
            field: Some(2),
            problem: TripletProblem::OutOfRange { index: 12, n: 10 },
        };
        assert_eq!(
            e.to_string(),
            "t.csv, line 4, field 2: index 12 is out of range for 10 concepts"
        );
        let e = AlignmentError::TripletFile {
            path: "t.csv".into(),
            line: None,
            field: None,
            problem: TripletProblem::Empty,
        };
        assert_eq!(e.to_string(), "t.csv: the file holds no triplets");
        let e = AlignmentError::NonFinite { what: "embedding", row: 3, column: 1, value: f64::NAN };
        assert_eq!(e.to_string(), "embedding has a NaN at row 3, column 1");
    }
}
