//! `Shared`: the state the handlers and the run loop share: the database behind a mutex reached on
//! blocking threads, the group-commit queue, the events the supervision loop subscribes to, and
//! the idle-poll wait.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tonic::Status;

use super::{internal, now_ms};
use common::ids::UnitKind;

use crate::db::{Completion, CompletionOutcome, StateDb};
use crate::lease::{Millis, RetryPolicy};
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
    pub(super) workers: Mutex<HashSet<String>>,
    /// Workers' last polls since the last supervision tick, which writes them.
    pub(super) seen: Mutex<HashMap<String, Millis>>,
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

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
    pub(super) async fn with_db<T: Send + 'static>(
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
    pub(super) fn notify(&self, event: ServiceEvent) {
        if let Some(tx) = self.events.get() {
            let _ = tx.try_send(event);
        }
    }

    pub(super) fn is_registered(&self, worker: &str) -> bool {
        lock(&self.workers).contains(worker)
    }

    /// The workers' last polls since the previous call (for the supervision tick to write).
    pub(crate) fn take_seen(&self) -> Vec<(String, Millis)> {
        lock(&self.seen).drain().collect()
    }

    /// Commits a verified completion with whatever others arrive meanwhile: the first caller
    /// to find no flush running flushes the queue on a blocking thread until it is empty.
    pub(super) async fn commit(
        self: &Arc<Self>,
        c: Completion,
    ) -> Result<CompletionOutcome, Status> {
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

    pub(super) fn flush_commits(&self) {
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
    pub(super) fn inputs_manifest(&self, db: &StateDb) -> Result<String, Status> {
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
