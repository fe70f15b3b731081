//! The gRPC service workers talk to. Handlers translate requests into `db.rs` transitions; the
//! bearer-token check is one interceptor, and errors become `tonic::Status` only here.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::proto::coordinator_server::{Coordinator, CoordinatorServer};
use common::proto::{self as pb, lease_reply::Outcome};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::db::{CompletionOutcome, StateDb};
use crate::lease::RetryPolicy;

/// State shared by the handlers and the run loop.
pub(crate) struct Shared {
    pub(crate) db: Mutex<StateDb>,
    pub(crate) policy: RetryPolicy,
    pub(crate) run_dir: PathBuf,
    pub(crate) heartbeat_ms: u64,
    /// Set when the coordinator shuts down: workers are told to drain.
    pub(crate) draining: AtomicBool,
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

/// Lease ids are `unit#attempt`: an attempt is named, never reused.
pub(crate) fn lease_id(unit: &str, attempt: u32) -> String {
    format!("{unit}#{attempt}")
}

fn parse_lease(id: &str) -> Result<(String, u32), Status> {
    let (unit, attempt) = id
        .rsplit_once('#')
        .ok_or_else(|| Status::invalid_argument(format!("bad lease id {id:?}")))?;
    let attempt =
        attempt.parse().map_err(|_| Status::invalid_argument(format!("bad lease id {id:?}")))?;
    Ok((unit.to_string(), attempt))
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
            .db()
            .register_worker(
                &r.host,
                r.pid,
                &r.launcher_tag,
                if r.device == "cuda" { "cuda" } else { "cpu" },
                now_ms(),
            )
            .map_err(internal)?;
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
        if shared.draining.load(Ordering::SeqCst) {
            shared
                .db()
                .worker_gone(
                    &worker,
                    "finished",
                    "told to stop: coordinator shutting down",
                    now_ms(),
                )
                .map_err(internal)?;
            return Ok(Response::new(pb::LeaseReply { outcome: Some(Outcome::Done(true)) }));
        }
        let now = now_ms();
        let mut db = shared.db();
        db.touch_worker(&worker, now).map_err(internal)?;
        let granted = db.lease_next(&worker, now, shared.policy).map_err(internal)?;
        let outcome = match granted {
            Some(mut g) => {
                if let Some(inputs) = g.spec.feature_inputs() {
                    *inputs = db
                        .committed_outputs("capture")
                        .map_err(internal)?
                        .into_iter()
                        .map(|(_, path)| path)
                        .collect();
                }
                Outcome::Assignment(pb::Assignment {
                    lease_id: lease_id(&g.unit, g.attempt),
                    unit_id: g.unit,
                    attempt: g.attempt,
                    unit_json: serde_json::to_string(&g.spec).map_err(internal)?,
                    ttl_ms: shared.policy.ttl_ms as u64,
                })
            }
            None => {
                if db.has_open_work().map_err(internal)? {
                    Outcome::WaitMs(500)
                } else {
                    db.worker_gone(&worker, "finished", "sweep done", now).map_err(internal)?;
                    Outcome::Done(true)
                }
            }
        };
        Ok(Response::new(pb::LeaseReply { outcome: Some(outcome) }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        let r = req.into_inner();
        let leases = r.lease_ids.iter().map(|l| parse_lease(l)).collect::<Result<Vec<_>, _>>()?;
        let lost = self
            .shared
            .db()
            .heartbeat(&r.worker_id, &leases, now_ms(), self.shared.policy)
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
        // Verify before committing: the file must exist and hash to what the worker claims.
        let verified = tokio::task::spawn_blocking({
            let path = path.clone();
            move || common::fs::checksum_file(&path)
        })
        .await
        .map_err(internal)?;
        let now = now_ms();
        match verified {
            Ok((sum, bytes)) if sum == r.checksum && bytes == r.bytes => {}
            Ok((sum, bytes)) => {
                let msg = format!("output {} failed verification: checksum {sum} ({bytes} bytes), worker claimed {} ({} bytes)", r.output_path, r.checksum, r.bytes);
                shared
                    .db()
                    .fail(&unit, attempt, &msg, true, now, shared.policy)
                    .map_err(internal)?;
                return Err(Status::data_loss(msg));
            }
            Err(e) => {
                let msg = format!("output cannot be verified: {e}");
                shared
                    .db()
                    .fail(&unit, attempt, &msg, true, now, shared.policy)
                    .map_err(internal)?;
                return Err(Status::data_loss(msg));
            }
        }
        let outcome = shared
            .db()
            .complete(&unit, attempt, &r.output_path, &r.checksum, now)
            .map_err(internal)?;
        if outcome != CompletionOutcome::Committed {
            // First committed output wins; this one is not referenced anywhere.
            let _ = std::fs::remove_file(&path);
        }
        Ok(Response::new(pb::CompleteReply {
            committed: outcome == CompletionOutcome::Committed,
            duplicate: outcome == CompletionOutcome::Duplicate,
        }))
    }

    async fn fail(&self, req: Request<pb::FailRequest>) -> Result<Response<pb::FailReply>, Status> {
        let r = req.into_inner();
        let (unit, attempt) = parse_lease(&r.lease_id)?;
        self.shared
            .db()
            .fail(&unit, attempt, &r.error, r.retryable, now_ms(), self.shared.policy)
            .map_err(internal)?;
        Ok(Response::new(pb::FailReply {}))
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseReply>, Status> {
        let r = req.into_inner();
        let (unit, attempt) = parse_lease(&r.lease_id)?;
        self.shared.db().release(&unit, attempt, &r.reason, now_ms()).map_err(internal)?;
        Ok(Response::new(pb::ReleaseReply {}))
    }
}

/// The output path must be the one this attempt is allowed to write: relative, inside the run
/// directory, named after the unit and attempt.
fn checked_output_path(
    run_dir: &Path,
    rel: &str,
    unit: &str,
    attempt: u32,
) -> Result<PathBuf, Status> {
    let p = Path::new(rel);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    let dir = p.parent().and_then(|d| d.to_str()).unwrap_or("");
    let expected = common::layout::RunLayout::unit_output(dir, unit, attempt);
    if !plain || rel != expected || !matches!(dir, "features" | "probes" | "alignment") {
        return Err(Status::invalid_argument(format!(
            "output path {rel:?} is not this attempt's output"
        )));
    }
    Ok(run_dir.join(p))
}
