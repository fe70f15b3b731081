//! The `probe` crate's integration tests, by theme:
//! `sklearn_ref` (agreement with scikit-learn, driven by `scripts/ref_probe.py`),
//! `calibration` (permutation-test calibration on null data and power on planted signal),
//! `folds` (K-fold assignment), `speed` (a timing printout, no assertion on time) and `dense`
//! (the dense probes on known answers and against `scripts/ref_dense_probe.py`).

mod calibration;
mod dense;
mod folds;
mod sklearn_ref;
mod speed;
