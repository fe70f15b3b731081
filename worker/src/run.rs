//! What a unit does on a worker: [`execute`] runs one leased unit synchronously and writes its
//! output to a temp file → fsync → rename; a capture unit's Parquet write ([`FeatureWrite`]) is
//! returned to run in the background while the next unit computes. Talking to the coordinator
//! (register, lease, heartbeats, reports, drain) is `session.rs`.
//!
//! Inputs are trusted only while they match the blake3 they were committed with, which the
//! lease's inputs manifest lists (`Assignment.inputs_manifest`): a stage-1 unit checks them before anything
//! reads them, and a mismatch fails the unit with `UnitError::CorruptInput`, which names the
//! input in `FailRequest.corrupt_input` so that the coordinator re-runs its producer.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::layout::RunLayout;
use common::proto as pb;
use common::spec::JobSpec;
use common::stimuli::{AlignmentInputs, Dataset};
use common::unit::{ManifestInput, UnitSpec};

use crate::capture::Capturer;
use crate::error::UnitError;

/// How a worker is started.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// Coordinator address, e.g. `http://127.0.0.1:7000`.
    pub coordinator: String,
    /// The run's bearer token (from `DIFFPROBE_TOKEN`).
    pub token: String,
    /// Launcher tag, e.g. `local-2`.
    pub tag: String,
    /// How long to keep trying while the coordinator is unreachable before exiting.
    pub patience: Duration,
    /// Test-only fault injection: sleep this long inside every unit (makes "kill mid-unit"
    /// deterministic in the crash tests). Set by `DIFFPROBE_FAULT_UNIT_DELAY_MS`.
    pub unit_delay: Duration,
    /// Test-only fault injection: the first reply to every `Complete` is lost, so the worker
    /// sends the same completion again, as it does when a reply is really lost. Set by
    /// `DIFFPROBE_FAULT_LOSE_COMPLETE_REPLY=1`.
    pub lose_complete_reply: bool,
    /// Test-only fault injection: while this file exists, capture units write their features
    /// to `/dev/full`, so the Parquet writer fails with ENOSPC exactly as on a full disk. Set by
    /// `DIFFPROBE_FAULT_DISK_FULL_WHILE`.
    pub disk_full_while: Option<PathBuf>,
}

/// What the worker knows about the sweep, loaded once.
pub(crate) struct WorkerContext {
    pub(crate) run_dir: PathBuf,
    spec: JobSpec,
    data: Dataset,
    /// The loaded models, by weight-permutation seed (`None`: the model's own weights).
    capturers: Mutex<BTreeMap<Option<u64>, Arc<Capturer>>>,
    images_dir: PathBuf,
    /// `alignment.json`, read by the first alignment unit.
    alignment: Mutex<Option<Arc<AlignmentInputs>>>,
    /// The last inputs manifest read: its name and the paths it lists.
    manifest: Mutex<Option<(String, Arc<Vec<ManifestInput>>)>>,
    unit_delay: Duration,
    pub(crate) lose_complete_reply: bool,
    disk_full_while: Option<PathBuf>,
    /// Inputs this worker has verified, with the checksum and the (length, mtime) they had
    /// then: a committed file is immutable, so it is hashed once per worker unless it changes.
    verified: Mutex<HashMap<String, Verified>>,
}

/// An input this worker has hashed: the checksum it matched and the file's (length, mtime) then.
type Verified = (String, u64, Option<std::time::SystemTime>);

/// Runs the worker until the sweep is done, it is told to drain, or the coordinator is gone
/// (`session::Worker`).
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    crate::session::Worker::register(&args).await?.run().await
}

impl WorkerContext {
    /// The sweep of the run directory a coordinator named at registration.
    pub(crate) fn load(run_dir: &Path, args: &WorkerArgs) -> anyhow::Result<WorkerContext> {
        let layout = RunLayout::new(run_dir);
        let spec = JobSpec::from_resolved_toml(&layout.spec())?;
        let data = Dataset::open(&layout.root().join("dataset.json"))?;
        Ok(WorkerContext {
            run_dir: layout.root().to_path_buf(),
            spec,
            data,
            capturers: Mutex::new(BTreeMap::new()),
            images_dir: layout.images_dir(),
            alignment: Mutex::new(None),
            manifest: Mutex::new(None),
            unit_delay: args.unit_delay,
            lose_complete_reply: args.lose_complete_reply,
            disk_full_while: args.disk_full_while.clone(),
            verified: Mutex::new(HashMap::new()),
        })
    }
}

