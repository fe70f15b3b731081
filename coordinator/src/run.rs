//! `diffprobe run` and `diffprobe resume`: one dispatcher loop over the run's life.
//!
//! Start: write the resolved spec and dataset, insert the plan's units (existing ids are kept, so
//! a re-run skips committed work), bind the gRPC service (loopback by default; a resumed run
//! rebinds its previous address so surviving workers reconnect), start the launcher.
//! Loop (every tick): expire leases, reap and restart workers, print events, update progress,
//! and stop when every unit is committed or quarantined, or on a signal.
//! Stop: check every committed file against its recorded checksum (a changed one is redone
//! first, `verify.rs`; the same check runs when the coordinator starts), tell workers to drain,
//! wait a grace period, kill what is left, shut the server down, then merge the probe outputs
//! into the report.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::layout::RunLayout;
use common::spec::JobSpec;
use common::stimuli::Dataset;
use tokio_util::sync::CancellationToken;

use crate::db::{Counts, EventRow, StateDb};
use crate::launcher::{Launcher, LauncherKind};
use crate::lease::RetryPolicy;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::service::{self, now_ms, Shared};

/// Options of `run` and `resume`.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    /// Workers to keep (local processes or Slurm tasks); `None` keeps a resumed run's target.
    pub(crate) workers: Option<usize>,
    /// Which launcher starts workers; `None` keeps a resumed run's launcher (default local).
    pub(crate) launcher: Option<LauncherKind>,
    /// Address to bind; default 127.0.0.1 with the previous port or any free one.
    pub(crate) bind: Option<SocketAddr>,
    /// Seconds a draining worker gets to finish or release its unit before SIGKILL.
    pub(crate) grace: Duration,
    /// Put quarantined units back to pending before starting (`--retry-quarantined`).
    pub(crate) retry_quarantined: bool,
}

/// Why the run loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Every unit is committed.
    Complete,
    /// Nothing more can run: some units are quarantined.
    Quarantined,
    /// A signal (Ctrl-C, SIGTERM) asked to stop; `resume` continues.
    Interrupted,
}

impl StopReason {
    /// The name written to `ended.json`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            StopReason::Complete => "complete",
            StopReason::Quarantined => "quarantined",
            StopReason::Interrupted => "interrupted",
        }
    }
}

/// The default worker count: what fits on this host.
pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8)
}

/// Prepares a run directory from a spec (or checks it matches an existing one).
pub(crate) fn prepare(plan: &Plan) -> anyhow::Result<RunLayout> {
    let layout = RunLayout::new(plan.spec.run_dir());
    let resolved = plan.spec.to_toml();
    if let Ok(existing) = std::fs::read_to_string(layout.spec()) {
        if existing != resolved {
            anyhow::bail!(
                "{} already holds a run with a different spec; use another [job] name, or `diffprobe resume {}` to finish it as it was",
                layout.root().display(),
                layout.root().display()
            );
        }
    }
    layout.create_dirs().with_context(|| format!("cannot create {}", layout.root().display()))?;
    common::fs::write_bytes_atomic(&layout.spec(), resolved.as_bytes())?;
    plan.dataset.save(&layout.root().join("dataset.json"))?;
    if let Some(inputs) = &plan.alignment {
        inputs.save(&layout.alignment_inputs())?;
    }
    let mut db = StateDb::open(&layout.state_db())
        .with_context(|| layout.state_db().display().to_string())?;
    check_run_format(&mut db, &layout)?;
    db.insert_units(&plan.units, now_ms())?;
    Ok(layout)
}

/// The run directory's format: unit ids and output files as this binary makes them. 2: probe
/// rows carry `effective_df` instead of `spread`; stage-1 unit ids hash one fingerprint of the
/// capture ids instead of the whole list.
const RUN_FORMAT: &str = "2";

/// Refuses a run directory made by a diffprobe whose unit ids or output files differ from this
/// one's (its committed outputs cannot be merged, and re-planning it would add units beside the
/// old ones); records the format in a new one.
fn check_run_format(db: &mut StateDb, layout: &RunLayout) -> anyhow::Result<()> {
    let recorded = db.meta("run_format")?;
    let has_units = db.counts()?.values().any(|c| c.total() > 0);
    match recorded.as_deref() {
        Some(RUN_FORMAT) => Ok(()),
        None if !has_units => Ok(db.set_meta("run_format", RUN_FORMAT, now_ms())?),
        found => anyhow::bail!(
            "{} was made by another diffprobe version (run format {}, this one writes {RUN_FORMAT}); \
             finish it with that version, or start a new run under another [job] name",
            layout.root().display(),
            found.unwrap_or("1")
        ),
    }
}

