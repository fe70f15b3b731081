//! Launchers start workers. `local` (default) spawns worker processes on this host; the Slurm
//! launcher comes with the Slurm issue. Workers always run as separate processes started from
//! this executable, never as in-process tasks, so crash and kill tests mean something.

pub(crate) mod local;
