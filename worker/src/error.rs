//! Errors of one unit attempt. Retryability is decided here, once: it chooses between
//! `Fail { retryable: true }` (the coordinator retries with backoff) and quarantine.
//!
//! Transient I/O (a full disk, a quota, an I/O error, a network file system timing out) is
//! retryable wherever it surfaces: directly, or wrapped by the Parquet or Arrow writer, which
//! box the `io::Error` (`ParquetError::External`, `ArrowError::IoError`); `transient_io` walks
//! the error's source chain to find it.

use std::error::Error;

use common::error::DataError;

/// Why a unit attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// Reading inputs or writing outputs failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model could not be loaded or run.
    #[error("model {path}: {message}")]
    Model {
        /// The model folder or file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The inputs cannot give a result however often the unit is retried.
    #[error("{0}")]
    Invalid(String),
    /// The probe statistics rejected the data.
    #[error("probe: {0}")]
    Probe(#[from] probe::ProbeError),
    /// The dense-probe statistics rejected the data.
    #[error("dense probe: {0}")]
    Dense(#[from] probe::dense::DenseError),
    /// The worker's device failed (out of memory, a lost GPU).
    #[error("device: {0}")]
    Device(#[from] candle_core::Error),
    /// The alignment analyses rejected the data or their device failed.
    #[error("alignment: {0}")]
    Alignment(#[from] alignment::AlignmentError),
    /// An input file does not match the checksum it was committed with (flipped bits, a
    /// truncated copy, a deleted file): its producer must run again, not this unit.
    #[error("input {path} failed verification: {problem} (committed with blake3 {expected})")]
    CorruptInput {
        /// The input, relative to the run directory.
        path: String,
        /// The checksum recorded at commit.
        expected: String,
        /// What the file is now ([`common::fs::Verification`] in words).
        problem: String,
    },
}

impl UnitError {
    /// Whether another attempt (maybe on another worker) could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            UnitError::Data(DataError::Io { .. }) => true,
            UnitError::Data(DataError::Parquet { source, .. }) => transient_io(source),
            UnitError::Data(DataError::Arrow { source, .. }) => transient_io(source),
            UnitError::Data(DataError::Table { .. } | DataError::Rows { .. }) => false,
            // A device failure (out of memory, a lost GPU) may pass on another worker.
            UnitError::Alignment(alignment::AlignmentError::Tensor(_)) | UnitError::Device(_) => {
                true
            }
            // Retryable once the producer has re-run; the coordinator re-queues the producer
            // and does not count this attempt as a failure (`FailRequest.corrupt_input`).
            UnitError::CorruptInput { .. } => true,
            UnitError::Model { .. }
            | UnitError::Invalid(_)
            | UnitError::Probe(_)
            | UnitError::Dense(_)
            | UnitError::Alignment(_) => false,
        }
    }
}

impl UnitError {
    /// The input that failed verification, when that is why the unit failed: sent to the
    /// coordinator so that it re-runs the input's producer instead of failing this unit.
    pub fn corrupt_input(&self) -> Option<&str> {
        match self {
            UnitError::CorruptInput { path, .. } => Some(path),
            UnitError::Data(_)
            | UnitError::Model { .. }
            | UnitError::Invalid(_)
            | UnitError::Probe(_)
            | UnitError::Dense(_)
            | UnitError::Device(_)
            | UnitError::Alignment(_) => None,
        }
    }
}

/// Whether `e` or an error in its source chain is an I/O error that may pass: no space, a
/// quota, an I/O error, a time-out, a stale network file handle, an interrupted or would-block
/// call.
pub(crate) fn transient_io(e: &(dyn Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return is_transient(io);
        }
        next = e.source();
    }
    false
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    let errno = matches!(
        e.raw_os_error(),
        Some(
            libc::ENOSPC
                | libc::EDQUOT
                | libc::EIO
                | libc::ETIMEDOUT
                | libc::ESTALE
                | libc::EAGAIN
                | libc::EINTR
        )
    );
    errno
        || matches!(
            e.kind(),
            ErrorKind::StorageFull
                | ErrorKind::QuotaExceeded
                | ErrorKind::TimedOut
                | ErrorKind::Interrupted
                | ErrorKind::WouldBlock
        )
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use parquet::errors::ParquetError;

    use super::*;

    fn parquet(source: ParquetError) -> UnitError {
        UnitError::Data(DataError::Parquet { path: PathBuf::from("features/u.a1.parquet"), source })
    }

    #[test]
    fn transient_io_is_retryable_however_the_writer_wraps_it() {
        for errno in [libc::ENOSPC, libc::EIO, libc::EDQUOT, libc::ETIMEDOUT] {
            let os = || io::Error::from_raw_os_error(errno);
            // As `ArrowWriter` returns it: `From<io::Error> for ParquetError` boxes it.
            assert!(parquet(ParquetError::from(os())).is_retryable(), "errno {errno} via parquet");
            // Through Arrow first, then Parquet (an Arrow IPC or CSV writer inside).
            let arrow = arrow::error::ArrowError::from(os());
            assert!(parquet(ParquetError::from(arrow)).is_retryable(), "errno {errno} via arrow");
            let arrow = arrow::error::ArrowError::from(os());
            let e = UnitError::Data(DataError::Arrow { path: PathBuf::from("x"), source: arrow });
            assert!(e.is_retryable(), "errno {errno} as an arrow error");
            let e = UnitError::Data(DataError::Io { path: PathBuf::from("x"), source: os() });
            assert!(e.is_retryable(), "errno {errno} as a plain I/O error");
        }
        let kind = io::Error::from(io::ErrorKind::StorageFull);
        assert!(parquet(ParquetError::from(kind)).is_retryable());
    }

    #[test]
    fn malformed_files_and_lasting_io_errors_are_not_retryable() {
        assert!(!parquet(ParquetError::General("invalid footer".into())).is_retryable());
        assert!(!parquet(ParquetError::EOF("truncated".into())).is_retryable());
        let denied = io::Error::from_raw_os_error(libc::EACCES);
        assert!(!parquet(ParquetError::from(denied)).is_retryable());
        let table = DataError::Table { path: PathBuf::from("x"), message: "bad column".into() };
        assert!(!UnitError::Data(table).is_retryable());
    }

    #[test]
    fn a_corrupt_input_is_its_own_kind_retryable_and_names_the_file() {
        let e = UnitError::CorruptInput {
            path: "features/capture-1.a1.parquet".into(),
            expected: "ab".into(),
            problem: "checksum is now cd (10 bytes)".into(),
        };
        assert!(e.is_retryable(), "the unit runs again once its producer has");
        assert_eq!(e.corrupt_input(), Some("features/capture-1.a1.parquet"));
        assert!(e.to_string().contains("features/capture-1.a1.parquet failed verification"));
        // Other failures, even reading that same file, name no corrupt input: a malformed file
        // that matches its checksum is the producer's bug, not bit rot.
        let table = DataError::Table {
            path: PathBuf::from("features/capture-1.a1.parquet"),
            message: "bad footer".into(),
        };
        assert_eq!(UnitError::Data(table).corrupt_input(), None);
        assert_eq!(UnitError::Invalid("x".into()).corrupt_input(), None);
    }
}
