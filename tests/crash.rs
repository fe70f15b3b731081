//! Crash tests: a worker SIGKILLed mid-unit and the coordinator SIGKILLed mid-sweep, then
//! `resume`: the report must be bit-identical to an undisturbed run, no unit lost, none
//! committed twice. Ctrl-C drains the workers; a second Ctrl-C kills them at once.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{self, Proc};

#[test]
fn kill_worker_and_coordinator_then_resume_gives_identical_report() {
    let dir = util::scratch("crash");
    let spec = util::small_spec(&dir, 300, "");
    let spec_s = spec.to_str().unwrap();

    // Reference: an undisturbed run.
    let clean =
        util::run(&["run", spec_s, "--workers", "3", "--set", "job.output_dir=clean"], &dir);
    assert!(clean.status.success(), "clean run failed: {}", String::from_utf8_lossy(&clean.stderr));

    // Faulty run: slow units so kills land mid-unit.
    let run_dir = dir.join("faulty/e2e");
    let mut coord = Proc::spawn(
        Command::new(util::bin())
            .args(["run", spec_s, "--workers", "3", "--set", "job.output_dir=faulty"])
            .env("DIFFPROBE_FAULT_UNIT_DELAY_MS", "400")
            .current_dir(&dir),
    );
    // Kill the worker holding a lease, mid-unit.
    let (unit, victim): (String, i32) = util::wait_for(
        "a leased unit",
        Duration::from_secs(60),
        || {
            util::query(&run_dir, "SELECT u.id, w.pid FROM units u JOIN workers w ON w.id = u.worker WHERE u.state = 'leased' LIMIT 1", |r| Ok((r.get(0)?, r.get(1)?))).into_iter().next()
        },
    );
    util::kill(victim, libc::SIGKILL);

    // Let the sweep get into its probe stage, then kill the coordinator.
    util::wait_for("probe units committing", Duration::from_secs(120), || {
        let n: Vec<i64> = util::query(
            &run_dir,
            "SELECT COUNT(*) FROM units WHERE kind = 'probe' AND state = 'committed'",
            |r| r.get(0),
        );
        (n.first().copied().unwrap_or(0) >= 5).then_some(())
    });
    util::kill(coord.pid(), libc::SIGKILL);
    coord.wait(Duration::from_secs(10));
    let committed_before: i64 =
        util::query(&run_dir, "SELECT COUNT(*) FROM units WHERE state = 'committed'", |r| r.get(0))
            [0];
    let total: i64 = util::query(&run_dir, "SELECT COUNT(*) FROM units", |r| r.get(0))[0];
    assert!(committed_before < total, "the coordinator was killed mid-sweep");

    let mut resumed = Proc::spawn(
        Command::new(util::bin())
            .args(["resume", "faulty/e2e", "--workers", "2"])
            .current_dir(&dir),
    );
    let status = resumed.wait(Duration::from_secs(240));
    assert!(status.success(), "resume failed: {status}");

    // Nothing lost, nothing committed twice, the killed worker's unit re-leased.
    let states: Vec<String> =
        util::query(&run_dir, "SELECT DISTINCT state FROM units", |r| r.get(0));
    assert_eq!(states, ["committed"]);
    let twice: Vec<(String, i64)> = util::query(&run_dir, "SELECT unit, COUNT(*) FROM events WHERE kind = 'committed' GROUP BY unit HAVING COUNT(*) > 1", |r| Ok((r.get(0)?, r.get(1)?)));
    assert!(twice.is_empty(), "units committed twice: {twice:?}");
    let commits: i64 =
        util::query(&run_dir, "SELECT COUNT(*) FROM events WHERE kind = 'committed'", |r| r.get(0))
            [0];
    assert_eq!(commits, total);
    let attempts: i64 =
        util::query(&run_dir, &format!("SELECT attempts FROM units WHERE id = '{unit}'"), |r| {
            r.get(0)
        })[0];
    assert!(
        attempts >= 2,
        "the killed worker's unit {unit} was leased again (attempts {attempts})"
    );
    let files = std::fs::read_dir(run_dir.join("probes"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "parquet"))
        .count();
    assert_eq!(
        files as i64,
        util::query(&run_dir, "SELECT COUNT(*) FROM units WHERE kind = 'probe'", |r| r
            .get::<_, i64>(0))[0],
        "one output per probe unit, duplicates removed"
    );

    for name in util::REPORT_FILES {
        let a = std::fs::read(dir.join("clean/e2e/report").join(name)).unwrap();
        let b = std::fs::read(run_dir.join("report").join(name)).unwrap();
        assert!(a == b, "report/{name} differs between the clean and the crashed-and-resumed run");
    }
    // Workers of the killed coordinator must not linger.
    for pid in util::query(&run_dir, "SELECT pid FROM workers", |r| r.get::<_, i32>(0)) {
        util::kill(pid, libc::SIGKILL);
    }
}

