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
    /// The worker's device failed (out of memory, a lost GPU).
    #[error("device: {0}")]
    Device(#[from] candle_core::Error),
    /// The alignment analyses rejected the data or their device failed.
    #[error("alignment: {0}")]
    Alignment(#[from] alignment::AlignmentError),
}

impl UnitError {
    /// Whether another attempt (maybe on another worker) could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            UnitError::Data(DataError::Io { .. }) => true,
            UnitError::Data(DataError::Parquet { source, .. }) => transient_io(source),
            UnitError::Data(DataError::Arrow { source, .. }) => transient_io(source),
            UnitError::Data(DataError::Table { .. }) => false,
            // A device failure (out of memory, a lost GPU) may pass on another worker.
            UnitError::Alignment(alignment::AlignmentError::Tensor(_)) | UnitError::Device(_) => {
                true
            }
            UnitError::Model { .. }
            | UnitError::Invalid(_)
            | UnitError::Probe(_)
            | UnitError::Alignment(_) => false,
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
}
