//! Typed errors of the `common` crate. Each carries the file and key it is about, so the binary
//! can print one line a user can act on.

use std::path::PathBuf;

/// A job spec that cannot be used: the file, the key path and what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct SpecError {
    /// The spec file (or the layer, e.g. `--set`, that supplied the bad value).
    pub file: String,
    /// Dotted key path, e.g. `analysis.attribute_probe.alpha`.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl SpecError {
    /// A spec error about `key` in `file`.
    pub fn new(file: impl Into<String>, key: impl Into<String>, msg: impl Into<String>) -> Self {
        SpecError { file: file.into(), key: key.into(), message: msg.into() }
    }
}

/// A failure reading or writing a file of the run directory or an input table.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A table is malformed: wrong column, bad number, missing value.
    #[error("{path}: {message}")]
    Table {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the column and row.
        message: String,
    },
    /// Arrow or Parquet rejected a file.
    #[error("{path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Arrow rejected data.
    #[error("{path}: {source}")]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// Rows did not fit their table's schema (a column of the wrong type, a null where the row
    /// type has no `Option`).
    #[error("{path}: {source}")]
    Rows {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_arrow::Error,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }
    pub(crate) fn table(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Table { path: path.into(), message: message.into() }
    }
}
