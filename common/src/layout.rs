//! The run directory: where every file of a run lives. API boundary: users and scripts read it.
//!
//! ```text
//! runs/<name>/
//!   spec.toml  dataset.json  alignment.json  state.sqlite  token  coordinator.json  ended.json
//!   features/<unit>.a<attempt>.parquet   probes/<unit>.a<attempt>.parquet
//!   alignment/<unit>.a<attempt>.parquet
//!   report/{summary,significance,rmse,alignment}.parquet  report/report.md
//!   logs/<worker>.log
//!   discarded/<unit>.a<attempt>.parquet   (outputs of attempts that lost to a committed one)
//!   corrupt/<unit>.a<attempt>.parquet     (committed outputs that later failed verification)
//!   manifests/inputs-<hash>.json   (committed capture outputs, named by stage-1 leases)
//! ```

use std::path::{Path, PathBuf};

/// Paths inside one run directory.
#[derive(Debug, Clone)]
pub struct RunLayout {
    root: PathBuf,
}

impl RunLayout {
    /// A layout rooted at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunLayout { root: root.into() }
    }
    /// The run directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The resolved spec, as run.
    pub fn spec(&self) -> PathBuf {
        self.root.join("spec.toml")
    }
    /// The coordinator's SQLite state.
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.sqlite")
    }
    /// The run's bearer token (mode 0600).
    pub fn token(&self) -> PathBuf {
        self.root.join("token")
    }
    /// Address and pid of the live coordinator.
    pub fn coordinator_file(&self) -> PathBuf {
        self.root.join("coordinator.json")
    }
    /// How the last coordinator of this run ended (`{"reason": "complete"}`, `"quarantined"`
    /// or `"interrupted"`); written when it stops, removed when a coordinator starts. A worker
    /// that cannot reach its coordinator reads it to know whether to wait for a `resume`.
    pub fn ended(&self) -> PathBuf {
        self.root.join("ended.json")
    }
    /// The reason recorded in `ended.json`, if the file is there and readable.
    pub fn ended_reason(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.ended()).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["reason"].as_str().map(str::to_string)
    }
    /// Whether the run is over for its workers: its last coordinator stopped with every unit
    /// committed or with units quarantined (nobody resumes it without an operator). An
    /// interrupted run may be resumed, so it is not over. Returns the reason.
    pub fn is_over(&self) -> Option<String> {
        self.ended_reason().filter(|r| matches!(r.as_str(), "complete" | "quarantined"))
    }
    /// Outputs of attempts that finished after another attempt of their unit was committed:
    /// moved here, never deleted, and never referenced by the state database.
    pub fn discarded_dir(&self) -> PathBuf {
        self.root.join("discarded")
    }
    /// Committed outputs that no longer match the checksum recorded when they were committed:
    /// moved here (never deleted) when a worker, `resume` or `report` finds the mismatch, and
    /// their units are run again.
    pub fn corrupt_dir(&self) -> PathBuf {
        self.root.join("corrupt")
    }
    /// Generated images (`capture.generate.save_images`).
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
    /// Directory of capture outputs.
    pub fn features_dir(&self) -> PathBuf {
        self.root.join("features")
    }
    /// Directory of probe outputs.
    pub fn probes_dir(&self) -> PathBuf {
        self.root.join("probes")
    }
    /// Directory of alignment-unit outputs.
    pub fn alignment_dir(&self) -> PathBuf {
        self.root.join("alignment")
    }
    /// The resolved triplets and human embedding of `[analysis.alignment]`.
    pub fn alignment_inputs(&self) -> PathBuf {
        self.root.join("alignment.json")
    }
    /// Directory of merged reports.
    pub fn report_dir(&self) -> PathBuf {
        self.root.join("report")
    }
    /// Directory of worker logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Output path of one attempt of a unit, relative to the root. Attempts write distinct
    /// files, so a late duplicate can never overwrite a committed output.
    pub fn unit_output(kind_dir: &str, unit: &str, attempt: u32) -> String {
        format!("{kind_dir}/{unit}.a{attempt}.parquet")
    }
    /// An inputs manifest (`common::unit::InputsManifest`) named by its content hash,
    /// relative to the root: `manifests/inputs-<hash>.json`.
    pub fn inputs_manifest(hash: &str) -> String {
        format!("manifests/inputs-{hash}.json")
    }
    /// Creates the directories a run needs: every unit kind's output folder, the report's and
    /// the logs'.
    pub fn create_dirs(&self) -> std::io::Result<()> {
        use strum::IntoEnumIterator;
        let outputs = crate::ids::UnitKind::iter().map(|k| self.root.join(k.output_dir()));
        for dir in outputs.chain([self.report_dir(), self.logs_dir()]) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }
}
