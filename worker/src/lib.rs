//! The diffprobe worker: leases units from the coordinator, runs them, writes Parquet atomically
//! and reports completion. Capture runs models with candle; probe units fit the statistics of
//! the `probe` crate, alignment, direction and cluster units those of the `alignment` crate.
//!
//! **Architecture Invariant:** a worker never touches `state.sqlite`; everything it knows about
//! the sweep comes from the lease, `spec.toml` and `dataset.json` in the run directory. A
//! stage-1 unit's settings come from the unit alone (`settings`); `spec.toml` gives only the
//! model and capture sections (capture units) and `model.device` (where to compute).

mod alignment_unit;
pub mod capture;
mod client;
pub mod dense_labels;
mod dense_paper;
mod dense_unit;
mod directions_unit;
mod error;
mod probe_gram;
mod probe_unit;
pub mod run;
mod semantic_unit;
mod session;
mod settings;

pub use error::UnitError;
