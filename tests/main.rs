//! End-to-end tests: the real `diffprobe` binary, real worker processes, the real MiniLM from
//! `data/demo` (built by `scripts/setup.sh`), real SQLite. Modules by theme:
//! - `crash`: kill -9 of workers and of the coordinator, resume, bit-identical reports;
//! - `faults`: lost `Complete` replies, a full disk then `resume --retry-quarantined`, orphaned
//!   workers of a killed coordinator; each ends in a report identical to an undisturbed run;
//! - `grow`: a run given a changed analysis keeps its captures and reports as a fresh run;
//!   changes that would alter a capture are refused;
//! - `bad_input`: specs, data and models that must be refused with a clear message (exit 2),
//!   and workers without the token;
//! - `parity`: captured activations against transformers' golden values;
//! - `alignment`: `[analysis.alignment]` through the coordinator, equal to the `alignment`
//!   library on the same matrices, and bad triplet / embedding files refused at plan time;
//! - `dense`: `[analysis.dense_probe]` on the scenes demo: planted linear targets recovered with
//!   ρ = 1 and Dice = 1 in a run grown with new labels; missing labels refused at plan time;
//! - `directions`: `[analysis.directions]`/`[analysis.clusters]` on the demo spec, equal to the
//!   `alignment` library on the committed replicate rows, β negated when the axis is swapped;
//! - `lens`: `[analysis.semantic]` on the scenes demo, equal to the `alignment::semantic` library
//!   on the committed matrices; bad objects files refused at plan time;
//! - `sd`: Stable Diffusion sweeps on the tiny fixtures (generation, real images, bad models);
//! - `slurm`: the Slurm launcher on a real cluster (only with `DIFFPROBE_SLURM=1`).
//!
//! The library crates' own integration tests live here too, so the workspace links one test
//! binary fewer per crate:
//! - `probe_lib`: the `probe` crate against scikit-learn, calibration, folds, speed;
//! - `alignment_lib`: the `alignment` crate against numpy, planted alignment, calibration;
//! - `semantic_lib`: the `alignment` crate's semantic lens against scipy / scikit-learn;
//! - `directions_lib`: the `alignment` crate's prompt-direction clusters and cluster metrics
//!   against scikit-learn;
//! - `refs` (the reference files of these, named by environment variables) and `data` (seeded
//!   Gaussian data) are their helpers.

mod alignment;
mod alignment_lib;
mod bad_input;
mod crash;
mod data;
mod dense;
mod directions;
mod directions_lib;
mod faults;
mod grow;
mod lens;
mod parity;
mod probe_lib;
mod refs;
mod sd;
mod semantic_lib;
mod slurm;
mod util;
