//! A worker's session with the coordinator. [`Worker`] owns its gRPC client, the sweep's
//! [`WorkerContext`], its drain token and a [`TaskTracker`] of every task it spawns (the signal
//! watch, each unit's heartbeat, the capture write in flight), so that a clean exit waits for
//! all of them and a unit's heartbeat ends with the unit: [`Worker::beat`] returns a guard that
//! cancels the heartbeat task when dropped, whichever way the unit ends (committed, failed,
//! released on drain, or an early return).
//!
//! The loop: lease → run the unit on a blocking thread → report. SIGTERM, SIGINT and SIGUSR1,
//! a heartbeat reply with `drain`, or an orphaned worker cancel the drain token: the worker
//! takes no new lease, releases the unit it is computing (its computation is abandoned, and
//! its temp file is never renamed), finishes the write in flight, and exits 0.
//!
//! A worker stops waiting for an unreachable coordinator, and exits 0, as soon as there is no
//! point (`no_coordinator_coming`): the run directory's `ended.json` says the run is complete or
//! quarantined, or the local coordinator that started it (`DIFFPROBE_COORDINATOR_PID`) is no
//! longer its parent. An orphan also drains at its next heartbeat; only a unit it has already
//! written is still offered to a coordinator (a `resume`) for the worker's patience.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::layout::RunLayout;
use common::proto as pb;
use common::proto::lease_reply::Outcome;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::client::{self, with_retry, with_retry_until, Client};
use crate::error::UnitError;
use crate::run::{execute, Executed, WorkerArgs, WorkerContext};

/// The longest idle wait a worker accepts from a lease reply before polling again.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// A registered worker and everything it runs.
pub(crate) struct Worker {
    id: String,
    rpc: Client,
    ctx: Arc<WorkerContext>,
    /// Time between a unit's heartbeats, as the coordinator asked.
    heartbeat: Duration,
    /// How long to keep calling an unreachable coordinator.
    patience: Duration,
    /// Cancelled to stop taking work: a signal, a heartbeat reply, an orphaned worker, or exit.
    drain: CancellationToken,
    /// Every task this worker spawned; a clean exit waits for them.
    tasks: TaskTracker,
    /// The last capture unit's Parquet write, running while the next unit computes.
    write: Option<JoinHandle<()>>,
}

/// One leased unit: its lease id and the worker holding it.
#[derive(Clone)]
pub(crate) struct Lease {
    pub(crate) id: String,
    pub(crate) worker: String,
}

