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
//! Durability: a transaction that commits, fails, quarantines, releases or expires a unit is
//! fsynced before it returns (`synchronous = FULL`); leases and heartbeats are not
//! (`synchronous = NORMAL`, still atomic and safe against a killed process). A lease or a
//! renewal lost to a power cut is harmless: the unit is pending again, and a completion naming
//! an attempt the database never saw is stale, so the unit is simply leased again; its output
//! is a pure function of the unit, so either attempt's file is the same result. The next fsynced
//! commit makes every earlier lease durable too (they share the write-ahead log).

use std::collections::BTreeMap;
use std::path::Path;

use common::ids::UnitId;
use common::unit::UnitSpec;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::lease::{Effect, Millis, RetryPolicy, UnitState};

/// The state database of one run.
pub(crate) struct StateDb {
    conn: Connection,
    tally: Tally,
    /// Whether commits are fsynced now (`synchronous = FULL`).
    durable: bool,
}

/// Unit counts by kind and state, and each kind's stage: derived from `units` on open and kept
/// with every committed transition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    counts: BTreeMap<String, Counts>,
    stages: BTreeMap<String, u32>,
    /// Bumped whenever a stage-0 (capture) unit enters or leaves `committed`: the committed
    /// capture outputs, which stage-1 leases name through a manifest, may have changed.
    inputs_generation: u64,
}

impl Tally {
    fn slot<'a>(c: &'a mut Counts, state: &str) -> &'a mut u64 {
        match state {
            "pending" => &mut c.pending,
            "leased" => &mut c.leased,
            "committed" => &mut c.committed,
            _ => &mut c.quarantined,
        }
    }

    fn moved(&mut self, kind: &str, from: &str, to: &str) {
        if from == to {
            return;
        }
        let c = self.counts.entry(kind.to_string()).or_default();
        let from_slot = Tally::slot(c, from);
        *from_slot = from_slot.saturating_sub(1);
        *Tally::slot(c, to) += 1;
        if self.stages.get(kind) == Some(&0) && (from == "committed" || to == "committed") {
            self.inputs_generation += 1;
        }
    }

    /// The lowest stage with a unit not yet committed, if any.
    fn open_stage(&self) -> Option<u32> {
        self.counts
            .iter()
            .filter(|(_, c)| c.committed < c.total())
            .filter_map(|(kind, _)| self.stages.get(kind).copied())
            .min()
    }

    /// Pending units of `stage`.
    fn pending_in(&self, stage: u32) -> u64 {
        self.counts
            .iter()
            .filter(|(kind, _)| self.stages.get(*kind) == Some(&stage))
            .map(|(_, c)| c.pending)
            .sum()
    }
}

/// State changes of one transaction, applied to the [`Tally`] once it has committed.
#[derive(Default)]
struct Moves(Vec<(String, &'static str, &'static str)>);

impl Moves {
    fn push(&mut self, kind: &str, from: &UnitState, to: &UnitState) {
        self.0.push((kind.to_string(), state_name(from), state_name(to)));
    }
}

/// A lease handed to a worker.
#[derive(Debug, Clone)]
pub(crate) struct Granted {
    pub(crate) unit: String,
    pub(crate) attempt: u32,
    pub(crate) spec: UnitSpec,
}

/// How a completion was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CompletionOutcome {
    /// This completion committed the unit.
    Committed,
    /// This same completion had already committed the unit (a retry after a lost reply).
    Repeat,
    /// Another attempt committed the unit first; `committed_output` is its file, which the
    /// caller must leave alone.
    Duplicate { committed_output: String },
    /// Not a completion this unit can take (unknown unit or attempt, or a changed file).
    Stale,
}

/// A worker row: id, host, pid, state, last heartbeat.
pub(crate) type WorkerRow = (String, String, u32, String, Millis);
/// An event row: sequence number, time, kind, unit, worker, detail.
pub(crate) type EventRow = (i64, Millis, String, Option<String>, Option<String>, String);

/// A unit row: id, kind, state, attempts, error (empty if none), descriptor JSON.
pub(crate) type UnitRow = (String, String, String, u32, String, String);

/// A failed attempt: unit, attempt, worker, outcome (`failed`, `expired`), error.
pub(crate) type FailedAttempt = (String, u32, String, String, String);

/// Unit counts by state for one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Counts {
    pub(crate) pending: u64,
    pub(crate) leased: u64,
    pub(crate) committed: u64,
    pub(crate) quarantined: u64,
}

