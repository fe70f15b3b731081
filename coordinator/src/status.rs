//! `diffprobe status`: progress of a run from its state database (works whether or not the
//! coordinator is up: SQLite in WAL mode allows a reader beside the writer).

use std::collections::BTreeMap;

use common::layout::RunLayout;
use serde::Serialize;

use common::ids::UnitKind;

use crate::db::{Counts, StateDb, WorkerState};

/// A run's status.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    pub(crate) run: String,
    pub(crate) coordinator: Option<String>,
    pub(crate) units: BTreeMap<UnitKind, Counts>,
    pub(crate) workers: Vec<WorkerStatus>,
    pub(crate) quarantined: Vec<(String, String)>,
    pub(crate) complete: bool,
    /// Units committed per second over the last minute.
    pub(crate) throughput_per_s: f64,
    /// Seconds until every unit is committed at that rate (None when nothing moves).
    pub(crate) eta_s: Option<f64>,
    /// Worker-hours on CPU-only and on GPU workers.
    pub(crate) cpu_worker_hours: f64,
    pub(crate) gpu_hours: f64,
    pub(crate) launcher: Option<String>,
    pub(crate) target_workers: Option<String>,
    /// The launcher's last error while it lasts (a Slurm command failing), and for how long.
    pub(crate) launcher_error: Option<String>,
    pub(crate) launcher_error_for_s: Option<f64>,
    /// Ended Slurm tasks: id, state (TIMEOUT, CANCELLED, NODE_FAIL, …), reason.
    pub(crate) slurm_ended: Vec<(String, String, String)>,
}

/// One worker as the coordinator last saw it.
#[derive(Debug, Serialize)]
pub(crate) struct WorkerStatus {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) state: WorkerState,
    pub(crate) last_seen_s_ago: f64,
}

pub(crate) fn read(layout: &RunLayout) -> anyhow::Result<Status> {
    let path = layout.state_db();
    anyhow::ensure!(
        path.exists(),
        "{} is not a run directory (no state.sqlite)",
        layout.root().display()
    );
    let db = StateDb::open(&path)?;
    let now = crate::service::now_ms();
    let units = db.counts()?;
    let workers = db
        .workers()?
        .into_iter()
        .map(|w| WorkerStatus {
            id: w.id,
            host: w.host,
            pid: w.pid,
            state: w.state,
            last_seen_s_ago: (now - w.last_seen) as f64 / 1000.0,
        })
        .collect();
    let coordinator = std::fs::read_to_string(layout.coordinator_file()).ok();
    let complete = units.values().all(|c| c.committed == c.total());
    let throughput_per_s = db.committed_since(now - 60_000)? as f64 / 60.0;
    let left: u64 = units.values().map(|c| c.pending + c.leased).sum();
    let eta_s = (throughput_per_s > 0.0 && left > 0).then(|| left as f64 / throughput_per_s);
    Ok(Status {
        run: layout.root().display().to_string(),
        coordinator,
        units,
        workers,
        quarantined: db.quarantined()?,
        complete,
        throughput_per_s,
        eta_s,
        cpu_worker_hours: db.worker_hours()?.0,
        gpu_hours: db.worker_hours()?.1,
        launcher: db.meta("launcher")?,
        target_workers: db.meta("target_workers")?,
        launcher_error: db.meta("launcher_error")?.filter(|e| !e.is_empty()),
        launcher_error_for_s: db
            .meta("launcher_error_since")?
            .and_then(|since| since.parse::<i64>().ok())
            .map(|since| (now - since) as f64 / 1000.0),
        slurm_ended: db.slurm_tasks_ended()?,
    })
}

pub(crate) fn print(s: &Status) {
    println!("run {}{}", s.run, if s.complete { " — complete" } else { "" });
    match &s.coordinator {
        Some(c) => println!("coordinator: {}", c.trim()),
        None => println!("coordinator: not running (resume with `diffprobe resume {}`)", s.run),
    }
    for (kind, c) in &s.units {
        println!(
            "{kind:>8}: {}/{} committed, {} running, {} pending, {} quarantined",
            c.committed,
            c.total(),
            c.leased,
            c.pending,
            c.quarantined
        );
    }
    match s.eta_s {
        Some(eta) => println!(
            "throughput {:.2} units/s over the last minute, ETA {:.0} s",
            s.throughput_per_s, eta
        ),
        None if !s.complete => {
            println!("throughput {:.2} units/s over the last minute", s.throughput_per_s)
        }
        None => {}
    }
    println!(
        "worker time: {:.3} GPU-hours, {:.3} CPU-worker-hours",
        s.gpu_hours, s.cpu_worker_hours
    );
    for w in &s.workers {
        println!(
            "  worker {:<4} {:<12} pid {:<7} {:<7} last heartbeat {:.1} s ago",
            w.id, w.host, w.pid, w.state, w.last_seen_s_ago
        );
    }
    if let Some(l) = &s.launcher {
        println!(
            "launcher: {l}, target {} workers",
            s.target_workers.as_deref().unwrap_or("default")
        );
    }
    if let Some(e) = &s.launcher_error {
        let age = s.launcher_error_for_s.map(|a| format!(" for {a:.0} s")).unwrap_or_default();
        println!("launcher error{age}: {e}");
    }
    for (task, state, reason) in &s.slurm_ended {
        println!("  slurm task {task}: {state} {reason}");
    }
    for (unit, err) in &s.quarantined {
        println!("  quarantined {unit}: {err}");
    }
}