impl Worker {
    /// Registers with the coordinator (retrying for `patience`), loads the sweep's context and
    /// starts watching for signals.
    pub(crate) async fn register(args: &WorkerArgs) -> anyhow::Result<Worker> {
        let rpc = client::connect(&args.coordinator, &args.token)?;
        // Under Slurm the node name says more than the host name (several nodes may share a host).
        let host = std::env::var("SLURMD_NODENAME")
            .ok()
            .or_else(|| hostname::get().ok().map(|h| h.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let device = if crate::capture::cuda_present() { "cuda" } else { "cpu" };
        let reg = with_retry(args.patience, || {
            let mut rpc = rpc.clone();
            let req = pb::RegisterRequest {
                host: host.clone(),
                pid: std::process::id(),
                launcher_tag: args.tag.clone(),
                device: device.into(),
            };
            async move { rpc.register(req).await }
        })
        .await
        .context("cannot register with the coordinator")?
        .into_inner();
        let ctx = Arc::new(WorkerContext::load(Path::new(&reg.run_dir), args)?);
        eprintln!(
            "worker {}: joined {} (run {})",
            reg.worker_id,
            args.coordinator,
            ctx.run_dir.display()
        );
        let worker = Worker {
            id: reg.worker_id,
            rpc,
            ctx,
            heartbeat: Duration::from_millis(reg.heartbeat_ms.max(100)),
            patience: args.patience,
            drain: CancellationToken::new(),
            tasks: TaskTracker::new(),
            write: None,
        };
        worker.tasks.spawn(watch_signals(worker.drain.clone())?);
        Ok(worker)
    }

    /// Runs units until the sweep is done, the worker is told to drain, or the coordinator is
    /// gone; then finishes the write in flight and waits for every task. An error returns at
    /// once: the runtime drops what is left.
    pub(crate) async fn run(mut self) -> anyhow::Result<()> {
        self.lease_loop().await?;
        if let Some(write) = self.write.take() {
            // Its unit is computed: committing it is cheaper than computing it again.
            let _ = write.await;
        }
        self.drain.cancel(); // ends the signal watch
        self.tasks.close();
        self.tasks.wait().await;
        eprintln!("worker {}: exiting", self.id);
        Ok(())
    }

    async fn lease_loop(&mut self) -> anyhow::Result<()> {
        while !self.drain.is_cancelled() {
            let stop = || no_coordinator_coming(&self.ctx.run_dir).is_some();
            let reply = with_retry_until(self.patience, stop, || {
                let mut rpc = self.rpc.clone();
                let req = pb::LeaseRequest { worker_id: self.id.clone() };
                async move { rpc.lease(req).await }
            })
            .await;
            let reply = match reply {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    if let Some(why) = no_coordinator_coming(&self.ctx.run_dir) {
                        eprintln!("worker {}: the coordinator is gone and {why}; exiting", self.id);
                        return Ok(());
                    }
                    anyhow::bail!("{}", client::describe("lease", &status));
                }
            };
            match reply.outcome {
                Some(Outcome::Assignment(a)) => self.run_leased(a).await?,
                Some(Outcome::WaitMs(ms)) => {
                    // The coordinator spreads idle workers' polls; a wait is never longer than
                    // MAX_WAIT, whatever a reply says.
                    let wait = Duration::from_millis(ms).min(MAX_WAIT);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.drain.cancelled() => {}
                    }
                }
                Some(Outcome::Done(_)) | None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Starts `lease`'s heartbeat task; it stops when the returned guard is dropped.
    fn beat(&self, lease: &Lease) -> DropGuard {
        spawn_heartbeat(&self.tasks, self.rpc.clone(), lease.clone(), self.heartbeat, &self.drain)
    }

    async fn run_leased(&mut self, a: pb::Assignment) -> anyhow::Result<()> {
        let lease = Lease { id: a.lease_id.clone(), worker: self.id.clone() };
        let beat = self.beat(&lease);
        // Not tracked: on drain the computation is abandoned, not waited for.
        let work = {
            let ctx = self.ctx.clone();
            tokio::task::spawn_blocking(move || execute(&ctx, &a))
        };
        let result = tokio::select! {
            // A unit that has finished is reported, not released, even when the drain came too:
            // its output is already renamed into place, and committing it is cheaper than
            // computing it again.
            biased;
            r = work => r,
            () = self.drain.cancelled() => {
                drop(beat);
                let req = pb::ReleaseRequest {
                    lease_id: lease.id.clone(),
                    reason: "worker received a shutdown signal".into(),
                    worker_id: lease.worker.clone(),
                };
                let _ = self.rpc.release(req).await;
                eprintln!("worker {}: released {} on shutdown", lease.worker, lease.id);
                return Ok(());
            }
        };
        let result = result.map_err(|e| UnitError::Invalid(format!("unit panicked: {e}")));
        match result.and_then(|r| r) {
            Ok(Executed::Written(out)) => {
                drop(beat);
                report(&mut self.rpc, &self.ctx, &lease, Ok(out), self.patience).await
            }
            Ok(Executed::Capture(write)) => {
                // One write in flight at a time: memory holds at most two units' features.
                if let Some(previous) = self.write.take() {
                    let _ = previous.await;
                }
                let (mut rpc, ctx, patience) = (self.rpc.clone(), self.ctx.clone(), self.patience);
                let writing = self.tasks.spawn_blocking({
                    let ctx = ctx.clone();
                    move || write.run(&ctx)
                });
                self.write = Some(self.tasks.spawn(async move {
                    let written = writing
                        .await
                        .map_err(|e| UnitError::Invalid(format!("write panicked: {e}")))
                        .and_then(|r| r);
                    // The lease beats until the write is done, whatever its outcome.
                    drop(beat);
                    if let Err(e) = report(&mut rpc, &ctx, &lease, written, patience).await {
                        eprintln!("worker {}: {e:#}", lease.worker);
                    }
                }));
                Ok(())
            }
            Err(e) => {
                drop(beat);
                report(&mut self.rpc, &self.ctx, &lease, Err(e), self.patience).await
            }
        }
    }
}

/// Tells the coordinator how a unit ended: its committed output, or its failure. A completion
/// whose reply is lost is sent again, unchanged; the coordinator answers it committed again.
async fn report(
    rpc: &mut Client,
    ctx: &WorkerContext,
    lease: &Lease,
    result: Result<(String, String, u64), UnitError>,
    patience: Duration,
) -> anyhow::Result<()> {
    let (worker_id, lease_id) = (&lease.worker, &lease.id);
    // Even an orphan keeps offering a finished unit for its patience: a `resume` rebinds the
    // same address, and a finished unit is cheaper to commit than to compute again.
    let stop = || run_ended(&ctx.run_dir).is_some();
    match result {
        Ok((rel, checksum, bytes)) => {
            let mut lose_reply = ctx.lose_complete_reply;
            let reply = with_retry_until(patience, stop, || {
                let mut rpc = rpc.clone();
                let req = pb::CompleteRequest {
                    lease_id: lease_id.clone(),
                    output_path: rel.clone(),
                    checksum: checksum.clone(),
                    bytes,
                    worker_id: worker_id.clone(),
                };
                let lose = std::mem::take(&mut lose_reply);
                async move {
                    let reply = rpc.complete(req).await;
                    if lose && reply.is_ok() {
                        return Err(tonic::Status::unavailable("fault injection: reply lost"));
                    }
                    reply
                }
            })
            .await;
            match reply {
                Ok(r) if r.get_ref().duplicate => eprintln!(
                    "worker {worker_id}: {lease_id}: another attempt was committed first; this output is not used"
                ),
                Ok(r) if !r.get_ref().committed => eprintln!(
                    "worker {worker_id}: {lease_id}: completion not taken (the unit no longer accepts this attempt)"
                ),
                Ok(_) => {}
                Err(s) => eprintln!(
                    "worker {worker_id}: completion of {lease_id} refused: {}",
                    s.message()
                ),
            }
        }
        Err(e) => {
            eprintln!("worker {worker_id}: {lease_id} failed: {e}");
            let req = pb::FailRequest {
                lease_id: lease_id.clone(),
                error: e.to_string(),
                retryable: e.is_retryable(),
                worker_id: worker_id.clone(),
                corrupt_input: e.corrupt_input().unwrap_or_default().to_string(),
            };
            with_retry_until(patience, stop, || {
                let mut rpc = rpc.clone();
                let req = req.clone();
                async move { rpc.fail(req).await }
            })
            .await
            .context("cannot report a failure")?;
        }
    }
    Ok(())
}

/// Spawns `lease`'s heartbeat on `tasks`: a beat every `every` until the returned guard is
/// dropped. A reply asking to drain, or finding this worker orphaned, cancels `drain`.
fn spawn_heartbeat(
    tasks: &TaskTracker,
    rpc: Client,
    lease: Lease,
    every: Duration,
    drain: &CancellationToken,
) -> DropGuard {
    let stop = CancellationToken::new();
    tasks.spawn(heartbeats(rpc, lease, every, stop.clone(), drain.clone()));
    stop.drop_guard()
}

async fn heartbeats(
    mut rpc: Client,
    lease: Lease,
    every: Duration,
    stop: CancellationToken,
    drain: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        if orphaned() {
            eprintln!(
                "worker {}: the coordinator that started this worker has exited; draining",
                lease.worker
            );
            drain.cancel();
            return;
        }
        let req = pb::HeartbeatRequest {
            worker_id: lease.worker.clone(),
            lease_ids: vec![lease.id.clone()],
        };
        // A failed beat is not fatal: the coordinator may be restarting; the lease TTL decides.
        let beat = tokio::select! {
            r = rpc.heartbeat(req) => r,
            () = stop.cancelled() => return,
        };
        if beat.is_ok_and(|reply| reply.get_ref().drain) {
            drain.cancel();
        }
    }
}

/// Why waiting for the coordinator is pointless, if it is: the run has ended, or this worker
/// was started by a local coordinator that is no longer its parent.
fn no_coordinator_coming(run_dir: &Path) -> Option<String> {
    run_ended(run_dir).or_else(|| {
        orphaned().then(|| "the coordinator that started this worker has exited".into())
    })
}

/// Whether the run directory says the run is over (`RunLayout::is_over`).
fn run_ended(run_dir: &Path) -> Option<String> {
    RunLayout::new(run_dir).is_over().map(|reason| format!("the run has ended ({reason})"))
}

/// Whether this worker was started by a local coordinator that is no longer its parent (it was
/// killed, and the worker re-parented).
fn orphaned() -> bool {
    let Some(pid) =
        std::env::var(common::COORDINATOR_PID_ENV).ok().and_then(|p| p.parse::<i32>().ok())
    else {
        return false;
    };
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() != pid }
}

/// Cancels `drain` on SIGTERM, SIGINT or SIGUSR1; ends when `drain` is cancelled otherwise.
fn watch_signals(
    drain: CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = usr1.recv() => {}
            () = drain.cancelled() => {}
        }
        drain.cancel();
    })
}

