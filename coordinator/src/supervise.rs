//! Supervision, after cargo-nextest: one `tokio::select!` ([`Events::next`]) over an [`Event`]
//! enum (a signal, a worker process exiting, the service changing the state, a fallback tick),
//! and one [`Supervisor`] owning the launcher. Each wake-up runs one [`step`] on a blocking
//! thread (SQLite and process calls never run on the async threads that serve workers): expire
//! leases, mark lost workers, kill lost local ones, reap and restart workers, read the counts
//! and the new events.
//!
//! The loop wakes when something happens: the service sends a [`ServiceEvent`] when a unit is
//! committed, fails or is released or a worker registers; SIGCHLD says a local worker exited.
//! Steps are at least [`MIN_GAP`] apart, however many events arrive (a busy run commits
//! thousands of units a second), and a quiet run still steps every [`FALLBACK`]: lease expiry,
//! silent workers, restart backoff and `diffprobe scale` are noticed on that tick.
//!
//! Stopping: the first SIGINT or SIGTERM ends [`supervise`] (the run drains, `resume`
//! continues it); during the grace period that follows ([`Supervisor::grace`]) another signal
//! ends the wait at once, and the workers' process groups are SIGKILLed ([`Supervisor::kill`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::ids::UnitKind;
use common::spec::JobSpec;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::db::{Counts, EventRow, Gone, StateDb};
use crate::launcher::Launcher;
use crate::progress::Progress;
use crate::run::{RunOptions, StopReason};
use crate::service::{now_ms, Shared};

/// A quiet run's step interval: what only time reveals (an expired lease, a silent worker, a
/// restart whose backoff has passed, a new worker target) waits at most this long.
pub(crate) const FALLBACK: Duration = Duration::from_millis(500);

/// The least time between two steps, so a burst of events costs one step.
pub(crate) const MIN_GAP: Duration = Duration::from_millis(100);

/// What the service tells the supervision loop (through [`Shared::notify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServiceEvent {
    /// A worker registered.
    Registered,
    /// A completion was committed.
    Committed,
    /// A unit failed (retry or quarantine).
    Failed,
    /// A worker released its unit.
    Released,
}

/// Which signal asked the run to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

/// Why the supervision loop woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A signal: stop (or, during the grace period, kill now).
    Signal(Stop),
    /// A child process exited (SIGCHLD): a local worker to reap.
    WorkerExit,
    /// The service changed the state.
    Service(ServiceEvent),
    /// Nothing happened for [`FALLBACK`].
    Tick,
}

/// The loop's event sources.
pub(crate) struct Events {
    sigint: Signal,
    sigterm: Signal,
    sigchld: Signal,
    service: mpsc::Receiver<ServiceEvent>,
    tick: Interval,
    /// No step before this (the last step plus [`MIN_GAP`]).
    earliest: Instant,
    /// An event that came too soon after the last step, returned at `earliest`.
    deferred: Option<Event>,
}

impl Events {
    /// Installs the signal handlers (from now on SIGINT and SIGTERM are only events) and
    /// subscribes to the service's events.
    pub(crate) fn new(shared: &Shared) -> std::io::Result<Events> {
        Events::over(shared.subscribe())
    }

    fn over(service: mpsc::Receiver<ServiceEvent>) -> std::io::Result<Events> {
        let mut tick = tokio::time::interval(FALLBACK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Events {
            sigint: signal(SignalKind::interrupt())?,
            sigterm: signal(SignalKind::terminate())?,
            sigchld: signal(SignalKind::child())?,
            service,
            tick,
            earliest: Instant::now(),
            deferred: None,
        })
    }