/// How a unit's computation ended.
pub(crate) enum Executed {
    /// Its output is written: the path relative to the run directory, checksum and size.
    Written((String, String, u64)),
    /// A capture unit's features, still to be written (off the compute thread).
    Capture(FeatureWrite),
}

/// A capture unit's features and where they go.
pub(crate) struct FeatureWrite {
    rel: String,
    target: PathBuf,
    blocks: Vec<common::table::FeatureBlock>,
}

impl FeatureWrite {
    /// Writes the Parquet file atomically; returns its relative path, checksum and size.
    pub(crate) fn run(self, ctx: &WorkerContext) -> Result<(String, String, u64), UnitError> {
        let Self { rel, target, blocks } = self;
        if ctx.disk_full_while.as_deref().is_some_and(Path::exists) {
            // The real writer on a really full device, so the error is shaped as a full disk's.
            let dev = Path::new("/dev/full");
            let mut full = std::fs::OpenOptions::new()
                .write(true)
                .open(dev)
                .map_err(|e| common::error::DataError::Io { path: dev.to_path_buf(), source: e })?;
            common::table::write_features(&mut full, &target, &blocks, ctx.spec.capture.dtype)?;
            return Err(UnitError::Invalid("fault injection: /dev/full took the write".into()));
        }
        common::fs::write_atomic(&target, |f| {
            common::table::write_features(f, &target, &blocks, ctx.spec.capture.dtype)
        })?;
        let (sum, bytes) = common::fs::checksum_file(&target)?;
        Ok((rel, sum, bytes))
    }
}

/// Runs one unit synchronously. Probe, grid and alignment outputs are written atomically here;
/// a capture unit returns its features for [`FeatureWrite::run`], so the next unit can start
/// computing while they are encoded and written.
pub(crate) fn execute(ctx: &WorkerContext, a: &pb::Assignment) -> Result<Executed, UnitError> {
    let mut unit: UnitSpec = serde_json::from_str(&a.unit_json)
        .map_err(|e| UnitError::Invalid(format!("bad unit descriptor: {e}")))?;
    let manifest = match a.inputs_manifest.as_str() {
        "" => None,
        rel => Some(ctx.manifest_inputs(rel)?),
    };
    if let (Some(inputs), Some(listed)) = (unit.feature_inputs(), &manifest) {
        *inputs = listed.iter().map(|i| i.path.clone()).collect();
    }
    let rel = RunLayout::unit_output(unit.output_dir(), &a.unit_id, a.attempt);
    let target = ctx.run_dir.join(&rel);
    if !ctx.unit_delay.is_zero() {
        std::thread::sleep(ctx.unit_delay);
    }
    if let Some(listed) = &manifest {
        ctx.verify_inputs(listed)?;
    }
    match &unit {
        UnitSpec::Capture(c) => {
            let capturer = ctx.capturer(permutation_of(c)?)?;
            let stimuli = crate::capture::Stimuli {
                names: &ctx.data.stimuli[c.start..c.end],
                texts: &ctx.data.texts[c.start..c.end],
                first: c.start,
                images: Some(&ctx.images_dir),
            };
            let blocks =
                capturer.capture(&stimuli, ctx.spec.capture.batch_size, &c.representations)?;
            return Ok(Executed::Capture(FeatureWrite { rel, target, blocks }));
        }
        UnitSpec::Probe(p) => {
            let rows = crate::probe_unit::run(&ctx.run_dir, ctx.spec.model.device, &ctx.data, p)?;
            common::fs::write_atomic(&target, |f| {
                common::table::write_probe_rows(f, &target, &rows)
            })?;
        }
        UnitSpec::Grid(p) => {
            let rows = crate::probe_unit::run_grid(&ctx.run_dir, &ctx.data, p)?;
            common::fs::write_atomic(&target, |f| {
                common::table::write_grid_rows(f, &target, &rows)
            })?;
        }
        UnitSpec::Alignment(u) => {
            let inputs = ctx.alignment_inputs()?;
            let rows = crate::alignment_unit::run(
                &ctx.run_dir,
                ctx.spec.model.device,
                &ctx.data,
                &inputs,
                u,
            )?;
            common::fs::write_atomic(&target, |f| {
                common::table::write_alignment_rows(f, &target, &rows)
            })?;
        }
        UnitSpec::Directions(u) => {
            let rows = crate::directions_unit::run_directions(&ctx.run_dir, &ctx.data, u)?;
            common::fs::write_atomic(&target, |f| {
                common::table::write_direction_rows(f, &target, &rows)
            })?;
        }
        UnitSpec::Dense(u) => {
            let Some(section) = &ctx.spec.analysis.dense_probe else {
                return Err(UnitError::Invalid(
                    "a dense unit in a run without [analysis.dense_probe]".into(),
                ));
            };
            let rows = crate::dense_unit::run(
                &ctx.run_dir,
                &section.labels,
                &ctx.data,
                u,
                ctx.spec.model.device,
            )?;
            common::fs::write_atomic(&target, |f| {
                common::table::write_dense_rows(f, &target, &rows)
            })?;
        }
        UnitSpec::Semantic(u) => {
            let rows = crate::semantic_unit::run(&ctx.run_dir, &ctx.data, u)?;
            common::fs::write_atomic(&target, |f| {
                common::table::write_semantic_rows(f, &target, &rows)
            })?;
        }
        UnitSpec::Clusters(u) => {
            let rows = crate::directions_unit::run_clusters(&ctx.run_dir, &ctx.data, u)?;
            common::fs::write_atomic(&target, |f| {
                common::table::write_cluster_rows(f, &target, &rows)
            })?;
        }
    }
    let (sum, bytes) = common::fs::checksum_file(&target)?;
    Ok(Executed::Written((rel, sum, bytes)))
}

