//! Committed outputs are checked again whenever they are read: a file that no longer hashes to
//! the blake3 recorded when it was committed (flipped bits, a truncated copy, a deleted file) is
//! moved to `corrupt/` (never deleted) and its unit goes back to pending (`UnitState::invalidate`)
//! with a `corrupt` event, so the run redoes it and the report says so.
//!
//! Each reader checks what it reads: a worker checks its inputs (capture outputs) against the
//! digests its lease carries and reports a mismatch with `FailRequest.corrupt_input`
//! ([`corrupt_input_reported`]: the coordinator hashes the file itself, re-queues the producer
//! and lets the consumer wait without counting a failure); `run` / `resume` check the outputs
//! they merge (probe, grid, alignment) when they start and again before merging, and `report`
//! before it merges ([`find_changed`], [`requeue`]). Feature files are left to their readers:
//! hashing every one at each `resume` would cost hours on a large sweep, and a finished
//! consumer has already read its inputs as they were committed.
//! Dependants need no special handling: a unit of a later stage is leased only when every unit
//! of the earlier stages is committed (`StateDb::lease_next`), so they wait for the re-run.

use std::path::{Component, Path, PathBuf};

use common::fs::{move_aside, verify_file, Verification};
use common::ids::{UnitId, UnitKind};
use common::layout::RunLayout;

use crate::db::{CommittedFile, StateDb};
use crate::lease::Millis;
use crate::service::{bounded, now_ms, Shared, MAX_TEXT};

/// A committed output that failed verification.
#[derive(Debug, Clone)]
pub(crate) struct Changed {
    pub(crate) unit: UnitId,
    /// Relative to the run directory.
    pub(crate) output: String,
    /// The checksum recorded at commit.
    pub(crate) checksum: String,
    pub(crate) verdict: Verification,
}

/// Hashes every committed output listed in `digests` and returns those that no longer match.
/// Reads files only; the database is not needed meanwhile.
pub(crate) fn find_changed(root: &Path, digests: &[CommittedFile]) -> Vec<Changed> {
    digests
        .iter()
        .filter_map(|f| {
            let verdict = verify_file(&root.join(&f.output), &f.checksum);
            (!verdict.matches()).then(|| Changed {
                unit: f.unit.clone(),
                output: f.output.clone(),
                checksum: f.checksum.clone(),
                verdict,
            })
        })
        .collect()
}

/// Moves each changed file to `corrupt/` and re-queues its unit; `found_by` says who noticed
/// (for the event). Returns the units actually re-queued.
pub(crate) fn requeue(
    root: &Path,
    db: &mut StateDb,
    changed: &[Changed],
    found_by: &str,
    now: Millis,
) -> anyhow::Result<Vec<UnitId>> {
    let mut redone = Vec::new();
    for c in changed {
        let detail = set_aside(root, c, found_by);
        if db.invalidate(&c.unit, &c.checksum, &detail, now)? {
            redone.push(c.unit.clone());
        }
    }
    Ok(redone)
}

/// Checks every committed output the coordinator merges and re-queues the units whose files
/// changed (for callers that hold the database alone: the start of `run` / `resume`, and
/// `report`).
pub(crate) fn committed(
    root: &Path,
    db: &mut StateDb,
    found_by: &str,
) -> anyhow::Result<Vec<Changed>> {
    let changed = find_changed(root, &db.committed_digests()?);
    requeue(root, db, &changed, found_by, now_ms())?;
    Ok(changed)
}

/// A worker says `input` of its unit (`unit`, `attempt`) failed verification. The coordinator
/// hashes the file itself: if it changed, the file is set aside, its producer is re-queued and
/// the consumer's lease is released (it waits for the producer; no failure counted). If the
/// input is no longer a committed output (another consumer reported it first, or the producer
/// re-ran since this lease was granted), the consumer is released too: its next lease names the
/// new file. Returns `false` when the file is intact: the caller records an ordinary failure.
pub(crate) fn corrupt_input_reported(
    shared: &Shared,
    worker: &str,
    unit: &UnitId,
    attempt: u32,
    input: &str,
    error: &str,
) -> anyhow::Result<bool> {
    if !is_output_path(input) {
        return Ok(false);
    }
    let owner = shared.db().committed_output_owner(input)?;
    let reason = |what: &str| bounded(&format!("{what}; waits for it: {error}"), MAX_TEXT);
    let Some(CommittedFile { unit: producer, checksum, .. }) = owner else {
        let why = reason(&format!("input {input} is being redone"));
        shared.db().release(worker, unit, attempt, &why, now_ms())?;
        return Ok(true);
    };
    let verdict = verify_file(&shared.run_dir.join(input), &checksum);
    if verdict.matches() {
        return Ok(false);
    }
    let changed = Changed { unit: producer.clone(), output: input.to_string(), checksum, verdict };
    let mut db = shared.db();
    requeue(&shared.run_dir, &mut db, &[changed], &format!("unit {unit}"), now_ms())?;
    let why = reason(&format!("input {input} failed verification; its unit {producer} re-runs"));
    db.release(worker, unit, attempt, &why, now_ms())?;
    Ok(true)
}