#[cfg(test)]
mod tests {
    //! A unit's heartbeat against a fake coordinator that counts beats.

    use std::sync::atomic::{AtomicUsize, Ordering};

    use common::proto::coordinator_server::{Coordinator, CoordinatorServer};
    use tonic::{Request, Response, Status};

    use super::*;

    /// Answers heartbeats (counting them) and nothing else.
    struct Beats(Arc<AtomicUsize>);

    #[tonic::async_trait]
    impl Coordinator for Beats {
        async fn register(
            &self,
            _: Request<pb::RegisterRequest>,
        ) -> Result<Response<pb::RegisterReply>, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn lease(
            &self,
            _: Request<pb::LeaseRequest>,
        ) -> Result<Response<pb::LeaseReply>, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn heartbeat(
            &self,
            _: Request<pb::HeartbeatRequest>,
        ) -> Result<Response<pb::HeartbeatReply>, Status> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(pb::HeartbeatReply { lost_lease_ids: vec![], drain: false }))
        }
        async fn complete(
            &self,
            _: Request<pb::CompleteRequest>,
        ) -> Result<Response<pb::CompleteReply>, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn fail(
            &self,
            _: Request<pb::FailRequest>,
        ) -> Result<Response<pb::FailReply>, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn release(
            &self,
            _: Request<pb::ReleaseRequest>,
        ) -> Result<Response<pb::ReleaseReply>, Status> {
            Err(Status::unimplemented("fake"))
        }
    }

    /// Would catch a detached heartbeat: after the unit's guard is dropped the task ends (the
    /// tracker empties) and the coordinator hears no more beats for that lease.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_units_heartbeat_ends_with_the_unit() {
        let count = Arc::new(AtomicUsize::new(0));
        let incoming =
            tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CoordinatorServer::new(Beats(count.clone())))
                .serve_with_incoming(incoming),
        );
        let rpc = client::connect(&format!("http://{addr}"), "t").unwrap();
        let tasks = TaskTracker::new();
        let drain = CancellationToken::new();
        let lease = Lease { id: "u#1".into(), worker: "w".into() };
        let beat = spawn_heartbeat(&tasks, rpc, lease, Duration::from_millis(20), &drain);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while count.load(Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "no heartbeats arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(tasks.len(), 1, "the heartbeat is a tracked task");
        drop(beat); // the unit ends
        tasks.close();
        tokio::time::timeout(Duration::from_secs(2), tasks.wait())
            .await
            .expect("the heartbeat task ends with its unit");
        // A beat already on the wire when the unit ended may still land; none is sent after.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = count.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(count.load(Ordering::SeqCst), after, "no beat after the unit ended");
        assert!(!drain.is_cancelled(), "ending a unit does not drain the worker");
        server.abort();
    }
}