impl WorkerContext {
    /// Checks every input against the blake3 its manifest entry was committed with before
    /// anything reads it (`probe_unit::gather`); the first that differs or cannot be read is
    /// [`UnitError::CorruptInput`]. A file already verified by this worker is hashed again only
    /// if its length or modification time changed.
    fn verify_inputs(&self, inputs: &[ManifestInput]) -> Result<(), UnitError> {
        for input in inputs {
            let (rel, sum) = (&input.path, input.checksum.as_str());
            let path = self.run_dir.join(rel);
            let stamp = std::fs::metadata(&path).ok().map(|m| (m.len(), m.modified().ok()));
            let known = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(rel).cloned();
            if let (Some((s, len, mtime)), Some(now)) = (known, stamp) {
                if s == sum && (len, mtime) == now {
                    continue;
                }
            }
            let verdict = common::fs::verify_file(&path, sum);
            if !verdict.matches() {
                return Err(UnitError::CorruptInput {
                    path: rel.clone(),
                    expected: sum.to_string(),
                    problem: verdict.to_string(),
                });
            }
            if let Some((len, mtime)) = stamp {
                let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                cache.insert(rel.clone(), (sum.to_string(), len, mtime));
            }
        }
        Ok(())
    }

    /// The inputs an inputs manifest lists (path and committed blake3), read once per manifest
    /// (a sweep has one per set of committed capture outputs).
    fn manifest_inputs(&self, rel: &str) -> Result<Arc<Vec<ManifestInput>>, UnitError> {
        let mut slot = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((name, inputs)) = slot.as_ref() {
            if name == rel {
                return Ok(inputs.clone());
            }
        }
        let manifest = common::unit::InputsManifest::read(&self.run_dir.join(rel))?;
        let inputs = Arc::new(manifest.inputs);
        *slot = Some((rel.to_string(), inputs.clone()));
        Ok(inputs)
    }

    fn alignment_inputs(&self) -> Result<Arc<AlignmentInputs>, UnitError> {
        let mut slot = self.alignment.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let a = Arc::new(AlignmentInputs::open(&RunLayout::new(&self.run_dir).alignment_inputs())?);
        *slot = Some(a.clone());
        Ok(a)
    }

    /// The model of the given weight permutation, loaded on first use and kept.
    fn capturer(&self, permuted: Option<u64>) -> Result<Arc<Capturer>, UnitError> {
        let mut loaded = self.capturers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = loaded.get(&permuted) {
            return Ok(c.clone());
        }
        let c = Arc::new(Capturer::load_permuted(&self.spec.model, &self.spec.capture, permuted)?);
        loaded.insert(permuted, c.clone());
        Ok(c)
    }
}

/// The weight permutation a capture unit runs through: one for all its representations.
fn permutation_of(unit: &common::unit::CaptureUnit) -> Result<Option<u64>, UnitError> {
    let first = unit.representations.first().and_then(|r| r.permuted);
    match unit.representations.iter().find(|r| r.permuted != first) {
        None => Ok(first),
        Some(r) => Err(UnitError::Invalid(format!(
            "capture unit mixes weight permutations ({} and {first:?})",
            r.key()
        ))),
    }
}

/// Where a worker's run directory is, for messages.
pub fn describe(run_dir: &Path) -> String {
    run_dir.display().to_string()
}
