//! The worker loop: lease → run → write to a temp file → fsync → rename → complete, with
//! heartbeats in a background task. A capture unit's Parquet write runs in the background while
//! the next unit computes (one write in flight; its lease keeps beating until it is committed).
//! SIGTERM, SIGINT and SIGUSR1 flip the worker to draining: it takes no new lease, releases the
//! unit it is computing, finishes the write in flight, and exits 0.
//!
//! A worker stops waiting for an unreachable coordinator, and exits 0, as soon as there is no
//! point (`no_coordinator_coming`): the run directory's `ended.json` says the run is complete or
//! quarantined, or the local coordinator that started it (`DIFFPROBE_COORDINATOR_PID`) is no
//! longer its parent. An orphan also drains at its next heartbeat; only a unit it has already
//! written is still offered to a coordinator (a `resume`) for the worker's patience.
//!
//! Inputs are trusted only while they match the blake3 they were committed with, which the
//! lease's inputs manifest lists (`Assignment.inputs_manifest`): a stage-1 unit checks them before anything
//! reads them, and a mismatch fails the unit with `UnitError::CorruptInput`, which names the
//! input in `FailRequest.corrupt_input` so that the coordinator re-runs its producer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use common::layout::RunLayout;
use common::proto as pb;
use common::proto::lease_reply::Outcome;
use common::spec::JobSpec;
use common::stimuli::{AlignmentInputs, Dataset};
use common::unit::{ManifestInput, UnitSpec};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::capture::Capturer;
use crate::client::{self, with_retry, with_retry_until, Client};
use crate::error::UnitError;

/// The longest idle wait a worker accepts from a lease reply before polling again.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// How a worker is started.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// Coordinator address, e.g. `http://127.0.0.1:7000`.
    pub coordinator: String,
    /// The run's bearer token (from `DIFFPROBE_TOKEN`).
    pub token: String,
    /// Launcher tag, e.g. `local-2`.
    pub tag: String,
    /// How long to keep trying while the coordinator is unreachable before exiting.
    pub patience: Duration,
    /// Test-only fault injection: sleep this long inside every unit (makes "kill mid-unit"
    /// deterministic in the crash tests). Set by `DIFFPROBE_FAULT_UNIT_DELAY_MS`.
    pub unit_delay: Duration,
    /// Test-only fault injection: the first reply to every `Complete` is lost, so the worker
    /// sends the same completion again, as it does when a reply is really lost. Set by
    /// `DIFFPROBE_FAULT_LOSE_COMPLETE_REPLY=1`.
    pub lose_complete_reply: bool,
    /// Test-only fault injection: while this file exists, capture units write their features
    /// to `/dev/full`, so the Parquet writer fails with ENOSPC exactly as on a full disk. Set by
    /// `DIFFPROBE_FAULT_DISK_FULL_WHILE`.
    pub disk_full_while: Option<PathBuf>,
}

/// What the worker knows about the sweep, loaded once.
struct WorkerContext {
    run_dir: PathBuf,
    spec: JobSpec,
    data: Dataset,
    capturer: Mutex<Option<Arc<Capturer>>>,
    images_dir: PathBuf,
    /// `alignment.json`, read by the first alignment unit.
    alignment: Mutex<Option<Arc<AlignmentInputs>>>,
    /// The last inputs manifest read: its name and the paths it lists.
    manifest: Mutex<Option<(String, Arc<Vec<ManifestInput>>)>>,
    unit_delay: Duration,
    lose_complete_reply: bool,
    disk_full_while: Option<PathBuf>,
    /// Inputs this worker has verified, with the checksum and the (length, mtime) they had
    /// then: a committed file is immutable, so it is hashed once per worker unless it changes.
    verified: Mutex<HashMap<String, Verified>>,
}

/// An input this worker has hashed: the checksum it matched and the file's (length, mtime) then.
type Verified = (String, u64, Option<std::time::SystemTime>);

