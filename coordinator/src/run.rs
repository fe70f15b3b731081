//! `diffprobe run` and `diffprobe resume`: one dispatcher loop over the run's life.
//!
//! Start: write the resolved spec and dataset, insert the plan's units (existing ids are kept, so
//! a re-run skips committed work; a spec changed outside the captures retires the analysis
//! units it no longer plans, `extend.rs`), bind the gRPC service (loopback by default; a resumed run
//! rebinds its previous address so surviving workers reconnect), start the launcher.
//! Loop (every tick): expire leases, reap and restart workers, print events, update progress,
//! and stop when every unit is committed or quarantined, or on a signal.
//! Stop: check every committed file against its recorded checksum (a changed one is redone
//! first, `verify.rs`; the same check runs when the coordinator starts), tell workers to drain,
//! wait a grace period, kill what is left, shut the server down, then merge the probe outputs
//! into the report.

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::layout::RunLayout;
use common::spec::JobSpec;
use common::stimuli::Dataset;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::db::{EventKind, StateDb};
use crate::launcher::{Launcher, LauncherKind};
use crate::lease::RetryPolicy;
use crate::plan::Plan;
use crate::service::{self, now_ms, Shared};
use crate::supervise::{supervise, Events, Supervisor};

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

/// Prepares a run directory from a spec: a new one, the same run again, or an existing run
/// given a spec whose changes leave its captures as they are (`extend.rs`); `spec_file` is the
/// user's spec, for messages.
pub(crate) fn prepare(plan: &Plan, spec_file: &str) -> anyhow::Result<RunLayout> {
    let layout = RunLayout::new(plan.spec.run_dir());
    let resolved = plan.spec.to_toml();
    let previous = match std::fs::read_to_string(layout.spec()) {
        Ok(text) if text != resolved => Some(JobSpec::from_resolved_toml(&layout.spec())?),
        _ => None,
    };
    if let Some(previous) = &previous {
        crate::extend::check_sections(&layout, previous, plan, spec_file)?;
    }
    layout.create_dirs().with_context(|| format!("cannot create {}", layout.root().display()))?;
    // A running coordinator must not see its spec or units change under it.
    let _lock = lock_run(&layout)?;
    let mut db = StateDb::open(&layout.state_db())
        .with_context(|| layout.state_db().display().to_string())?;
    check_run_format(&mut db, &layout)?;
    if previous.is_some() {
        crate::extend::check_captures(&db, &layout, plan, spec_file)?;
    }
    common::fs::write_bytes_atomic(&layout.spec(), resolved.as_bytes())?;
    plan.dataset.save(&layout.root().join("dataset.json"))?;
    if let Some(inputs) = &plan.alignment {
        inputs.save(&layout.alignment_inputs())?;
    }
    if previous.is_some() {
        let retired = db.retire_unplanned(&plan.units, now_ms())?;
        eprintln!(
            "{}: spec changed outside the captures; {retired} analysis units of the earlier \
             spec retired (their files stay in units/), committed captures kept",
            layout.root().display()
        );
    }
    db.insert_units(&plan.units, now_ms())?;
    Ok(layout)
}

/// The run directory's format: unit ids and output files as this binary makes them. 2: probe
/// rows carry `effective_df` instead of `spread`; stage-1 unit ids hash one fingerprint of the
/// capture ids instead of the whole list. 3: stage-1 units carry their resolved settings and
/// their ids hash the unit, not spec sections.
const RUN_FORMAT: &str = "3";

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
    // From here SIGINT and SIGTERM are events of the loop, and every task is tracked.
    let mut events = Events::new(&shared)?;
    let (shutdown, tasks) = (CancellationToken::new(), TaskTracker::new());
    tasks.spawn(serve(shared.clone(), token.clone(), incoming, shutdown.clone()));
    let (kind, launcher, since) = blocking(&shared, {
        let (spec, layout, opts) = (spec.clone(), layout.clone(), opts.clone());
        move |shared| {
            shared.db().log_event(now_ms(), EventKind::CoordinatorStarted, None, &address)?;
            // Print only what happens from now on (a resumed run has history).
            let since = shared.db().last_event_seq()?;
            let kind = resolve_launcher(&mut shared.db(), &opts)?;
            let target = crate::supervise::target_workers(&shared.db(), &opts);
            let launcher = Launcher::start(kind, target, &spec, &layout, &address, &token)?;
            eprintln!(
                "coordinator {address}: {} launcher, run {}",
                kind.name(),
                layout.root().display()
            );
            Ok((kind, launcher, since))
        }
    })
    .await?;
    let mut sup = Supervisor::new(shared.clone(), launcher, opts, &spec);
    let mut reason = supervise(&mut sup, &mut events, &spec, since).await?;
    // Check every committed file once more before merging; a changed one is redone first.
    while reason == StopReason::Complete {
        let requeued = blocking(&shared, |shared| {
            let digests = shared.db().committed_digests()?;
            let changed = crate::verify::find_changed(&shared.run_dir, &digests);
            if changed.is_empty() {
                return Ok(None);
            }
            let since = shared.db().last_event_seq()?;
            crate::verify::requeue(
                &shared.run_dir,
                &mut shared.db(),
                &changed,
                "the coordinator before merging",
                now_ms(),
            )?;
            Ok(Some(since))
        })
        .await?;
        let Some(since) = requeued else { break };
        reason = supervise(&mut sup, &mut events, &spec, since).await?;
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
    // releases land; another signal cuts it short), then kill what is left.
    shared.draining.store(true, Ordering::SeqCst);
    if reason == StopReason::Interrupted || kind == LauncherKind::Slurm {
        sup.drain().await?;
    }
    sup.grace(&mut events, opts.grace).await?;
    sup.kill().await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    let layout = layout.clone();
    blocking(&shared, move |shared| {
        shared.db().log_event(
            now_ms(),
            EventKind::CoordinatorStopped,
            None,
            &format!("{reason:?}"),
        )?;
        let _ = std::fs::remove_file(layout.coordinator_file());
        if reason == StopReason::Complete {
            crate::report::write(&layout, &spec, &data, &shared.db())?;
        }
        Ok(())
    })
    .await?;
    Ok(reason)
}

/// Runs `f` with the shared state on a blocking thread: SQLite and file work never holds up
/// the async threads that serve workers.
async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || f(&shared)).await?
}

impl Shared {
    /// The database. A panic while holding the lock leaves SQLite consistent (transactions
    /// roll back), so a poisoned mutex is safe to keep using.
    pub(crate) fn db(&self) -> std::sync::MutexGuard<'_, StateDb> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
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

/// Serves the gRPC service on `incoming` until `shutdown` (the caller spawns it on its tracker).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    token: String,
    incoming: tonic::transport::server::TcpIncoming,
    shutdown: CancellationToken,
) {
    let svc = service::server(shared, token);
    // Small replies (a lease, a heartbeat) go out at once rather than waiting for more bytes.
    let incoming = incoming.with_nodelay(Some(true));
    let served = tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(e) = served {
        eprintln!("warning: the gRPC server stopped: {e}");
    }
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
        assert!(e.contains(&format!("run format 1, this one writes {RUN_FORMAT}")), "{e}");
        // So is one of another recorded format.
        db.set_meta("run_format", "99", 0).unwrap();
        assert!(check_run_format(&mut db, &old_layout).is_err());
    }
}
