//! Slurm tests against a real cluster (`scripts/slurm-local up`; `SLURM_CONF` set). They run
//! only when `DIFFPROBE_SLURM=1` and otherwise print that they skipped. They share one cluster,
//! so they run one at a time. Each ends with a report byte-identical to the local launcher's.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::util::{self, Proc};

static CLUSTER: Mutex<()> = Mutex::new(());

fn enabled() -> bool {
    if std::env::var("DIFFPROBE_SLURM").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: DIFFPROBE_SLURM is not 1 (start a cluster with scripts/slurm-local up)");
    false
}

/// A local reference run of the same spec, for byte comparison.
fn local_reference(dir: &std::path::Path, spec: &str) {
    let out = util::run(&["run", spec, "--workers", "2", "--set", "job.output_dir=local"], dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn assert_same_report(dir: &std::path::Path, run: &str) {
    for name in util::REPORT_FILES {
        let a = std::fs::read(dir.join("local/e2e/report").join(name)).unwrap();
        let b = std::fs::read(dir.join(run).join("report").join(name)).unwrap_or_default();
        assert!(a == b, "report/{name} differs between the local and the Slurm run");
    }
}

/// Starts `diffprobe run` with the Slurm launcher into `dir/slurm`, units slowed by `delay_ms`
/// so the faults land mid-sweep.
fn spawn_slurm_run(dir: &std::path::Path, spec: &str, workers: usize, delay_ms: u64) -> Proc {
    Proc::spawn(
        Command::new(util::bin())
            .args(["run", spec, "--launcher", "slurm", "--workers", &workers.to_string()])
            .args(["--set", "job.output_dir=slurm"])
            .env("DIFFPROBE_FAULT_UNIT_DELAY_MS", delay_ms.to_string())
            .current_dir(dir),
    )
}

fn ended(run_dir: &std::path::Path) -> Vec<(String, String)> {
    util::query(
        run_dir,
        "SELECT id, COALESCE(state, '') FROM slurm_tasks WHERE ended IS NOT NULL",
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

#[test]
fn slurm_array_survives_scancel_and_a_killed_coordinator() {
    if !enabled() {
        return;
    }
    let _guard = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let dir = util::scratch("slurm");
    let spec = util::small_spec(&dir, 200, "\n[slurm]\ncpus_per_task = 1\ntime = \"00:30:00\"\n");
    let spec_s = spec.to_str().unwrap();
    local_reference(&dir, spec_s);

    let run_dir = dir.join("slurm/e2e");
    let plan =
        util::run(&["plan", spec_s, "--launcher", "slurm", "--set", "job.output_dir=slurm"], &dir);
    assert!(String::from_utf8_lossy(&plan.stdout).contains("#SBATCH --signal=B:USR1@120"));
    let mut coord = spawn_slurm_run(&dir, spec_s, 3, 500);
    // scancel a task whose worker holds a lease: its unit must be re-leased.
    let (tag, unit): (String, String) = util::wait_for(
        "a Slurm worker holding a lease",
        Duration::from_secs(120),
        || {
            util::query(&run_dir, "SELECT w.tag, u.id FROM units u JOIN workers w ON w.id = u.worker WHERE u.state = 'leased' AND w.tag LIKE 'slurm-%' LIMIT 1", |r| Ok((r.get(0)?, r.get(1)?))).into_iter().next()
        },
    );
    let task = tag.trim_start_matches("slurm-").to_string();
    assert!(Command::new("scancel").args(["--signal=KILL", &task]).status().unwrap().success());
    util::wait_for("the cancelled task recorded", Duration::from_secs(60), || {
        ended(&run_dir).into_iter().find(|(id, _)| *id == task)
    });

    // Kill the coordinator mid-sweep; its Slurm jobs keep running and are re-adopted.
    util::wait_for("probe units committing", Duration::from_secs(180), || {
        let n: Vec<i64> = util::query(
            &run_dir,
            "SELECT COUNT(*) FROM units WHERE kind = 'probe' AND state = 'committed'",
            |r| r.get(0),
        );
        (n.first().copied().unwrap_or(0) >= 3).then_some(())
    });
    util::kill(coord.pid(), libc::SIGKILL);
    coord.wait(Duration::from_secs(10));
    let submitted_before: i64 =
        util::query(&run_dir, "SELECT COUNT(*) FROM slurm_tasks", |r| r.get(0))[0];
    let mut resumed =
        Proc::spawn(Command::new(util::bin()).args(["resume", "slurm/e2e"]).current_dir(&dir));
    assert!(
        resumed.wait(Duration::from_secs(300)).success(),
        "resume with the recorded slurm launcher"
    );

    let states: Vec<String> =
        util::query(&run_dir, "SELECT DISTINCT state FROM units", |r| r.get(0));
    assert_eq!(states, ["committed"]);
    let attempts: i64 =
        util::query(&run_dir, &format!("SELECT attempts FROM units WHERE id = '{unit}'"), |r| {
            r.get(0)
        })[0];
    assert!(attempts >= 2, "the cancelled task's unit was leased again");
    let submitted_after: i64 =
        util::query(&run_dir, "SELECT COUNT(*) FROM slurm_tasks", |r| r.get(0))[0];
    assert!(submitted_after - submitted_before <= 1, "the restarted coordinator re-adopted running tasks ({submitted_before} → {submitted_after})");
    let status = util::run(&["status", "slurm/e2e"], &dir);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(&format!("slurm task {task}: CANCELLED")), "{text}");
    assert_same_report(&dir, "slurm/e2e");
}

fn squeue_field(task: &str, field: &str) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-t", "all", "-j", task, "-o", field])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn alive_tasks(run_dir: &std::path::Path) -> Vec<String> {
    util::query(run_dir, "SELECT id FROM slurm_tasks WHERE ended IS NULL", |r| r.get(0))
}

#[test]
fn slurm_node_down_preemption_signal_scaling_and_a_new_node() {
    if !enabled() {
        return;
    }
    let Ok(nodes) = std::env::var("DIFFPROBE_SLURM_NODES") else {
        eprintln!("skipped: DIFFPROBE_SLURM_NODES not set (scripts/slurm-local up exports it)");
        return;
    };
    let _guard = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let dir = util::scratch("slurm-elastic");
    let spec = util::small_spec(&dir, 200, "\n[slurm]\ncpus_per_task = 1\ntime = \"00:30:00\"\n");
    let spec_s = spec.to_str().unwrap();
    local_reference(&dir, spec_s);
    let run_dir = dir.join("slurm/e2e");
    let mut coord = spawn_slurm_run(&dir, spec_s, 3, 1500);
    let leased_task = || {
        util::wait_for("a Slurm worker holding a lease", Duration::from_secs(120), || {
            util::query(&run_dir, "SELECT w.tag FROM units u JOIN workers w ON w.id = u.worker WHERE u.state = 'leased' AND w.tag LIKE 'slurm-%' ORDER BY u.seq LIMIT 1", |r| r.get::<_, String>(0))
                .into_iter()
                .map(|t| t.trim_start_matches("slurm-").to_string())
                .find(|t| squeue_field(t, "%T") == "RUNNING")
        })
    };

    // Preemption warning: USR1 to the batch step; the worker releases its unit and exits 0.
    let task = leased_task();
    assert!(Command::new("scancel")
        .args(["--signal=USR1", "--batch", &task])
        .status()
        .unwrap()
        .success());
    util::wait_for("a release after USR1", Duration::from_secs(60), || {
        let n: Vec<i64> =
            util::query(&run_dir, "SELECT COUNT(*) FROM events WHERE kind = 'released'", |r| {
                r.get(0)
            });
        (n[0] > 0).then_some(())
    });

    // A node set DOWN mid-sweep: its tasks die; their units are re-leased.
    let task = leased_task();
    let node = squeue_field(&task, "%N");
    assert!(!node.is_empty(), "task {task} runs on a node");
    let down = Command::new("scontrol")
        .args(["update", &format!("nodename={node}"), "state=down", "reason=diffprobe-test"])
        .status()
        .unwrap();
    assert!(down.success());
    util::wait_for("the task on the down node to stop running", Duration::from_secs(60), || {
        (squeue_field(&task, "%T") != "RUNNING").then_some(())
    });
    Command::new("scontrol")
        .args(["update", &format!("nodename={node}"), "state=resume"])
        .status()
        .unwrap();

    // Shrink to 1; then grow to 8, more than the started nodes hold (queued tasks wait), and
    // add a node: the queued tasks start there and its workers pick up work.
    assert!(util::run(&["scale", "slurm/e2e", "--workers", "1"], &dir).status.success());
    util::wait_for("scale down to 1", Duration::from_secs(60), || {
        (alive_tasks(&run_dir).len() <= 1).then_some(())
    });
    assert!(util::run(&["scale", "slurm/e2e", "--workers", "8"], &dir).status.success());
    util::wait_for("queued tasks", Duration::from_secs(60), || {
        alive_tasks(&run_dir).iter().any(|t| squeue_field(t, "%T") == "PENDING").then_some(())
    });
    let added =
        Command::new(util::repo().join("scripts/slurm-local")).arg("add-node").output().unwrap();
    let added_node = String::from_utf8_lossy(&added.stdout).trim().to_string();
    assert!(
        added.status.success() && nodes.split_whitespace().any(|n| n == added_node),
        "add-node: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    util::wait_for("a unit leased by a worker on the added node", Duration::from_secs(120), || {
        let sql = format!("SELECT COUNT(*) FROM attempts a JOIN workers w ON w.id = a.worker WHERE w.host = '{added_node}'");
        (util::query(&run_dir, &sql, |r| r.get::<_, i64>(0))[0] > 0).then_some(())
    });

    let status = coord.wait(Duration::from_secs(300));
    assert!(status.success(), "the sweep finished: {status}");
    let states: Vec<String> =
        util::query(&run_dir, "SELECT DISTINCT state FROM units", |r| r.get(0));
    assert_eq!(states, ["committed"]);
    let text =
        String::from_utf8_lossy(&util::run(&["status", "slurm/e2e"], &dir).stdout).to_string();
    assert!(text.contains("launcher: slurm, target 8 workers"), "{text}");
    assert_same_report(&dir, "slurm/e2e");
}

#[test]
fn slurm_timeout_and_a_failed_task_are_replaced_and_reported() {
    if !enabled() {
        return;
    }
    let _guard = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let dir = util::scratch("slurm-timeout");
    // A 1-minute limit (Slurm's smallest) and a warning signal the worker ignores (URG), so the
    // task really reaches TIMEOUT; the sweep outlasts it with one worker at a time.
    let spec = util::small_spec(
        &dir,
        200,
        "\n[slurm]\ncpus_per_task = 1\ntime = \"1\"\nsignal = \"B:URG@5\"\n",
    );
    let spec_s = spec.to_str().unwrap();
    local_reference(&dir, spec_s);
    let run_dir = dir.join("slurm/e2e");
    let mut coord = spawn_slurm_run(&dir, spec_s, 1, 2500);
    // FAILED: the worker process of a task is killed outright.
    let pid: i32 = util::wait_for("a Slurm worker", Duration::from_secs(120), || {
        util::query(&run_dir, "SELECT pid FROM workers WHERE tag LIKE 'slurm-%' AND state = 'alive' ORDER BY started LIMIT 1", |r| r.get(0)).into_iter().next()
    });
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let token = std::fs::read_to_string(run_dir.join("token")).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(token.trim()),
        "the token is not on the worker's command line"
    );
    assert!(!String::from_utf8_lossy(&cmdline).contains("--coordinator"), "nor the address");
    util::kill(pid, libc::SIGKILL);
    util::wait_for("a FAILED task", Duration::from_secs(60), || {
        ended(&run_dir).into_iter().find(|(_, s)| s == "FAILED")
    });
    // TIMEOUT: a replacement task runs into its 1-minute limit.
    util::wait_for("a TIMEOUT task", Duration::from_secs(200), || {
        ended(&run_dir).into_iter().find(|(_, s)| s == "TIMEOUT")
    });
    let status = coord.wait(Duration::from_secs(400));
    assert!(status.success(), "the sweep finished: {status}");
    let states: Vec<String> =
        util::query(&run_dir, "SELECT DISTINCT state FROM units", |r| r.get(0));
    assert_eq!(states, ["committed"]);
    let text =
        String::from_utf8_lossy(&util::run(&["status", "slurm/e2e"], &dir).stdout).to_string();
    assert!(
        text.contains(": TIMEOUT") && text.contains(": FAILED"),
        "status shows why tasks ended: {text}"
    );
    assert_same_report(&dir, "slurm/e2e");
}