impl Counts {
    pub(crate) fn total(&self) -> u64 {
        self.pending + self.leased + self.committed + self.quarantined
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
  id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, kind TEXT NOT NULL, stage INTEGER NOT NULL,
  descriptor TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL, failures INTEGER NOT NULL,
  not_before INTEGER NOT NULL, worker TEXT, deadline INTEGER, committed_attempt INTEGER,
  output TEXT, checksum TEXT, error TEXT);
DROP INDEX IF EXISTS units_ready;
CREATE INDEX IF NOT EXISTS units_lease ON units(state, stage, seq, not_before);
CREATE TABLE IF NOT EXISTS attempts (
  unit TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT NOT NULL, started INTEGER NOT NULL,
  ended INTEGER, outcome TEXT, error TEXT, PRIMARY KEY (unit, attempt));
CREATE TABLE IF NOT EXISTS workers (
  id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, tag TEXT NOT NULL,
  started INTEGER NOT NULL, last_seen INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slurm_tasks (
  id TEXT PRIMARY KEY, array_job TEXT NOT NULL, submitted INTEGER NOT NULL,
  ended INTEGER, state TEXT, reason TEXT);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, kind TEXT NOT NULL,
  unit TEXT, worker TEXT, detail TEXT);
";

impl StateDb {
    /// Opens (creating if needed) the database at `path`.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<StateDb> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        // Added after the first schema: older run databases gain the column on open.
        let has_device = conn.prepare("SELECT device FROM workers LIMIT 0").is_ok();
        if !has_device {
            conn.execute_batch(
                "ALTER TABLE workers ADD COLUMN device TEXT NOT NULL DEFAULT 'cpu'",
            )?;
        }
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
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (kind, stage, state, n) = row?;
            *Tally::slot(tally.counts.entry(kind.clone()).or_default(), &state) += n as u64;
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
        for (kind, from, to) in moves.0 {
            self.tally.moved(&kind, from, to);
        }
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
        event(&tx, now, "meta", None, None, &format!("{key} = {value}"))?;
        tx.commit()
    }

    /// Records submitted Slurm array tasks.
    pub(crate) fn slurm_tasks_submitted(
        &mut self,
        job: &str,
        tasks: &[String],
        now: Millis,
    ) -> rusqlite::Result<()> {
        let tx = self.begin(true)?;
        for t in tasks {
            tx.execute(
                "INSERT OR IGNORE INTO slurm_tasks(id, array_job, submitted) VALUES (?1, ?2, ?3)",
                params![t, job, now],
            )?;
        }
        event(
            &tx,
            now,
            "slurm_submitted",
            None,
            None,
            &format!("array job {job}: {} tasks", tasks.len()),
        )?;
        tx.commit()
    }

    /// Number of Slurm tasks ever submitted for this run.
    pub(crate) fn slurm_task_count(&self) -> rusqlite::Result<i64> {
        self.conn.query_row("SELECT COUNT(*) FROM slurm_tasks", [], |r| r.get(0))
    }

