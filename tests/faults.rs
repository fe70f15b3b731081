//! Fault tests: lost `Complete` replies, a full disk, a run that ends under a hand-started
//! worker, committed files that change after their commit (found by a worker reading them, by
//! `report` and by `resume`), a SIGSTOPped worker, a worker that loses its lease while it works
//! and completes late. Each ends in a report byte-identical to one
//! undisturbed run of the same spec, made once and shared by the tests here (`clean_reference`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::{self, Proc};

const STIMULI: usize = 100;

/// The test directory and spec shared by the tests in this module, with an undisturbed run's
/// report under `clean/e2e/report`.
fn clean_reference() -> &'static (PathBuf, PathBuf) {
    static CLEAN: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    CLEAN.get_or_init(|| {
        let dir = util::scratch("faults");
        let spec = util::small_spec(&dir, STIMULI, "");
        let out = util::run(
            &["run", spec.to_str().unwrap(), "--workers", "2", "--set", "job.output_dir=clean"],
            &dir,
        );
        assert!(out.status.success(), "clean run failed: {}", String::from_utf8_lossy(&out.stderr));
        (dir, spec)
    })
}

/// Asserts every report file of `run_dir` equals the undisturbed run's.
fn assert_report_as_clean(clean_dir: &Path, run_dir: &Path, what: &str) {
    for name in util::REPORT_FILES {
        let a = std::fs::read(clean_dir.join("clean/e2e/report").join(name)).unwrap();
        let b = std::fs::read(run_dir.join("report").join(name))
            .unwrap_or_else(|e| panic!("{what}: report/{name}: {e}"));
        assert!(a == b, "report/{name} differs between the clean run and {what}");
    }
}

/// Every unit committed, and every committed output present with its recorded checksum.
fn assert_all_committed_and_present(run_dir: &Path) {
    let rows: Vec<(String, String, Option<String>, Option<String>)> =
        util::query(run_dir, "SELECT id, state, output, checksum FROM units", |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        });
    assert!(!rows.is_empty());
    for (id, state, output, checksum) in rows {
        assert_eq!(state, "committed", "unit {id}");
        let path = run_dir.join(output.unwrap());
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("unit {id}: committed output {}: {e}", path.display()));
        assert_eq!(blake3::hash(&bytes).to_hex().to_string(), checksum.unwrap(), "unit {id}");
    }
}

fn count(run_dir: &Path, sql: &str) -> i64 {
    util::query(run_dir, sql, |r| r.get(0)).first().copied().unwrap_or(-1)
}

#[test]
fn lost_complete_replies_are_committed_once_and_a_hand_started_worker_exits_0_when_the_run_ends() {
    let (dir, spec) = clean_reference();
    let run_dir = dir.join("lost-replies/e2e");
    // Every worker loses the first reply to each of its completions and sends it again, as it
    // does when a reply is lost to Unavailable / DeadlineExceeded.
    let mut coord = Proc::spawn(
        Command::new(util::bin())
            .args(["run", spec.to_str().unwrap(), "--workers", "1"])
            .args(["--set", "job.output_dir=lost-replies"])
            .env("DIFFPROBE_FAULT_LOSE_COMPLETE_REPLY", "1")
            .current_dir(dir),
    );
    // A worker joined by hand, patient enough that waiting out its patience fails the test.
    util::wait_for("coordinator.json", Duration::from_secs(60), || {
        run_dir.join("coordinator.json").exists().then_some(())
    });
    let mut by_hand = Proc::spawn(
        Command::new(util::bin())
            .args(["worker", "--run-dir", run_dir.to_str().unwrap(), "--tag", "by-hand"])
            .args(["--patience-s", "300"])
            .env("DIFFPROBE_FAULT_LOSE_COMPLETE_REPLY", "1")
            .current_dir(dir),
    );
    let status = coord.wait(Duration::from_secs(240));
    assert!(status.success(), "the run with lost replies failed: {status}");
    let ended = Instant::now();
    let worker = by_hand.wait(Duration::from_secs(15));
    assert!(
        worker.success(),
        "a worker whose run has ended exits 0 ({worker}, {:?} after the coordinator)",
        ended.elapsed()
    );

    assert_all_committed_and_present(&run_dir);
    let total = count(&run_dir, "SELECT COUNT(*) FROM units");
    // The fault fired for every unit, and each retry was answered "committed" (not duplicate),
    // but for the completions that ended the run: their retries may find it ended, and a worker
    // stops offering a unit once its run has ended (nothing is lost: the unit is committed).
    // With two workers, those are at most the last two committed units.
    let unrepeated: Vec<String> = util::query(
        &run_dir,
        "SELECT unit FROM events WHERE kind = 'committed' AND unit NOT IN
           (SELECT unit FROM events WHERE kind = 'complete_repeated')",
        |r| r.get(0),
    );
    let last_two: Vec<String> = util::query(
        &run_dir,
        "SELECT unit FROM events WHERE kind = 'committed' ORDER BY seq DESC LIMIT 2",
        |r| r.get(0),
    );
    assert!(
        unrepeated.iter().all(|u| last_two.contains(u)),
        "completions not repeated: {unrepeated:?}; the last two committed: {last_two:?}"
    );
    assert_eq!(count(&run_dir, "SELECT COUNT(*) FROM events WHERE kind = 'duplicate'"), 0);
    assert_eq!(count(&run_dir, "SELECT COUNT(*) FROM events WHERE kind = 'committed'"), total);
    let ended: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("ended.json")).unwrap())
            .unwrap();
    assert_eq!(ended["reason"], "complete");
    // A worker started after the run ended (a late Slurm array task) exits 0 at once.
    let late = Command::new(util::bin())
        .args(["worker", "--run-dir", run_dir.to_str().unwrap(), "--patience-s", "300"])
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(late.status.success(), "a late worker exits 0: {stderr}");
    assert!(stderr.contains("has ended (complete)"), "{stderr}");
    assert_report_as_clean(dir, &run_dir, "a run whose completion replies were lost");
}

