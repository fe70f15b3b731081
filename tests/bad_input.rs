//! Bad input through the real binary: each case must exit 2 with a message naming the file and
//! the key, row or column at fault.

use crate::util;

#[test]
fn bad_specs_data_and_models_exit_2_with_the_culprit_named() {
    let dir = util::scratch("bad_input");
    let spec = util::small_spec(&dir, 40, "");
    let s = spec.display().to_string();

    let e = util::plan_error(&dir, &spec, &["analysis.attribute_probe.alpah=1"]);
    assert!(e.contains("analysis.attribute_probe.alpah: unknown key"), "{e}");

    let e = util::plan_error(&dir, &spec, &["capture.taps=[\"up_blocks.*\"]"]);
    assert_eq!(e, format!("error: {s}: capture.taps: no tap matches \"up_blocks.*\"; valid taps are text.0, text.1, text.2, text.3, text.4, text.5, text.6"));

    // A model folder without its weights.
    let model = dir.join("no-weights");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(util::demo_data().join("minilm/config.json"), model.join("config.json")).unwrap();
    let e =
        util::plan_error(&dir, &spec, &[&format!("model.path={:?}", model.display().to_string())]);
    assert!(e.contains("model.path") && e.contains("no-weights/model.safetensors"), "{e}");

    // A NaN rating under the `error` policy names the file, row and column.
    let csv = std::fs::read_to_string(dir.join("ratings.csv")).unwrap();
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    let cols: Vec<&str> = lines[3].split(',').collect();
    lines[3] = format!("{},NaN,{}", cols[0], cols[2..].join(","));
    std::fs::write(dir.join("ratings.csv"), lines.join("\n") + "\n").unwrap();
    let e = util::plan_error(&dir, &spec, &["targets.missing=\"error\""]);
    assert!(
        e.contains("ratings.csv: row 4: column \"auditory\" has no numeric rating (\"NaN\")"),
        "{e}"
    );
    // Under the default policy the stimulus is dropped and the plan says so.
    let out = util::run(&["plan", &s], &dir);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("stimuli: 39 (1 dropped for missing ratings)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_targets_file_that_is_not_a_table_is_named_but_its_content_never_shown() {
    let dir = util::scratch("bad_input_secret");
    let spec = util::small_spec(&dir, 40, "");
    let secret = dir.join("shadow");
    std::fs::write(&secret, "root:$6$SECRETHASH:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n")
        .unwrap();
    let mut files = vec![(secret.clone(), "SECRETHASH".to_string())];
    // The real one too, where this user can read it (as root): its first line must not leak.
    if let Some(first) = std::fs::read_to_string("/etc/shadow")
        .ok()
        .and_then(|t| t.lines().next().map(str::to_string))
        .filter(|l| !l.is_empty())
    {
        files.push(("/etc/shadow".into(), first));
    }
    for (file, content) in files {
        let set = format!("targets.file={:?}", file.display().to_string());
        let e = util::plan_error(&dir, &spec, &[&set]);
        assert!(e.contains(&file.display().to_string()), "names the file: {e}");
        assert!(e.contains("not look like a comma-separated table"), "says what is wrong: {e}");
        assert!(!e.contains(&content), "the file's content is never echoed: {e}");
    }
}

#[test]
fn a_unit_that_cannot_succeed_is_quarantined_with_its_error() {
    let dir = util::scratch("quarantine");
    let spec = util::small_spec(&dir, 40, "");
    // Every word has at least 3 tokens ([CLS] word [SEP]); a limit of 2 must be refused, not truncated.
    let out = util::run(
        &["run", spec.to_str().unwrap(), "--workers", "1", "--set", "capture.max_tokens=2"],
        &dir,
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "an incomplete sweep exits 3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("quarantined") && stderr.contains("more than capture.max_tokens = 2"),
        "{stderr}"
    );
    let status = util::run(&["status", "runs/e2e", "--json"], &dir);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["complete"], false);
    let (unit, error) = (&v["quarantined"][0][0], &v["quarantined"][0][1]);
    assert!(unit.as_str().unwrap().starts_with("capture-"), "{v}");
    assert!(error.as_str().unwrap().contains("stimulus 0 (\"abdomen\") has "), "{v}");
    assert!(!dir.join("runs/e2e/report/report.md").exists(), "no report from an incomplete sweep");
}
