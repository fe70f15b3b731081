//! End-to-end tests: the real `diffprobe` binary, real worker processes, the real MiniLM from
//! `data/demo` (built by `scripts/setup.sh`), real SQLite. Modules by theme:
//! - `crash`: kill -9 of workers and of the coordinator, resume, bit-identical reports;
//! - `faults`: lost `Complete` replies, a full disk then `resume --retry-quarantined`, orphaned
//!   workers of a killed coordinator; each ends in a report identical to an undisturbed run;
//! - `bad_input`: specs, data and models that must be refused with a clear message (exit 2),
//!   and workers without the token;
//! - `parity`: captured activations against transformers' golden values;
//! - `alignment`: `[analysis.alignment]` through the coordinator, equal to the `alignment`
//!   library on the same matrices, and bad triplet / embedding files refused at plan time;
//! - `sd`: Stable Diffusion sweeps on the tiny fixtures (generation, real images, bad models);
//! - `slurm`: the Slurm launcher on a real cluster (only with `DIFFPROBE_SLURM=1`).

mod alignment;
mod bad_input;
mod crash;
mod faults;
mod parity;
mod sd;
mod slurm;
mod util;
