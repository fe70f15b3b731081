//! Read-only queries for verification, `status`, the supervision tick and the reports. Each
//! returns named rows (`rows.rs`); names in `WHERE` clauses are bound as their enums.

use common::ids::{UnitId, UnitKind};
use rusqlite::{params, OptionalExtension};

use super::rows::{CommittedFile, EventRow, FailedAttempt, UnitRow, WorkerRow};
use super::types::{self, AttemptOutcome, EventKind, UnitStatus};
use super::StateDb;
use crate::lease::Millis;

impl StateDb {
    /// Output path and checksum of every committed unit whose output the coordinator merges
    /// (probe, grid and alignment units), in plan order, for verification. Capture outputs are
    /// not listed: their readers (workers) check them, and hashing every feature file of a
    /// large sweep at each `resume` would cost hours.
    pub(crate) fn committed_digests(&self) -> rusqlite::Result<Vec<CommittedFile>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, output, checksum FROM units WHERE state = ?1 AND kind != ?2 ORDER BY seq",
        )?;
        let capture: &str = UnitKind::Capture.as_ref();
        let rows = stmt.query_map(params![UnitStatus::Committed, capture], CommittedFile::read)?;
        rows.collect()
    }

    /// The committed unit whose output is `output`, with its checksum.
    pub(crate) fn committed_output_owner(
        &self,
        output: &str,
    ) -> rusqlite::Result<Option<CommittedFile>> {
        self.conn
            .query_row(
                "SELECT id, output, checksum FROM units WHERE state = ?1 AND output = ?2",
                params![UnitStatus::Committed, output],
                CommittedFile::read,
            )
            .optional()
    }

    /// Units re-queued because a committed output failed verification, oldest first: unit and
    /// what happened (the `corrupt` events).
    pub(crate) fn corrupt_events(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT unit, COALESCE(detail, '') FROM events WHERE kind = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([EventKind::Corrupt], |r| {
            Ok((types::unit_id(r, 0, "events")?.0, r.get(1)?))
        })?;
        rows.collect()
    }

    /// The ids of every unit of `stage`, in plan order.
    pub(crate) fn unit_ids_in_stage(&self, stage: u32) -> rusqlite::Result<Vec<UnitId>> {
        let mut stmt = self.conn.prepare("SELECT id FROM units WHERE stage = ?1 ORDER BY seq")?;
        let ids = stmt.query_map([stage], |r| types::unit_id(r, 0, "units"))?;
        ids.collect()
    }

    /// Committed output path of every committed unit of `kind`, in plan order.
    pub(crate) fn committed_outputs(&self, kind: UnitKind) -> rusqlite::Result<Vec<String>> {
        Ok(self.committed_files(kind)?.into_iter().map(|f| f.output).collect())
    }

    /// Committed output path and checksum of every committed unit of `kind`, in plan order.
    pub(crate) fn committed_files(&self, kind: UnitKind) -> rusqlite::Result<Vec<CommittedFile>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, output, checksum FROM units WHERE kind = ?1 AND state = ?2 ORDER BY seq",
        )?;
        let kind: &str = kind.as_ref();
        let rows = stmt.query_map(params![kind, UnitStatus::Committed], CommittedFile::read)?;
        rows.collect()
    }

    /// Quarantined units with their errors.
    pub(crate) fn quarantined(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, COALESCE(error, '') FROM units WHERE state = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([UnitStatus::Quarantined], |r| {
            Ok((types::unit_id(r, 0, "units")?.0, r.get(1)?))
        })?;
        rows.collect()
    }

    /// Every unit in plan order.
    pub(crate) fn unit_rows(&self) -> rusqlite::Result<Vec<UnitRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, state, attempts, COALESCE(error, ''), descriptor FROM units ORDER BY seq",
        )?;
        let rows = stmt.query_map([], UnitRow::read)?;
        rows.collect()
    }

    /// Attempts that ended in a failure or an expired lease, oldest first.
    pub(crate) fn failed_attempts(&self) -> rusqlite::Result<Vec<FailedAttempt>> {
        let mut stmt = self.conn.prepare(
            "SELECT unit, attempt, worker, outcome, COALESCE(error, '') FROM attempts
             WHERE outcome IN (?1, ?2) ORDER BY started, unit, attempt",
        )?;
        let outcomes = params![AttemptOutcome::Failed, AttemptOutcome::Expired];
        let rows = stmt.query_map(outcomes, FailedAttempt::read)?;
        rows.collect()
    }

    /// Attempts ever leased.
    pub(crate) fn attempt_count(&self) -> rusqlite::Result<i64> {
        self.conn.query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0))
    }

    /// Coordinator sessions (1 + the number of resumes) and the wall time from the first
    /// `coordinator_started` to the last `committed` event, in milliseconds.
    pub(crate) fn wall_time(&self) -> rusqlite::Result<(i64, Option<Millis>)> {
        self.conn.query_row(
            "SELECT (SELECT COUNT(*) FROM events WHERE kind = ?1),
                    (SELECT MAX(ts) FROM events WHERE kind = ?2)
                  - (SELECT MIN(ts) FROM events WHERE kind = ?1)",
            params![EventKind::CoordinatorStarted, EventKind::Committed],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Workers with their state and last heartbeat.
    pub(crate) fn workers(&self) -> rusqlite::Result<Vec<WorkerRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, host, pid, state, last_seen FROM workers ORDER BY started, id")?;
        let rows = stmt.query_map([], WorkerRow::read)?;
        rows.collect()
    }

    /// Sequence number of the newest event (0 when there is none).
    pub(crate) fn last_event_seq(&self) -> rusqlite::Result<i64> {
        self.conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
    }

    /// Events after `since` (sequence number), oldest first.
    pub(crate) fn events_since(&self, since: i64) -> rusqlite::Result<Vec<EventRow>> {
        let mut stmt = self.conn.prepare("SELECT seq, ts, kind, unit, worker, COALESCE(detail, '') FROM events WHERE seq > ?1 ORDER BY seq")?;
        let rows = stmt.query_map([since], EventRow::read)?;
        rows.collect()
    }

    /// Units committed since `since` (for throughput and ETA).
    pub(crate) fn committed_since(&self, since: Millis) -> rusqlite::Result<i64> {
        self.conn.query_row(
            "SELECT COUNT(*) FROM events WHERE kind = ?1 AND ts >= ?2",
            params![EventKind::Committed, since],
            |r| r.get(0),
        )
    }
}
