//! Everything the coordinator and the workers agree on: the job spec, unit descriptors and ids,
//! the gRPC protocol, the Parquet schemas, the run-directory layout and atomic file writes.
//!
//! **Architecture Invariant:** this crate depends on no other diffprobe crate and does no
//! networking; it is the single definition of every API boundary (spec TOML, proto, Parquet
//! schemas, run directory).
#![deny(missing_docs)]

pub mod backoff;
pub mod error;
pub mod fs;
pub mod ids;
pub mod layout;
pub mod settings;
pub mod spec;
pub mod stimuli;
pub mod table;
pub mod unit;

/// The gRPC protocol between coordinator and workers (generated from `proto/diffprobe.proto`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("diffprobe.v1");
}

/// Name of the environment variable that carries the run's bearer token to workers.
pub const TOKEN_ENV: &str = "DIFFPROBE_TOKEN";

/// Name of the environment variable that carries the local coordinator's pid to the workers it
/// starts: a worker whose parent is no longer that process is an orphan and stops.
pub const COORDINATOR_PID_ENV: &str = "DIFFPROBE_COORDINATOR_PID";
