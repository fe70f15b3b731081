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

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::ids::{UnitId, UnitKind};
use common::proto::coordinator_server::{Coordinator, CoordinatorServer};
use common::proto::{self as pb, lease_reply::Outcome};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::db::{Completion, CompletionOutcome, Gone};
use crate::lease::Millis;
use crate::supervise::ServiceEvent;

mod shared;
use shared::lock;
pub(crate) use shared::{poll_wait_ms, Shared};

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
mod tests;