/// Runs the worker until the sweep is done, it is told to drain, or the coordinator is gone.
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let mut rpc = client::connect(&args.coordinator, &args.token)?;
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
    let worker_id = reg.worker_id;
    let layout = RunLayout::new(&reg.run_dir);
    let spec = JobSpec::from_resolved_toml(&layout.spec())?;
    let data = Dataset::open(&layout.root().join("dataset.json"))?;
    let ctx = Arc::new(WorkerContext {
        run_dir: layout.root().to_path_buf(),
        spec,
        data,
        capturer: Mutex::new(None),
        images_dir: layout.images_dir(),
        alignment: Mutex::new(None),
        manifest: Mutex::new(None),
        unit_delay: args.unit_delay,
        lose_complete_reply: args.lose_complete_reply,
        disk_full_while: args.disk_full_while.clone(),
        verified: Mutex::new(HashMap::new()),
    });
    eprintln!("worker {worker_id}: joined {} (run {})", args.coordinator, ctx.run_dir.display());

    let drain = CancellationToken::new();
    spawn_signal_watch(drain.clone())?;
    let heartbeat = Duration::from_millis(reg.heartbeat_ms.max(100));
    // The last capture unit's Parquet write, running while the next unit computes.
    let mut pending: Option<tokio::task::JoinHandle<()>> = None;
    while !drain.is_cancelled() {
        let stop = || no_coordinator_coming(&ctx.run_dir).is_some();
        let reply = with_retry_until(args.patience, stop, || {
            let mut rpc = rpc.clone();
            let req = pb::LeaseRequest { worker_id: worker_id.clone() };
            async move { rpc.lease(req).await }
        })
        .await;
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                if let Some(why) = no_coordinator_coming(&ctx.run_dir) {
                    eprintln!("worker {worker_id}: the coordinator is gone and {why}; exiting");
                    break;
                }
                return Err(anyhow::anyhow!("{}", client::describe("lease", &status)));
            }
        };
        match reply.outcome {
            Some(Outcome::Assignment(a)) => {
                let lease = Lease { id: a.lease_id.clone(), worker: worker_id.clone() };
                run_leased(&mut rpc, &ctx, lease, a, heartbeat, &drain, args.patience, &mut pending)
                    .await?
            }
            Some(Outcome::WaitMs(ms)) => {
                // The coordinator spreads idle workers' polls; a wait is never longer than
                // MAX_WAIT, whatever a reply says.
                let wait = Duration::from_millis(ms).min(MAX_WAIT);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = drain.cancelled() => {}
                }
            }
            Some(Outcome::Done(_)) | None => break,
        }
    }
    if let Some(write) = pending.take() {
        // Finish the last write before exiting: its unit is computed, and committing it is
        // cheaper than computing it again.
        let _ = write.await;
    }
    eprintln!("worker {worker_id}: exiting");
    Ok(())
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

fn spawn_signal_watch(drain: CancellationToken) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = usr1.recv() => {}
        }
        drain.cancel();
    });
    Ok(())
}

/// One leased unit: its lease id and the worker holding it.
#[derive(Clone)]
struct Lease {
    id: String,
    worker: String,
}