    /// The next event. Signals come at once; any other event comes no sooner than
    /// [`MIN_GAP`] after the last step. Cancel-safe: a deferred event is kept.
    pub(crate) async fn next(&mut self) -> Event {
        loop {
            let waiting = self.deferred.is_some();
            let event = tokio::select! {
                biased;
                _ = self.sigint.recv() => return Event::Signal(Stop::Interrupt),
                _ = self.sigterm.recv() => return Event::Signal(Stop::Terminate),
                () = tokio::time::sleep_until(self.earliest), if waiting => {
                    return self.deferred.take().unwrap_or(Event::Tick)
                }
                _ = self.sigchld.recv(), if !waiting => Event::WorkerExit,
                Some(e) = self.service.recv(), if !waiting => Event::Service(e),
                _ = self.tick.tick(), if !waiting => Event::Tick,
            };
            if Instant::now() >= self.earliest {
                return event;
            }
            self.deferred = Some(event);
        }
    }

    /// Marks a step done: the events so far are seen, the next comes after [`MIN_GAP`], and
    /// the fallback tick restarts.
    pub(crate) fn stepped(&mut self) {
        while self.service.try_recv().is_ok() {}
        self.deferred = None;
        self.earliest = Instant::now() + MIN_GAP;
        self.tick.reset();
    }
}

/// The supervision side of a run: the shared state and the launcher.
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    /// `None` only while a step holds it on a blocking thread (or after [`Supervisor::kill`]).
    launcher: Option<Launcher>,
    opts: RunOptions,
    /// A worker silent this long (a lease TTL, ms) is lost.
    lost_after: i64,
}

impl Supervisor {
    pub(crate) fn new(
        shared: Arc<Shared>,
        launcher: Launcher,
        opts: &RunOptions,
        spec: &JobSpec,
    ) -> Supervisor {
        Supervisor {
            shared,
            launcher: Some(launcher),
            opts: opts.clone(),
            lost_after: (spec.sweep.lease_ttl_s * 1000.0) as i64,
        }
    }

    /// Runs `f` with the state and the launcher on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Shared, &mut Launcher) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let shared = self.shared.clone();
        let mut launcher = self.launcher.take().context("the launcher is gone")?;
        let (launcher, out) = tokio::task::spawn_blocking(move || {
            let out = f(&shared, &mut launcher);
            (launcher, out)
        })
        .await?;
        self.launcher = Some(launcher);
        out
    }

    /// One step: the database part ([`tick`]), then kill lost local workers, reap, restart and
    /// scale. Returns the tick, and whether a worker runs or will.
    async fn step(&mut self, since: i64) -> anyhow::Result<(Tick, usize, bool)> {
        let (lost_after, opts) = (self.lost_after, self.opts.clone());
        self.blocking(move |shared, launcher| {
            let now = now_ms();
            let t = tick(shared, now, since, lost_after)?;
            launcher.kill_lost(&mut shared.db(), &t.lost, now)?;
            let target = target_workers(&shared.db(), &opts);
            launcher.poll(&mut shared.db(), t.open, target, now)?;
            Ok((t, target, launcher.will_run()))
        })
        .await
    }

    /// Asks every worker to drain.
    pub(crate) async fn drain(&mut self) -> anyhow::Result<()> {
        self.blocking(|shared, launcher| launcher.drain(&mut shared.db(), now_ms())).await
    }

    /// Waits up to `grace` for workers to exit and leases to be released; a signal ends the
    /// wait at once (the caller then kills what is left).
    pub(crate) async fn grace(
        &mut self,
        events: &mut Events,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + grace;
        loop {
            let busy = self
                .blocking(|shared, launcher| {
                    let leased = shared.db().counts()?.values().map(|c| c.leased).sum::<u64>();
                    Ok(launcher.running() > 0 || leased > 0)
                })
                .await?;
            events.stepped();
            if !busy {
                return Ok(());
            }
            tokio::select! {
                e = events.next() => if let Event::Signal(_) = e {
                    eprintln!("signal during the grace period: killing the workers now");
                    return Ok(());
                },
                () = tokio::time::sleep_until(deadline) => return Ok(()),
            }
        }
    }

    /// SIGKILLs every local worker's process group and reaps them (`Drop for LocalLauncher`).
    pub(crate) async fn kill(&mut self) {
        if let Some(launcher) = self.launcher.take() {
            let _ = tokio::task::spawn_blocking(move || drop(launcher)).await;
        }
    }
}

