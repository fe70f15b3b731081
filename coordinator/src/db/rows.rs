//! Rows read from the state database, one named struct per query shape; each is read by one
//! function here, through [`cell`](super::types::cell), so an unreadable value names its row.

use common::ids::{UnitId, UnitKind};
use rusqlite::Row;

use super::types::{cell, unit_id, unit_kind, AttemptOutcome, EventKind, UnitStatus, WorkerState};
use crate::lease::Millis;

/// A unit in plan order (`StateDb::unit_rows`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnitRow {
    pub(crate) id: UnitId,
    pub(crate) kind: UnitKind,
    pub(crate) state: UnitStatus,
    pub(crate) attempts: u32,
    /// The quarantine error, empty if none.
    pub(crate) error: String,
    /// The unit descriptor (`UnitSpec` as JSON).
    pub(crate) descriptor: String,
}

impl UnitRow {
    /// From `SELECT id, kind, state, attempts, COALESCE(error, ''), descriptor FROM units`.
    pub(crate) fn read(r: &Row<'_>) -> rusqlite::Result<UnitRow> {
        let id = unit_id(r, 0, "units")?;
        Ok(UnitRow {
            kind: unit_kind(r, 1, "units", &id)?,
            state: cell(r, 2, "units", &id)?,
            attempts: cell(r, 3, "units", &id)?,
            error: cell(r, 4, "units", &id)?,
            descriptor: cell(r, 5, "units", &id)?,
            id,
        })
    }
}

/// A registered worker (`StateDb::workers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerRow {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) state: WorkerState,
    /// Its last heartbeat or poll.
    pub(crate) last_seen: Millis,
}

impl WorkerRow {
    /// From `SELECT id, host, pid, state, last_seen FROM workers`.
    pub(crate) fn read(r: &Row<'_>) -> rusqlite::Result<WorkerRow> {
        let id: String = r.get(0)?;
        Ok(WorkerRow {
            host: cell(r, 1, "workers", &id)?,
            pid: cell(r, 2, "workers", &id)?,
            state: cell(r, 3, "workers", &id)?,
            last_seen: cell(r, 4, "workers", &id)?,
            id,
        })
    }
}

/// An event (`StateDb::events_since`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventRow {
    pub(crate) seq: i64,
    pub(crate) ts: Millis,
    pub(crate) kind: EventKind,
    pub(crate) unit: Option<UnitId>,
    pub(crate) worker: Option<String>,
    pub(crate) detail: String,
}

impl EventRow {
    /// From `SELECT seq, ts, kind, unit, worker, COALESCE(detail, '') FROM events`.
    pub(crate) fn read(r: &Row<'_>) -> rusqlite::Result<EventRow> {
        let seq: i64 = r.get(0)?;
        let unit = match r.get::<_, Option<String>>(3)? {
            Some(_) => Some(unit_id(r, 3, "events")?),
            None => None,
        };
        Ok(EventRow {
            ts: cell(r, 1, "events", &seq)?,
            kind: cell(r, 2, "events", &seq)?,
            unit,
            worker: cell(r, 4, "events", &seq)?,
            detail: cell(r, 5, "events", &seq)?,
            seq,
        })
    }
}

/// An attempt that ended in a failure or an expired lease (`StateDb::failed_attempts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailedAttempt {
    pub(crate) unit: UnitId,
    pub(crate) attempt: u32,
    pub(crate) worker: String,
    pub(crate) outcome: AttemptOutcome,
    pub(crate) error: String,
}

impl FailedAttempt {
    /// From `SELECT unit, attempt, worker, outcome, COALESCE(error, '') FROM attempts`.
    pub(crate) fn read(r: &Row<'_>) -> rusqlite::Result<FailedAttempt> {
        let unit = unit_id(r, 0, "attempts")?;
        Ok(FailedAttempt {
            attempt: cell(r, 1, "attempts", &unit)?,
            worker: cell(r, 2, "attempts", &unit)?,
            outcome: cell(r, 3, "attempts", &unit)?,
            error: cell(r, 4, "attempts", &unit)?,
            unit,
        })
    }
}

/// A committed unit's output, relative to the run directory, and its blake3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedFile {
    pub(crate) unit: UnitId,
    pub(crate) output: String,
    pub(crate) checksum: String,
}

impl CommittedFile {
    /// From `SELECT id, output, checksum FROM units`.
    pub(crate) fn read(r: &Row<'_>) -> rusqlite::Result<CommittedFile> {
        let unit = unit_id(r, 0, "units")?;
        Ok(CommittedFile {
            output: cell(r, 1, "units", &unit)?,
            checksum: cell(r, 2, "units", &unit)?,
            unit,
        })
    }
}
