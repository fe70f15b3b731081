//! Durable coordinator state in SQLite (WAL): units, attempts, workers, events, meta.
//!
//! **Architecture Invariant:** only the coordinator opens this database, and every state change
//! is one transaction: read the unit's state, apply one `lease.rs` transition, write the new
//! state, the attempt row and an event together. Nothing lives only in memory, so a coordinator
//! killed at any instant restarts from here.
//!
//! What stays in memory is derived and rebuilt on open: unit counts by kind and state (`Tally`,
//! kept with every transition after its commit, so the supervision tick and an idle `Lease`
//! read them instead of scanning `units`).
//!
//! Every name stored in a text column is an enum (`types.rs`) and every row read is a named
//! struct (`rows.rs`); a value this build cannot read is an error naming the table, the row
//! and the value, never a default state. Unit transitions are in `units.rs` (a unit's state row in `state.rs`), worker and Slurm
//! bookkeeping in `workers.rs`, read-only queries for status and reports in `reads.rs`.
//!
//! Durability: a transaction that commits, fails, quarantines, releases or expires a unit is
//! fsynced before it returns (`synchronous = FULL`); leases and heartbeats are not
//! (`synchronous = NORMAL`, still atomic and safe against a killed process). A lease or a
//! renewal lost to a power cut is harmless: the unit is pending again, and a completion naming
//! an attempt the database never saw is stale, so the unit is simply leased again; its output
//! is a pure function of the unit, so either attempt's file is the same result. The next fsynced
//! commit makes every earlier lease durable too (they share the write-ahead log).

mod reads;
mod rows;
mod schema;
mod state;
mod tally;
mod types;
mod units;
mod workers;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use common::ids::{UnitId, UnitKind};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::lease::Millis;
pub(crate) use rows::{CommittedFile, EventRow, FailedAttempt};
pub(crate) use tally::Counts;
use tally::{Moves, Tally};
#[cfg(test)]
pub(crate) use types::AttemptOutcome;
pub(crate) use types::{EventKind, Gone, UnitStatus, WorkerState};
pub(crate) use units::{Completion, CompletionOutcome};

/// The state database of one run.
pub(crate) struct StateDb {
    conn: Connection,
    tally: Tally,
    /// Whether commits are fsynced now (`synchronous = FULL`).
    durable: bool,
}

impl StateDb {
    /// Opens (creating if needed) the database at `path`.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<StateDb> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        schema::create_or_migrate(&conn)?;
        let mut db = StateDb { conn, tally: Tally::default(), durable: true };
        db.tally = db.recount()?;
        Ok(db)
    }

    /// Unit counts recounted from the `units` table (one scan; done on open).
    pub(crate) fn recount(&self) -> rusqlite::Result<Tally> {
        let mut stmt = self.conn.prepare(
            "SELECT kind, stage, state, COUNT(*) FROM units GROUP BY kind, stage, state",
        )?;
        let mut tally =
            Tally { inputs_generation: self.tally.inputs_generation, ..Tally::default() };
        let rows = stmt.query_map([], |r| {
            // The row of a group is its kind and state.
            let group = format!("{:?} {:?}", r.get_ref(0)?, r.get_ref(2)?);
            Ok((
                types::unit_kind(r, 0, "units", &group)?,
                types::cell::<u32>(r, 1, "units", &group)?,
                types::cell::<UnitStatus>(r, 2, "units", &group)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (kind, stage, state, n) = row?;
            *tally.counts.entry(kind).or_default().slot(state) += n as u64;
            tally.stages.insert(kind, stage);
        }
        Ok(tally)
    }

    /// The counts kept in memory (equal to [`StateDb::recount`] after every transaction).
    #[cfg(test)]
    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Changes with each change to the set of committed capture outputs.
    pub(crate) fn inputs_generation(&self) -> u64 {
        self.tally.inputs_generation
    }

    fn apply(&mut self, moves: Moves) {
        self.tally.apply(moves);
    }

    /// Begins a transaction whose commit is fsynced (`durable`) or not (see the module header).
    fn begin(&mut self, durable: bool) -> rusqlite::Result<Transaction<'_>> {
        if self.durable != durable {
            let mode = if durable { "FULL" } else { "NORMAL" };
            self.conn.pragma_update(None, "synchronous", mode)?;
            self.durable = durable;
        }
        self.conn.transaction()
    }

    /// A value from the meta table (e.g. `launcher`, `target_workers`).
    pub(crate) fn meta(&self, key: &str) -> rusqlite::Result<Option<String>> {
        self.conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()
    }

    /// Sets a meta value, with an event.
    pub(crate) fn set_meta(&mut self, key: &str, value: &str, now: Millis) -> rusqlite::Result<()> {
        let tx = self.begin(true)?;
        tx.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
            [key, value],
        )?;
        event(&tx, now, EventKind::Meta, None, None, &format!("{key} = {value}"))?;
        tx.commit()
    }

    /// Whether any unit is running or can still run. Pending units behind a quarantined unit of
    /// a lower stage can never run, so they do not keep the sweep open. From the counts.
    pub(crate) fn has_open_work(&self) -> rusqlite::Result<bool> {
        let t = &self.tally;
        let leased = t.counts.values().any(|c| c.leased > 0);
        Ok(leased || t.open_stage().is_some_and(|stage| t.pending_in(stage) > 0))
    }

    /// Counts by kind and state, from memory.
    pub(crate) fn counts(&self) -> rusqlite::Result<BTreeMap<UnitKind, Counts>> {
        Ok(self.tally.counts.clone())
    }

    /// Records a free-standing event (launcher, signals, run end).
    pub(crate) fn log_event(
        &self,
        now: Millis,
        kind: EventKind,
        worker: Option<&str>,
        detail: &str,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO events(ts, kind, unit, worker, detail) VALUES (?1, ?2, NULL, ?3, ?4)",
            params![now, kind, worker, detail],
        )?;
        Ok(())
    }
}

/// Records an event inside a transaction.
fn event(
    tx: &Transaction<'_>,
    now: Millis,
    kind: EventKind,
    unit: Option<&UnitId>,
    worker: Option<&str>,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO events(ts, kind, unit, worker, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![now, kind, unit.map(UnitId::as_str), worker, detail])?;
    Ok(())
}