/// A launcher that cannot reach Slurm stops at once with Slurm's own message and exit 2
/// (before: it retried `squeue` every 60 s for ever with 0 units done). Needs no cluster: with
/// `SLURM_CONF` pointing nowhere, a real `scontrol` cannot find its controller; without Slurm
/// installed, `scontrol` cannot run. Either way nothing is submitted.
#[test]
fn an_unreachable_slurm_is_an_error_at_once() {
    let _guard = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    let dir = util::scratch("slurm-unreachable");
    let spec = util::small_spec(&dir, 20, "");
    let mut run = Proc::spawn(
        Command::new(util::bin())
            .args(["run", spec.to_str().unwrap(), "--launcher", "slurm", "--workers", "2"])
            .env("SLURM_CONF", dir.join("no-such-slurm.conf"))
            .stderr(std::process::Stdio::piped())
            .current_dir(&dir),
    );
    let status = run.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "exit 2 (bad input), not a wait");
    let mut stderr = String::new();
    let mut pipe = run.child.stderr.take().unwrap();
    std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
    assert!(
        stderr.contains("Slurm is unreachable") && stderr.contains("scontrol ping"),
        "the error names Slurm and the command: {stderr}"
    );
    let tasks = util::query(&dir.join("runs/e2e"), "SELECT COUNT(*) FROM slurm_tasks", |r| {
        r.get::<_, i64>(0)
    });
    assert_eq!(tasks, [0], "nothing submitted");
}
