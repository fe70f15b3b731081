//! Errors of one unit attempt. Retryability is decided here, once: it chooses between
//! `Fail { retryable: true }` (the coordinator retries with backoff) and quarantine.

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
            UnitError::Data(
                DataError::Table { .. } | DataError::Parquet { .. } | DataError::Arrow { .. },
            ) => false,
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