#[allow(clippy::too_many_arguments)]
async fn run_leased(
    rpc: &mut Client,
    ctx: &Arc<WorkerContext>,
    lease: Lease,
    a: pb::Assignment,
    heartbeat: Duration,
    drain: &CancellationToken,
    patience: Duration,
    pending: &mut Option<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    let beats = CancellationToken::new();
    tokio::spawn(heartbeats(
        rpc.clone(),
        lease.worker.clone(),
        lease.id.clone(),
        heartbeat,
        beats.clone(),
        drain.clone(),
    ));
    let work = {
        let ctx = ctx.clone();
        tokio::task::spawn_blocking(move || execute(&ctx, &a))
    };
    let result = tokio::select! {
        r = work => r,
        () = drain.cancelled() => {
            beats.cancel();
            let req = pb::ReleaseRequest { lease_id: lease.id.clone(), reason: "worker received a shutdown signal".into(), worker_id: lease.worker.clone() };
            let _ = rpc.release(req).await;
            eprintln!("worker {}: released {} on shutdown", lease.worker, lease.id);
            // The blocking task is abandoned; the process exits and its temp file is never renamed.
            return Ok(());
        }
    };
    let result = result.map_err(|e| UnitError::Invalid(format!("unit panicked: {e}")));
    match result.and_then(|r| r) {
        Ok(Executed::Written(out)) => {
            beats.cancel();
            report(rpc, ctx, &lease, Ok(out), patience).await
        }
        Ok(Executed::Capture(write)) => {
            // One write in flight at a time: memory holds at most two units' features.
            if let Some(previous) = pending.take() {
                let _ = previous.await;
            }
            let (mut rpc, ctx) = (rpc.clone(), ctx.clone());
            *pending = Some(tokio::spawn(async move {
                let written = tokio::task::spawn_blocking({
                    let ctx = ctx.clone();
                    move || write.run(&ctx)
                })
                .await;
                let written = written
                    .map_err(|e| UnitError::Invalid(format!("write panicked: {e}")))
                    .and_then(|r| r);
                beats.cancel();
                if let Err(e) = report(&mut rpc, &ctx, &lease, written, patience).await {
                    eprintln!("worker {}: {e:#}", lease.worker);
                }
            }));
            Ok(())
        }
        Err(e) => {
            beats.cancel();
            report(rpc, ctx, &lease, Err(e), patience).await
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

async fn heartbeats(
    mut rpc: Client,
    worker: String,
    lease: String,
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
                "worker {worker}: the coordinator that started this worker has exited; draining"
            );
            drain.cancel();
            return;
        }
        let req =
            pb::HeartbeatRequest { worker_id: worker.clone(), lease_ids: vec![lease.clone()] };
        // A failed beat is not fatal: the coordinator may be restarting; the lease TTL decides.
        if let Ok(reply) = rpc.heartbeat(req).await {
            if reply.get_ref().drain {
                drain.cancel();
            }
        }
    }
}

/// How a unit's computation ended.
enum Executed {
    /// Its output is written: the path relative to the run directory, checksum and size.
    Written((String, String, u64)),
    /// A capture unit's features, still to be written (off the compute thread).
    Capture(FeatureWrite),
}

/// A capture unit's features and where they go.
struct FeatureWrite {
    rel: String,
    target: PathBuf,
    blocks: Vec<common::table::FeatureBlock>,
}

impl FeatureWrite {
    /// Writes the Parquet file atomically; returns its relative path, checksum and size.
    fn run(self, ctx: &WorkerContext) -> Result<(String, String, u64), UnitError> {
        let Self { rel, target, blocks } = self;
        if ctx.disk_full_while.as_deref().is_some_and(Path::exists) {
            // The real writer on a really full device, so the error is shaped as a full disk's.
            let dev = Path::new("/dev/full");
            let mut full = std::fs::OpenOptions::new()
                .write(true)
                .open(dev)
                .map_err(|e| common::error::DataError::Io { path: dev.to_path_buf(), source: e })?;
            common::table::write_features(&mut full, &target, &blocks, ctx.spec.capture.dtype)?;
            return Err(UnitError::Invalid("fault injection: /dev/full took the write".into()));
        }
        common::fs::write_atomic(&target, |f| {
            common::table::write_features(f, &target, &blocks, ctx.spec.capture.dtype)
        })?;
        let (sum, bytes) = common::fs::checksum_file(&target)?;
        Ok((rel, sum, bytes))
    }
}

