//! The reference files of the library tests, written by `scripts/ref_probe.py`
//! (`DIFFPROBE_SKLEARN_REF`), `scripts/ref_alignment.py` (`DIFFPROBE_ALIGNMENT_REF`),
//! `scripts/ref_semantic.py` (`DIFFPROBE_SEMANTIC_REF`) and `scripts/ref_directions.py`
//! (`DIFFPROBE_DIRECTIONS_REF`), as `scripts/test.sh` sets them; a relative path is relative to `coordinator/` (the package of
//! this binary). Without the variable a test reports that it skipped, unless
//! `DIFFPROBE_REQUIRE_REFS=1`, which makes it fail.

use serde_json::Value;

/// The reference document named by the variable `var`, or `None` (skip) when it is unset;
/// `script` is what writes it.
pub(crate) fn reference(var: &str, script: &str) -> Option<Value> {
    let Ok(path) = std::env::var(var) else {
        assert!(
            !refs_required(),
            "DIFFPROBE_REQUIRE_REFS=1 but {var} is not set (generate it with {script} OUT.json)"
        );
        eprintln!("skipped: {var} not set");
        return None;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    Some(serde_json::from_str(&text).expect("reference JSON"))
}

/// Whether `DIFFPROBE_REQUIRE_REFS=1` turns a skipped reference test into a failure.
pub(crate) fn refs_required() -> bool {
    std::env::var("DIFFPROBE_REQUIRE_REFS").as_deref() == Ok("1")
}

/// The cases under `key`; a file from before that key was added fails (regenerate it).
pub(crate) fn cases<'a>(doc: &'a Value, key: &str) -> &'a Vec<Value> {
    let cases = doc[key].as_array().unwrap_or_else(|| panic!("no {key} in the reference file"));
    assert!(!cases.is_empty(), "no {key} in the reference file");
    cases
}

pub(crate) fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|e| e.as_f64().expect("number")).collect()
}

pub(crate) fn indices(v: &Value) -> Vec<usize> {
    v.as_array().expect("array").iter().map(|e| e.as_u64().expect("index") as usize).collect()
}

pub(crate) fn size(case: &Value, key: &str) -> usize {
    case[key].as_u64().unwrap_or_else(|| panic!("case field {key} missing")) as usize
}
