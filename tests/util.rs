//! Test harness: a fresh directory per test, the built binary, deadlines instead of sleeps, and
//! process groups killed on drop so no worker outlives its test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_diffprobe"))
}

/// The demo data built by `scripts/setup.sh`; tests need it (the test script runs setup first).
pub(crate) fn demo_data() -> PathBuf {
    let dir = repo().join("data/demo");
    assert!(
        dir.join("minilm/model.safetensors").exists() && dir.join("ratings.csv").exists(),
        "data/demo is missing: run ./scripts/setup.sh first"
    );
    dir
}

/// A fresh test directory under target/e2e/<name>.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target/e2e").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the first `n` demo stimuli to `dir/ratings.csv` and a small spec to `dir/spec.toml`.
pub(crate) fn small_spec(dir: &Path, n: usize, extra: &str) -> PathBuf {
    let demo = demo_data();
    let text = std::fs::read_to_string(demo.join("ratings.csv")).unwrap();
    let rows: Vec<&str> = text.lines().take(n + 1).collect();
    std::fs::write(dir.join("ratings.csv"), rows.join("\n") + "\n").unwrap();
    let spec = format!(
        r#"[job]
name = "e2e"
output_dir = "{out}"

[model]
kind = "bert"
path = "{model}"
device = "cpu"

[stimuli]
file = "ratings.csv"

[targets]
file = "ratings.csv"
[targets.columns]
auditory = "auditory"
visual = "visual"
haptic = "haptic"
concreteness = "concreteness"
[targets.groups]
auditory = "perceptual"
visual = "perceptual"
haptic = "perceptual"
concreteness = "concreteness"

[capture]
taps = ["text.*"]
pooling = ["mean"]
batch_size = 16

[analysis.attribute_probe]
folds = 5
permutations = 99
seed = 7

[sweep]
stimuli_per_unit = 50
folds_per_unit = 1
lease_ttl_s = 3.0
heartbeat_s = 0.5
retry_backoff_s = 0.2
max_attempts = 4
{extra}"#,
        out = dir.join("runs").display(),
        model = demo.join("minilm").display(),
    );
    let path = dir.join("spec.toml");
    std::fs::write(&path, spec).unwrap();
    path
}

/// A child process in its own group, killed with its group on drop.
pub(crate) struct Proc {
    pub(crate) child: Child,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let child = cmd.process_group(0).stdin(Stdio::null()).spawn().expect("spawn diffprobe");
        Proc { child }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for exit with a deadline; panics on timeout.
    pub(crate) fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not exit within {limit:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        kill_group(self.pid(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

pub(crate) fn kill_group(pid: i32, sig: i32) {
    // SAFETY: signalling a process group this test created.
    unsafe {
        libc::kill(-pid, sig);
    }
}

pub(crate) fn kill(pid: i32, sig: i32) {
    // SAFETY: signalling a process this test started (directly or through the coordinator).
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Whether `pid` is a live process (a zombie waiting for its reaper counts as exited).
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            !matches!(state, Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

/// Runs the binary to completion and returns its output.
pub(crate) fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(bin()).args(args).current_dir(cwd).output().expect("run diffprobe")
}

/// Runs `plan SPEC --set …`, asserts exit 2 (bad input) and returns the trimmed stderr.
pub(crate) fn plan_error(dir: &Path, spec: &Path, sets: &[&str]) -> String {
    let mut args = vec!["plan", spec.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = run(&args, dir);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// Polls `f` until it returns Some, or panics after `limit`.
pub(crate) fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A read-only look at a run's state database.
pub(crate) fn query<T>(
    run_dir: &Path,
    sql: &str,
    f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Vec<T> {
    let conn = match rusqlite::Connection::open_with_flags(
        run_dir.join("state.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) {
        Ok(c) => c,
        Err(_) => return Vec::new(),
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    let Ok(mut stmt) = conn.prepare(sql) else { return Vec::new() };
    stmt.query_map([], f).map(|rows| rows.filter_map(Result::ok).collect()).unwrap_or_default()
}

pub(crate) const REPORT_FILES: [&str; 4] =
    ["rmse.parquet", "significance.parquet", "summary.parquet", "report.md"];

/// Runs `diffprobe run SPEC` into `dir/runs/NAME` with `--workers` and extra `--set`s; asserts
/// success and returns the run directory.
pub(crate) fn run_spec(
    dir: &Path,
    spec: &Path,
    name: &str,
    workers: &str,
    sets: &[String],
) -> PathBuf {
    let out_dir = format!("job.output_dir={:?}", dir.join("runs"));
    let job = format!("job.name={name:?}");
    let mut args = vec!["run", spec.to_str().unwrap(), "--workers", workers, "--set", &out_dir];
    args.extend(["--set", &job]);
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = run(&args, dir);
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    dir.join("runs").join(name)
}