/// Runs one unit synchronously. Probe, grid and alignment outputs are written atomically here;
/// a capture unit returns its features for [`FeatureWrite::run`], so the next unit can start
/// computing while they are encoded and written.
fn execute(ctx: &WorkerContext, a: &pb::Assignment) -> Result<Executed, UnitError> {
    let mut unit: UnitSpec = serde_json::from_str(&a.unit_json)
        .map_err(|e| UnitError::Invalid(format!("bad unit descriptor: {e}")))?;
    let manifest = match a.inputs_manifest.as_str() {
        "" => None,
        rel => Some(ctx.manifest_inputs(rel)?),
    };
    if let (Some(inputs), Some(listed)) = (unit.feature_inputs(), &manifest) {
        *inputs = listed.iter().map(|i| i.path.clone()).collect();
    }
    let rel = RunLayout::unit_output(unit.output_dir(), &a.unit_id, a.attempt);
    let target = ctx.run_dir.join(&rel);
    if !ctx.unit_delay.is_zero() {
        std::thread::sleep(ctx.unit_delay);
    }
    if let Some(listed) = &manifest {
        ctx.verify_inputs(listed)?;
    }
    match &unit {
        UnitSpec::Capture(c) => {
            let capturer = ctx.capturer()?;
            let stimuli = crate::capture::Stimuli {
                names: &ctx.data.stimuli[c.start..c.end],
                texts: &ctx.data.texts[c.start..c.end],
                first: c.start,
                images: Some(&ctx.images_dir),
            };
            let blocks =
                capturer.capture(&stimuli, ctx.spec.capture.batch_size, &c.representations)?;
            return Ok(Executed::Capture(FeatureWrite { rel, target, blocks }));
        }
        UnitSpec::Probe(p) => {
            let rows = crate::probe_unit::run(&ctx.run_dir, ctx.spec.model.device, &ctx.data, p)?;
            common::fs::write_atomic(&target, |f| {
                common::table::write_probe_rows(f, &target, &rows)
            })?;
        }
        UnitSpec::Grid(p) => {
            let rows = crate::probe_unit::run_grid(&ctx.run_dir, &ctx.data, p)?;
            common::fs::write_atomic(&target, |f| {
                common::table::write_grid_rows(f, &target, &rows)
            })?;
        }
        UnitSpec::Alignment(u) => {
            let inputs = ctx.alignment_inputs()?;
            let rows = crate::alignment_unit::run(
                &ctx.run_dir,
                ctx.spec.model.device,
                &ctx.data,
                &inputs,
                u,
            )?;
            common::fs::write_atomic(&target, |f| {
                common::table::write_alignment_rows(f, &target, &rows)
            })?;
        }
    }
    let (sum, bytes) = common::fs::checksum_file(&target)?;
    Ok(Executed::Written((rel, sum, bytes)))
}

impl WorkerContext {
    /// Checks every input against the blake3 its manifest entry was committed with before
    /// anything reads it (`probe_unit::gather`); the first that differs or cannot be read is
    /// [`UnitError::CorruptInput`]. A file already verified by this worker is hashed again only
    /// if its length or modification time changed.
    fn verify_inputs(&self, inputs: &[ManifestInput]) -> Result<(), UnitError> {
        for input in inputs {
            let (rel, sum) = (&input.path, input.checksum.as_str());
            let path = self.run_dir.join(rel);
            let stamp = std::fs::metadata(&path).ok().map(|m| (m.len(), m.modified().ok()));
            let known = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(rel).cloned();
            if let (Some((s, len, mtime)), Some(now)) = (known, stamp) {
                if s == sum && (len, mtime) == now {
                    continue;
                }
            }
            let verdict = common::fs::verify_file(&path, sum);
            if !verdict.matches() {
                return Err(UnitError::CorruptInput {
                    path: rel.clone(),
                    expected: sum.to_string(),
                    problem: verdict.to_string(),
                });
            }
            if let Some((len, mtime)) = stamp {
                let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                cache.insert(rel.clone(), (sum.to_string(), len, mtime));
            }
        }
        Ok(())
    }

    /// The inputs an inputs manifest lists (path and committed blake3), read once per manifest
    /// (a sweep has one per set of committed capture outputs).
    fn manifest_inputs(&self, rel: &str) -> Result<Arc<Vec<ManifestInput>>, UnitError> {
        let mut slot = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((name, inputs)) = slot.as_ref() {
            if name == rel {
                return Ok(inputs.clone());
            }
        }
        let manifest = common::unit::InputsManifest::read(&self.run_dir.join(rel))?;
        let inputs = Arc::new(manifest.inputs);
        *slot = Some((rel.to_string(), inputs.clone()));
        Ok(inputs)
    }

    fn alignment_inputs(&self) -> Result<Arc<AlignmentInputs>, UnitError> {
        let mut slot = self.alignment.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let a = Arc::new(AlignmentInputs::open(&RunLayout::new(&self.run_dir).alignment_inputs())?);
        *slot = Some(a.clone());
        Ok(a)
    }

    fn capturer(&self) -> Result<Arc<Capturer>, UnitError> {
        let mut slot = self.capturer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(Capturer::load(&self.spec.model, &self.spec.capture)?);
        *slot = Some(c.clone());
        Ok(c)
    }
}

/// Where a worker's run directory is, for messages.
pub fn describe(run_dir: &Path) -> String {
    run_dir.display().to_string()
}
