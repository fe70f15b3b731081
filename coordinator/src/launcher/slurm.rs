//! The Slurm launcher: workers go out as sbatch job arrays built from the spec's `[slurm]`
//! table. Tasks are tracked in `state.sqlite` (`slurm_tasks`), so a restarted coordinator
//! re-adopts the jobs still running instead of submitting new ones.
//!
//! The coordinator learns of a worker's death from missed heartbeats first (lease expiry) and
//! from Slurm second: one `squeue` call per poll for the whole run (never a poll per job), with
//! exponential backoff when it fails. Ended tasks are recorded with Slurm's state and reason
//! (TIMEOUT, CANCELLED, NODE_FAIL, PREEMPTED, FAILED, …), and replaced while work remains.
//!
//! The worker reads the coordinator's address and the token from the run directory
//! (`diffprobe worker --run-dir`), so neither appears in `ps`, `squeue` or the job script.
//! `--signal=B:USR1@N` reaches the worker directly (the batch script `exec`s it): it releases
//! its unit and exits 0, and the coordinator submits a replacement.
//!
//! A cluster that cannot be reached is an error at once, not a wait: `start` asks
//! `scontrol ping`, and a first `squeue` or `sbatch` that fails before any task was ever
//! submitted stops the run with Slurm's own message ([`SlurmUnreachable`], exit 2). Later
//! failures are retried with backoff; the last one and since when it has lasted are kept in the
//! run's `meta` table (`launcher_error`, `launcher_error_since`) for `diffprobe status`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::backoff::Backoff;
use common::layout::RunLayout;
use common::spec::JobSpec;

use crate::db::{EventKind, StateDb};

/// The wait before polling again after failed Slurm commands: 2 s, 4 s, … 60 s.
const SLURM_BACKOFF: Backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));

/// Slurm states after which a task runs no more.
const TERMINAL: [&str; 10] = [
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "SPECIAL_EXIT",
];

/// The Slurm launcher of one run.
pub(crate) struct SlurmLauncher {
    script: PathBuf,
    job_name: String,
    max_array: usize,
    parallelism: Option<u32>,
    next_poll: Instant,
    /// Consecutive failed Slurm commands: the backoff before the next poll grows with them.
    errors: u32,
    /// The error recorded in `meta` while Slurm commands fail (so it is written when it changes
    /// and cleared once on success).
    last_error: Option<String>,
}

/// Slurm cannot be used from this host: the command that failed and what Slurm said. Nothing can
/// be submitted until the cluster or its configuration (`SLURM_CONF`) is fixed.
#[derive(Debug, thiserror::Error)]
#[error("Slurm is unreachable from this host: `{command}` {message}")]
pub(crate) struct SlurmUnreachable {
    command: String,
    message: String,
}

/// `scontrol ping` must say a controller is UP.
fn check_reachable() -> Result<(), SlurmUnreachable> {
    let unreachable =
        |message: String| SlurmUnreachable { command: "scontrol ping".into(), message };
    let out = Command::new("scontrol")
        .arg("ping")
        .output()
        .map_err(|e| unreachable(format!("cannot run: {e} (is Slurm installed and on PATH?)")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.contains(" is UP") {
        return Ok(());
    }
    let said = format!("{} {}", stdout.trim(), String::from_utf8_lossy(&out.stderr).trim());
    Err(unreachable(format!(
        "answered {}: {} (check SLURM_CONF and that slurmctld runs)",
        out.status,
        said.trim()
    )))
}

/// The sbatch script of a run's workers.
pub(crate) fn render_script(spec: &JobSpec, layout: &RunLayout, exe: &Path) -> String {
    let s = &spec.slurm;
    let root = layout.root();
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("#SBATCH --job-name={}", job_name(spec)),
        format!("#SBATCH --output={}/slurm-%A_%a.log", layout.logs_dir().display()),
        format!("#SBATCH --time={}", s.time),
        format!("#SBATCH --cpus-per-task={}", s.cpus_per_task),
        format!("#SBATCH --signal={}", s.signal),
    ];
    let optional = [
        ("partition", &s.partition),
        ("account", &s.account),
        ("qos", &s.qos),
        ("gres", &s.gres),
        ("mem", &s.mem),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            lines.push(format!("#SBATCH --{key}={v}"));
        }
    }
    lines.extend(s.extra.iter().map(|e| format!("#SBATCH {e}")));
    lines.push(String::new());
    lines.push(
        "# The coordinator's address and the run token are read from the run directory by the"
            .into(),
    );
    lines.push(
        "# worker itself: nothing secret on a command line. exec: the batch shell becomes the"
            .into(),
    );
    lines.push(
        "# worker, so --signal=B:USR1 reaches it and it can release its unit before the limit."
            .into(),
    );
    lines.push(format!(
        "exec {} worker --run-dir {} --tag \"slurm-${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}\"",
        shell_quote(&exe.display().to_string()),
        shell_quote(&root.display().to_string())
    ));
    lines.join("\n") + "\n"
}