#[test]
fn external_worker_needs_the_token_and_can_finish_a_sweep() {
    let dir = util::scratch("external");
    let spec = util::small_spec(&dir, 60, "");
    let _coord = Proc::spawn(
        Command::new(util::bin())
            // With an α grid: each attribute's α is chosen per fold by leave-one-out.
            .args(["run", spec.to_str().unwrap(), "--workers", "0"])
            .args(["--set", "analysis.attribute_probe.alphas=[1.0, 100.0]"])
            // And the P × α grid report on fold 0.
            .args(["--set", "analysis.attribute_probe.grid_components=[5, 20]"])
            .args(["--set", "analysis.attribute_probe.grid_alphas=[1.0, 100.0]"])
            .current_dir(&dir),
    );
    let run_dir = dir.join("runs/e2e");
    let address: String = util::wait_for("coordinator.json", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(run_dir.join("coordinator.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["address"].as_str().map(str::to_string)
    });
    assert!(address.starts_with("http://127.0.0.1:"), "binds loopback by default: {address}");
    let refused = Command::new(util::bin())
        .args(["worker", "--coordinator", &address])
        .env("DIFFPROBE_TOKEN", "not-the-token")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("wrong run token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let token = std::fs::read_to_string(run_dir.join("token")).unwrap();
    let joined = Command::new(util::bin())
        .args(["worker", "--coordinator", &address, "--tag", "joined-by-hand"])
        .env("DIFFPROBE_TOKEN", token.trim())
        .output()
        .unwrap();
    assert!(joined.status.success(), "{}", String::from_utf8_lossy(&joined.stderr));
    util::wait_for("the report", Duration::from_secs(60), || {
        run_dir.join("report/report.md").exists().then_some(())
    });
    let status = util::run(&["status", run_dir.to_str().unwrap(), "--json"], &dir);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["complete"], true);
    let file = std::fs::File::open(run_dir.join("report/rmse.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut chosen = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let list = batch
            .column_by_name("alpha_fold")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::ListArray>()
            .unwrap()
            .clone();
        let values =
            list.values().as_any().downcast_ref::<arrow::array::Float64Array>().unwrap().clone();
        chosen.extend(values.values().iter().copied());
    }
    assert!(
        !chosen.is_empty() && chosen.iter().all(|a| *a == 1.0 || *a == 100.0),
        "chosen α from the grid: {chosen:?}"
    );
    assert_eq!(v["workers"][0]["state"], "finished", "the external worker is listed, done: {v}");
}

#[test]
fn ctrl_c_drains_workers_who_release_their_units_and_resume_finishes() {
    let dir = util::scratch("sigint");
    let spec = util::small_spec(&dir, 100, "");
    let run_dir = dir.join("runs/e2e");
    let mut coord = Proc::spawn(
        Command::new(util::bin())
            .args(["run", spec.to_str().unwrap(), "--workers", "2"])
            .env("DIFFPROBE_FAULT_UNIT_DELAY_MS", "1500")
            .current_dir(&dir),
    );
    util::wait_for("two leased units", Duration::from_secs(60), || {
        let n: Vec<i64> =
            util::query(&run_dir, "SELECT COUNT(*) FROM units WHERE state = 'leased'", |r| {
                r.get(0)
            });
        (n.first().copied().unwrap_or(0) == 2).then_some(())
    });
    let second = util::run(&["resume", "runs/e2e", "--workers", "1"], &dir);
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another coordinator is running this run"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    // Ctrl-C reaches only the coordinator (its own group), which forwards SIGTERM to workers.
    util::kill(coord.pid(), libc::SIGINT);
    let status = coord.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "an interrupted run exits 130");
    let leased: i64 =
        util::query(&run_dir, "SELECT COUNT(*) FROM units WHERE state = 'leased'", |r| r.get(0))[0];
    assert_eq!(leased, 0, "draining workers released their units");
    let released: i64 =
        util::query(&run_dir, "SELECT COUNT(*) FROM events WHERE kind = 'released'", |r| r.get(0))
            [0];
    assert!(released >= 1, "a release event was recorded");
    let failures: i64 =
        util::query(&run_dir, "SELECT COALESCE(SUM(failures), 0) FROM units", |r| r.get(0))[0];
    assert_eq!(failures, 0, "a graceful release is not a failure");
    for pid in util::query(&run_dir, "SELECT pid FROM workers", |r| r.get::<_, i32>(0)) {
        // SAFETY: signal 0 only checks for existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "worker pid {pid} outlived the coordinator");
    }
    let out = util::run(&["status", "runs/e2e"], &dir);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("coordinator: not running"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut resumed = Proc::spawn(
        Command::new(util::bin()).args(["resume", "runs/e2e", "--workers", "2"]).current_dir(&dir),
    );
    assert!(resumed.wait(Duration::from_secs(120)).success());
    let states: Vec<String> =
        util::query(&run_dir, "SELECT DISTINCT state FROM units", |r| r.get(0));
    assert_eq!(states, ["committed"]);
    assert!(run_dir.join("report/report.md").exists());
}

/// Would catch a second Ctrl-C swallowed during `--grace-s` (the run then waits out the whole
/// grace period for a worker that cannot drain): the workers' process groups are SIGKILLed at
/// once, the run exits 130, every unit committed before stays committed, and `resume` finishes.
#[test]
fn a_second_ctrl_c_during_the_grace_period_kills_the_workers_at_once() {
    let dir = util::scratch("sigint-twice");
    let spec = util::small_spec(&dir, 100, "");
    let run_dir = dir.join("runs/e2e");
    let log = dir.join("coordinator.log");
    let mut coord = Proc::spawn(
        Command::new(util::bin())
            .args(["run", spec.to_str().unwrap(), "--workers", "2", "--grace-s", "300"])
            .env("DIFFPROBE_FAULT_UNIT_DELAY_MS", "300")
            .stderr(std::fs::File::create(&log).unwrap())
            .current_dir(&dir),
    );
    let committed = || {
        util::query(&run_dir, "SELECT id FROM units WHERE state = 'committed' ORDER BY id", |r| {
            r.get::<_, String>(0)
        })
    };
    // A worker stopped in the middle of a unit cannot drain: the run would wait 300 s for it.
    let pid: i32 =
        util::wait_for("a unit committed and another leased", Duration::from_secs(120), || {
            if committed().is_empty() {
                return None;
            }
            util::query(
                &run_dir,
                "SELECT w.pid FROM units u JOIN workers w ON w.id = u.worker
             WHERE u.state = 'leased' LIMIT 1",
                |r| r.get(0),
            )
            .pop()
        });
    util::kill(pid, libc::SIGSTOP);
    util::kill(coord.pid(), libc::SIGINT);
    util::wait_for("the coordinator draining", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("interrupted: draining workers").then_some(())
    });
    let before = committed();
    std::thread::sleep(Duration::from_millis(500)); // inside the grace period
    let second = Instant::now();
    util::kill(coord.pid(), libc::SIGINT);
    let status = loop {
        if let Some(status) = coord.child.try_wait().unwrap() {
            break status;
        }
        if second.elapsed() > Duration::from_secs(20) {
            util::kill(pid, libc::SIGKILL); // not left stopped behind a failed test
            panic!("the second Ctrl-C did not end the run within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "an interrupted run exits 130");
    assert!(!util::alive(pid), "the stopped worker was killed with its process group");
    let after = committed();
    for unit in &before {
        assert!(after.contains(unit), "unit {unit} was committed before the second Ctrl-C");
    }
    let mut resumed = Proc::spawn(
        Command::new(util::bin()).args(["resume", "runs/e2e", "--workers", "2"]).current_dir(&dir),
    );
    assert!(resumed.wait(Duration::from_secs(180)).success(), "resume finishes the run");
    let states: Vec<String> =
        util::query(&run_dir, "SELECT DISTINCT state FROM units", |r| r.get(0));
    assert_eq!(states, ["committed"]);
    assert!(run_dir.join("report/report.md").exists());
}
