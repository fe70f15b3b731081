//! Local worker supervision, after nextest: each worker runs in its own process group with the
//! run token in its environment (never on the command line), its output goes to
//! `logs/<tag>.log`, a crashed worker is restarted with capped backoff while work remains, and
//! dropping the launcher kills and reaps every group. A worker the coordinator has marked lost
//! (silent for a lease TTL: hung or SIGSTOPped) is SIGKILLed (`kill_hung`) and then restarted
//! like a crashed one, so the run never waits on a process that cannot answer.

use std::fs::OpenOptions;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::backoff::Backoff;

/// The wait before restarting a crashed worker, by its restart count: 1 s, 2 s, … 16 s.
const RESTART_BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(16));

/// One supervised worker process.
struct Slot {
    tag: String,
    child: Option<Child>,
    restarts: u32,
    not_before: Instant,
}

/// What happened to a worker process since the last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WorkerExit {
    /// Exited 0 (drained or sweep done).
    Clean { tag: String },
    /// Exited non-zero or by a signal: the cause, for the event log.
    Crashed { tag: String, cause: String },
}

/// The local launcher.
pub(crate) struct LocalLauncher {
    exe: PathBuf,
    address: String,
    token: String,
    logs: PathBuf,
    slots: Vec<Slot>,
    max_restarts: u32,
}

impl LocalLauncher {
    /// Starts `n` workers.
    pub(crate) fn start(
        n: usize,
        address: &str,
        token: &str,
        logs: &Path,
    ) -> std::io::Result<LocalLauncher> {
        let mut launcher = LocalLauncher {
            exe: std::env::current_exe()?,
            address: address.to_string(),
            token: token.to_string(),
            logs: logs.to_path_buf(),
            slots: Vec::new(),
            max_restarts: 5,
        };
        let first = std::fs::read_dir(logs).map(|d| d.count()).unwrap_or(0);
        for i in 0..n {
            let tag = format!("local-{}", first + i + 1);
            let child = launcher.spawn(&tag)?;
            launcher.slots.push(Slot {
                tag,
                child: Some(child),
                restarts: 0,
                not_before: Instant::now(),
            });
        }
        Ok(launcher)
    }

    fn spawn(&self, tag: &str) -> std::io::Result<Child> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{tag}.log")))?;
        Command::new(&self.exe)
            .args(["worker", "--coordinator", &self.address, "--tag", tag])
            .env(common::TOKEN_ENV, &self.token)
            .env(common::COORDINATOR_PID_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
    }

    /// Pids of live workers (for tests and status).
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.slots.iter().filter_map(|s| s.child.as_ref().map(Child::id)).collect()
    }

    /// Reaps exited workers and, when `work_left`, restarts crashed ones with backoff.
    pub(crate) fn poll(&mut self, work_left: bool) -> Vec<WorkerExit> {
        let mut exits = Vec::new();
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if let Some(child) = slot.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    slot.child = None;
                    if status.success() {
                        exits.push(WorkerExit::Clean { tag: slot.tag.clone() });
                    } else {
                        let cause = match (status.code(), status.signal()) {
                            (Some(code), _) => format!("exit code {code}"),
                            (None, Some(sig)) => format!("killed by signal {sig}"),
                            (None, None) => "unknown exit".into(),
                        };
                        exits.push(WorkerExit::Crashed { tag: slot.tag.clone(), cause });
                        slot.restarts = slot.restarts.saturating_add(1);
                        slot.not_before = Instant::now() + RESTART_BACKOFF.delay(slot.restarts);
                    }
                }
            }
            let slot = &self.slots[i];
            if slot.child.is_none()
                && work_left
                && slot.restarts > 0
                && slot.restarts <= self.max_restarts
                && Instant::now() >= slot.not_before
            {
                let tag = slot.tag.clone();
                if let Ok(child) = self.spawn(&tag) {
                    self.slots[i].child = Some(child);
                }
            }
        }
        exits
    }

    /// SIGKILLs the process group of the live worker started as `tag` with this `pid` (a hung
    /// or SIGSTOPped worker the coordinator has marked lost); the next `poll` reaps it as
    /// crashed and restarts it with backoff. Returns whether such a worker was found. The child
    /// is not yet reaped, so its pid cannot have been reused by another process.
    pub(crate) fn kill_hung(&self, pid: u32, tag: &str) -> bool {
        let ours = self
            .slots
            .iter()
            .any(|s| s.tag == tag && s.child.as_ref().is_some_and(|c| c.id() == pid));
        if !ours {
            return false;
        }
        // SAFETY: kill(2) with a negative pid signals the group this launcher created for the
        // child, which is still unreaped.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
        true
    }

    /// Grows to `target` workers while work remains, or shrinks by asking the newest to drain
    /// (SIGTERM: they release their units and are not restarted).
    pub(crate) fn scale(&mut self, target: usize, open: bool) {
        let live = self
            .slots
            .iter()
            .filter(|s| s.child.is_some() || s.restarts > 0 && s.restarts <= self.max_restarts)
            .count();
        if open && live < target {
            let first = std::fs::read_dir(&self.logs).map(|d| d.count()).unwrap_or(0);
            for i in 0..target - live {
                let tag = format!("local-{}", first + i + 1);
                if let Ok(child) = self.spawn(&tag) {
                    self.slots.push(Slot {
                        tag,
                        child: Some(child),
                        restarts: 0,
                        not_before: Instant::now(),
                    });
                }
            }
        } else if live > target {
            for slot in
                self.slots.iter_mut().rev().filter(|s| s.child.is_some()).take(live - target)
            {
                if let Some(child) = &slot.child {
                    // SAFETY: signals the group this launcher created for the child.
                    unsafe {
                        libc::kill(-(child.id() as i32), libc::SIGTERM);
                    }
                }
                slot.restarts = u32::MAX; // never restarted
            }
        }
    }

    /// Whether any worker is running or will be restarted.
    pub(crate) fn will_run(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.child.is_some() || (s.restarts > 0 && s.restarts <= self.max_restarts))
    }

    /// Number of workers still running.
    pub(crate) fn running(&self) -> usize {
        self.slots.iter().filter(|s| s.child.is_some()).count()
    }

    /// Sends `sig` to every worker's process group.
    pub(crate) fn signal_all(&self, sig: i32) {
        for pid in self.pids() {
            // SAFETY: kill(2) with a negative pid signals the group we created for this child.
            unsafe {
                libc::kill(-(pid as i32), sig);
            }
        }
    }

    /// Stops restarting workers (during shutdown).
    pub(crate) fn stop_restarts(&mut self) {
        self.max_restarts = 0;
    }
}

impl Drop for LocalLauncher {
    fn drop(&mut self) {
        self.signal_all(libc::SIGKILL);
        for slot in &mut self.slots {
            if let Some(child) = slot.child.as_mut() {
                let _ = child.wait();
            }
        }
    }
}