/// Runs (or resumes) the sweep in `layout` until it stops; merges the report when complete.
pub(crate) async fn drive(layout: &RunLayout, opts: &RunOptions) -> anyhow::Result<StopReason> {
    let _lock = lock_run(layout)?;
    let spec = JobSpec::from_resolved_toml(&layout.spec())?;
    let data = Dataset::open(&layout.root().join("dataset.json"))?;
    let token = read_or_create_token(&layout.token())?;
    let policy = RetryPolicy {
        max_failures: spec.sweep.max_attempts,
        backoff_ms: (spec.sweep.retry_backoff_s * 1000.0) as i64,
        ttl_ms: (spec.sweep.lease_ttl_s * 1000.0) as i64,
    };
    let mut db = StateDb::open(&layout.state_db())
        .with_context(|| layout.state_db().display().to_string())?;
    check_run_format(&mut db, layout)?;
    // This coordinator reopens the run: workers must not read an old "ended" as this run's.
    match std::fs::remove_file(layout.ended()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| layout.ended().display().to_string()),
    }
    if opts.retry_quarantined {
        let n = db.requeue_quarantined(now_ms())?;
        eprintln!("retry: {n} quarantined units put back to pending");
    }
    // Committed files are checked before anything builds on them (`verify.rs`).
    let changed = crate::verify::committed(layout.root(), &mut db, "the coordinator at start")?;
    say_redone(&changed);
    let shared = Arc::new(Shared::new(
        db,
        policy,
        std::fs::canonicalize(layout.root())?,
        (spec.sweep.heartbeat_s * 1000.0) as u64,
    )?);
    let incoming = bind(layout, opts.bind)?;
    let addr = incoming.local_addr()?;
    let address = format!("http://{addr}");
    let info = serde_json::json!({ "address": address, "pid": std::process::id() });
    common::fs::write_bytes_atomic(&layout.coordinator_file(), info.to_string().as_bytes())?;
    let shutdown = CancellationToken::new();
    let server = serve(shared.clone(), token.clone(), incoming, shutdown.clone());
    shared.db().log_event(now_ms(), "coordinator_started", None, &address)?;
    // Print only what happens from now on (a resumed run has history).
    let since = shared.db().last_event_seq()?;
    let kind = resolve_launcher(&mut shared.db(), opts)?;
    let mut launcher =
        Launcher::start(kind, target_workers(&shared.db(), opts), &spec, layout, &address, &token)?;
    eprintln!("coordinator {address}: {} launcher, run {}", kind.name(), layout.root().display());
    let mut reason = supervise(&shared, &mut launcher, &spec, opts, since).await?;
    // Check every committed file once more before merging; a changed one is redone first.
    while reason == StopReason::Complete {
        let digests = shared.db().committed_digests()?;
        let root = shared.run_dir.clone();
        let changed =
            tokio::task::spawn_blocking(move || crate::verify::find_changed(&root, &digests))
                .await?;
        if changed.is_empty() {
            break;
        }
        let since = shared.db().last_event_seq()?;
        crate::verify::requeue(
            &shared.run_dir,
            &mut shared.db(),
            &changed,
            "the coordinator before merging",
            now_ms(),
        )?;
        reason = supervise(&shared, &mut launcher, &spec, opts, since).await?;
    }
    // Say so before the server goes: a worker that then finds no coordinator exits at once
    // instead of waiting its patience out (unless the run was interrupted: `resume` may follow).
    // Best effort: on a full disk (the likely cause of a quarantined stop) the run must still
    // drain its workers and exit with its own code; workers then wait out their patience.
    let ended = serde_json::json!({ "reason": reason.name(), "at_ms": now_ms() });
    if let Err(e) = common::fs::write_bytes_atomic(&layout.ended(), ended.to_string().as_bytes()) {
        eprintln!("warning: cannot record how the run ended: {e}");
    }
    // Stop: tell workers to drain, give them the grace period (the server stays up so their
    // releases land), then kill what is left.
    shared.draining.store(true, Ordering::SeqCst);
    let leased = |shared: &Shared| {
        shared.db().counts().map(|c| c.values().map(|c| c.leased).sum::<u64>()).unwrap_or(0)
    };
    if reason == StopReason::Interrupted || matches!(launcher, Launcher::Slurm(_)) {
        launcher.drain(&mut shared.db(), now_ms())?;
    }
    let deadline = Instant::now() + opts.grace;
    while (launcher.running() > 0 || leased(&shared) > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(launcher); // SIGKILLs and reaps whatever is left
    shutdown.cancel();
    let _ = server.await;
    shared.db().log_event(now_ms(), "coordinator_stopped", None, &format!("{reason:?}"))?;
    let _ = std::fs::remove_file(layout.coordinator_file());
    if reason == StopReason::Complete {
        let db = shared.db();
        crate::report::write(layout, &spec, &data, &db)?;
    }
    Ok(reason)
}

