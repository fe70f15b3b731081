//! Spec tests.

use super::*;

use tempfile::TempDir;

const MINIMAL: &str = r#"[job]
name = "t"

[model]
kind = "bert"
path = "model"

[stimuli]
file = "ratings.csv"

[targets]
file = "ratings.csv"

[targets.columns]
vis = "visual"
aud = "auditory"
"#;

struct Fixture {
    dir: TempDir,
    spec: PathBuf,
}

fn fixture(text: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("model")).unwrap();
    std::fs::write(dir.path().join("model/config.json"), "").unwrap();
    std::fs::write(dir.path().join("model/model.safetensors"), "").unwrap();
    std::fs::write(dir.path().join("ratings.csv"), "word,vis,aud\ncat,1,2\ndog,3,\n").unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, text).unwrap();
    Fixture { dir, spec }
}

fn load(f: &Fixture, env: &[(&str, &str)], sets: &[&str]) -> Result<JobSpec, SpecError> {
    let env: Vec<(String, String)> =
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    JobSpec::load(&f.spec, &env, &sets)
}

/// Every Option set, so the serialised spec has every key.
const ALL_OPTIONS: &[&str] = &[
    "slurm.partition=gpu",
    "slurm.account=lab",
    "slurm.qos=normal",
    "slurm.gres=gpu:1",
    "slurm.mem=16G",
    "slurm.array_parallelism=4",
    "capture.generate.height=512",
    "capture.generate.width=512",
    "capture.image.masks=\"masks\"",
    "capture.image.height=512",
    "capture.image.width=512",
    "analysis.alignment.triplets=\"ratings.csv\"",
    "analysis.alignment.index_list=\"ratings.csv\"",
    "analysis.alignment.embedding=\"ratings.csv\"",
    "analysis.alignment.description=\"synthetic\"",
    "model.kind=\"sd\"",
    "model.lora=[{ path = \"ratings.csv\" }]",
    "capture.generate.noise=\"per_replicate\"",
    "capture.generate.record=\"delta\"",
    "capture.generate.replicates=2",
    "capture.generate.keep_replicates=true",
    "capture.generate.save_step_images=[0]",
    "analysis.directions.contrasts=\"ratings.csv\"",
    "analysis.clusters.k=2",
];

/// The dense-probe section's keys (real-image mode, unreduced U-Net taps).
const DENSE_OPTIONS: &[&str] = &[
    "model.kind=\"sd\"",
    "capture.mode=\"image\"",
    "capture.unet_pooling=[\"none\"]",
    "capture.image.transforms=[\"rot90\", \"shift:8,0\"]",
    "capture.image.masks=\"masks\"",
    "capture.image.objects=\"ratings.csv\"",
    "capture.image.denoise_steps=[0, 1]",
    "capture.image.denoise_schedule=25",
    "analysis.dense_probe.labels=\"labels\"",
    "analysis.dense_probe.targets={ fg = \"mask\" }",
    "analysis.dense_probe.split=\"ratings.csv\"",
    "analysis.dense_probe.control=\"permute_weights\"",
    "analysis.dense_probe.control_seed=3",
    "analysis.dense_probe.fit=\"paper\"",
    "analysis.dense_probe.epochs=5",
    "analysis.dense_probe.batch=2",
    "analysis.dense_probe.learning_rate=0.01",
    "analysis.dense_probe.learning_rates={ fg = 0.02 }",
    "analysis.dense_probe.fit_seed=4",
    "analysis.semantic.objects=\"ratings.csv\"",
];

/// Dotted paths of every key of a serialised spec; the user-keyed maps are leaves.
fn key_paths(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    const MAPS: &[&str] = &[
        "targets.columns",
        "targets.groups",
        "analysis.dense_probe.targets",
        "analysis.dense_probe.learning_rates",
    ];
    if let toml::Value::Table(table) = value {
        if !MAPS.contains(&prefix) {
            for (k, v) in table {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                if v.is_table() && !MAPS.contains(&path.as_str()) {
                    key_paths(v, &path, out);
                } else {
                    out.push(path);
                }
            }
        }
    }
}

/// (section, key) of every table row in jobs/README.md under a heading naming a `[section]`.
fn documented_keys() -> Vec<String> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/README.md");
    let text = std::fs::read_to_string(&readme).expect("jobs/README.md exists");
    let mut section: Option<String> = None;
    let mut keys = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            section = line
                .split_once("`[")
                .and_then(|(_, r)| r.split_once("]`"))
                .map(|(s, _)| s.to_string());
        } else if let (Some(sec), Some(row)) = (&section, line.strip_prefix("| `")) {
            if let Some((key, _)) = row.split_once('`') {
                keys.push(format!("{sec}.{key}"));
            }
        }
    }
    keys
}

