//! Launchers start workers: `local` (default) spawns worker processes on this host; `slurm`
//! submits sbatch job arrays. Workers always run as separate processes started from this
//! executable, never as in-process tasks, so crash and kill tests mean something. Any host may
//! also join with `diffprobe worker`, whatever the launcher.

pub(crate) mod local;
pub(crate) mod slurm;

use common::layout::RunLayout;
use common::spec::JobSpec;

use crate::db::{EventKind, StateDb};
use local::{LocalLauncher, WorkerExit};
use slurm::SlurmLauncher;

/// Which launcher starts workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LauncherKind {
    /// Worker processes on this host.
    Local,
    /// sbatch job arrays on a Slurm cluster.
    Slurm,
}

impl LauncherKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            LauncherKind::Local => "local",
            LauncherKind::Slurm => "slurm",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<LauncherKind> {
        match s {
            "local" => Some(LauncherKind::Local),
            "slurm" => Some(LauncherKind::Slurm),
            _ => None,
        }
    }
}

/// A running launcher.
pub(crate) enum Launcher {
    Local(LocalLauncher),
    Slurm(SlurmLauncher),
}

impl Launcher {
    pub(crate) fn start(
        kind: LauncherKind,
        workers: usize,
        spec: &JobSpec,
        layout: &RunLayout,
        address: &str,
        token: &str,
    ) -> anyhow::Result<Launcher> {
        Ok(match kind {
            LauncherKind::Local => {
                Launcher::Local(LocalLauncher::start(workers, address, token, &layout.logs_dir())?)
            }
            LauncherKind::Slurm => Launcher::Slurm(SlurmLauncher::start(spec, layout)?),
        })
    }

    /// One supervision step: reap, restart or replace workers, scale to `target`.
    pub(crate) fn poll(
        &mut self,
        db: &mut StateDb,
        open: bool,
        target: usize,
        now: i64,
    ) -> anyhow::Result<()> {
        match self {
            Launcher::Local(l) => {
                l.scale(target, open);
                for exit in l.poll(open) {
                    let (kind, tag, detail) = match &exit {
                        WorkerExit::Clean { tag } => {
                            (EventKind::ProcessExited, tag, "exit 0".to_string())
                        }
                        WorkerExit::Crashed { tag, cause } => {
                            (EventKind::ProcessCrashed, tag, cause.clone())
                        }
                    };
                    db.log_event(now, kind, Some(tag), &detail)?;
                }
                Ok(())
            }
            Launcher::Slurm(s) => s.poll(db, open, target, now),
        }
    }

    /// Kills the local worker processes among `lost` (workers the coordinator has marked lost:
    /// no contact for a lease TTL, so hung or stopped), so that `poll` reaps and restarts them
    /// instead of the run waiting on a process that will never answer. Only a process this
    /// launcher started, with the same pid and tag, is killed; Slurm tasks are left to Slurm.
    pub(crate) fn kill_lost(
        &mut self,
        db: &mut StateDb,
        lost: &[(String, u32, String)],
        now: i64,
    ) -> anyhow::Result<()> {
        match self {
            Launcher::Local(l) => {
                for (id, pid, tag) in lost {
                    if l.kill_hung(*pid, tag) {
                        let detail = format!(
                            "{id} (pid {pid}) sent nothing for a lease TTL (hung or stopped): SIGKILL to its process group; it is restarted while work remains"
                        );
                        db.log_event(now, EventKind::WorkerKilled, Some(tag), &detail)?;
                    }
                }
                Ok(())
            }
            Launcher::Slurm(_) => Ok(()),
        }
    }

    /// Whether some worker runs or will be started (local); Slurm always may start more.
    pub(crate) fn will_run(&self) -> bool {
        match self {
            Launcher::Local(l) => l.will_run(),
            Launcher::Slurm(_) => true,
        }
    }

    /// Asks every worker to drain.
    pub(crate) fn drain(&mut self, db: &mut StateDb, now: i64) -> anyhow::Result<()> {
        match self {
            Launcher::Local(l) => {
                l.stop_restarts();
                l.signal_all(libc::SIGTERM);
                Ok(())
            }
            Launcher::Slurm(s) => s.cancel_all(db, now),
        }
    }

    /// Local workers still running (Slurm tasks are not waited for).
    pub(crate) fn running(&mut self) -> usize {
        match self {
            Launcher::Local(l) => {
                l.poll(false);
                l.running()
            }
            Launcher::Slurm(_) => 0,
        }
    }
}