fn job_name(spec: &JobSpec) -> String {
    format!("diffprobe-{}", spec.job.name)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn run_cmd(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?} (is Slurm installed and SLURM_CONF set?)"))?;
    if !out.status.success() {
        anyhow::bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The cluster's `MaxArraySize` (arrays must stay below it), default 1001.
fn max_array_size() -> usize {
    run_cmd(Command::new("scontrol").args(["show", "config"]))
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.trim_start().starts_with("MaxArraySize"))
                .and_then(|l| l.split('=').nth(1))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(1001)
}

impl SlurmLauncher {
    /// Writes the job script; adopts tasks already recorded for this run.
    pub(crate) fn start(spec: &JobSpec, layout: &RunLayout) -> anyhow::Result<SlurmLauncher> {
        check_reachable()?;
        let exe = std::env::current_exe()?;
        // Absolute paths: tasks start in the submission directory, maybe on another node.
        let layout = RunLayout::new(std::fs::canonicalize(layout.root())?);
        let layout = &layout;
        let dir = layout.root().join("slurm");
        std::fs::create_dir_all(&dir)?;
        let script = dir.join("worker.sbatch");
        common::fs::write_bytes_atomic(&script, render_script(spec, layout, &exe).as_bytes())?;
        Ok(SlurmLauncher {
            script,
            job_name: job_name(spec),
            max_array: max_array_size().saturating_sub(1).max(1),
            parallelism: spec.slurm.array_parallelism,
            next_poll: Instant::now(),
            errors: 0,
            last_error: None,
        })
    }

    /// Reconciles with Slurm (at most every few seconds), records ended tasks, and submits or
    /// cancels tasks so that `target` are alive while work remains.
    pub(crate) fn poll(
        &mut self,
        db: &mut StateDb,
        open: bool,
        target: usize,
        now_ms: i64,
    ) -> anyhow::Result<()> {
        if Instant::now() < self.next_poll {
            return Ok(());
        }
        let listing = match run_cmd(Command::new("squeue").args([
            "-h",
            "-r",
            "-t",
            "all",
            "--name",
            &self.job_name,
            "-o",
            "%i|%T|%r",
        ])) {
            Ok(text) => {
                self.recovered(db, now_ms)?;
                text
            }
            // Nothing was ever submitted: waiting would only repeat this (issue: a launcher
            // without SLURM_CONF retried squeue for ten minutes with 0 units done).
            Err(e) if db.slurm_task_count()? == 0 => {
                return Err(SlurmUnreachable {
                    command: "squeue".into(),
                    message: format!("{e:#}"),
                }
                .into())
            }
            Err(e) => return self.back_off(db, &e, now_ms),
        };
        self.next_poll = Instant::now() + Duration::from_secs(2);
        let seen: Vec<(String, String, String)> = listing
            .lines()
            .filter_map(|l| {
                let mut parts = l.trim().splitn(3, '|');
                Some((
                    parts.next()?.to_string(),
                    parts.next()?.to_string(),
                    parts.next().unwrap_or("").to_string(),
                ))
            })
            .collect();
        let mut alive = Vec::new();
        for task in db.slurm_tasks_alive()? {
            match seen.iter().find(|(id, _, _)| *id == task) {
                Some((_, state, reason)) if TERMINAL.contains(&state.as_str()) => {
                    db.slurm_task_ended(&task, state, reason, now_ms)?
                }
                Some(_) => alive.push(task),
                // Not listed: it ended long enough ago to leave squeue, or never started.
                None => db.slurm_task_ended(&task, "GONE", "no longer in squeue", now_ms)?,
            }
        }
        if open && alive.len() < target {
            if let Err(e) = self.submit(db, target - alive.len(), now_ms) {
                // A cluster that refuses the very first array will refuse it again (bad
                // partition, too many CPUs): say so now. Later refusals may pass (a busy or
                // restarting slurmctld): record them and retry with backoff.
                if db.slurm_task_count()? == 0 {
                    return Err(e.context(
                        "the cluster refused the worker array; check [slurm] in the spec",
                    ));
                }
                self.back_off(db, &e, now_ms)?;
            }
        } else if alive.len() > target {
            // Shrink: the newest tasks go first; scancel sends SIGTERM, the worker releases its unit.
            let extra: Vec<String> =
                alive.iter().rev().take(alive.len() - target).cloned().collect();
            run_cmd(Command::new("scancel").args(&extra))?;
            db.log_event(
                now_ms,
                EventKind::SlurmScaledDown,
                None,
                &format!("cancelled {}", extra.join(" ")),
            )?;
        }
        Ok(())
    }

    fn submit(&self, db: &mut StateDb, n: usize, now_ms: i64) -> anyhow::Result<()> {
        for (size, array) in array_specs(n, self.max_array, self.parallelism) {
            let out = run_cmd(
                Command::new("sbatch").args(["--parsable", "--array", &array]).arg(&self.script),
            )?;
            let job = out.trim().split(';').next().unwrap_or("").to_string();
            anyhow::ensure!(!job.is_empty(), "sbatch printed no job id");
            let tasks: Vec<String> = (0..size).map(|i| format!("{job}_{i}")).collect();
            db.slurm_tasks_submitted(&job, &tasks, now_ms)?;
        }
        Ok(())
    }

    /// Records a failed Slurm command and waits exponentially longer before the next poll.
    fn back_off(&mut self, db: &mut StateDb, e: &anyhow::Error, now_ms: i64) -> anyhow::Result<()> {
        let wait = SLURM_BACKOFF.delay(self.errors);
        let detail = format!("{e:#}; retrying in {} s", wait.as_secs());
        db.log_event(now_ms, EventKind::SlurmError, None, &detail)?;
        let message = format!("{e:#}");
        if self.last_error.is_none() {
            db.set_meta("launcher_error_since", &now_ms.to_string(), now_ms)?;
        }
        if self.last_error.as_ref() != Some(&message) {
            db.set_meta("launcher_error", &message, now_ms)?;
            self.last_error = Some(message);
        }
        self.next_poll = Instant::now() + wait;
        self.errors = self.errors.saturating_add(1);
        Ok(())
    }

    /// A Slurm command worked: reset the backoff and clear a recorded error.
    fn recovered(&mut self, db: &mut StateDb, now_ms: i64) -> anyhow::Result<()> {
        self.errors = 0;
        if self.last_error.take().is_some() {
            db.set_meta("launcher_error", "", now_ms)?;
            db.set_meta("launcher_error_since", "", now_ms)?;
        }
        Ok(())
    }

    /// Cancels every live task of the run (SIGTERM first: workers release their units).
    pub(crate) fn cancel_all(&self, db: &mut StateDb, now_ms: i64) -> anyhow::Result<()> {
        let alive = db.slurm_tasks_alive()?;
        if !alive.is_empty() {
            run_cmd(Command::new("scancel").args(&alive))?;
            db.log_event(
                now_ms,
                EventKind::SlurmCancelled,
                None,
                &format!("{} tasks", alive.len()),
            )?;
        }
        Ok(())
    }
}

/// `--array` values for `n` tasks: arrays of at most `max` tasks (indices below the cluster's
/// `MaxArraySize`), each throttled to `%parallelism` when set.
fn array_specs(n: usize, max: usize, parallelism: Option<u32>) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(max.max(1));
        let throttle = parallelism.map(|p| format!("%{p}")).unwrap_or_default();
        out.push((k, format!("0-{}{throttle}", k - 1)));
        left -= k;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_split_under_max_array_size_and_are_throttled() {
        assert_eq!(array_specs(5, 1000, None), [(5, "0-4".to_string())]);
        assert_eq!(
            array_specs(2500, 1000, Some(16)),
            [
                (1000, "0-999%16".to_string()),
                (1000, "0-999%16".to_string()),
                (500, "0-499%16".to_string())
            ]
        );
        assert_eq!(array_specs(1, 1000, Some(4)), [(1, "0-0%4".to_string())]);
        assert!(array_specs(0, 1000, None).is_empty());
    }

    #[test]
    fn script_carries_the_slurm_table_and_no_secret() {
        let mut spec: JobSpec = toml::from_str(
            r#"
            [job]
            name = "x"
            [model]
            kind = "bert"
            path = "/m"
            [stimuli]
            file = "/s.csv"
            [targets]
            file = "/s.csv"
            [targets.columns]
            a = "a"
            [slurm]
            partition = "gpu"
            gres = "gpu:1"
            mem = "16G"
            extra = ["--constraint=a100"]
            "#,
        )
        .unwrap();
        spec.slurm.array_parallelism = Some(4);
        let text = render_script(&spec, &RunLayout::new("/runs/x"), Path::new("/bin/diffprobe"));
        for line in [
            "#SBATCH --job-name=diffprobe-x",
            "#SBATCH --partition=gpu",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --mem=16G",
            "#SBATCH --signal=B:USR1@120",
            "#SBATCH --constraint=a100",
            "#SBATCH --time=01:00:00",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        assert!(text.contains("exec '/bin/diffprobe' worker --run-dir '/runs/x'"), "{text}");
        assert!(
            !text.contains("TOKEN") && !text.contains("--coordinator"),
            "no secret or address in the script"
        );
    }
}