    /// Slurm tasks not known to have ended, oldest first.
    pub(crate) fn slurm_tasks_alive(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM slurm_tasks WHERE ended IS NULL ORDER BY submitted, rowid")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    /// Records how a Slurm task ended.
    pub(crate) fn slurm_task_ended(
        &mut self,
        task: &str,
        state: &str,
        reason: &str,
        now: Millis,
    ) -> rusqlite::Result<()> {
        let tx = self.begin(true)?;
        tx.execute(
            "UPDATE slurm_tasks SET ended = ?2, state = ?3, reason = ?4 WHERE id = ?1",
            params![task, now, state, reason],
        )?;
        event(&tx, now, "slurm_ended", None, Some(task), format!("{state} {reason}").trim())?;
        tx.commit()
    }

    /// Ended Slurm tasks with state and reason, newest first (for `status`).
    pub(crate) fn slurm_tasks_ended(&self) -> rusqlite::Result<Vec<(String, String, String)>> {
        let mut stmt = self.conn.prepare("SELECT id, COALESCE(state, ''), COALESCE(reason, '') FROM slurm_tasks WHERE ended IS NOT NULL ORDER BY ended DESC")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// Inserts the plan's units; units already present (same id) are left as they are.
    pub(crate) fn insert_units(
        &mut self,
        units: &[(UnitId, UnitSpec)],
        now: Millis,
    ) -> rusqlite::Result<usize> {
        // A large page cache while inserting: the id index takes 10⁶ random keys.
        self.conn.pragma_update(None, "cache_size", -262_144)?;
        let tx = self.begin(true)?;
        let base: i64 =
            tx.query_row("SELECT COALESCE(MAX(seq), -1) + 1 FROM units", [], |r| r.get(0))?;
        let mut added = 0;
        {
            let mut stmt = tx.prepare(
                "INSERT OR IGNORE INTO units(id, seq, kind, stage, descriptor, state, attempts, failures, not_before)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, 0, 0)",
            )?;
            for (i, (id, spec)) in units.iter().enumerate() {
                let json = serde_json::to_string(spec).expect("unit specs serialise");
                added +=
                    stmt.execute(params![id.0, base + i as i64, spec.kind(), spec.stage(), json])?;
            }
        }
        event(&tx, now, "planned", None, None, &format!("{added} new units"))?;
        tx.commit()?;
        self.conn.pragma_update(None, "cache_size", -2_000)?;
        self.tally = self.recount()?;
        Ok(added)
    }

    /// Registers a worker and returns its id.
    pub(crate) fn register_worker(
        &mut self,
        host: &str,
        pid: u32,
        tag: &str,
        device: &str,
        now: Millis,
    ) -> rusqlite::Result<String> {
        let tx = self.begin(true)?;
        let n: i64 = tx.query_row("SELECT COUNT(*) FROM workers", [], |r| r.get(0))?;
        let id = format!("w{}", n + 1);
        tx.execute("INSERT INTO workers(id, host, pid, tag, started, last_seen, state, device) VALUES (?1, ?2, ?3, ?4, ?5, ?5, 'alive', ?6)", params![id, host, pid, tag, now, device])?;
        event(&tx, now, "worker_joined", None, Some(&id), &format!("{host} pid {pid} {tag}"))?;
        tx.commit()?;
        Ok(id)
    }

    /// Every registered worker id (the service keeps them in memory).
    pub(crate) fn worker_ids(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT id FROM workers")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    /// The launcher tag a worker registered with (`local-3`; empty for one started by hand).
    pub(crate) fn worker_tag(&self, worker: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row("SELECT tag FROM workers WHERE id = ?1", [worker], |r| r.get(0))
            .optional()
    }

    /// Marks workers seen (their last poll), in one transaction that is not fsynced: a lost
    /// `last_seen` only delays marking a worker lost. A lost worker seen again is alive; a
    /// finished one (told "done" by that very poll) stays finished.
    pub(crate) fn touch_workers(&mut self, seen: &[(String, Millis)]) -> rusqlite::Result<()> {
        if seen.is_empty() {
            return Ok(());
        }
        let tx = self.begin(false)?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE workers SET last_seen = MAX(last_seen, ?2),
                 state = CASE state WHEN 'lost' THEN 'alive' ELSE state END WHERE id = ?1",
            )?;
            for (worker, at) in seen {
                stmt.execute(params![worker, at])?;
            }
        }
        tx.commit()
    }

    /// Alive workers not seen since `before`.
    pub(crate) fn silent_workers(&self, before: Millis) -> rusqlite::Result<Vec<(String, Millis)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, last_seen FROM workers WHERE state = 'alive' AND last_seen < ?1",
        )?;
        let rows = stmt.query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Marks a worker gone (exited or lost) with an event.
    pub(crate) fn worker_gone(
        &mut self,
        worker: &str,
        state: &str,
        detail: &str,
        now: Millis,
    ) -> rusqlite::Result<()> {
        let tx = self.begin(true)?;
        tx.execute("UPDATE workers SET state = ?2 WHERE id = ?1", params![worker, state])?;
        event(&tx, now, &format!("worker_{state}"), None, Some(worker), detail)?;
        tx.commit()
    }

    /// Leases the first ready unit to `worker`, if any. A unit is ready when it is pending, its
    /// backoff has passed, and every unit of a lower stage is committed.
    ///
    /// "Nothing ready" is answered from the in-memory counts, or from one read of the
    /// `units_lease` index, without a write transaction.
    pub(crate) fn lease_next(
        &mut self,
        worker: &str,
        now: Millis,
        p: RetryPolicy,
    ) -> rusqlite::Result<Option<Granted>> {
        let Some(stage) = self.tally.open_stage() else { return Ok(None) };
        if self.tally.pending_in(stage) == 0 {
            return Ok(None);
        }
        let found: Option<String> = self
            .conn
            .prepare_cached(LEASE_QUERY)?
            .query_row(params![stage, now], |r| r.get(0))
            .optional()?;
        let Some(unit) = found else { return Ok(None) };
        let tx = self.begin(false)?;
        let (state, descriptor, kind) = load(&tx, &unit)?;
        let Effect::Changed(next) = state.lease(worker, now, p) else { return Ok(None) };
        let attempt = next.attempts();
        store(&tx, &unit, &next)?;
        tx.prepare_cached("INSERT OR REPLACE INTO attempts(unit, attempt, worker, started) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![unit, attempt, worker, now])?;
        event(&tx, now, "leased", Some(&unit), Some(worker), &format!("attempt {attempt}"))?;
        tx.commit()?;
        let mut moves = Moves::default();
        moves.push(&kind, &state, &next);
        self.apply(moves);
        let spec = serde_json::from_str(&descriptor).expect("stored descriptors parse");
        Ok(Some(Granted { unit, attempt, spec }))
    }

    /// Renews leases; returns those the worker no longer holds.
    pub(crate) fn heartbeat(
        &mut self,
        worker: &str,
        leases: &[(String, u32)],
        now: Millis,
        p: RetryPolicy,
    ) -> rusqlite::Result<Vec<(String, u32)>> {
        let tx = self.begin(false)?;
        tx.prepare_cached("UPDATE workers SET last_seen = ?2, state = 'alive' WHERE id = ?1")?
            .execute(params![worker, now])?;
        let mut lost = Vec::new();
        for (unit, attempt) in leases {
            let Some((state, _, _)) = load_opt(&tx, unit)? else {
                lost.push((unit.clone(), *attempt));
                continue;
            };
            match state.heartbeat(worker, *attempt, now, p) {
                Effect::Changed(next) => store(&tx, unit, &next)?,
                Effect::Stale | Effect::Duplicate | Effect::Repeat => {
                    lost.push((unit.clone(), *attempt))
                }
            }
        }
        tx.commit()?;
        Ok(lost)
    }

    /// Commits verified outputs, all in one fsynced transaction (a group commit: completions
    /// that arrive together share one fsync); one outcome per completion, in order.
    pub(crate) fn complete_many(
        &mut self,
        completions: &[Completion],
        now: Millis,
    ) -> rusqlite::Result<Vec<CompletionOutcome>> {
        let tx = self.begin(true)?;
        let mut moves = Moves::default();
        let mut outcomes = Vec::with_capacity(completions.len());
        for c in completions {
            outcomes.push(complete_one(&tx, c, now, &mut moves)?);
        }
        tx.commit()?;
        self.apply(moves);
        Ok(outcomes)
    }

    /// Records a failed attempt, reported by `worker` (it must hold the lease).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fail(
        &mut self,
        worker: &str,
        unit: &str,
        attempt: u32,
        error: &str,
        retryable: bool,
        now: Millis,
        p: RetryPolicy,
    ) -> rusqlite::Result<()> {
        let tx = self.begin(true)?;
        let mut moves = Moves::default();
        if let Some((state, _, unit_kind)) = load_opt(&tx, unit)? {
            if let Effect::Changed(next) = state.fail(worker, attempt, error, retryable, now, p) {
                let kind = if matches!(next, UnitState::Quarantined { .. }) {
                    "quarantined"
                } else {
                    "failed"
                };
                store(&tx, unit, &next)?;
                end_attempt(&tx, unit, attempt, now, "failed", Some(error))?;
                event(&tx, now, kind, Some(unit), None, error)?;
                moves.push(&unit_kind, &state, &next);
            }
        }
        tx.commit()?;
        self.apply(moves);
        Ok(())
    }

