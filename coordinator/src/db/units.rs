//! Unit transitions: each method is one transaction that loads a unit's state, applies one
//! `lease.rs` transition, and writes the new state, the attempt row and an event together.

use common::ids::UnitId;
use common::unit::UnitSpec;
use rusqlite::{params, OptionalExtension, Transaction};

use super::state::{load, load_opt, store};
use super::tally::Moves;
use super::types::{self, AttemptOutcome, EventKind, UnitStatus, WorkerState};
use super::{event, StateDb};
use crate::lease::{Effect, Millis, RetryPolicy, UnitState};

/// A lease handed to a worker.
#[derive(Debug, Clone)]
pub(crate) struct Granted {
    pub(crate) unit: UnitId,
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

/// One verified completion to commit.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub(crate) unit: UnitId,
    pub(crate) attempt: u32,
    pub(crate) output: String,
    pub(crate) checksum: String,
}

/// The lease query: the first pending unit of a stage whose backoff has passed, in plan order.
/// It walks the `units_lease` index (state, stage, seq, not_before) and reads one table row.
pub(crate) const LEASE_QUERY: &str = "SELECT id FROM units WHERE state = 'pending' AND stage = ?1
     AND not_before <= ?2 ORDER BY seq LIMIT 1";

impl StateDb {
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, 0)",
            )?;
            for (i, (id, spec)) in units.iter().enumerate() {
                let json = serde_json::to_string(spec).expect("unit specs serialise");
                let kind: &str = spec.kind().into();
                added += stmt.execute(params![
                    id.as_str(),
                    base + i as i64,
                    kind,
                    spec.stage(),
                    json,
                    UnitStatus::Pending
                ])?;
            }
        }
        event(&tx, now, EventKind::Planned, None, None, &format!("{added} new units"))?;
        tx.commit()?;
        self.conn.pragma_update(None, "cache_size", -2_000)?;
        self.tally = self.recount()?;
        Ok(added)
    }

    /// Removes the stage-1 units, with their attempts, that `planned` no longer holds: what an
    /// existing run given a changed `[analysis]` drops (`extend.rs`). Their output files stay in
    /// `units/`; the report reads committed units only, so they leave it. A unit planned again
    /// later is inserted afresh and redone. Returns how many were removed.
    pub(crate) fn retire_unplanned(
        &mut self,
        planned: &[(UnitId, UnitSpec)],
        now: Millis,
    ) -> rusqlite::Result<usize> {
        let tx = self.begin(true)?;
        tx.execute_batch("CREATE TEMP TABLE planned(id TEXT PRIMARY KEY)")?;
        {
            let mut stmt = tx.prepare("INSERT OR IGNORE INTO temp.planned(id) VALUES (?1)")?;
            for (id, _) in planned {
                stmt.execute([id.as_str()])?;
            }
        }
        let unplanned = "SELECT id FROM units WHERE stage > 0 AND id NOT IN temp.planned";
        tx.execute(&format!("DELETE FROM attempts WHERE unit IN ({unplanned})"), [])?;
        let removed = tx.execute(&format!("DELETE FROM units WHERE id IN ({unplanned})"), [])?;
        tx.execute_batch("DROP TABLE temp.planned")?;
        if removed > 0 {
            let detail = format!("{removed} analysis units of the earlier spec retired");
            event(&tx, now, EventKind::Planned, None, None, &detail)?;
        }
        tx.commit()?;
        self.tally = self.recount()?;
        Ok(removed)
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
        let found: Option<UnitId> = self
            .conn
            .prepare_cached(LEASE_QUERY)?
            .query_row(params![stage, now], |r| types::unit_id(r, 0, "units"))
            .optional()?;
        let Some(unit) = found else { return Ok(None) };
        let tx = self.begin(false)?;
        let loaded = load(&tx, &unit)?;
        let Effect::Changed(next) = loaded.state.lease(worker, now, p) else { return Ok(None) };
        let attempt = next.attempts();
        store(&tx, &unit, &next)?;
        tx.prepare_cached("INSERT OR REPLACE INTO attempts(unit, attempt, worker, started) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![unit.as_str(), attempt, worker, now])?;
        let detail = format!("attempt {attempt}");
        event(&tx, now, EventKind::Leased, Some(&unit), Some(worker), &detail)?;
        tx.commit()?;
        let mut moves = Moves::default();
        moves.push(loaded.kind, loaded.state.status(), next.status());
        self.apply(moves);
        let spec = serde_json::from_str(&loaded.descriptor).expect("stored descriptors parse");
        Ok(Some(Granted { unit, attempt, spec }))
    }

    /// Renews leases; returns those the worker no longer holds.
    pub(crate) fn heartbeat(
        &mut self,
        worker: &str,
        leases: &[(UnitId, u32)],
        now: Millis,
        p: RetryPolicy,
    ) -> rusqlite::Result<Vec<(UnitId, u32)>> {
        let tx = self.begin(false)?;
        tx.prepare_cached("UPDATE workers SET last_seen = ?2, state = ?3 WHERE id = ?1")?
            .execute(params![worker, now, WorkerState::Alive])?;
        let mut lost = Vec::new();
        for (unit, attempt) in leases {
            let Some(loaded) = load_opt(&tx, unit)? else {
                lost.push((unit.clone(), *attempt));
                continue;
            };
            match loaded.state.heartbeat(worker, *attempt, now, p) {
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
        unit: &UnitId,
        attempt: u32,
        error: &str,
        retryable: bool,
        now: Millis,
        p: RetryPolicy,
    ) -> rusqlite::Result<()> {
        let tx = self.begin(true)?;
        let mut moves = Moves::default();
        if let Some(loaded) = load_opt(&tx, unit)? {
            if let Effect::Changed(next) =
                loaded.state.fail(worker, attempt, error, retryable, now, p)
            {
                let kind = retried_or(&next, EventKind::Failed);
                store(&tx, unit, &next)?;
                end_attempt(&tx, unit, attempt, now, AttemptOutcome::Failed, Some(error))?;
                event(&tx, now, kind, Some(unit), None, error)?;
                moves.push(loaded.kind, loaded.state.status(), next.status());
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
        unit: &UnitId,
        attempt: u32,
        reason: &str,
        now: Millis,
    ) -> rusqlite::Result<()> {
        let tx = self.begin(true)?;
        let mut moves = Moves::default();
        if let Some(loaded) = load_opt(&tx, unit)? {
            if let Effect::Changed(next) = loaded.state.release(worker, attempt, now) {
                store(&tx, unit, &next)?;
                end_attempt(&tx, unit, attempt, now, AttemptOutcome::Released, Some(reason))?;
                event(&tx, now, EventKind::Released, Some(unit), None, reason)?;
                moves.push(loaded.kind, loaded.state.status(), next.status());
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
        let due: Vec<UnitId> = {
            let mut stmt =
                tx.prepare_cached("SELECT id FROM units WHERE state = ?1 AND deadline < ?2")?;
            let rows = stmt
                .query_map(params![UnitStatus::Leased, now], |r| types::unit_id(r, 0, "units"))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut moves = Moves::default();
        for unit in &due {
            let loaded = load(&tx, unit)?;
            let attempt = loaded.state.attempts();
            if let Effect::Changed(next) = loaded.state.expire(now, p) {
                let kind = retried_or(&next, EventKind::Expired);
                store(&tx, unit, &next)?;
                let why = Some("no heartbeat before the lease deadline");
                end_attempt(&tx, unit, attempt, now, AttemptOutcome::Expired, why)?;
                let detail = format!("attempt {attempt}: lease expired");
                event(&tx, now, kind, Some(unit), None, &detail)?;
                moves.push(loaded.kind, loaded.state.status(), next.status());
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
        let quarantined: Vec<UnitId> = {
            let mut stmt = tx.prepare("SELECT id FROM units WHERE state = ?1")?;
            let rows =
                stmt.query_map([UnitStatus::Quarantined], |r| types::unit_id(r, 0, "units"))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut requeued = 0;
        let mut moves = Moves::default();
        for unit in &quarantined {
            let loaded = load(&tx, unit)?;
            if let Effect::Changed(next) = loaded.state.requeue(now) {
                store(&tx, unit, &next)?;
                let detail = "retry asked by the operator";
                event(&tx, now, EventKind::Requeued, Some(unit), None, detail)?;
                requeued += 1;
                moves.push(loaded.kind, loaded.state.status(), next.status());
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
        unit: &UnitId,
        checksum: &str,
        detail: &str,
        now: Millis,
    ) -> rusqlite::Result<bool> {
        let tx = self.begin(true)?;
        let Some(loaded) = load_opt(&tx, unit)? else { return Ok(false) };
        let Effect::Changed(next) = loaded.state.invalidate(checksum, now) else {
            return Ok(false);
        };
        store(&tx, unit, &next)?;
        event(&tx, now, EventKind::Corrupt, Some(unit), None, detail)?;
        tx.commit()?;
        // A capture unit leaving `committed` bumps the inputs generation: the manifest that
        // stage-1 leases name is rewritten without its file.
        let mut moves = Moves::default();
        moves.push(loaded.kind, loaded.state.status(), next.status());
        self.apply(moves);
        Ok(true)
    }
}

/// The event of a failed or expired attempt: `quarantined` when it was the last one allowed.
fn retried_or(next: &UnitState, retried: EventKind) -> EventKind {
    match next.status() {
        UnitStatus::Quarantined => EventKind::Quarantined,
        UnitStatus::Pending | UnitStatus::Leased | UnitStatus::Committed => retried,
    }
}

fn complete_one(
    tx: &Transaction<'_>,
    c: &Completion,
    now: Millis,
    moves: &mut Moves,
) -> rusqlite::Result<CompletionOutcome> {
    let (unit, attempt, output, checksum) = (&c.unit, c.attempt, &c.output, &c.checksum);
    let Some(loaded) = load_opt(tx, unit)? else { return Ok(CompletionOutcome::Stale) };
    let state = &loaded.state;
    let committed_output = match state {
        UnitState::Committed { output, .. } => output.clone(),
        UnitState::Pending { .. } | UnitState::Leased { .. } | UnitState::Quarantined { .. } => {
            String::new()
        }
    };
    Ok(match state.complete(attempt, output, checksum) {
        Effect::Changed(next) => {
            store(tx, unit, &next)?;
            end_attempt(tx, unit, attempt, now, AttemptOutcome::Committed, None)?;
            let detail = format!("attempt {attempt} {output}");
            event(tx, now, EventKind::Committed, Some(unit), None, &detail)?;
            moves.push(loaded.kind, state.status(), next.status());
            CompletionOutcome::Committed
        }
        Effect::Duplicate => {
            end_attempt(tx, unit, attempt, now, AttemptOutcome::Duplicate, None)?;
            let detail =
                format!("attempt {attempt} not used, {committed_output} was committed first");
            event(tx, now, EventKind::Duplicate, Some(unit), None, &detail)?;
            CompletionOutcome::Duplicate { committed_output }
        }
        Effect::Repeat => {
            let detail = format!("attempt {attempt} {output} again (a retried completion)");
            event(tx, now, EventKind::CompleteRepeated, Some(unit), None, &detail)?;
            CompletionOutcome::Repeat
        }
        Effect::Stale => CompletionOutcome::Stale,
    })
}

fn end_attempt(
    tx: &Transaction<'_>,
    unit: &UnitId,
    attempt: u32,
    now: Millis,
    outcome: AttemptOutcome,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE attempts SET ended = ?3, outcome = ?4, error = ?5 WHERE unit = ?1 AND attempt = ?2",
    )?
    .execute(params![unit.as_str(), attempt, now, outcome, error])?;
    Ok(())
}

#[cfg(test)]
impl StateDb {
    /// Marks every unit of `kind` committed with a made-up output (tests that need many
    /// committed units without leasing each).
    pub(crate) fn commit_all(&mut self, kind: common::ids::UnitKind) {
        let kind: &str = kind.as_ref();
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
