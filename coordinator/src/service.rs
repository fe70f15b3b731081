//! The gRPC service workers talk to. Handlers translate requests into `db.rs` transitions; the
//! bearer-token check is one interceptor, and errors become `tonic::Status` only here.
//!
//! This is the trust boundary: a caller holding the token is still only trusted with what it
//! holds. `Lease` and `Heartbeat` need a registered worker id; heartbeats, failures and releases
//! change a lease only when sent by its holder (`lease.rs`); free texts (host names, launcher
//! tags, error texts, release reasons) are cut to [`MAX_NAME`] / [`MAX_TEXT`] bytes, with control
//! characters replaced, before they are stored or printed; an output must be a regular file at
//! this attempt's own path, not a symlink.
//!
//! A lease for a stage-1 unit names the inputs manifest, which lists each input's recorded
//! blake3; a `Fail` naming a `corrupt_input` goes to `verify::corrupt_input_reported`, which
//! hashes the file itself before re-queuing its producer.
//!
//! A completion never removes a committed file: the same completion again (a retry after a lost
//! reply) is answered committed, and another attempt's surplus output is moved to `discarded/`.
//!
//! Load: handlers reach the database on blocking threads (`Shared::with_db`), each holding its
//! lock for one short transaction, so heartbeats never wait behind more than one of them and the
//! async threads keep serving. Completions that arrive together are committed in one fsynced
//! transaction (`Shared::commit`, a group commit). An idle `Lease` is answered from the
//! in-memory counts with a server-chosen `wait_ms` ([`poll_wait_ms`]: longer the more workers
//! there are, jittered so polls spread out); a worker's last poll is kept in memory and written
//! by the supervision tick. A lease of a unit that reads capture outputs names a manifest
//! (`manifests/inputs-<hash>.json`, written once per set of committed capture outputs) instead
//! of listing every input, so its size does not grow with the sweep.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use common::ids::{UnitId, UnitKind};
use common::proto::coordinator_server::{Coordinator, CoordinatorServer};
use common::proto::{self as pb, lease_reply::Outcome};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::db::{Completion, CompletionOutcome, Gone, StateDb};
use crate::lease::Millis;
use crate::lease::RetryPolicy;
use crate::supervise::ServiceEvent;

/// State shared by the handlers and the run loop.
pub(crate) struct Shared {
    pub(crate) db: Mutex<StateDb>,
    pub(crate) policy: RetryPolicy,
    pub(crate) run_dir: PathBuf,
    pub(crate) heartbeat_ms: u64,
    /// Set when the coordinator shuts down: workers are told to drain.
    pub(crate) draining: AtomicBool,
    /// Registered worker ids (a copy of the `workers` table's ids).
    workers: Mutex<HashSet<String>>,
    /// Workers' last polls since the last supervision tick, which writes them.
    seen: Mutex<HashMap<String, Millis>>,
    /// Verified completions waiting for the next group commit.
    commits: Mutex<CommitQueue>,
    /// The inputs manifest of the current committed capture outputs: (generation, path).
    manifest: Mutex<Option<(u64, String)>>,
    /// Where state changes are announced to the supervision loop (`Shared::subscribe`).
    events: OnceLock<tokio::sync::mpsc::Sender<ServiceEvent>>,
}

/// Completions waiting to be committed, and whether a flush is running.
#[derive(Default)]
struct CommitQueue {
    items: Vec<(Completion, tokio::sync::oneshot::Sender<Result<CompletionOutcome, String>>)>,
    flushing: bool,
}

/// Longest wait an idle worker is told before polling again, in milliseconds.
pub(crate) const MAX_WAIT_MS: u64 = 5_000;