#[test]
fn readme_documents_every_key_and_no_other() {
    let f = fixture(MINIMAL);
    std::fs::create_dir(f.dir.path().join("labels")).unwrap();
    std::fs::create_dir(f.dir.path().join("images")).unwrap();
    std::fs::create_dir(f.dir.path().join("masks")).unwrap();
    let mut keys = Vec::new();
    // Directions need generation with replicates, dense probes one image per stimulus: two
    // specs between them set every key.
    for sets in [ALL_OPTIONS, DENSE_OPTIONS] {
        let spec = load(&f, &[], sets).unwrap();
        key_paths(&toml::Value::try_from(&spec).unwrap(), "", &mut keys);
    }
    keys.sort();
    keys.dedup();
    assert!(keys.len() > 40, "walked too few keys: {keys:?}");
    let documented = documented_keys();
    let undocumented: Vec<&String> = keys.iter().filter(|k| !documented.contains(k)).collect();
    assert!(undocumented.is_empty(), "jobs/README.md lacks a table row for {undocumented:?}");
    let stale: Vec<&String> = documented.iter().filter(|k| !keys.contains(k)).collect();
    assert!(stale.is_empty(), "jobs/README.md documents keys the spec lacks: {stale:?}");
}

/// One bad spec: edits to the minimal file, env pairs and --set strings, and the exact error.
struct Case {
    name: &'static str,
    replace: (&'static str, &'static str),
    append: &'static str,
    env: &'static [(&'static str, &'static str)],
    sets: &'static [&'static str],
    /// `{file}` is the spec path, `{dir}` its directory.
    expected: &'static str,
}

const BASE: Case =
    Case { name: "", replace: ("", ""), append: "", env: &[], sets: &[], expected: "" };