impl Shared {
    /// The database. A panic while holding the lock leaves SQLite consistent (transactions
    /// roll back), so a poisoned mutex is safe to keep using.
    pub(crate) fn db(&self) -> std::sync::MutexGuard<'_, StateDb> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn supervise(
    shared: &Shared,
    launcher: &mut Launcher,
    spec: &JobSpec,
    opts: &RunOptions,
    since: i64,
) -> anyhow::Result<StopReason> {
    let mut progress = Progress::new(&spec.job.name);
    let mut last_event = since;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut every = tokio::time::interval(Duration::from_millis(200));
    let lost_after = (spec.sweep.lease_ttl_s * 1000.0) as i64;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = sigint.recv() => { progress.line("interrupted: draining workers (resume with `diffprobe resume`)"); return Ok(StopReason::Interrupted) }
            _ = sigterm.recv() => { progress.line("terminated: draining workers"); return Ok(StopReason::Interrupted) }
        }
        let now = now_ms();
        let Tick { counts, events, open, lost } = tick(shared, now, last_event, lost_after)?;
        launcher.kill_lost(&mut shared.db(), &lost, now)?;
        for e in &events {
            last_event = e.0;
            if let Some(line) =
                crate::progress::event_line(&e.2, e.3.as_deref(), e.4.as_deref(), &e.5)
            {
                progress.line(&line);
            }
        }
        let target = target_workers(&shared.db(), opts);
        launcher.poll(&mut shared.db(), open, target, now)?;
        progress.update(&counts);
        if !open {
            progress.finish();
            let quarantined = counts.values().map(|c| c.quarantined).sum::<u64>();
            return Ok(if quarantined > 0 {
                StopReason::Quarantined
            } else {
                StopReason::Complete
            });
        }
        if target > 0 && !launcher.will_run() {
            // Every local worker exited and none will be restarted: say so rather than wait
            // forever (external workers may still join a run started with --workers 0).
            anyhow::bail!("every local worker exited or crashed repeatedly; see logs/*.log in the run directory, then `diffprobe resume`");
        }
    }
}

/// Says which committed outputs failed verification and are redone.
pub(crate) fn say_redone(changed: &[crate::verify::Changed]) {
    for c in changed {
        eprintln!(
            "verify: {} (unit {}) failed verification ({}); moved to corrupt/, the unit runs again",
            c.output, c.unit, c.verdict
        );
    }
}

/// Serves the gRPC service on `incoming` until `shutdown`.
pub(crate) fn serve(
    shared: Arc<Shared>,
    token: String,
    incoming: tonic::transport::server::TcpIncoming,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    let svc = service::server(shared, token);
    // Small replies (a lease, a heartbeat) go out at once rather than waiting for more bytes.
    let incoming = incoming.with_nodelay(Some(true));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
    })
}

/// What one supervision tick read from the database.
pub(crate) struct Tick {
    /// Unit counts by kind and state.
    pub(crate) counts: BTreeMap<String, Counts>,
    /// Events after the last one printed.
    pub(crate) events: Vec<EventRow>,
    /// Whether any unit is running or can still run.
    pub(crate) open: bool,
    /// Workers marked lost by this tick: id, pid, launcher tag.
    pub(crate) lost: Vec<(String, u32, String)>,
}

/// The database part of one supervision tick: expire leases, mark lost workers, read the counts
/// and the new events.
pub(crate) fn tick(shared: &Shared, now: i64, since: i64, lost_after: i64) -> anyhow::Result<Tick> {
    let seen = shared.take_seen();
    let mut db = shared.db();
    db.touch_workers(&seen)?;
    db.expire(now, shared.policy)?;
    let lost = mark_lost_workers(&mut db, now, lost_after)?;
    Ok(Tick {
        counts: db.counts()?,
        events: db.events_since(since)?,
        open: db.has_open_work()?,
        lost,
    })
}

/// The launcher of this run: the one asked for, else the one it ran with, else local.
fn resolve_launcher(db: &mut StateDb, opts: &RunOptions) -> anyhow::Result<LauncherKind> {
    let recorded = db.meta("launcher")?.and_then(|k| LauncherKind::parse(&k));
    let kind = opts.launcher.or(recorded).unwrap_or(LauncherKind::Local);
    if recorded != Some(kind) {
        db.set_meta("launcher", kind.name(), now_ms())?;
    }
    let recorded_target = db.meta("target_workers")?;
    match (opts.workers, recorded_target) {
        (Some(n), _) => db.set_meta("target_workers", &n.to_string(), now_ms())?,
        (None, None) => db.set_meta("target_workers", &default_workers().to_string(), now_ms())?,
        (None, Some(_)) => {}
    }
    Ok(kind)
}

