//! The handlers called directly, on a real state database in a temporary run directory.

use common::unit::{CaptureUnit, UnitSpec};
use tonic::Code;

use super::shared::MAX_WAIT_MS;
use super::*;
use crate::db::{AttemptOutcome, StateDb};
use crate::lease::RetryPolicy;

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
    let beat = pb::HeartbeatRequest { worker_id: "w99".into(), lease_ids: vec![lease_id(&u(), 1)] };
    let err = f.svc.heartbeat(Request::new(beat)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let (w1, w2) = (f.register("h1").await, f.register("h2").await);
    let a = f.lease(&w1).await.unwrap().expect("a lease");
    // w2 names w1's lease: its heartbeat is told the lease is not its own...
    let beat = pb::HeartbeatRequest { worker_id: w2.clone(), lease_ids: vec![a.lease_id.clone()] };
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
    assert!(error.ends_with("more bytes cut)"), "says it was cut: {}", &error[error.len() - 40..]);
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
        representation: common::unit::Representation::text("text.0", common::spec::Pooling::Mean),
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
    let manifest = common::unit::InputsManifest::read(&f.run_dir.join(&b.inputs_manifest)).unwrap();
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