#[test]
fn bad_specs_give_exact_messages() {
    let cases = [
        Case {
            name: "unknown key",
            append: "[analysis.attribute_probe]\nalpah = 100\n",
            expected: "{file}: analysis.attribute_probe.alpah: unknown key, expected one of: folds, components, alpha, alphas, alpha_inner_folds, grid_components, grid_alphas, permutations, seed, zscore, precision",
            ..BASE
        },
        Case {
            name: "unknown precision",
            append: "[analysis.attribute_probe]\nprecision = \"f16\"\n",
            expected: "{file}: analysis.attribute_probe.precision: unknown value \"f16\", expected one of: f64, f32",
            ..BASE
        },
        Case {
            name: "wrong type",
            append: "[analysis.attribute_probe]\nfolds = \"ten\"\n",
            expected: "{file}: analysis.attribute_probe.folds: expected usize, found string \"ten\"",
            ..BASE
        },
        Case {
            name: "negative alpha",
            append: "[analysis.attribute_probe]\nalpha = -1\n",
            expected: "{file}: analysis.attribute_probe.alpha: expected a positive number, found -1",
            ..BASE
        },
        Case {
            name: "one fold",
            append: "[analysis.attribute_probe]\nfolds = 1\n",
            expected: "{file}: analysis.attribute_probe.folds: expected at least 2, found 1",
            ..BASE
        },
        Case {
            name: "missing model path",
            replace: ("path = \"model\"\n", ""),
            expected: "{file}: model.path: missing key",
            ..BASE
        },
        Case {
            name: "missing section",
            replace: ("[job]\nname = \"t\"\n", ""),
            expected: "{file}: job: missing key",
            ..BASE
        },
        Case {
            name: "model path does not exist",
            replace: ("path = \"model\"", "path = \"nope\""),
            expected: "{file}: model.path: {dir}/nope does not exist",
            ..BASE
        },
        Case {
            name: "unknown enum value",
            append: "[capture]\npooling = [\"median\"]\n",
            expected: "{file}: capture.pooling.0: unknown value \"median\", expected one of: cls, mean, eos, flatten, max, none, mask_mean",
            ..BASE
        },
        Case {
            name: "heartbeat over half the ttl",
            append: "[sweep]\nheartbeat_s = 20\n",
            expected: "{file}: sweep.heartbeat_s: expected at most half of sweep.lease_ttl_s (30), found 20",
            ..BASE
        },
        Case {
            name: "bad slurm time",
            append: "[slurm]\ntime = \"1h\"\n",
            expected: "{file}: slurm.time: expected minutes, HH:MM:SS or D-HH:MM:SS, found \"1h\"",
            ..BASE
        },
        Case {
            name: "bad slurm mem",
            append: "[slurm]\nmem = \"16GB\"\n",
            expected: "{file}: slurm.mem: expected a size like 16G or 4000M, found \"16GB\"",
            ..BASE
        },
        Case {
            name: "bad slurm signal",
            append: "[slurm]\nsignal = \"USR1\"\n",
            expected: "{file}: slurm.signal: expected [B:]SIGNAL@SECONDS like B:USR1@120, found \"USR1\"",
            ..BASE
        },
        Case {
            name: "group of an unknown attribute",
            append: "[targets.groups]\nsmell = \"perceptual\"\n",
            expected: "{file}: targets.groups.smell: no attribute \"smell\"; attributes are [\"auditory\", \"visual\"]",
            ..BASE
        },
        Case {
            name: "--set wrong type",
            sets: &["analysis.attribute_probe.folds=ten"],
            expected: "--set: analysis.attribute_probe.folds: expected usize, found string \"ten\"",
            ..BASE
        },
        Case {
            name: "--set unknown key",
            sets: &["analysis.attribute_probe.alpah=3"],
            expected: "--set: analysis.attribute_probe.alpah: unknown key, expected one of: folds, components, alpha, alphas, alpha_inner_folds, grid_components, grid_alphas, permutations, seed, zscore, precision",
            ..BASE
        },
        Case {
            name: "--set without =",
            sets: &["analysis.attribute_probe.alpha"],
            expected: "--set: analysis.attribute_probe.alpha: expected key.path=value",
            ..BASE
        },
        Case {
            name: "--set number for a string",
            sets: &["slurm.time=60"],
            expected: "--set: slurm.time: expected a string, found signed int `60` (the value is read as TOML; put it in double quotes to pass a string)",
            ..BASE
        },
        Case {
            name: "env one fold",
            env: &[("DIFFPROBE_ANALYSIS__ATTRIBUTE_PROBE__FOLDS", "1")],
            expected: "environment: analysis.attribute_probe.folds: expected at least 2, found 1",
            ..BASE
        },
        Case {
            name: "env wrong type",
            env: &[("DIFFPROBE_CAPTURE__BATCH_SIZE", "x")],
            expected: "environment: capture.batch_size: expected usize, found string \"x\"",
            ..BASE
        },
        Case {
            name: "--set beats env in errors too",
            env: &[("DIFFPROBE_CAPTURE__BATCH_SIZE", "x")],
            sets: &["capture.batch_size=y"],
            expected: "--set: capture.batch_size: expected usize, found string \"y\"",
            ..BASE
        },
        Case {
            name: "alignment: unknown key",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\nlamda = 0.01\n",
            expected: "{file}: analysis.alignment.lamda: unknown key, expected one of: triplets, triplet_entries, triplet_header, triplet_delimiter, index_list, description, distances, seed, linear_probe, probe_folds, lambda, learning_rate, batch_size, max_epochs, patience, min_delta, max_grad_norm, early_stopping, validation_fraction, embedding, embedding_key, embedding_folds, embedding_alphas",
            ..BASE
        },
        Case {
            name: "alignment: no triplets",
            append: "[analysis.alignment]\nlinear_probe = true\n",
            expected: "{file}: analysis.alignment.triplets: missing key",
            ..BASE
        },
        Case {
            name: "alignment: triplet file does not exist",
            append: "[analysis.alignment]\ntriplets = \"nope.csv\"\n",
            expected: "{file}: analysis.alignment.triplets: {dir}/nope.csv does not exist or is not a file",
            ..BASE
        },
        Case {
            name: "alignment: embedding does not exist",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\nembedding = \"vice.csv\"\n",
            expected: "{file}: analysis.alignment.embedding: {dir}/vice.csv does not exist or is not a file",
            ..BASE
        },
        Case {
            name: "alignment: unknown distance",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\ndistances = [\"manhattan\"]\n",
            expected: "{file}: analysis.alignment.distances.0: unknown value \"manhattan\", expected one of: cosine, euclidean, dot",
            ..BASE
        },
        Case {
            name: "alignment: distance twice",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\ndistances = [\"cosine\", \"dot\", \"cosine\"]\n",
            expected: "{file}: analysis.alignment.distances: \"cosine\" is listed twice",
            ..BASE
        },
        Case {
            name: "alignment: no distance",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\ndistances = []\n",
            expected: "{file}: analysis.alignment.distances: expected at least one of cosine, euclidean, dot",
            ..BASE
        },
        Case {
            name: "alignment: unknown entries",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\ntriplet_entries = \"labels\"\n",
            expected: "{file}: analysis.alignment.triplet_entries: unknown value \"labels\", expected one of: indices, names",
            ..BASE
        },
        Case {
            name: "alignment: two-character delimiter",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\ntriplet_delimiter = \";;\"\n",
            expected: "{file}: analysis.alignment.triplet_delimiter: expected one ASCII character such as \",\", \"\\t\" or \" \", found \";;\"",
            ..BASE
        },
        Case {
            name: "alignment: one probe fold",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\nprobe_folds = 1\n",
            expected: "{file}: analysis.alignment.probe_folds: expected at least 2, found 1",
            ..BASE
        },
        Case {
            name: "alignment: negative lambda",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\nlambda = -0.1\n",
            expected: "{file}: analysis.alignment.lambda: expected a number ≥ 0, found -0.1",
            ..BASE
        },
        Case {
            name: "alignment: zero learning rate",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\nlearning_rate = 0.0\n",
            expected: "{file}: analysis.alignment.learning_rate: expected a positive number, found 0",
            ..BASE
        },
        Case {
            name: "alignment: zero batch",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\nbatch_size = 0\n",
            expected: "{file}: analysis.alignment.batch_size: expected at least 1, found 0",
            ..BASE
        },
        Case {
            name: "alignment: validation fraction of 1",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\nvalidation_fraction = 1.0\n",
            expected: "{file}: analysis.alignment.validation_fraction: expected a number strictly between 0 and 1, found 1",
            ..BASE
        },
        Case {
            name: "alignment: zero grad norm",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\nmax_grad_norm = 0.0\n",
            expected: "{file}: analysis.alignment.max_grad_norm: expected a positive number (inf disables clipping), found 0",
            ..BASE
        },
        Case {
            name: "alignment: zero alpha",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\nembedding_alphas = [1.0, 0.0]\n",
            expected: "{file}: analysis.alignment.embedding_alphas: expected positive numbers, found 0",
            ..BASE
        },
        Case {
            name: "alignment: one embedding fold",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\nembedding_folds = 1\n",
            expected: "{file}: analysis.alignment.embedding_folds: expected at least 2, found 1",
            ..BASE
        },
        Case {
            name: "alignment: --set names its layer",
            append: "[analysis.alignment]\ntriplets = \"ratings.csv\"\n",
            sets: &["analysis.alignment.lambda=-1"],
            expected: "--set: analysis.alignment.lambda: expected a number ≥ 0, found -1",
            ..BASE
        },
        Case {
            name: "unknown section",
            append: "[analysys]\nx = 1\n",
            expected: "{file}: analysys: unknown key, expected one of: job, model, stimuli, targets, capture, analysis, sweep, slurm",
            ..BASE
        },
    ];
    for case in cases {
        let mut text = MINIMAL.to_string();
        if !case.replace.0.is_empty() {
            assert!(text.contains(case.replace.0), "{}: nothing to replace", case.name);
            text = text.replace(case.replace.0, case.replace.1);
        }
        text.push('\n');
        text.push_str(case.append);
        let f = fixture(&text);
        let err = load(&f, case.env, case.sets).expect_err(case.name);
        let expected = case
            .expected
            .replace("{file}", &f.spec.display().to_string())
            .replace("{dir}", &f.dir.path().display().to_string());
        assert_eq!(err.to_string(), expected, "case {:?}", case.name);
    }
}

#[test]
fn layers_override_in_order() {
    let f = fixture(&format!("{MINIMAL}\n[capture]\nbatch_size = 7\n"));
    assert_eq!(load(&f, &[], &[]).unwrap().capture.batch_size, 7);
    let env = [
        ("DIFFPROBE_CAPTURE__BATCH_SIZE", "8"),
        ("DIFFPROBE_ANALYSIS__ATTRIBUTE_PROBE__ALPHA", "100"),
    ];
    let spec = load(&f, &env, &[]).unwrap();
    assert_eq!(spec.capture.batch_size, 8, "env beats file");
    assert_eq!(spec.analysis.attribute_probe.alpha, 100.0);
    let spec = load(
        &f,
        &env,
        &["capture.batch_size=9", "capture.pooling=[\"eos\"]", "slurm.time=01:30:00"],
    )
    .unwrap();
    assert_eq!(spec.capture.batch_size, 9, "--set beats env");
    assert_eq!(spec.capture.pooling, vec![Pooling::Eos]);
    assert_eq!(spec.slurm.time, "01:30:00", "a TOML time stays a string");
    let spec = load(&f, &[], &["capture.batch_size=9", "capture.batch_size=10"]).unwrap();
    assert_eq!(spec.capture.batch_size, 10, "the last --set wins");
}

#[test]
fn plain_diffprobe_variables_are_not_spec_keys() {
    let f = fixture(MINIMAL);
    let env =
        [("DIFFPROBE_TOKEN", "secret"), ("DIFFPROBE_FAULT_UNIT_DELAY_MS", "5"), ("HOME", "/x")];
    assert_eq!(load(&f, &env, &[]).unwrap(), load(&f, &[], &[]).unwrap());
}

#[test]
fn relative_paths_resolve_against_the_spec_directory() {
    let f = fixture(MINIMAL);
    let spec = load(&f, &[], &[]).unwrap();
    assert_eq!(spec.model.path, f.dir.path().join("model"));
    assert_eq!(spec.stimuli.file, f.dir.path().join("ratings.csv"));
    assert_eq!(spec.targets.file, f.dir.path().join("ratings.csv"));
    // Also when the path comes from an override.
    std::fs::create_dir(f.dir.path().join("other")).unwrap();
    let spec = load(&f, &[("DIFFPROBE_MODEL__PATH", "other")], &[]).unwrap();
    assert_eq!(spec.model.path, f.dir.path().join("other"));
    // job.output_dir is not resolved: it is relative to the current directory.
    assert_eq!(spec.job.output_dir, PathBuf::from("runs"));
}

#[test]
fn resolved_toml_round_trips() {
    let f = fixture(MINIMAL);
    let spec = load(&f, &[], ALL_OPTIONS).unwrap();
    let resolved = f.dir.path().join("resolved.toml");
    std::fs::write(&resolved, spec.to_toml()).unwrap();
    assert_eq!(JobSpec::from_resolved_toml(&resolved).unwrap(), spec);
}

#[test]
fn alignment_section_is_optional_with_the_papers_defaults() {
    let f = fixture(MINIMAL);
    let spec = load(&f, &[], &[]).unwrap();
    assert_eq!(spec.analysis.alignment, None);
    assert!(!spec.to_toml().contains("alignment"), "absent stays absent in spec.toml");
    let f = fixture(&format!("{MINIMAL}\n[analysis.alignment]\ntriplets = \"ratings.csv\"\n"));
    let a = load(&f, &[], &[]).unwrap().analysis.alignment.unwrap();
    assert_eq!(a.triplets, f.dir.path().join("ratings.csv"), "resolved against the spec");
    assert_eq!(a.distances, vec![AlignmentDistance::Cosine]);
    assert_eq!(
        (a.triplet_entries, a.triplet_header, a.delimiter_byte()),
        (TripletEntries::Indices, false, b',')
    );
    assert!(!a.linear_probe);
    assert_eq!((a.probe_folds, a.lambda, a.learning_rate, a.batch_size), (3, 0.1, 1e-4, 256));
    assert_eq!((a.max_epochs, a.patience, a.min_delta, a.max_grad_norm), (100, 5, 1e-4, 1.0));
    assert_eq!(a.early_stopping, EarlyStoppingChoice::TestLoss);
    assert_eq!((a.embedding_folds, a.embedding_alphas.len()), (5, 8));
    let spec = load(&f, &[], &["analysis.alignment.triplet_delimiter=\"\\t\""]).unwrap();
    assert_eq!(spec.analysis.alignment.unwrap().delimiter_byte(), b'\t');
}

#[test]
fn demo_spec_parses_as_toml() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/demo.toml");
    let text = std::fs::read_to_string(path).unwrap();
    // Data may not be downloaded, so check the shape without path validation.
    let spec: JobSpec = toml::from_str(&text).unwrap();
    assert_eq!(spec.targets.columns.len(), 7);
    let a = spec.analysis.alignment.expect("the demo has an alignment part");
    assert_eq!(a.triplet_entries, TripletEntries::Names);
}
