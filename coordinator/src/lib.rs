//! The diffprobe coordinator and CLI: plan a sweep, keep its durable state, serve leases to
//! workers, supervise local workers, and merge the results into reports.
//!
//! **Architecture Invariant:** only this crate opens `state.sqlite`; `lease.rs` is pure and
//! `db.rs` applies one of its transitions per transaction.

mod alignment;
mod bench;
mod cli;
mod db;
mod dense;
mod directions;
mod extend;
mod launcher;
mod lease;
mod plan;
mod progress;
mod report;
mod run;
mod semantic;
mod service;
mod status;
mod supervise;
mod verify;

pub use cli::main_with_args;
