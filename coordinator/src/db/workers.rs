//! Workers and Slurm tasks: registration, last contact, how each left, and what the Slurm
//! launcher submitted.

use rusqlite::{params, OptionalExtension};

use super::types::{EventKind, Gone, WorkerState};
use super::{event, StateDb};
use crate::lease::Millis;

impl StateDb {
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
        let detail = format!("array job {job}: {} tasks", tasks.len());
        event(&tx, now, EventKind::SlurmSubmitted, None, None, &detail)?;
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

    /// Records how a Slurm task ended (`state` is Slurm's: TIMEOUT, NODE_FAIL, …).
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
        let detail = format!("{state} {reason}");
        event(&tx, now, EventKind::SlurmEnded, None, Some(task), detail.trim())?;
        tx.commit()
    }

    /// Ended Slurm tasks with state and reason, newest first (for `status`).
    pub(crate) fn slurm_tasks_ended(&self) -> rusqlite::Result<Vec<(String, String, String)>> {
        let mut stmt = self.conn.prepare("SELECT id, COALESCE(state, ''), COALESCE(reason, '') FROM slurm_tasks WHERE ended IS NOT NULL ORDER BY ended DESC")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
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
        tx.execute("INSERT INTO workers(id, host, pid, tag, started, last_seen, state, device) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)", params![id, host, pid, tag, now, WorkerState::Alive, device])?;
        let detail = format!("{host} pid {pid} {tag}");
        event(&tx, now, EventKind::WorkerJoined, None, Some(&id), &detail)?;
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
                 state = CASE state WHEN ?3 THEN ?4 ELSE state END WHERE id = ?1",
            )?;
            for (worker, at) in seen {
                stmt.execute(params![worker, at, WorkerState::Lost, WorkerState::Alive])?;
            }
        }
        tx.commit()
    }

    /// Alive workers not seen since `before`.
    pub(crate) fn silent_workers(&self, before: Millis) -> rusqlite::Result<Vec<(String, Millis)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, last_seen FROM workers WHERE state = ?1 AND last_seen < ?2",
        )?;
        let rows =
            stmt.query_map(params![WorkerState::Alive, before], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Marks a worker gone (lost or finished) with an event.
    pub(crate) fn worker_gone(
        &mut self,
        worker: &str,
        how: Gone,
        detail: &str,
        now: Millis,
    ) -> rusqlite::Result<()> {
        let tx = self.begin(true)?;
        tx.execute("UPDATE workers SET state = ?2 WHERE id = ?1", params![worker, how.state()])?;
        event(&tx, now, how.event(), None, Some(worker), detail)?;
        tx.commit()
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
}
