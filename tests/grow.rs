//! A run that grows in place (`coordinator/src/extend.rs`): the same run directory given a spec
//! whose analysis changed keeps every committed capture, retires the analysis units the new
//! spec no longer plans and ends in the report a fresh run of the new spec makes; a change that
//! would alter a capture is refused, naming the section, and leaves the run as it was.

use std::path::Path;

use crate::util;

const STIMULI: usize = 60;

/// (id, committed attempt, checksum) of every capture unit, and the capture attempts made.
fn captures(run_dir: &Path) -> (Vec<(String, i64, String)>, i64) {
    let units = util::query(
        run_dir,
        "SELECT id, committed_attempt, checksum FROM units WHERE kind = 'capture' ORDER BY id",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    );
    let attempts = util::query(
        run_dir,
        "SELECT COUNT(*) FROM attempts JOIN units ON attempts.unit = units.id
         WHERE units.kind = 'capture'",
        |r| r.get(0),
    );
    (units, attempts[0])
}

fn run_ok(dir: &Path, spec: &Path, sets: &[&str]) -> String {
    let mut args = vec!["run", spec.to_str().unwrap(), "--workers", "2"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = util::run(&args, dir);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "run {sets:?} failed: {stderr}");
    stderr
}

fn assert_same_report(a: &Path, b: &Path, what: &str) {
    for name in util::REPORT_FILES {
        let x = std::fs::read(a.join("report").join(name)).unwrap();
        let y = std::fs::read(b.join("report").join(name)).unwrap();
        assert!(x == y, "report/{name}: {what}");
    }
}

#[test]
fn a_changed_analysis_keeps_the_captures_and_reports_as_a_fresh_run_of_the_new_spec() {
    let dir = util::scratch("grow");
    let spec = util::small_spec(&dir, STIMULI, "");
    let run_dir = dir.join("runs/e2e");
    run_ok(&dir, &spec, &[]);
    let before = captures(&run_dir);
    assert_eq!(before.0.len(), 2);

    let changed = ["analysis.attribute_probe.permutations=49", "analysis.attribute_probe.seed=8"];
    let stderr = run_ok(&dir, &spec, &changed);
    assert!(stderr.contains("analysis units of the earlier spec retired"), "{stderr}");
    assert_eq!(captures(&run_dir), before, "the captures were redone or changed");
    let states =
        util::query(&run_dir, "SELECT DISTINCT state FROM units", |r| r.get::<_, String>(0));
    assert_eq!(states, ["committed"]);

    let mut fresh_sets = changed.to_vec();
    fresh_sets.push("job.output_dir=fresh");
    run_ok(&dir, &spec, &fresh_sets);
    let fresh = dir.join("fresh/e2e");
    assert_same_report(&run_dir, &fresh, "the grown run differs from a fresh run of its spec");
    let count = |d: &Path| util::query(d, "SELECT COUNT(*) FROM units", |r| r.get::<_, i64>(0));
    assert_eq!(count(&run_dir), count(&fresh), "units of the earlier spec were left behind");

    // Back to the first spec: the captures are kept again, and the probes are redone to the
    // first report (made here as a fresh run of the first spec).
    run_ok(&dir, &spec, &[]);
    assert_eq!(captures(&run_dir), before);
    run_ok(&dir, &spec, &["job.output_dir=first"]);
    assert_same_report(&run_dir, &dir.join("first/e2e"), "the run differs after changing back");
}

#[test]
fn a_change_that_would_alter_a_capture_is_refused_by_section_and_leaves_the_run() {
    let dir = util::scratch("grow-refused");
    let spec = util::small_spec(&dir, 30, "");
    let run_dir = dir.join("runs/e2e");
    run_ok(&dir, &spec, &[]);
    let spec_toml = std::fs::read(run_dir.join("spec.toml")).unwrap();
    let before = captures(&run_dir);
    for (set, field) in [
        ("capture.pooling=[\"cls\"]", "[capture]"),
        ("capture.batch_size=8", "[capture]"),
        ("stimuli.template=\"a {stimulus}\"", "[stimuli]"),
        ("sweep.stimuli_per_unit=10", "sweep.stimuli_per_unit"),
    ] {
        let out = util::run(&["run", spec.to_str().unwrap(), "--set", set], &dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{set}: {stderr}");
        assert!(stderr.contains(field) && stderr.contains("another [job] name"), "{set}: {stderr}");
        assert_eq!(std::fs::read(run_dir.join("spec.toml")).unwrap(), spec_toml, "{set}");
        assert_eq!(captures(&run_dir), before, "{set}");
    }
}