/// How long an idle worker waits before polling again when `workers` are registered: about 200
/// polls per second in all, never under 500 ms or over [`MAX_WAIT_MS`], jittered by ±25 % so
/// workers that started together do not poll together.
pub(crate) fn poll_wait_ms(workers: usize) -> u64 {
    let base = (workers as u64 * 5).clamp(500, MAX_WAIT_MS * 4 / 5);
    let jitter: f64 = rand::random_range(0.75..1.25);
    ((base as f64 * jitter) as u64).min(MAX_WAIT_MS)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Shared state over an opened database.
    pub(crate) fn new(
        db: StateDb,
        policy: RetryPolicy,
        run_dir: PathBuf,
        heartbeat_ms: u64,
    ) -> rusqlite::Result<Shared> {
        let workers = db.worker_ids()?.into_iter().collect();
        Ok(Shared {
            db: Mutex::new(db),
            policy,
            run_dir,
            heartbeat_ms,
            draining: AtomicBool::new(false),
            workers: Mutex::new(workers),
            seen: Mutex::new(HashMap::new()),
            commits: Mutex::new(CommitQueue::default()),
            manifest: Mutex::new(None),
            events: OnceLock::new(),
        })
    }

    /// Runs `f` with the database on a blocking thread: waiting for the lock (another
    /// transaction's fsync) never blocks the async threads that carry the other calls.
    async fn with_db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Shared, &mut StateDb) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = shared.db();
            f(&shared, &mut db)
        })
        .await
        .map_err(internal)
    }

    /// The state changes handlers make from now on (one subscriber: the supervision loop).
    pub(crate) fn subscribe(&self) -> tokio::sync::mpsc::Receiver<ServiceEvent> {
        // Small: the loop coalesces a burst into one step, so a full channel loses nothing.
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let _ = self.events.set(tx);
        rx
    }

    /// Wakes the supervision loop, if one listens; never waits.
    fn notify(&self, event: ServiceEvent) {
        if let Some(tx) = self.events.get() {
            let _ = tx.try_send(event);
        }
    }

    fn is_registered(&self, worker: &str) -> bool {
        lock(&self.workers).contains(worker)
    }

    /// The workers' last polls since the previous call (for the supervision tick to write).
    pub(crate) fn take_seen(&self) -> Vec<(String, Millis)> {
        lock(&self.seen).drain().collect()
    }

    /// Commits a verified completion with whatever others arrive meanwhile: the first caller
    /// to find no flush running flushes the queue on a blocking thread until it is empty.
    async fn commit(self: &Arc<Self>, c: Completion) -> Result<CompletionOutcome, Status> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lead = {
            let mut q = lock(&self.commits);
            q.items.push((c, tx));
            !std::mem::replace(&mut q.flushing, true)
        };
        if lead {
            let shared = self.clone();
            tokio::task::spawn_blocking(move || shared.flush_commits());
        }
        rx.await.map_err(internal)?.map_err(Status::internal)
    }

    fn flush_commits(&self) {
        loop {
            let batch = {
                let mut q = lock(&self.commits);
                if q.items.is_empty() {
                    q.flushing = false;
                    return;
                }
                std::mem::take(&mut q.items)
            };
            let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            match self.db().complete_many(&items, now_ms()) {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
        }
    }

    /// The manifest of the committed capture outputs, written once per set of them.
    fn inputs_manifest(&self, db: &StateDb) -> Result<String, Status> {
        let generation = db.inputs_generation();
        let mut slot = lock(&self.manifest);
        if let Some((g, rel)) = slot.as_ref() {
            if *g == generation {
                return Ok(rel.clone());
            }
        }
        let inputs = db
            .committed_files(UnitKind::Capture)
            .map_err(internal)?
            .into_iter()
            .map(|f| common::unit::ManifestInput {
                unit: f.unit.0,
                path: f.output,
                checksum: f.checksum,
            })
            .collect();
        let json =
            serde_json::to_vec(&common::unit::InputsManifest { inputs }).map_err(internal)?;
        let rel = common::layout::RunLayout::inputs_manifest(&blake3::hash(&json).to_hex()[..16]);
        let path = self.run_dir.join(&rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(internal)?;
        }
        common::fs::write_bytes_atomic(&path, &json).map_err(internal)?;
        *slot = Some((generation, rel.clone()));
        Ok(rel)
    }
}