/// Workers to keep: `diffprobe scale` writes it; `--workers` sets it; default what fits.
fn target_workers(db: &StateDb, opts: &RunOptions) -> usize {
    db.meta("target_workers")
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .or(opts.workers)
        .unwrap_or_else(default_workers)
}

/// Workers silent for longer than a lease TTL are marked lost (their leases expire on their own);
/// returns them (id, pid, launcher tag) so that the launcher can kill a hung local one.
fn mark_lost_workers(
    db: &mut StateDb,
    now: i64,
    lost_after: i64,
) -> anyhow::Result<Vec<(String, u32, String)>> {
    let silent = db.silent_workers(now - lost_after)?;
    if silent.is_empty() {
        return Ok(Vec::new());
    }
    let workers = db.workers()?;
    let mut lost = Vec::new();
    for (id, last_seen) in silent {
        let detail = format!("no contact for {} s", (now - last_seen) / 1000);
        db.worker_gone(&id, "lost", &detail, now)?;
        let pid = workers.iter().find(|w| w.0 == id).map_or(0, |w| w.2);
        let tag = db.worker_tag(&id)?.unwrap_or_default();
        lost.push((id, pid, tag));
    }
    Ok(lost)
}

fn bind(
    layout: &RunLayout,
    requested: Option<SocketAddr>,
) -> anyhow::Result<tonic::transport::server::TcpIncoming> {
    let previous: Option<SocketAddr> = std::fs::read_to_string(layout.coordinator_file())
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["address"].as_str().map(|a| a.trim_start_matches("http://").to_string()))
        .and_then(|a| a.parse().ok());
    let fallback: SocketAddr = "127.0.0.1:0".parse().expect("valid");
    if let Some(addr) = requested {
        return tonic::transport::server::TcpIncoming::bind(addr)
            .with_context(|| format!("cannot bind {addr}"));
    }
    if let Some(prev) = previous {
        // Surviving workers of a killed coordinator keep calling this address.
        if let Ok(incoming) = tonic::transport::server::TcpIncoming::bind(prev) {
            return Ok(incoming);
        }
    }
    tonic::transport::server::TcpIncoming::bind(fallback).context("cannot bind a loopback port")
}

/// One coordinator per run: an exclusive `flock` on `coordinator.lock`, held for the
/// coordinator's life and released by the kernel however it dies (so kill -9 needs no cleanup).
fn lock_run(layout: &RunLayout) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = layout.root().join("coordinator.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| path.display().to_string())?;
    // SAFETY: flock on a descriptor we own; the lock lives as long as the returned File.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let who = std::fs::read_to_string(layout.coordinator_file()).unwrap_or_default();
        anyhow::bail!(
            "another coordinator is running this run ({}); see `diffprobe status {}`",
            who.trim(),
            layout.root().display()
        );
    }
    Ok(file)
}

fn read_or_create_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        return Ok(t.trim().to_string());
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| path.display().to_string())?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use common::ids::UnitId;
    use common::unit::{CaptureUnit, UnitSpec};

    use super::*;

    #[test]
    fn a_run_of_another_format_is_refused_and_a_new_one_records_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let layout = RunLayout::new(dir.path());
        let unit =
            UnitSpec::Capture(CaptureUnit { shard: 0, start: 0, end: 1, representations: vec![] });
        // A new run records the format and passes again.
        let mut db = StateDb::open(&layout.state_db()).unwrap();
        check_run_format(&mut db, &layout).unwrap();
        db.insert_units(&[(UnitId("u".into()), unit.clone())], 0).unwrap();
        check_run_format(&mut db, &layout).unwrap();
        assert_eq!(db.meta("run_format").unwrap().as_deref(), Some(RUN_FORMAT));
        // A run made before formats were recorded (units, no format) is refused, naming both.
        let old = tempfile::tempdir().unwrap();
        let old_layout = RunLayout::new(old.path());
        let mut db = StateDb::open(&old_layout.state_db()).unwrap();
        db.insert_units(&[(UnitId("u".into()), unit)], 0).unwrap();
        let e = check_run_format(&mut db, &old_layout).unwrap_err().to_string();
        assert!(e.contains("run format 1, this one writes 2"), "{e}");
        // So is one of another recorded format.
        db.set_meta("run_format", "3", 0).unwrap();
        assert!(check_run_format(&mut db, &old_layout).is_err());
    }
}