/// Runs the run until every unit is committed or quarantined, or a signal asks it to stop.
pub(crate) async fn supervise(
    sup: &mut Supervisor,
    events: &mut Events,
    spec: &JobSpec,
    since: i64,
) -> anyhow::Result<StopReason> {
    let mut progress = Progress::new(&spec.job.name);
    let mut last_event = since;
    loop {
        match events.next().await {
            Event::Signal(Stop::Interrupt) => {
                progress.line("interrupted: draining workers (resume with `diffprobe resume`)");
                return Ok(StopReason::Interrupted);
            }
            Event::Signal(Stop::Terminate) => {
                progress.line("terminated: draining workers");
                return Ok(StopReason::Interrupted);
            }
            Event::WorkerExit | Event::Service(_) | Event::Tick => {}
        }
        let (Tick { counts, events: rows, open, .. }, target, will_run) =
            sup.step(last_event).await?;
        events.stepped();
        for e in &rows {
            last_event = e.seq;
            if let Some(line) = crate::progress::event_line(e) {
                progress.line(&line);
            }
        }
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
        if target > 0 && !will_run {
            // Every local worker exited and none will be restarted: say so rather than wait
            // forever (external workers may still join a run started with --workers 0).
            anyhow::bail!("every local worker exited or crashed repeatedly; see logs/*.log in the run directory, then `diffprobe resume`");
        }
    }
}

/// What one supervision tick read from the database.
pub(crate) struct Tick {
    /// Unit counts by kind and state.
    pub(crate) counts: BTreeMap<UnitKind, Counts>,
    /// Events after the last one printed.
    pub(crate) events: Vec<EventRow>,
    /// Whether any unit is running or can still run.
    pub(crate) open: bool,
    /// Workers marked lost by this tick: id, pid, launcher tag.
    pub(crate) lost: Vec<(String, u32, String)>,
}

/// The database part of one supervision step: expire leases, mark lost workers, read the counts
/// and the new events. Blocking: call it off the async threads.
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

/// Workers to keep: `diffprobe scale` writes it; `--workers` sets it; default what fits.
pub(crate) fn target_workers(db: &StateDb, opts: &RunOptions) -> usize {
    db.meta("target_workers")
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .or(opts.workers)
        .unwrap_or_else(crate::run::default_workers)
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
        db.worker_gone(&id, Gone::Lost, &detail, now)?;
        let pid = workers.iter().find(|w| w.id == id).map_or(0, |w| w.pid);
        let tag = db.worker_tag(&id)?.unwrap_or_default();
        lost.push((id, pid, tag));
    }
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Would catch a loop that steps once per event under load: a burst of service events
    /// right after a step comes out as one event, no sooner than `MIN_GAP` later.
    #[tokio::test]
    async fn a_burst_of_events_is_one_step_after_the_gap() {
        let (tx, rx) = mpsc::channel(16);
        let mut events = Events::over(rx).unwrap();
        assert_eq!(events.next().await, Event::Tick, "the first tick is immediate");
        events.stepped();
        let start = Instant::now();
        for _ in 0..10 {
            tx.try_send(ServiceEvent::Committed).unwrap();
        }
        assert_eq!(events.next().await, Event::Service(ServiceEvent::Committed));
        assert!(start.elapsed() >= MIN_GAP, "not before the gap: {:?}", start.elapsed());
        events.stepped();
        // The burst was consumed by that step: the next wake-up is the fallback tick.
        let quiet = Instant::now();
        assert_eq!(events.next().await, Event::Tick);
        assert!(quiet.elapsed() >= FALLBACK, "{:?}", quiet.elapsed());
    }
}
