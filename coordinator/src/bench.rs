//! `diffprobe bench-coordinator` (hidden; `scripts/bench-coordinator`): a load harness for the
//! coordinator, bounded in time, against loopback.
//!
//! It plans synthetic runs straight into a state database (trivial capture units, and probe
//! units that wait for them), starts a coordinator process on that run directory (`--serve`:
//! the gRPC service and the same supervision events and steps as `supervise.rs`, without a launcher),
//! and drives it with simulated gRPC workers from this process: each lease is answered by
//! writing a few bytes to the attempt's output and completing it, so the coordinator verifies
//! and commits a real file. The coordinator's CPU and RSS are read from `/proc`.
//!
//! Scenarios: lease + complete per second with 1 / 64 / 512 workers; heartbeat latency of 4
//! busy workers while ~500 idle workers poll; the idle coordinator's CPU at 10⁵ units; the
//! time to hash and insert 10⁶ units (the part of `plan` that grows with the unit count).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use common::ids::{UnitId, UnitKind};
use common::layout::RunLayout;
use common::proto::coordinator_client::CoordinatorClient;
use common::proto::{self as pb, lease_reply::Outcome};
use common::spec::Pooling;
use common::unit::{CaptureUnit, ProbeUnit, Representation, UnitSpec};
use tonic::codegen::InterceptedService;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use crate::db::StateDb;
use crate::lease::RetryPolicy;
use crate::service::{now_ms, Shared};

const TOKEN: &str = "bench";

/// What to measure.
#[derive(Debug, Clone)]
pub(crate) struct BenchArgs {
    /// Units in each synthetic run.
    pub(crate) units: usize,
    /// Seconds each scenario runs.
    pub(crate) seconds: f64,
    /// Worker counts of the throughput scenario.
    pub(crate) workers: Vec<usize>,
    /// Idle pollers of the heartbeat scenario.
    pub(crate) idle: usize,
    /// Units of the plan scenario (0 skips it).
    pub(crate) plan_units: usize,
    /// Where the synthetic run directories go.
    pub(crate) dir: PathBuf,
}