/// Wall-clock milliseconds: the only clock the service reads.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The service with its token interceptor.
pub(crate) fn server(
    shared: Arc<Shared>,
    token: String,
) -> InterceptedService<CoordinatorServer<Service>, impl tonic::service::Interceptor + Clone> {
    let expected = format!("Bearer {token}");
    let check = move |req: Request<()>| -> Result<Request<()>, Status> {
        match req.metadata().get("authorization").and_then(|v| v.to_str().ok()) {
            Some(v) if constant_time_eq(v.as_bytes(), expected.as_bytes()) => Ok(req),
            Some(_) => Err(Status::unauthenticated("wrong run token")),
            None => Err(Status::unauthenticated("missing run token (set DIFFPROBE_TOKEN)")),
        }
    };
    CoordinatorServer::with_interceptor(Service { shared }, check)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The handlers.
pub(crate) struct Service {
    shared: Arc<Shared>,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// Longest host name or launcher tag stored, in bytes.
pub(crate) const MAX_NAME: usize = 256;
/// Longest error text or release reason stored, in bytes.
pub(crate) const MAX_TEXT: usize = 4096;

/// `text` cut to at most `max` bytes at a character boundary (saying how much was cut), with
/// control characters other than newline and tab replaced, so a worker cannot flood the
/// database and the log or write terminal escapes into them.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let clean: String = text[..end]
        .chars()
        .map(|c| if c.is_control() && c != '\n' && c != '\t' { '?' } else { c })
        .collect();
    if end == text.len() {
        return clean;
    }
    format!("{clean}… ({} more bytes cut)", text.len() - end)
}

fn unknown_worker(worker: &str) -> Status {
    Status::permission_denied(format!(
        "unknown worker id {:?}: register first",
        bounded(worker, 64)
    ))
}

/// Lease ids are `unit#attempt`: an attempt is named, never reused.
pub(crate) fn lease_id(unit: &UnitId, attempt: u32) -> String {
    format!("{unit}#{attempt}")
}

/// A lease id from the wire: a unit id (checked here, where it enters) and an attempt.
fn parse_lease(id: &str) -> Result<(UnitId, u32), Status> {
    let bad = |why: &str| {
        Status::invalid_argument(format!("bad lease id {:?}: {why}", bounded(id, MAX_NAME)))
    };
    let (unit, attempt) = id.rsplit_once('#').ok_or_else(|| bad("no `#attempt`"))?;
    let attempt = attempt.parse().map_err(|_| bad("the attempt is not a number"))?;
    let unit = unit.parse::<UnitId>().map_err(|e| bad(&e.to_string()))?;
    Ok((unit, attempt))
}

#[tonic::async_trait]
impl Coordinator for Service {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        let r = req.into_inner();
        let id = self
            .shared
            .with_db(move |_, db| {
                db.register_worker(
                    &bounded(&r.host, MAX_NAME),
                    r.pid,
                    &bounded(&r.launcher_tag, MAX_NAME),
                    if r.device == "cuda" { "cuda" } else { "cpu" },
                    now_ms(),
                )
            })
            .await?
            .map_err(internal)?;
        lock(&self.shared.workers).insert(id.clone());
        self.shared.notify(ServiceEvent::Registered);
        Ok(Response::new(pb::RegisterReply {
            worker_id: id,
            run_dir: self.shared.run_dir.display().to_string(),
            heartbeat_ms: self.shared.heartbeat_ms,
        }))
    }

    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseReply>, Status> {
        let worker = req.into_inner().worker_id;
        let shared = &self.shared;
        if !shared.is_registered(&worker) {
            return Err(unknown_worker(&worker));
        }
        let now = now_ms();
        lock(&shared.seen).insert(worker.clone(), now);
        if shared.draining.load(Ordering::SeqCst) {
            shared
                .with_db(move |_, db| {
                    db.worker_gone(
                        &worker,
                        Gone::Finished,
                        "told to stop: coordinator shutting down",
                        now,
                    )
                })
                .await?
                .map_err(internal)?;
            return Ok(Response::new(pb::LeaseReply { outcome: Some(Outcome::Done(true)) }));
        }
        let outcome = shared
            .with_db(move |shared, db| -> Result<Outcome, Status> {
                match db.lease_next(&worker, now, shared.policy).map_err(internal)? {
                    Some(mut g) => {
                        // A unit that reads capture outputs gets them through a manifest file:
                        // the lease stays small however many capture units there are.
                        let inputs_manifest = match g.spec.feature_inputs() {
                            Some(inputs) => {
                                inputs.clear();
                                shared.inputs_manifest(db)?
                            }
                            None => String::new(),
                        };
                        Ok(Outcome::Assignment(pb::Assignment {
                            lease_id: lease_id(&g.unit, g.attempt),
                            unit_id: g.unit.0,
                            attempt: g.attempt,
                            unit_json: serde_json::to_string(&g.spec).map_err(internal)?,
                            ttl_ms: shared.policy.ttl_ms as u64,
                            inputs_manifest,
                        }))
                    }
                    None if db.has_open_work().map_err(internal)? => {
                        Ok(Outcome::WaitMs(poll_wait_ms(lock(&shared.workers).len())))
                    }
                    None => {
                        db.worker_gone(&worker, Gone::Finished, "sweep done", now)
                            .map_err(internal)?;
                        Ok(Outcome::Done(true))
                    }
                }
            })
            .await??;
        Ok(Response::new(pb::LeaseReply { outcome: Some(outcome) }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        let r = req.into_inner();
        let leases = r.lease_ids.iter().map(|l| parse_lease(l)).collect::<Result<Vec<_>, _>>()?;
        if !self.shared.is_registered(&r.worker_id) {
            return Err(unknown_worker(&r.worker_id));
        }
        let worker = r.worker_id;
        let lost = self
            .shared
            .with_db(move |shared, db| db.heartbeat(&worker, &leases, now_ms(), shared.policy))
            .await?
            .map_err(internal)?;
        Ok(Response::new(pb::HeartbeatReply {
            lost_lease_ids: lost.iter().map(|(u, a)| lease_id(u, *a)).collect(),
            drain: self.shared.draining.load(Ordering::SeqCst),
        }))
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteReply>, Status> {
        let r = req.into_inner();
        let (unit, attempt) = parse_lease(&r.lease_id)?;
        let shared = self.shared.clone();
        let path = checked_output_path(&shared.run_dir, &r.output_path, &unit, attempt)?;
        // Verify before committing: the file must be a regular file (not a symlink) and hash to
        // what the worker claims.
        let verified = tokio::task::spawn_blocking({
            let path = path.clone();
            move || {
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| common::error::DataError::Io { path: path.clone(), source: e })?;
                if !meta.file_type().is_file() {
                    return Err(common::error::DataError::Table {
                        path: path.clone(),
                        message: "not a regular file (a symlink or a directory)".into(),
                    });
                }
                common::fs::checksum_file(&path)
            }
        })
        .await
        .map_err(internal)?;
        let now = now_ms();
        match verified {
            Ok((sum, bytes)) if sum == r.checksum && bytes == r.bytes => {}
            Ok((sum, bytes)) => {
                let msg = format!("output {} failed verification: checksum {sum} ({bytes} bytes), worker claimed {} ({} bytes)", r.output_path, r.checksum, r.bytes);
                let msg = bounded(&msg, MAX_TEXT);
                return Err(fail_verification(&shared, r.worker_id, unit, attempt, msg, now).await);
            }
            Err(e) => {
                let msg = bounded(&format!("output cannot be verified: {e}"), MAX_TEXT);
                return Err(fail_verification(&shared, r.worker_id, unit, attempt, msg, now).await);
            }
        }
        let completion = Completion {
            unit,
            attempt,
            output: r.output_path.clone(),
            checksum: r.checksum.clone(),
        };
        let outcome = shared.commit(completion).await?;
        let (committed, duplicate) = match &outcome {
            CompletionOutcome::Committed | CompletionOutcome::Repeat => (true, false),
            CompletionOutcome::Duplicate { committed_output } => {
                // Another attempt's file is the committed one; this one is surplus. Move it
                // aside (never delete: it is someone's finished work), and never touch the
                // committed path even if a bug made them equal.
                if *committed_output != r.output_path {
                    set_aside(&shared.run_dir, &path);
                }
                (false, true)
            }
            CompletionOutcome::Stale => (false, false),
        };
        if committed {
            shared.notify(ServiceEvent::Committed);
        }
        Ok(Response::new(pb::CompleteReply { committed, duplicate }))
    }

    async fn fail(&self, req: Request<pb::FailRequest>) -> Result<Response<pb::FailReply>, Status> {
        let r = req.into_inner();
        let (unit, attempt) = parse_lease(&r.lease_id)?;
        let error = bounded(&r.error, MAX_TEXT);
        if !r.corrupt_input.is_empty() {
            // Trust, but verify: only a file that really changed re-queues its producer.
            let shared = self.shared.clone();
            let (input, worker) = (r.corrupt_input.clone(), r.worker_id.clone());
            let (unit, error) = (unit.clone(), error.clone());
            let waits = tokio::task::spawn_blocking(move || {
                crate::verify::corrupt_input_reported(
                    &shared, &worker, &unit, attempt, &input, &error,
                )
            })
            .await
            .map_err(internal)?
            .map_err(internal)?;
            if waits {
                return Ok(Response::new(pb::FailReply {}));
            }
        }
        self.shared
            .with_db(move |shared, db| {
                db.fail(&r.worker_id, &unit, attempt, &error, r.retryable, now_ms(), shared.policy)
            })
            .await?
            .map_err(internal)?;
        self.shared.notify(ServiceEvent::Failed);
        Ok(Response::new(pb::FailReply {}))
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseReply>, Status> {
        let r = req.into_inner();
        let (unit, attempt) = parse_lease(&r.lease_id)?;
        let reason = bounded(&r.reason, MAX_TEXT);
        self.shared
            .with_db(move |_, db| db.release(&r.worker_id, &unit, attempt, &reason, now_ms()))
            .await?
            .map_err(internal)?;
        self.shared.notify(ServiceEvent::Released);
        Ok(Response::new(pb::ReleaseReply {}))
    }
}

/// Records a completion that failed verification as a retryable failure; the error to return.
async fn fail_verification(
    shared: &Arc<Shared>,
    worker: String,
    unit: UnitId,
    attempt: u32,
    msg: String,
    now: Millis,
) -> Status {
    let status = Status::data_loss(msg.clone());
    let failed = shared
        .with_db(move |shared, db| db.fail(&worker, &unit, attempt, &msg, true, now, shared.policy))
        .await;
    match failed {
        Ok(Ok(())) => status,
        Ok(Err(e)) => internal(e),
        Err(e) => e,
    }
}

/// Moves a surplus output to `discarded/` under the run directory; failing that, leaves it.
fn set_aside(run_dir: &Path, path: &Path) {
    let dir = common::layout::RunLayout::new(run_dir).discarded_dir();
    if let Some(name) = path.file_name() {
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::rename(path, dir.join(name));
        }
    }
}

/// The output path must be the one this attempt is allowed to write: relative, inside the run
/// directory, named after the unit and attempt.
fn checked_output_path(
    run_dir: &Path,
    rel: &str,
    unit: &UnitId,
    attempt: u32,
) -> Result<PathBuf, Status> {
    let p = Path::new(rel);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    let dir = p.parent().and_then(|d| d.to_str()).unwrap_or("");
    let expected = common::layout::RunLayout::unit_output(dir, unit.as_str(), attempt);
    if !plain || rel != expected || !UnitKind::is_output_dir(dir) {
        return Err(Status::invalid_argument(format!(
            "output path {:?} is not this attempt's output",
            bounded(rel, MAX_NAME)
        )));
    }
    Ok(run_dir.join(p))
}

#[cfg(test)]
mod tests {
    //! The handlers called directly, on a real state database in a temporary run directory.

    use common::unit::{CaptureUnit, UnitSpec};
    use tonic::Code;

    use super::*;
    use crate::db::AttemptOutcome;

    /// Leases last 1 ms, so a test can expire one by waiting a little; nothing here expires
    /// leases unless a test calls `expire`.
    const POLICY: RetryPolicy = RetryPolicy { max_failures: 3, backoff_ms: 0, ttl_ms: 1 };

    struct Fixture {
        _dir: tempfile::TempDir,
        run_dir: PathBuf,
        svc: Service,
    }

    /// The capture unit of [`fixture`].
    fn u() -> UnitId {
        UnitId::of(UnitKind::Capture, &"u")
    }

    /// The probe unit of [`add_probe`].
    fn p() -> UnitId {
        UnitId::of(UnitKind::Probe, &"p")
    }

    /// A run directory with one capture unit `u`.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        common::layout::RunLayout::new(&run_dir).create_dirs().unwrap();
        let mut db = StateDb::open(&run_dir.join("state.sqlite")).unwrap();
        let unit =
            UnitSpec::Capture(CaptureUnit { shard: 0, start: 0, end: 1, representations: vec![] });
        db.insert_units(&[(u(), unit)], 0).unwrap();
        let shared = Arc::new(Shared::new(db, POLICY, run_dir.clone(), 500).unwrap());
        Fixture { _dir: dir, run_dir, svc: Service { shared } }
    }

    impl Fixture {
        async fn register(&self, host: &str) -> String {
            let req = pb::RegisterRequest {
                host: host.into(),
                pid: 1,
                launcher_tag: "t".into(),
                device: "cpu".into(),
            };
            self.svc.register(Request::new(req)).await.unwrap().into_inner().worker_id
        }

        async fn lease(&self, worker: &str) -> Result<Option<pb::Assignment>, Status> {
            let req = pb::LeaseRequest { worker_id: worker.into() };
            let reply = self.svc.lease(Request::new(req)).await?.into_inner();
            Ok(match reply.outcome {
                Some(Outcome::Assignment(a)) => Some(a),
                Some(Outcome::WaitMs(_) | Outcome::Done(_)) | None => None,
            })
        }

        /// Writes `bytes` as attempt `attempt`'s output and returns the completion request.
        fn write_output(&self, worker: &str, attempt: u32, bytes: &[u8]) -> pb::CompleteRequest {
            let rel = common::layout::RunLayout::unit_output("features", u().as_str(), attempt);
            std::fs::write(self.run_dir.join(&rel), bytes).unwrap();
            pb::CompleteRequest {
                lease_id: lease_id(&u(), attempt),
                output_path: rel,
                checksum: blake3::hash(bytes).to_hex().to_string(),
                bytes: bytes.len() as u64,
                worker_id: worker.into(),
            }
        }

        async fn complete(&self, req: &pb::CompleteRequest) -> Result<(bool, bool), Status> {
            let r = self.svc.complete(Request::new(req.clone())).await?.into_inner();
            Ok((r.committed, r.duplicate))
        }

        /// (state, error) of unit `u`.
        fn unit(&self) -> (String, String) {
            let rows = self.svc.shared.db().unit_rows().unwrap();
            (rows[0].state.to_string(), rows[0].error.clone())
        }

        fn committed_output(&self) -> Vec<String> {
            let db = self.svc.shared.db();
            db.committed_outputs(UnitKind::Capture).unwrap()
        }
    }

    /// Would catch leases that list every input again (4.7 MB at 10⁵ capture units, past
    /// gRPC's 4 MiB limit) or a manifest rewritten on every lease: a probe lease at 10⁵
    /// committed capture units stays under 1 KiB encoded, and names one manifest that lists
    /// them all in plan order.
    #[tokio::test]
    async fn a_probe_lease_at_many_committed_capture_units_stays_small() {
        const CAPTURES: usize = 100_000;
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        common::layout::RunLayout::new(&run_dir).create_dirs().unwrap();
        let mut db = StateDb::open(&run_dir.join("state.sqlite")).unwrap();
        let rep = common::unit::Representation::text("text.1", common::spec::Pooling::Mean);
        let mut units: Vec<(UnitId, UnitSpec)> = (0..CAPTURES)
            .map(|i| {
                let u = CaptureUnit { shard: i, start: i, end: i + 1, representations: vec![] };
                (UnitId::of(UnitKind::Capture, &i), UnitSpec::Capture(u))
            })
            .collect();
        for fold in 0..2 {
            let u = common::unit::ProbeUnit {
                representation: rep.clone(),
                folds: vec![fold],
                settings: Default::default(),
                inputs: vec![],
            };
            units.push((UnitId::of(UnitKind::Probe, &fold), UnitSpec::Probe(u)));
        }
        let captures: Vec<String> = units[..CAPTURES].iter().map(|(id, _)| id.0.clone()).collect();
        db.insert_units(&units, 0).unwrap();
        db.commit_all(UnitKind::Capture);
        let shared = Arc::new(Shared::new(db, POLICY, run_dir.clone(), 500).unwrap());
        let f = Fixture { _dir: dir, run_dir, svc: Service { shared } };
        let w = f.register("h").await;
        let mut manifests = Vec::new();
        for _ in 0..2 {
            let req = pb::LeaseRequest { worker_id: w.clone() };
            let reply = f.svc.lease(Request::new(req)).await.unwrap().into_inner();
            let bytes = prost::Message::encoded_len(&reply);
            assert!(bytes < 1024, "a lease of {bytes} bytes");
            let Some(Outcome::Assignment(a)) = reply.outcome else { panic!("no lease: {reply:?}") };
            let unit: UnitSpec = serde_json::from_str(&a.unit_json).unwrap();
            assert!(matches!(&unit, UnitSpec::Probe(p) if p.inputs.is_empty()), "{unit:?}");
            manifests.push(a.inputs_manifest);
        }
        assert_eq!(manifests[0], manifests[1], "one manifest per set of committed captures");
        let m = common::unit::InputsManifest::read(&f.run_dir.join(&manifests[0])).unwrap();
        assert_eq!(m.inputs.len(), CAPTURES);
        assert_eq!(m.inputs[0].path, format!("features/{}.a1.parquet", captures[0]));
        assert!(m.inputs.iter().map(|i| &i.unit).eq(captures.iter()), "plan order");
    }

    /// Would catch an unbounded or unjittered idle wait: every wait is within
    /// [375 ms, MAX_WAIT_MS], they differ, and more workers wait longer.
    #[test]
    fn idle_waits_are_bounded_jittered_and_grow_with_the_workers() {
        let mean = |n: usize| {
            let w: Vec<u64> = (0..500).map(|_| poll_wait_ms(n)).collect();
            assert!(w.iter().all(|&ms| (375..=MAX_WAIT_MS).contains(&ms)), "{n}: {w:?}");
            assert!(w.iter().any(|&ms| ms != w[0]), "no jitter");
            w.iter().sum::<u64>() / 500
        };
        assert!(mean(1) < mean(500) && mean(500) <= mean(1_000_000));
    }

    #[tokio::test]
    async fn a_retried_complete_is_answered_committed_and_keeps_the_committed_file() {
        let f = fixture();
        let w1 = f.register("h").await;
        let a = f.lease(&w1).await.unwrap().expect("a lease");
        let req = f.write_output(&w1, a.attempt, b"features");
        // The reply to the first call is lost; the worker sends the very same request again.
        assert_eq!(f.complete(&req).await.unwrap(), (true, false));
        assert_eq!(f.complete(&req).await.unwrap(), (true, false), "a retry is committed again");
        assert_eq!(f.complete(&req).await.unwrap(), (true, false));
        assert!(f.run_dir.join(&req.output_path).exists(), "the committed file is still there");
        assert_eq!(f.committed_output(), std::slice::from_ref(&req.output_path));
        assert_eq!(f.unit().0, "committed");
    }

    #[tokio::test]
    async fn a_late_attempt_is_set_aside_and_the_committed_file_is_never_touched() {
        let f = fixture();
        let (w1, w2) = (f.register("h1").await, f.register("h2").await);
        let first = f.lease(&w1).await.unwrap().expect("a lease");
        // w1 goes silent; its lease expires and w2 takes the unit.
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(f.svc.shared.db().expire(now_ms(), POLICY).unwrap(), 1);
        let second = f.lease(&w2).await.unwrap().expect("a second lease");
        assert_eq!((first.attempt, second.attempt), (1, 2));
        let done = f.write_output(&w2, 2, b"second");
        assert_eq!(f.complete(&done).await.unwrap(), (true, false));
        // w1 finishes late: a duplicate; its file moves to discarded/, w2's stays.
        let late = f.write_output(&w1, 1, b"first");
        assert_eq!(f.complete(&late).await.unwrap(), (false, true));
        assert!(f.run_dir.join(&done.output_path).exists());
        assert!(!f.run_dir.join(&late.output_path).exists());
        let aside = format!("discarded/{}.a1.parquet", u());
        assert!(f.run_dir.join(aside).exists(), "set aside, not deleted");
        // w2 retrying its completion after that is still committed, and w1 retrying is still a
        // duplicate (its file is gone now, so it fails verification, which changes nothing).
        assert_eq!(f.complete(&done).await.unwrap(), (true, false));
        assert_eq!(f.complete(&late).await.unwrap_err().code(), Code::DataLoss);
        assert_eq!(f.committed_output(), std::slice::from_ref(&done.output_path));
        assert_eq!(f.unit().0, "committed");
    }

    #[tokio::test]
    async fn unregistered_workers_are_refused_and_a_worker_cannot_touch_another_ones_lease() {
        let f = fixture();
        let err = f.lease("w99").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        let beat =
            pb::HeartbeatRequest { worker_id: "w99".into(), lease_ids: vec![lease_id(&u(), 1)] };
        let err = f.svc.heartbeat(Request::new(beat)).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);

        let (w1, w2) = (f.register("h1").await, f.register("h2").await);
        let a = f.lease(&w1).await.unwrap().expect("a lease");
        // w2 names w1's lease: its heartbeat is told the lease is not its own...
        let beat =
            pb::HeartbeatRequest { worker_id: w2.clone(), lease_ids: vec![a.lease_id.clone()] };
        let reply = f.svc.heartbeat(Request::new(beat)).await.unwrap().into_inner();
        assert_eq!(reply.lost_lease_ids, std::slice::from_ref(&a.lease_id));
        // ...and its fatal failure and its release change nothing.
        let fail = pb::FailRequest {
            lease_id: a.lease_id.clone(),
            error: "forged".into(),
            retryable: false,
            worker_id: w2.clone(),
            corrupt_input: String::new(),
        };
        f.svc.fail(Request::new(fail)).await.unwrap();
        let release = pb::ReleaseRequest {
            lease_id: a.lease_id.clone(),
            reason: "forged".into(),
            worker_id: w2.clone(),
        };
        f.svc.release(Request::new(release)).await.unwrap();
        assert_eq!(f.unit(), ("leased".to_string(), String::new()));
        // The holder's own heartbeat still holds it.
        let beat = pb::HeartbeatRequest { worker_id: w1.clone(), lease_ids: vec![a.lease_id] };
        let reply = f.svc.heartbeat(Request::new(beat)).await.unwrap().into_inner();
        assert!(reply.lost_lease_ids.is_empty());
    }

    #[tokio::test]
    async fn huge_host_names_and_error_texts_are_cut_before_they_are_stored() {
        let f = fixture();
        let w1 = f.register(&format!("\x1b[31m{}", "h".repeat(4_000_000))).await;
        let hosts: Vec<String> =
            f.svc.shared.db().workers().unwrap().into_iter().map(|w| w.host).collect();
        assert!(hosts[0].len() < MAX_NAME + 64, "host stored with {} bytes", hosts[0].len());
        assert!(!hosts[0].contains('\x1b'), "control characters replaced");
        let a = f.lease(&w1).await.unwrap().expect("a lease");
        let fail = pb::FailRequest {
            lease_id: a.lease_id,
            error: "é".repeat(2_000_000),
            retryable: false,
            worker_id: w1,
            corrupt_input: String::new(),
        };
        f.svc.fail(Request::new(fail)).await.unwrap();
        let (state, error) = f.unit();
        assert_eq!(state, "quarantined");
        assert!(error.len() < MAX_TEXT + 64, "error stored with {} bytes", error.len());
        assert!(
            error.ends_with("more bytes cut)"),
            "says it was cut: {}",
            &error[error.len() - 40..]
        );
    }

    #[tokio::test]
    async fn an_output_that_is_a_symlink_is_refused() {
        let f = fixture();
        let w1 = f.register("h").await;
        let a = f.lease(&w1).await.unwrap().expect("a lease");
        let outside = f.run_dir.parent().unwrap().join("outside.parquet");
        std::fs::write(&outside, b"not ours").unwrap();
        let rel = common::layout::RunLayout::unit_output("features", u().as_str(), a.attempt);
        std::os::unix::fs::symlink(&outside, f.run_dir.join(&rel)).unwrap();
        let req = pb::CompleteRequest {
            lease_id: a.lease_id,
            output_path: rel,
            checksum: blake3::hash(b"not ours").to_hex().to_string(),
            bytes: 8,
            worker_id: w1,
        };
        let err = f.complete(&req).await.unwrap_err();
        assert_eq!(err.code(), Code::DataLoss);
        assert!(err.message().contains("not a regular file"), "{}", err.message());
        assert!(f.committed_output().is_empty());
    }

    /// Adds a probe unit `p` (stage 1) reading `u`'s output.
    fn add_probe(f: &Fixture) {
        let probe = UnitSpec::Probe(common::unit::ProbeUnit {
            representation: common::unit::Representation::text(
                "text.0",
                common::spec::Pooling::Mean,
            ),
            folds: vec![0],
            settings: Default::default(),
            inputs: vec![],
        });
        f.svc.shared.db().insert_units(&[(p(), probe)], 0).unwrap();
    }

    fn state_of(f: &Fixture, unit: &UnitId) -> (String, u32) {
        let rows = f.svc.shared.db().unit_rows().unwrap();
        let row = rows.into_iter().find(|r| &r.id == unit).unwrap();
        let failures: u32 = f
            .svc
            .shared
            .db()
            .failed_attempts()
            .unwrap()
            .iter()
            .filter(|a| &a.unit == unit && a.outcome == AttemptOutcome::Failed)
            .count() as u32;
        (row.state.to_string(), failures)
    }

    #[tokio::test]
    async fn a_corrupt_input_requeues_its_producer_and_the_consumer_waits_uncounted() {
        let f = fixture();
        add_probe(&f);
        let w1 = f.register("h").await;
        let a = f.lease(&w1).await.unwrap().expect("the capture unit");
        let done = f.write_output(&w1, a.attempt, b"features of u");
        assert_eq!(f.complete(&done).await.unwrap(), (true, false));
        let b = f.lease(&w1).await.unwrap().expect("the probe unit");
        assert_eq!(b.unit_id, p().0);
        // The lease's manifest lists the checksum each input was committed with.
        let manifest =
            common::unit::InputsManifest::read(&f.run_dir.join(&b.inputs_manifest)).unwrap();
        assert_eq!(manifest.inputs.len(), 1);
        assert_eq!(manifest.inputs[0].path, done.output_path);
        assert_eq!(manifest.inputs[0].checksum, done.checksum);

        // A worker claiming an intact input is corrupt gets an ordinary failure.
        let claim = |lease: &pb::Assignment| pb::FailRequest {
            lease_id: lease.lease_id.clone(),
            error: "input failed verification".into(),
            retryable: true,
            worker_id: w1.clone(),
            corrupt_input: done.output_path.clone(),
        };
        f.svc.fail(Request::new(claim(&b))).await.unwrap();
        assert_eq!(state_of(&f, &p()), ("pending".into(), 1), "counted: the file is intact");
        assert_eq!(state_of(&f, &u()).0, "committed");

        // The file really rots: the producer re-runs, the consumer waits, nothing is counted.
        let c = f.lease(&w1).await.unwrap().expect("the probe unit again");
        std::fs::write(f.run_dir.join(&done.output_path), b"features of X").unwrap();
        f.svc.fail(Request::new(claim(&c))).await.unwrap();
        assert_eq!(state_of(&f, &u()).0, "pending", "the producer is re-queued");
        assert_eq!(state_of(&f, &p()), ("pending".into(), 1), "released, not failed again");
        assert!(!f.run_dir.join(&done.output_path).exists());
        let aside = format!("corrupt/{}.a1.parquet", u());
        assert!(f.run_dir.join(aside).exists(), "set aside, not deleted");
        // The producer is leased next (the consumer waits for it), as a new attempt.
        let again = f.lease(&w1).await.unwrap().expect("the producer again");
        assert_eq!((again.unit_id.as_str(), again.attempt), (u().as_str(), 2));
        assert!(f.lease(&w1).await.unwrap().is_none(), "the consumer waits for its input");
    }
}