    /// Gives a unit back (graceful shutdown of `worker`, which must hold the lease).
    pub(crate) fn release(
        &mut self,
        worker: &str,
        unit: &str,
        attempt: u32,
        reason: &str,
        now: Millis,
    ) -> rusqlite::Result<()> {
        let tx = self.begin(true)?;
        let mut moves = Moves::default();
        if let Some((state, _, kind)) = load_opt(&tx, unit)? {
            if let Effect::Changed(next) = state.release(worker, attempt, now) {
                store(&tx, unit, &next)?;
                end_attempt(&tx, unit, attempt, now, "released", Some(reason))?;
                event(&tx, now, "released", Some(unit), None, reason)?;
                moves.push(&kind, &state, &next);
            }
        }
        tx.commit()?;
        self.apply(moves);
        Ok(())
    }

    /// Expires every lease past its deadline; returns how many.
    pub(crate) fn expire(&mut self, now: Millis, p: RetryPolicy) -> rusqlite::Result<usize> {
        if self.tally.counts.values().all(|c| c.leased == 0) {
            return Ok(0);
        }
        let tx = self.begin(true)?;
        let due: Vec<String> = {
            let mut stmt =
                tx.prepare_cached("SELECT id FROM units WHERE state = 'leased' AND deadline < ?1")?;
            let rows = stmt.query_map([now], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut moves = Moves::default();
        for unit in &due {
            let (state, _, unit_kind) = load(&tx, unit)?;
            let attempt = state.attempts();
            if let Effect::Changed(next) = state.expire(now, p) {
                let kind = if matches!(next, UnitState::Quarantined { .. }) {
                    "quarantined"
                } else {
                    "expired"
                };
                store(&tx, unit, &next)?;
                end_attempt(
                    &tx,
                    unit,
                    attempt,
                    now,
                    "expired",
                    Some("no heartbeat before the lease deadline"),
                )?;
                event(
                    &tx,
                    now,
                    kind,
                    Some(unit),
                    None,
                    &format!("attempt {attempt}: lease expired"),
                )?;
                moves.push(&unit_kind, &state, &next);
            }
        }
        tx.commit()?;
        self.apply(moves);
        Ok(due.len())
    }

    /// Puts every quarantined unit back to pending (`resume --retry-quarantined`), in one
    /// transaction; returns how many.
    pub(crate) fn requeue_quarantined(&mut self, now: Millis) -> rusqlite::Result<usize> {
        let tx = self.begin(true)?;
        let quarantined: Vec<String> = {
            let mut stmt = tx.prepare("SELECT id FROM units WHERE state = 'quarantined'")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut requeued = 0;
        let mut moves = Moves::default();
        for unit in &quarantined {
            let (state, _, kind) = load(&tx, unit)?;
            if let Effect::Changed(next) = state.requeue(now) {
                store(&tx, unit, &next)?;
                event(&tx, now, "requeued", Some(unit), None, "retry asked by the operator")?;
                requeued += 1;
                moves.push(&kind, &state, &next);
            }
        }
        tx.commit()?;
        self.apply(moves);
        Ok(requeued)
    }

    /// Takes a committed unit back to pending because its output (committed with `checksum`)
    /// failed verification, with a `corrupt` event saying what happened; returns whether it
    /// changed (false when the unit was already re-queued or re-committed with another file).
    pub(crate) fn invalidate(
        &mut self,
        unit: &str,
        checksum: &str,
        detail: &str,
        now: Millis,
    ) -> rusqlite::Result<bool> {
        let tx = self.begin(true)?;
        let Some((state, _, kind)) = load_opt(&tx, unit)? else { return Ok(false) };
        let Effect::Changed(next) = state.invalidate(checksum, now) else { return Ok(false) };
        store(&tx, unit, &next)?;
        event(&tx, now, "corrupt", Some(unit), None, detail)?;
        tx.commit()?;
        // A capture unit leaving `committed` bumps the inputs generation: the manifest that
        // stage-1 leases name is rewritten without its file.
        let mut moves = Moves::default();
        moves.push(&kind, &state, &next);
        self.apply(moves);
        Ok(true)
    }

    /// Id, output path and checksum of every committed unit whose output the coordinator
    /// merges (probe, grid and alignment units), in plan order, for verification. Capture
    /// outputs are not listed: their readers (workers) check them, and hashing every feature
    /// file of a large sweep at each `resume` would cost hours.
    pub(crate) fn committed_digests(&self) -> rusqlite::Result<Vec<(String, String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, output, checksum FROM units WHERE state = 'committed' AND kind != 'capture'
             ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// The committed unit whose output is `output`, with its checksum.
    pub(crate) fn committed_output_owner(
        &self,
        output: &str,
    ) -> rusqlite::Result<Option<(String, String)>> {
        self.conn
            .query_row(
                "SELECT id, checksum FROM units WHERE state = 'committed' AND output = ?1",
                [output],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
    }

    /// Units re-queued because a committed output failed verification, oldest first: unit and
    /// what happened (the `corrupt` events).
    pub(crate) fn corrupt_events(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT COALESCE(unit, ''), COALESCE(detail, '') FROM events WHERE kind = 'corrupt' ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Whether any unit is running or can still run. Pending units behind a quarantined unit of
    /// a lower stage can never run, so they do not keep the sweep open. From the counts.
    pub(crate) fn has_open_work(&self) -> rusqlite::Result<bool> {
        let t = &self.tally;
        let leased = t.counts.values().any(|c| c.leased > 0);
        Ok(leased || t.open_stage().is_some_and(|stage| t.pending_in(stage) > 0))
    }

    /// Counts by kind (`capture`, `probe`) and state, from memory.
    pub(crate) fn counts(&self) -> rusqlite::Result<BTreeMap<String, Counts>> {
        Ok(self.tally.counts.clone())
    }

    /// Committed output path of every committed unit of `kind`, in plan order.
    pub(crate) fn committed_outputs(&self, kind: &str) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, output FROM units WHERE kind = ?1 AND state = 'committed' ORDER BY seq",
        )?;
        let rows = stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Committed output path and checksum of every committed unit of `kind`, in plan order.
    pub(crate) fn committed_files(
        &self,
        kind: &str,
    ) -> rusqlite::Result<Vec<(String, String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, output, checksum FROM units WHERE kind = ?1 AND state = 'committed' ORDER BY seq",
        )?;
        let rows = stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// Quarantined units with their errors.
    pub(crate) fn quarantined(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, COALESCE(error, '') FROM units WHERE state = 'quarantined' ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Every unit in plan order: id, kind, state, attempts, error and descriptor (JSON).
    pub(crate) fn unit_rows(&self) -> rusqlite::Result<Vec<UnitRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, state, attempts, COALESCE(error, ''), descriptor FROM units ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?;
        rows.collect()
    }

    /// Attempts that ended in a failure or an expired lease, oldest first: unit, attempt,
    /// worker, outcome, error.
    pub(crate) fn failed_attempts(&self) -> rusqlite::Result<Vec<FailedAttempt>> {
        let mut stmt = self.conn.prepare(
            "SELECT unit, attempt, worker, outcome, COALESCE(error, '') FROM attempts
             WHERE outcome IN ('failed', 'expired') ORDER BY started, unit, attempt",
        )?;
        let rows =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
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
            "SELECT (SELECT COUNT(*) FROM events WHERE kind = 'coordinator_started'),
                    (SELECT MAX(ts) FROM events WHERE kind = 'committed')
                  - (SELECT MIN(ts) FROM events WHERE kind = 'coordinator_started')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Workers with their state and last heartbeat.
    pub(crate) fn workers(&self) -> rusqlite::Result<Vec<WorkerRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, host, pid, state, last_seen FROM workers ORDER BY started, id")?;
        let rows =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
        rows.collect()
    }

    /// Sequence number of the newest event (0 when there is none).
    pub(crate) fn last_event_seq(&self) -> rusqlite::Result<i64> {
        self.conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
    }

    /// Events after `since` (sequence number), oldest first.
    pub(crate) fn events_since(&self, since: i64) -> rusqlite::Result<Vec<EventRow>> {
        let mut stmt = self.conn.prepare("SELECT seq, ts, kind, unit, worker, COALESCE(detail, '') FROM events WHERE seq > ?1 ORDER BY seq")?;
        let rows = stmt.query_map([since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?;
        rows.collect()
    }

    /// Units committed since `since` (for throughput and ETA).
    pub(crate) fn committed_since(&self, since: Millis) -> rusqlite::Result<i64> {
        self.conn.query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'committed' AND ts >= ?1",
            [since],
            |r| r.get(0),
        )
    }

    /// Worker-hours on CPU-only workers and on GPU workers: each worker from registration to
    /// its last contact.
    pub(crate) fn worker_hours(&self) -> rusqlite::Result<(f64, f64)> {
        self.conn.query_row(
            "SELECT COALESCE(SUM(CASE WHEN device = 'cuda' THEN 0 ELSE last_seen - started END), 0),
                    COALESCE(SUM(CASE WHEN device = 'cuda' THEN last_seen - started ELSE 0 END), 0)
             FROM workers",
            [],
            |r| Ok((r.get::<_, i64>(0)? as f64 / 3.6e6, r.get::<_, i64>(1)? as f64 / 3.6e6)),
        )
    }

    /// Records a free-standing event (launcher, signals, run end).
    pub(crate) fn log_event(
        &self,
        now: Millis,
        kind: &str,
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

/// The lease query: the first pending unit of a stage whose backoff has passed, in plan order.
/// It walks the `units_lease` index (state, stage, seq, not_before) and reads one table row.
pub(crate) const LEASE_QUERY: &str = "SELECT id FROM units WHERE state = 'pending' AND stage = ?1
     AND not_before <= ?2 ORDER BY seq LIMIT 1";

/// One verified completion to commit.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub(crate) unit: String,
    pub(crate) attempt: u32,
    pub(crate) output: String,
    pub(crate) checksum: String,
}

fn complete_one(
    tx: &Transaction<'_>,
    c: &Completion,
    now: Millis,
    moves: &mut Moves,
) -> rusqlite::Result<CompletionOutcome> {
    let (unit, attempt, output, checksum) = (&c.unit, c.attempt, &c.output, &c.checksum);
    let Some((state, _, kind)) = load_opt(tx, unit)? else { return Ok(CompletionOutcome::Stale) };
    let committed_output = match &state {
        UnitState::Committed { output, .. } => output.clone(),
        UnitState::Pending { .. } | UnitState::Leased { .. } | UnitState::Quarantined { .. } => {
            String::new()
        }
    };
    Ok(match state.complete(attempt, output, checksum) {
        Effect::Changed(next) => {
            store(tx, unit, &next)?;
            end_attempt(tx, unit, attempt, now, "committed", None)?;
            event(tx, now, "committed", Some(unit), None, &format!("attempt {attempt} {output}"))?;
            moves.push(&kind, &state, &next);
            CompletionOutcome::Committed
        }
        Effect::Duplicate => {
            end_attempt(tx, unit, attempt, now, "duplicate", None)?;
            event(
                tx,
                now,
                "duplicate",
                Some(unit),
                None,
                &format!("attempt {attempt} not used, {committed_output} was committed first"),
            )?;
            CompletionOutcome::Duplicate { committed_output }
        }
        Effect::Repeat => {
            event(
                tx,
                now,
                "complete_repeated",
                Some(unit),
                None,
                &format!("attempt {attempt} {output} again (a retried completion)"),
            )?;
            CompletionOutcome::Repeat
        }
        Effect::Stale => CompletionOutcome::Stale,
    })
}

fn state_name(s: &UnitState) -> &'static str {
    match s {
        UnitState::Pending { .. } => "pending",
        UnitState::Leased { .. } => "leased",
        UnitState::Committed { .. } => "committed",
        UnitState::Quarantined { .. } => "quarantined",
    }
}

fn event(
    tx: &Transaction<'_>,
    now: Millis,
    kind: &str,
    unit: Option<&str>,
    worker: Option<&str>,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO events(ts, kind, unit, worker, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![now, kind, unit, worker, detail])?;
    Ok(())
}

fn end_attempt(
    tx: &Transaction<'_>,
    unit: &str,
    attempt: u32,
    now: Millis,
    outcome: &str,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE attempts SET ended = ?3, outcome = ?4, error = ?5 WHERE unit = ?1 AND attempt = ?2",
    )?
    .execute(params![unit, attempt, now, outcome, error])?;
    Ok(())
}

/// A unit's state, descriptor (JSON) and kind.
type Loaded = (UnitState, String, String);

fn load(tx: &Transaction<'_>, unit: &str) -> rusqlite::Result<Loaded> {
    load_opt(tx, unit)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

fn load_opt(tx: &Transaction<'_>, unit: &str) -> rusqlite::Result<Option<Loaded>> {
    tx.prepare_cached(
        "SELECT state, attempts, failures, not_before, worker, deadline, committed_attempt, output, checksum, error, descriptor, kind FROM units WHERE id = ?1",
    )?
    .query_row(
        [unit],
        |r| {
            let attempts: u32 = r.get(1)?;
            let failures: u32 = r.get(2)?;
            let state = match r.get::<_, String>(0)?.as_str() {
                "pending" => UnitState::Pending { attempts, failures, not_before: r.get(3)? },
                "leased" => UnitState::Leased { attempts, failures, worker: r.get(4)?, deadline: r.get(5)? },
                "committed" => UnitState::Committed { attempts, failures, attempt: r.get(6)?, output: r.get(7)?, checksum: r.get(8)? },
                _ => UnitState::Quarantined { attempts, failures, error: r.get(9)? },
            };
            Ok((state, r.get(10)?, r.get(11)?))
        },
    )
    .optional()
}

fn store(tx: &Transaction<'_>, unit: &str, s: &UnitState) -> rusqlite::Result<()> {
    let (name, attempts, failures) = match s {
        UnitState::Pending { attempts, failures, .. } => ("pending", attempts, failures),
        UnitState::Leased { attempts, failures, .. } => ("leased", attempts, failures),
        UnitState::Committed { attempts, failures, .. } => ("committed", attempts, failures),
        UnitState::Quarantined { attempts, failures, .. } => ("quarantined", attempts, failures),
    };
    let (not_before, worker, deadline) = match s {
        UnitState::Pending { not_before, .. } => (*not_before, None, None),
        UnitState::Leased { worker, deadline, .. } => (0, Some(worker.as_str()), Some(*deadline)),
        UnitState::Committed { .. } | UnitState::Quarantined { .. } => (0, None, None),
    };
    let (c_attempt, output, checksum) = match s {
        UnitState::Committed { attempt, output, checksum, .. } => {
            (Some(*attempt), Some(output.as_str()), Some(checksum.as_str()))
        }
        UnitState::Pending { .. } | UnitState::Leased { .. } | UnitState::Quarantined { .. } => {
            (None, None, None)
        }
    };
    let error = match s {
        UnitState::Quarantined { error, .. } => Some(error.as_str()),
        UnitState::Pending { .. } | UnitState::Leased { .. } | UnitState::Committed { .. } => None,
    };
    tx.prepare_cached(
        "UPDATE units SET state = ?2, attempts = ?3, failures = ?4, not_before = ?5, worker = ?6, deadline = ?7,
         committed_attempt = ?8, output = ?9, checksum = ?10, error = ?11 WHERE id = ?1",
    )?
    .execute(params![unit, name, attempts, failures, not_before, worker, deadline, c_attempt, output, checksum, error],
    )?;
    Ok(())
}

#[cfg(test)]
impl StateDb {
    /// Marks every unit of `kind` committed with a made-up output (tests that need many
    /// committed units without leasing each).
    pub(crate) fn commit_all(&mut self, kind: &str) {
        self.conn
            .execute(
                "UPDATE units SET state = 'committed', attempts = 1, committed_attempt = 1,
                 output = 'features/' || id || '.a1.parquet', checksum = 'c' WHERE kind = ?1",
                [kind],
            )
            .unwrap();
        self.tally = self.recount().unwrap();
    }
}

#[cfg(test)]
mod tests {
    //! The lease query's plan, and the in-memory counts against a full recount.

    use common::spec::Pooling;
    use common::unit::{CaptureUnit, ProbeUnit, Representation};

    use super::*;

    const POLICY: RetryPolicy = RetryPolicy { max_failures: 2, backoff_ms: 7, ttl_ms: 50 };

    /// A database with `captures` capture units and `probes` probe units.
    fn db(captures: usize, probes: usize) -> (tempfile::TempDir, StateDb) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(&dir.path().join("state.sqlite")).unwrap();
        let rep = Representation::text("text.1", Pooling::Mean);
        let mut units = Vec::new();
        for i in 0..captures {
            let u = CaptureUnit { shard: i, start: i, end: i + 1, representations: vec![] };
            units.push((UnitId(format!("capture-{i}")), UnitSpec::Capture(u)));
        }
        for i in 0..probes {
            let u = ProbeUnit {
                representation: rep.clone(),
                folds: vec![i],
                settings: Default::default(),
                inputs: vec![],
            };
            units.push((UnitId(format!("probe-{i}")), UnitSpec::Probe(u)));
        }
        db.insert_units(&units, 0).unwrap();
        (dir, db)
    }

    /// Would catch a lease query (or a schema change) that scans the units table or sorts it on
    /// every lease: the plan must search the `units_lease` index, in order.
    #[test]
    fn the_lease_query_searches_the_index_and_never_scans_units() {
        let (_dir, db) = db(2_000, 2_000);
        let mut stmt = db.conn.prepare(&format!("EXPLAIN QUERY PLAN {LEASE_QUERY}")).unwrap();
        let plan: Vec<String> = stmt
            .query_map(params![0, 0], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let text = plan.join(" | ");
        assert!(plan.iter().all(|d| !d.starts_with("SCAN")), "a scan: {text}");
        assert!(text.contains("USING INDEX units_lease"), "not the lease index: {text}");
        assert!(!text.contains("TEMP B-TREE"), "sorts on every lease: {text}");
    }

    /// A small deterministic generator, so a failing sequence can be replayed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// The old full-scan answer, kept as the oracle for `has_open_work`.
    fn open_by_scan(db: &StateDb) -> bool {
        db.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM units WHERE state = 'leased')
                     OR EXISTS(SELECT 1 FROM units WHERE state = 'pending'
                               AND stage = (SELECT MIN(stage) FROM units WHERE state != 'committed'))",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// Would catch a transition that changes a unit's state without its count (or counts one
    /// that rolled back, or twice): after every step of a random sequence of leases,
    /// heartbeats, completions (new, repeated, duplicate, stale), failures, releases, expiries
    /// and requeues, the kept counts equal a full recount, and "open work" equals the old scan.
    #[test]
    fn kept_counts_equal_a_full_recount_after_random_transitions() {
        for seed in 1..=4u64 {
            let (_dir, mut db) = db(12, 8);
            let mut rng = Rng(seed * 0x9E37_79B9_7F4A_7C15);
            let mut held: Vec<(String, u32, String)> = Vec::new();
            let mut now = 1_000;
            for step in 0..1_500 {
                now += rng.below(20) as i64;
                let worker = format!("w{}", rng.below(3));
                match rng.below(8) {
                    0 | 1 => {
                        if let Some(g) = db.lease_next(&worker, now, POLICY).unwrap() {
                            held.push((g.unit, g.attempt, worker));
                        }
                    }
                    2 if !held.is_empty() => {
                        let (unit, attempt, w) = held[rng.below(held.len())].clone();
                        db.heartbeat(&w, &[(unit, attempt)], now, POLICY).unwrap();
                    }
                    3 | 4 if !held.is_empty() => {
                        // Sometimes the same completion again, sometimes another attempt's.
                        let (unit, attempt, _) = held[rng.below(held.len())].clone();
                        let out = format!("features/{unit}.a{attempt}.parquet");
                        let many: Vec<Completion> = (0..1 + rng.below(2))
                            .map(|_| Completion {
                                unit: unit.clone(),
                                attempt,
                                output: out.clone(),
                                checksum: "c".into(),
                            })
                            .collect();
                        db.complete_many(&many, now).unwrap();
                    }
                    5 if !held.is_empty() => {
                        let (unit, attempt, w) = held.swap_remove(rng.below(held.len()));
                        let retryable = rng.below(4) > 0;
                        db.fail(&w, &unit, attempt, "boom", retryable, now, POLICY).unwrap();
                    }
                    6 if !held.is_empty() => {
                        let (unit, attempt, w) = held.swap_remove(rng.below(held.len()));
                        db.release(&w, &unit, attempt, "bye", now).unwrap();
                    }
                    _ => {
                        db.expire(now, POLICY).unwrap();
                        if rng.below(10) == 0 {
                            db.requeue_quarantined(now).unwrap();
                        }
                    }
                }
                assert_eq!(db.tally(), &db.recount().unwrap(), "seed {seed} step {step}");
                assert_eq!(
                    db.has_open_work().unwrap(),
                    open_by_scan(&db),
                    "seed {seed} step {step}"
                );
            }
            let total: u64 = db.counts().unwrap().values().map(Counts::total).sum();
            assert_eq!(total, 20);
        }
    }

    /// Would catch an idle lease that still writes: with nothing ready, no transaction is
    /// begun (the change counter of the connection does not move).
    #[test]
    fn nothing_ready_is_answered_without_writing() {
        let (_dir, mut db) = db(1, 3);
        let g = db.lease_next("w1", 10, POLICY).unwrap().expect("the capture unit");
        let before = db.conn.total_changes();
        for _ in 0..100 {
            assert!(db.lease_next("w2", 20, POLICY).unwrap().is_none(), "probe units wait");
        }
        assert_eq!(db.conn.total_changes(), before);
        assert!(db.has_open_work().unwrap());
        let c = Completion { unit: g.unit, attempt: 1, output: "o".into(), checksum: "c".into() };
        let generation = db.inputs_generation();
        db.complete_many(&[c], 30).unwrap();
        assert_ne!(db.inputs_generation(), generation, "a committed capture changes the inputs");
        assert!(db.lease_next("w2", 40, POLICY).unwrap().is_some(), "stage 1 is ready now");
    }
}
