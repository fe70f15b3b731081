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
    let mut coord = Proc::spawn(
        Command::new(util::bin())
            .args([
                "run",
                spec_s,
                "--launcher",
                "slurm",
                "--workers",
                "3",
                "--set",
                "job.output_dir=slurm",
            ])
            .env("DIFFPROBE_FAULT_UNIT_DELAY_MS", "500")
            .current_dir(&dir),
    );
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