/// Moves the changed file aside (if it is still there) and says what happened, for the event.
fn set_aside(root: &Path, c: &Changed, found_by: &str) -> String {
    let path = root.join(&c.output);
    let dir = RunLayout::new(root).corrupt_dir();
    let moved = match &c.verdict {
        Verification::Unreadable(_) => None,
        Verification::Matches | Verification::Differs { .. } => move_aside(&path, &dir).ok(),
    };
    let whereto = match moved.as_deref().and_then(|m| m.strip_prefix(root).ok()) {
        Some(rel) => format!("moved to {}", rel.display()),
        None => "nothing to move".to_string(),
    };
    bounded(
        &format!(
            "{} failed verification ({}; committed with blake3 {}), found by {found_by}; {whereto}; the unit runs again",
            c.output, c.verdict, c.checksum
        ),
        MAX_TEXT,
    )
}

/// Whether `rel` is a plain relative path into one of the unit output folders.
fn is_output_path(rel: &str) -> bool {
    let p = PathBuf::from(rel);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    let dir = p.parent().and_then(|d| d.to_str()).unwrap_or("");
    plain && UnitKind::is_output_dir(dir)
}

#[cfg(test)]
mod tests {
    use common::spec::Pooling;
    use common::unit::{CaptureUnit, ProbeUnit, Representation, UnitSpec};

    use super::*;
    use crate::db::UnitStatus;
    use crate::lease::RetryPolicy;

    const P: RetryPolicy = RetryPolicy { max_failures: 3, backoff_ms: 0, ttl_ms: 60_000 };

    #[test]
    fn a_changed_committed_file_is_set_aside_and_its_unit_requeued_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        RunLayout::new(root).create_dirs().unwrap();
        let mut db = StateDb::open(&root.join("state.sqlite")).unwrap();
        // Probe units: their outputs are what the coordinator merges (capture outputs are
        // checked by the workers that read them, and are not listed here).
        let unit = UnitSpec::Probe(ProbeUnit {
            representation: Representation::text("text.0", Pooling::Mean),
            folds: vec![0],
            settings: Default::default(),
            inputs: vec![],
        });
        let capture =
            UnitSpec::Capture(CaptureUnit { shard: 0, start: 0, end: 1, representations: vec![] });
        let (u, v) = (UnitId::of(UnitKind::Probe, &"u"), UnitId::of(UnitKind::Probe, &"v"));
        db.insert_units(&[(u.clone(), unit.clone()), (v.clone(), unit)], 0).unwrap();
        for (id, bytes) in [(&u, b"good u"), (&v, b"good v")] {
            db.lease_next("w1", 1, P).unwrap().unwrap();
            let rel = RunLayout::unit_output("probes", id.as_str(), 1);
            std::fs::write(root.join(&rel), bytes).unwrap();
            let sum = blake3::hash(bytes).to_hex().to_string();
            complete(&mut db, id, &rel, &sum, 2);
        }
        assert!(committed(root, &mut db, "test").unwrap().is_empty(), "intact files pass");
        // v's file rots.
        let v_file = RunLayout::unit_output("probes", v.as_str(), 1);
        std::fs::write(root.join(&v_file), b"bad  v").unwrap();
        let changed = committed(root, &mut db, "test").unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].unit, v);
        assert!(matches!(changed[0].verdict, Verification::Differs { bytes: 6, .. }));
        assert!(!root.join(&v_file).exists());
        let moved = format!("corrupt/{v}.a1.parquet");
        assert_eq!(std::fs::read(root.join(&moved)).unwrap(), b"bad  v");
        let states: Vec<(UnitId, UnitStatus)> =
            db.unit_rows().unwrap().into_iter().map(|r| (r.id, r.state)).collect();
        assert_eq!(states, [(u, UnitStatus::Committed), (v, UnitStatus::Pending)]);
        let events = db.corrupt_events().unwrap();
        assert_eq!(events.len(), 1);
        assert!(events[0].1.contains(&format!("moved to {moved}")), "{}", events[0].1);
        // Nothing committed is left to fail: a second check finds nothing.
        assert!(committed(root, &mut db, "test").unwrap().is_empty());
        // A committed capture unit's file is not hashed here (its readers check it).
        let c = UnitId::of(UnitKind::Capture, &"c");
        db.insert_units(&[(c.clone(), capture)], 3).unwrap();
        let rel = RunLayout::unit_output("features", c.as_str(), 1);
        std::fs::write(root.join(&rel), b"features").unwrap();
        let leased = db.lease_next("w1", 4, P).unwrap().unwrap();
        assert_eq!(leased.unit, c);
        complete(&mut db, &c, &rel, "not the checksum", 5);
        assert!(committed(root, &mut db, "test").unwrap().is_empty());
    }

    #[test]
    fn only_output_folders_can_be_named_as_corrupt_inputs() {
        assert!(is_output_path("features/capture-1.a1.parquet"));
        assert!(!is_output_path("../outside.parquet"));
        assert!(!is_output_path("/etc/passwd"));
        assert!(!is_output_path("features/../state.sqlite"));
        assert!(!is_output_path("state.sqlite"));
    }

    /// Commits attempt 1 of `unit` with `output` and `checksum`.
    fn complete(db: &mut StateDb, unit: &UnitId, output: &str, checksum: &str, now: i64) {
        let c = crate::db::Completion {
            unit: unit.clone(),
            attempt: 1,
            output: output.into(),
            checksum: checksum.into(),
        };
        db.complete_many(&[c], now).unwrap();
    }
}