#[test]
fn a_full_disk_is_retried_then_resume_retry_quarantined_finishes_the_run() {
    let (dir, spec) = clean_reference();
    let run_dir = dir.join("disk-full/e2e");
    // While this file exists, capture writes go to /dev/full: ENOSPC from inside the Parquet
    // writer, as on a full disk.
    let full = dir.join("disk-is-full");
    std::fs::write(&full, b"").unwrap();
    let out = Command::new(util::bin())
        .args(["run", spec.to_str().unwrap(), "--workers", "2"])
        .args(["--set", "job.output_dir=disk-full", "--set", "sweep.max_attempts=2"])
        .env("DIFFPROBE_FAULT_DISK_FULL_WHILE", &full)
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a sweep with quarantined units exits 3: {stderr}");
    assert!(stderr.contains("--retry-quarantined"), "says how to retry: {stderr}");
    // Transient: every capture unit was tried `max_attempts` times, not quarantined at once.
    let tries: Vec<(String, i64, String)> = util::query(
        &run_dir,
        "SELECT id, attempts, COALESCE(error, '') FROM units WHERE kind = 'capture'",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    );
    assert!(!tries.is_empty());
    for (id, attempts, error) in &tries {
        assert_eq!(*attempts, 2, "capture unit {id} retried after ENOSPC: {error}");
        assert!(error.contains("No space left on device"), "unit {id}: {error}");
        assert!(error.contains(".parquet"), "the error names the file: {error}");
    }
    let retried = count(&run_dir, "SELECT COUNT(*) FROM events WHERE kind = 'failed'");
    assert_eq!(retried, tries.len() as i64, "each first failure was a retry, not a quarantine");

    // Space freed: the operator asks for the quarantined units again.
    std::fs::remove_file(&full).unwrap();
    let out = util::run(&["resume", "disk-full/e2e", "--retry-quarantined", "--workers", "2"], dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resume --retry-quarantined failed: {stderr}");
    assert!(stderr.contains(&format!("{} quarantined units put back", tries.len())), "{stderr}");
    assert_all_committed_and_present(&run_dir);
    assert_report_as_clean(dir, &run_dir, "a full disk then resume --retry-quarantined");
}

#[test]
fn local_workers_of_a_killed_coordinator_stop_and_resume_finishes() {
    let (dir, spec) = clean_reference();
    let run_dir = dir.join("orphans/e2e");
    let mut coord = Proc::spawn(
        Command::new(util::bin())
            .args(["run", spec.to_str().unwrap(), "--workers", "2"])
            .args(["--set", "job.output_dir=orphans"])
            .env("DIFFPROBE_FAULT_UNIT_DELAY_MS", "1500")
            .current_dir(dir),
    );
    util::wait_for("two leased units", Duration::from_secs(60), || {
        (count(&run_dir, "SELECT COUNT(*) FROM units WHERE state = 'leased'") == 2).then_some(())
    });
    let pids: Vec<i32> = util::query(&run_dir, "SELECT pid FROM workers", |r| r.get(0));
    util::kill(coord.pid(), libc::SIGKILL);
    coord.wait(Duration::from_secs(10));
    // Heartbeats are every 0.5 s in the test spec; they stop at the next one (about 1 s here),
    // the deadline leaves room for a loaded machine running other tests beside this one.
    util::wait_for("orphaned workers to exit", Duration::from_secs(10), || {
        pids.iter().all(|&pid| !util::alive(pid)).then_some(())
    });
    // `report` on the interrupted run says, at the top of both pages, that it is incomplete.
    let out = util::run(&["report", "orphans/e2e"], dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "an incomplete report exits 3: {stderr}");
    let total = count(&run_dir, "SELECT COUNT(*) FROM units");
    let done = count(&run_dir, "SELECT COUNT(*) FROM units WHERE state = 'committed'");
    assert!(done < total);
    let banner = format!("Incomplete: {done} of {total} units committed.");
    assert!(stderr.contains(&format!("{done} of {total} units committed")), "{stderr}");
    let md = std::fs::read_to_string(run_dir.join("report/report.md")).unwrap();
    assert!(md.contains(&format!("> **{banner}**")), "report.md has the banner: {md}");
    let html = std::fs::read_to_string(run_dir.join("report/report.html")).unwrap();
    assert!(html.contains(&format!("<b>{banner}</b>")), "report.html has the banner");
    let out = util::run(&["resume", "orphans/e2e", "--workers", "2"], dir);
    assert!(out.status.success(), "resume failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_all_committed_and_present(&run_dir);
    assert_report_as_clean(dir, &run_dir, "a killed coordinator, orphans stopped, resume");
}

/// Flips 16 bytes of `path` at `at` (negative: from the end), keeping its length.
fn flip16(path: &Path, at: i64) {
    let mut bytes = std::fs::read(path).unwrap();
    let start = if at < 0 { (bytes.len() as i64 + at) as usize } else { at as usize };
    for b in &mut bytes[start..start + 16] {
        *b ^= 0xa5;
    }
    std::fs::write(path, bytes).unwrap();
}

/// `corrupt` events: unit and detail.
fn corrupt_events(run_dir: &Path) -> Vec<(String, String)> {
    util::query(run_dir, "SELECT unit, detail FROM events WHERE kind = 'corrupt'", |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
}

#[test]
fn feature_files_flipped_under_a_live_run_are_caught_by_their_readers_and_redone() {
    let (dir, spec) = clean_reference();
    let run_dir = dir.join("flip-live/e2e");
    // Every unit sleeps 1 s before it reads anything, so the bytes flip between the capture
    // units' commits and the first probe unit's read: 16 bytes in the middle of one feature
    // file, 16 in the Parquet footer of the other (the file ends with the footer, its 4-byte
    // length and "PAR1"; unverified, such a file made every reader fail for ever).
    let mut coord = Proc::spawn(
        Command::new(util::bin())
            .args(["run", spec.to_str().unwrap(), "--workers", "2"])
            .args(["--set", "job.output_dir=flip-live"])
            .env("DIFFPROBE_FAULT_UNIT_DELAY_MS", "1000")
            .current_dir(dir),
    );
    let captures = STIMULI as i64 / 50;
    let victims: Vec<String> =
        util::wait_for("every capture unit committed", Duration::from_secs(120), || {
            let done: Vec<String> = util::query(
                &run_dir,
                "SELECT output FROM units WHERE kind = 'capture' AND state = 'committed'
                 ORDER BY seq",
                |r| r.get(0),
            );
            (done.len() as i64 == captures).then_some(done)
        });
    let middle = run_dir.join(&victims[0]);
    flip16(&middle, std::fs::metadata(&middle).unwrap().len() as i64 / 2);
    flip16(&run_dir.join(&victims[1]), -40);
    let status = coord.wait(Duration::from_secs(240));
    assert!(status.success(), "the run with flipped feature files failed: {status}");
    // Probe units found both, the files went to corrupt/, the capture units ran again, and no
    // consumer was failed or quarantined for it.
    let events = corrupt_events(&run_dir);
    assert_eq!(events.len(), 2, "{events:?}");
    for victim in &victims {
        let event = events.iter().find(|e| e.1.contains(&format!("{victim} failed verification")));
        let event = event.unwrap_or_else(|| panic!("{victim} redone: {events:?}"));
        assert!(event.1.contains("found by unit probe-"), "a reader found it: {event:?}");
        let name = Path::new(victim).file_name().unwrap();
        assert!(run_dir.join("corrupt").join(name).exists(), "set aside, never deleted");
    }
    assert_eq!(count(&run_dir, "SELECT COUNT(*) FROM events WHERE kind = 'quarantined'"), 0);
    assert_eq!(
        count(&run_dir, "SELECT COUNT(*) FROM attempts WHERE outcome = 'failed'"),
        0,
        "the consumers waited for their input; none failed"
    );
    assert_all_committed_and_present(&run_dir);
    assert_report_as_clean(dir, &run_dir, "feature files flipped under a live run");
}

#[test]
fn flipped_probe_files_are_found_by_report_and_redone_by_resume() {
    let (dir, _) = clean_reference();
    // A copy of the undisturbed run: its committed files then rot.
    let run_dir = dir.join("flip-done/e2e");
    std::fs::create_dir_all(run_dir.parent().unwrap()).unwrap();
    let cp = Command::new("cp").arg("-a").arg(dir.join("clean/e2e")).arg(&run_dir).status();
    assert!(cp.unwrap().success());
    let probes: Vec<String> = util::query(
        &run_dir,
        "SELECT output FROM units WHERE kind = 'probe' ORDER BY seq LIMIT 2",
        |r| r.get(0),
    );
    let (footer, probe) = (probes[0].clone(), probes[1].clone());
    // 16 bytes inside one probe file's Parquet footer, 16 in the middle of another.
    flip16(&run_dir.join(&footer), -40);
    let probe_len = std::fs::metadata(run_dir.join(&probe)).unwrap().len() as i64;
    flip16(&run_dir.join(&probe), probe_len / 2);

    let out = util::run(&["report", "flip-done/e2e"], dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "report finds the changed files: {stderr}");
    for rel in [&footer, &probe] {
        assert!(stderr.contains(&format!("verify: {rel} (unit ")), "{rel} named: {stderr}");
        let name = Path::new(rel).file_name().unwrap();
        assert!(run_dir.join("corrupt").join(name).exists(), "{rel} set aside");
    }
    assert!(stderr.contains("diffprobe resume"), "says how to finish: {stderr}");
    let md = std::fs::read_to_string(run_dir.join("report/report.md")).unwrap();
    assert!(md.contains("Incomplete:"), "report.md says it is incomplete");
    let html = std::fs::read_to_string(run_dir.join("report/report.html")).unwrap();
    assert!(html.contains("Redone after failed verification"));
    assert!(html.contains(&format!("{footer} failed verification")), "the report says what");

    // Neither unit is quarantined: resume redoes both and the report is as before.
    let out = util::run(&["resume", "flip-done/e2e", "--workers", "2"], dir);
    assert!(out.status.success(), "resume failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(corrupt_events(&run_dir).len(), 2);
    assert_eq!(count(&run_dir, "SELECT COUNT(*) FROM units WHERE state = 'quarantined'"), 0);
    assert_all_committed_and_present(&run_dir);
    assert_report_as_clean(dir, &run_dir, "flipped probe files, report, resume");
}

#[test]
fn a_stopped_worker_is_killed_and_replaced_and_the_run_does_not_wait_for_it() {
    let (dir, spec) = clean_reference();
    let run_dir = dir.join("stopped/e2e");
    let ttl = Duration::from_secs(3); // sweep.lease_ttl_s of the test spec
                                      // A grace period far longer than the run: a run waiting for the stopped worker shows.
    let mut coord = Proc::spawn(
        Command::new(util::bin())
            .args(["run", spec.to_str().unwrap(), "--workers", "2", "--grace-s", "60"])
            .args(["--set", "job.output_dir=stopped"])
            .env("DIFFPROBE_FAULT_UNIT_DELAY_MS", "300")
            .current_dir(dir),
    );
    let (pid, tag): (i32, String) =
        util::wait_for("a probe unit leased", Duration::from_secs(120), || {
            util::query(
                &run_dir,
                "SELECT w.pid, w.tag FROM units u JOIN workers w ON w.id = u.worker
                 WHERE u.state = 'leased' AND u.kind = 'probe' LIMIT 1",
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .pop()
        });
    util::kill(pid, libc::SIGSTOP);
    let stopped = Instant::now();
    util::wait_for("the stopped worker to be killed", 2 * ttl, || {
        (!util::alive(pid)).then_some(())
    });
    let status = coord.wait(Duration::from_secs(240));
    let exited = std::time::SystemTime::now();
    assert!(status.success(), "the run with a stopped worker failed: {status}");
    let last_commit: i64 = count(&run_dir, "SELECT MAX(ts) FROM events WHERE kind = 'committed'");
    let since_last =
        exited.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - last_commit;
    assert!(
        since_last < 15_000,
        "the run ended {since_last} ms after its last commit: it waited for the stopped worker ({:?} after the stop)",
        stopped.elapsed()
    );
    let killed = count(
        &run_dir,
        &format!("SELECT COUNT(*) FROM events WHERE kind = 'worker_killed' AND worker = '{tag}'"),
    );
    assert_eq!(killed, 1, "one worker_killed event for {tag}");
    let replaced = count(&run_dir, &format!("SELECT COUNT(*) FROM workers WHERE tag = '{tag}'"));
    assert!(replaced >= 2, "{tag} was restarted and registered again ({replaced} registrations)");
    assert_all_committed_and_present(&run_dir);
    assert_report_as_clean(dir, &run_dir, "a SIGSTOPped worker killed and replaced");
}

/// A hand-started worker stopped past its lease's TTL while it computes a unit loses the lease;
/// another worker commits the unit; the first, continued, finishes late. Whatever it then
/// writes is never the committed file: every committed output is present with its checksum, a
/// late output (if any) is set aside in `discarded/`, and the report equals the undisturbed
/// run's.
#[test]
fn a_worker_that_loses_its_lease_while_working_never_replaces_committed_work() {
    let (dir, spec) = clean_reference();
    let run_dir = dir.join("lost-lease/e2e");
    let ttl = Duration::from_secs(3); // sweep.lease_ttl_s of the test spec
    let mut coord = Proc::spawn(
        Command::new(util::bin())
            .args(["run", spec.to_str().unwrap(), "--workers", "0"])
            .args(["--set", "job.output_dir=lost-lease"])
            .current_dir(dir),
    );
    util::wait_for("coordinator.json", Duration::from_secs(60), || {
        run_dir.join("coordinator.json").exists().then_some(())
    });
    let hand_worker = |tag: &str, delay_ms: &str| {
        Proc::spawn(
            Command::new(util::bin())
                .args(["worker", "--run-dir", run_dir.to_str().unwrap(), "--tag", tag])
                .env("DIFFPROBE_FAULT_UNIT_DELAY_MS", delay_ms)
                .current_dir(dir),
        )
    };
    // The slow worker sleeps 2 s inside every unit: stopped there, it holds a lease it cannot
    // renew.
    let mut slow = hand_worker("slow", "2000");
    let unit: String =
        util::wait_for("the slow worker leasing a unit", Duration::from_secs(60), || {
            util::query(
                &run_dir,
                "SELECT u.id FROM units u JOIN workers w ON w.id = u.worker
             WHERE u.state = 'leased' AND w.tag = 'slow' LIMIT 1",
                |r| r.get(0),
            )
            .pop()
        });
    util::kill(slow.pid(), libc::SIGSTOP);
    // Past the TTL the lease expires; a second worker takes the unit and commits it.
    let mut fast = hand_worker("fast", "0");
    util::wait_for(
        "the unit committed by another attempt",
        4 * ttl + Duration::from_secs(60),
        || {
            let sql = format!(
                "SELECT committed_attempt FROM units WHERE id = '{unit}' AND state = 'committed'"
            );
            util::query(&run_dir, &sql, |r| r.get::<_, i64>(0)).pop().filter(|&a| a > 1)
        },
    );
    util::kill(slow.pid(), libc::SIGCONT);
    let status = coord.wait(Duration::from_secs(240));
    assert!(status.success(), "the run with a lost lease failed: {status}");
    for (name, worker) in [("slow", &mut slow), ("fast", &mut fast)] {
        let exit = worker.wait(Duration::from_secs(30));
        assert!(exit.success(), "the {name} worker exits 0 when the run ends: {exit}");
    }
    assert_all_committed_and_present(&run_dir);
    let expired = count(
        &run_dir,
        &format!("SELECT COUNT(*) FROM events WHERE kind = 'expired' AND unit = '{unit}'"),
    );
    assert!(expired >= 1, "the stopped worker's lease expired ({expired} expiry events)");
    // The late attempt wrote its output and completed: a duplicate, set aside, not deleted.
    let duplicate = count(
        &run_dir,
        &format!("SELECT COUNT(*) FROM events WHERE kind = 'duplicate' AND unit = '{unit}'"),
    );
    assert_eq!(duplicate, 1, "the late completion is a duplicate");
    let aside = run_dir.join("discarded").join(format!("{unit}.a1.parquet"));
    assert!(aside.exists(), "the late output is kept in discarded/");
    assert_report_as_clean(dir, &run_dir, "a worker that lost its lease while working");
}