/// Runs every scenario and prints one line per measurement.
pub(crate) async fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let secs = Duration::from_secs_f64(args.seconds);
    println!(
        "bench-coordinator: {} units, {} s per scenario, {}",
        args.units,
        args.seconds,
        dir.display()
    );
    for &w in &args.workers {
        let run = synthetic_run(&dir.join(format!("throughput-{w}")), args.units, 0)?;
        let coord = Coordinator::start(&run)?;
        let done = Arc::new(AtomicU64::new(0));
        let lat = Arc::new(Mutex::new(Vec::new()));
        let stop = Instant::now() + secs;
        let cpu0 = coord.cpu_s();
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..w {
            let (addr, run, done, lat) =
                (coord.address.clone(), run.clone(), done.clone(), lat.clone());
            tasks.push(tokio::spawn(async move {
                busy_worker(&addr, &run, i, stop, &done, &lat).await
            }));
        }
        for t in tasks {
            t.await??;
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = (coord.cpu_s() - cpu0) / wall * 100.0;
        let n = done.load(Ordering::Relaxed);
        let errors = ERRORS.swap(0, Ordering::Relaxed);
        let mut lat = lat.lock().unwrap().clone();
        println!(
            "throughput  workers {w:>4}: {:>8.0} lease+complete/s  ({n} in {wall:.1} s; p50 {:.1} ms p99 {:.1} ms per pair)  coordinator CPU {cpu:.0} %  RSS {:.0} MiB  transport errors {errors}",
            n as f64 / wall,
            percentile(&mut lat, 0.5),
            percentile(&mut lat, 0.99),
            coord.rss_mib()
        );
        drop(coord);
    }
    if args.idle > 0 {
        // 4 capture units held by 4 busy workers; every other unit waits for them.
        let run = synthetic_run(&dir.join("idle-flood"), args.units, 4)?;
        let coord = Coordinator::start(&run)?;
        let mut holders = Vec::new();
        for i in 0..4 {
            let mut rpc = client(&coord.address)?;
            let far = Instant::now() + Duration::from_secs(3600);
            let id = register(&rpc, &format!("busy-{i}"), far).await?.expect("registered");
            let reply = rpc.lease(pb::LeaseRequest { worker_id: id.clone() }).await?.into_inner();
            let Some(Outcome::Assignment(a)) = reply.outcome else {
                anyhow::bail!("busy worker {i} got no capture unit: {reply:?}")
            };
            holders.push((rpc, id, a.lease_id));
        }
        let stop = Instant::now() + secs;
        let polls = Arc::new(AtomicU64::new(0));
        let waits = Arc::new(Mutex::new(Vec::new()));
        let quit = Arc::new(AtomicBool::new(false));
        let mut idle = Vec::new();
        for i in 0..args.idle {
            let (addr, polls, waits, quit) =
                (coord.address.clone(), polls.clone(), waits.clone(), quit.clone());
            idle.push(tokio::spawn(
                async move { idle_worker(&addr, i, &polls, &waits, &quit).await },
            ));
        }
        // Let the flood start, then measure.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (p0, cpu0, t0) = (polls.load(Ordering::Relaxed), coord.cpu_s(), Instant::now());
        let beats = Arc::new(Mutex::new(Vec::new()));
        let mut busy = Vec::new();
        for (mut rpc, id, lease) in holders {
            let beats = beats.clone();
            busy.push(tokio::spawn(async move {
                while Instant::now() < stop {
                    let t = Instant::now();
                    let req = pb::HeartbeatRequest {
                        worker_id: id.clone(),
                        lease_ids: vec![lease.clone()],
                    };
                    let r = rpc.heartbeat(req).await;
                    beats.lock().unwrap().push(t.elapsed().as_secs_f64() * 1e3);
                    if let Err(e) = r {
                        eprintln!("heartbeat failed: {e}");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }));
        }
        for b in busy {
            b.await?;
        }
        let wall = t0.elapsed().as_secs_f64();
        let served = polls.load(Ordering::Relaxed) - p0;
        let cpu = (coord.cpu_s() - cpu0) / wall * 100.0;
        quit.store(true, Ordering::Relaxed);
        for t in idle {
            let _ = t.await;
        }
        let mut beats = beats.lock().unwrap().clone();
        let mut waits = waits.lock().unwrap().clone();
        let errors = ERRORS.swap(0, Ordering::Relaxed);
        println!(
            "idle flood  {} pollers + 4 busy: heartbeat p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({} beats)  polls served {:.0}/s (wait asked p50 {:.0} ms)  coordinator CPU {cpu:.0} %  RSS {:.0} MiB  transport errors {errors}",
            args.idle,
            percentile(&mut beats, 0.5),
            percentile(&mut beats, 0.99),
            percentile(&mut beats, 1.0),
            beats.len(),
            served as f64 / wall,
            percentile(&mut waits, 0.5),
            coord.rss_mib()
        );
        drop(coord);
        // The same run with nobody polling: what the coordinator costs doing nothing.
        let coord = Coordinator::start(&run)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (cpu0, t0) = (coord.cpu_s(), Instant::now());
        tokio::time::sleep(secs).await;
        let cpu = (coord.cpu_s() - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
        println!(
            "idle        {} units, no workers: coordinator CPU {cpu:.1} % of a core  RSS {:.0} MiB",
            args.units,
            coord.rss_mib()
        );
    }
    if args.plan_units > 0 {
        let path = dir.join("plan");
        let _ = std::fs::remove_dir_all(&path);
        let t0 = Instant::now();
        let units = synthetic_units(args.plan_units, args.plan_units / 10);
        let hashed = t0.elapsed().as_secs_f64();
        RunLayout::new(&path).create_dirs()?;
        let mut db = StateDb::open(&RunLayout::new(&path).state_db())?;
        db.insert_units(&units, now_ms())?;
        println!(
            "plan        {} units ({} capture): ids {hashed:.2} s + insert {:.2} s = {:.2} s",
            args.plan_units,
            args.plan_units / 10,
            t0.elapsed().as_secs_f64() - hashed,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The coordinator side (`bench-coordinator --serve <run>`): serves until stdin closes.
pub(crate) async fn serve(run_dir: &Path) -> anyhow::Result<()> {
    let layout = RunLayout::new(run_dir);
    let db = StateDb::open(&layout.state_db())?;
    let policy = RetryPolicy { max_failures: 3, backoff_ms: 1_000, ttl_ms: 30_000 };
    let shared = Arc::new(Shared::new(db, policy, std::fs::canonicalize(run_dir)?, 1_000)?);
    let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse()?)?;
    let addr = incoming.local_addr()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server =
        tokio::spawn(crate::run::serve(shared.clone(), TOKEN.into(), incoming, shutdown.clone()));
    println!("http://{addr}");
    std::io::stdout().flush()?;
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin().lock().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {}
        let _ = tx.send(());
    });
    // The run loop's events and steps, without a launcher.
    let mut events = crate::supervise::Events::new(&shared)?;
    let mut since = shared.db().last_event_seq()?;
    loop {
        tokio::select! {
            _ = events.next() => {}
            _ = &mut rx => break,
        }
        let s = shared.clone();
        let t = tokio::task::spawn_blocking(move || {
            crate::supervise::tick(&s, now_ms(), since, policy.ttl_ms)
        })
        .await??;
        events.stepped();
        since = t.events.last().map_or(since, |e| e.seq);
    }
    shutdown.cancel();
    let _ = server.await;
    Ok(())
}

/// A synthetic run: `captures` capture units (all of them when 0) and probe units for the rest.
fn synthetic_run(path: &Path, units: usize, captures: usize) -> anyhow::Result<PathBuf> {
    let _ = std::fs::remove_dir_all(path);
    let layout = RunLayout::new(path);
    layout.create_dirs()?;
    let captures = if captures == 0 { units } else { captures };
    let mut db = StateDb::open(&layout.state_db())?;
    db.insert_units(&synthetic_units(units, captures), now_ms())?;
    Ok(path.to_path_buf())
}

/// Unit ids hashed as `plan.rs` hashes capture units (a description per unit).
fn synthetic_units(units: usize, captures: usize) -> Vec<(UnitId, UnitSpec)> {
    let rep = Representation::text("text.1", Pooling::Mean);
    (0..units)
        .map(|i| {
            if i < captures {
                let u = CaptureUnit {
                    shard: i,
                    start: i,
                    end: i + 1,
                    representations: vec![rep.clone()],
                };
                (UnitId::of(UnitKind::Capture, &("bench", &u)), UnitSpec::Capture(u))
            } else {
                let u = ProbeUnit {
                    representation: rep.clone(),
                    folds: vec![i],
                    settings: Default::default(),
                    inputs: vec![],
                };
                (UnitId::of(UnitKind::Probe, &("bench", &u)), UnitSpec::Probe(u))
            }
        })
        .collect()
}

/// Transport errors (a reset connection, a timeout) seen by simulated workers, which retry.
static ERRORS: AtomicU64 = AtomicU64::new(0);

/// Calls `f` until it succeeds, retrying transport errors (counted in [`ERRORS`]) every 100 ms
/// until `stop`; `None` when `stop` came first.
async fn call<T, F, Fut>(stop: Instant, mut f: F) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    loop {
        match f().await {
            Ok(r) => return Ok(Some(r.into_inner())),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::Unknown
                        | tonic::Code::Cancelled
                        | tonic::Code::DeadlineExceeded
                ) =>
            {
                if ERRORS.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("transport error (retried): {s}");
                }
                if Instant::now() >= stop {
                    return Ok(None);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => return Err(s.into()),
        }
    }
}

/// A simulated worker that leases, writes and completes until `stop`.
async fn busy_worker(
    addr: &str,
    run: &Path,
    i: usize,
    stop: Instant,
    done: &AtomicU64,
    lat: &Mutex<Vec<f64>>,
) -> anyhow::Result<()> {
    let rpc = client(addr)?;
    let Some(id) = register(&rpc, &format!("w{i}"), stop).await? else { return Ok(()) };
    while Instant::now() < stop {
        let t = Instant::now();
        let req = pb::LeaseRequest { worker_id: id.clone() };
        let lease = call(stop, || {
            let (mut rpc, req) = (rpc.clone(), req.clone());
            async move { rpc.lease(req).await }
        });
        let Some(reply) = lease.await? else { break };
        match reply.outcome {
            Some(Outcome::Assignment(a)) => {
                let rel = RunLayout::unit_output("features", &a.unit_id, a.attempt);
                let bytes = a.unit_id.as_bytes();
                std::fs::write(run.join(&rel), bytes)?;
                let req = pb::CompleteRequest {
                    lease_id: a.lease_id,
                    output_path: rel,
                    checksum: blake3::hash(bytes).to_hex().to_string(),
                    bytes: bytes.len() as u64,
                    worker_id: id.clone(),
                };
                let complete = call(stop, || {
                    let (mut rpc, req) = (rpc.clone(), req.clone());
                    async move { rpc.complete(req).await }
                });
                let Some(r) = complete.await? else { break };
                if r.committed {
                    done.fetch_add(1, Ordering::Relaxed);
                    lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            Some(Outcome::WaitMs(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Some(Outcome::Done(_)) | None => break,
        }
    }
    Ok(())
}

/// A simulated idle worker: polls for a lease, obeying the coordinator's `wait_ms`.
async fn idle_worker(
    addr: &str,
    i: usize,
    polls: &AtomicU64,
    waits: &Mutex<Vec<f64>>,
    quit: &AtomicBool,
) -> anyhow::Result<()> {
    let rpc = client(addr)?;
    let far = Instant::now() + Duration::from_secs(3600);
    let Some(id) = register(&rpc, &format!("idle-{i}"), far).await? else { return Ok(()) };
    while !quit.load(Ordering::Relaxed) {
        let req = pb::LeaseRequest { worker_id: id.clone() };
        let lease = call(far, || {
            let (mut rpc, req) = (rpc.clone(), req.clone());
            async move { rpc.lease(req).await }
        });
        let Some(reply) = lease.await? else { break };
        polls.fetch_add(1, Ordering::Relaxed);
        match reply.outcome {
            Some(Outcome::WaitMs(ms)) => {
                if i.is_multiple_of(10) {
                    waits.lock().unwrap().push(ms as f64);
                }
                tokio::time::sleep(Duration::from_millis(ms)).await
            }
            Some(Outcome::Assignment(a)) => anyhow::bail!("idle worker leased {}", a.unit_id),
            Some(Outcome::Done(_)) | None => break,
        }
    }
    Ok(())
}

/// The coordinator process of one scenario; killed when dropped.
struct Coordinator {
    child: std::process::Child,
    address: String,
}

impl Coordinator {
    fn start(run: &Path) -> anyhow::Result<Coordinator> {
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args(["bench-coordinator", "--serve"])
            .arg(run)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("cannot start the coordinator")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        anyhow::ensure!(line.starts_with("http://"), "the coordinator did not start: {line:?}");
        Ok(Coordinator { child, address: line.trim().to_string() })
    }

    /// User + system CPU seconds so far.
    fn cpu_s(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11) + ticks(12)) / hz
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
struct Auth(MetadataValue<Ascii>);

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Rpc = CoordinatorClient<InterceptedService<Channel, Auth>>;

fn client(addr: &str) -> anyhow::Result<Rpc> {
    let channel = Endpoint::from_shared(addr.to_string())?
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .connect_lazy();
    Ok(CoordinatorClient::with_interceptor(channel, Auth(format!("Bearer {TOKEN}").parse()?)))
}

async fn register(rpc: &Rpc, tag: &str, stop: Instant) -> anyhow::Result<Option<String>> {
    let req = pb::RegisterRequest {
        host: "bench".into(),
        pid: 0,
        launcher_tag: tag.into(),
        device: "cpu".into(),
    };
    let reply = call(stop, || {
        let (mut rpc, req) = (rpc.clone(), req.clone());
        async move { rpc.register(req).await }
    });
    Ok(reply.await?.map(|r| r.worker_id))
}

/// The `q` quantile (0..=1) of `v`, 0 when empty.
fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}
