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
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    JobSpec::load(&f.spec, &env, &sets)
}

#[test]
fn dump() {
    let cases: Vec<(&str, String, Vec<(&str, &str)>, Vec<&str>)> = vec![
        ("typo", format!("{MINIMAL}\n[analysis.attribute_probe]\nalpah = 3\n"), vec![], vec![]),
        ("folds ten", format!("{MINIMAL}\n[analysis.attribute_probe]\nfolds = \"ten\"\n"), vec![], vec![]),
        ("alpha -1", format!("{MINIMAL}\n[analysis.attribute_probe]\nalpha = -1\n"), vec![], vec![]),
        ("folds 1", format!("{MINIMAL}\n[analysis.attribute_probe]\nfolds = 1\n"), vec![], vec![]),
        ("no path", MINIMAL.replace("path = \"model\"\n", ""), vec![], vec![]),
        ("bad path", MINIMAL.replace("path = \"model\"", "path = \"nope\""), vec![], vec![]),
        ("pool", format!("{MINIMAL}\n[capture]\npooling = [\"max\"]\n"), vec![], vec![]),
        ("hb", format!("{MINIMAL}\n[sweep]\nheartbeat_s = 20\n"), vec![], vec![]),
        ("time", format!("{MINIMAL}\n[slurm]\ntime = \"1h\"\n"), vec![], vec![]),
        ("mem", format!("{MINIMAL}\n[slurm]\nmem = \"16GB\"\n"), vec![], vec![]),
        ("signal", format!("{MINIMAL}\n[slurm]\nsignal = \"USR1\"\n"), vec![], vec![]),
        ("groups", format!("{MINIMAL}\n[targets.groups]\nsmell = \"perceptual\"\n"), vec![], vec![]),
        ("set type", MINIMAL.into(), vec![], vec!["analysis.attribute_probe.folds=ten"]),
        ("set type2", MINIMAL.into(), vec![], vec!["capture.batch_size=[1]"]),
        ("set unknown", MINIMAL.into(), vec![], vec!["analysis.attribute_probe.alpah=3"]),
        ("env folds", MINIMAL.into(), vec![("DIFFPROBE_ANALYSIS__ATTRIBUTE_PROBE__FOLDS", "1")], vec![]),
        ("env type", MINIMAL.into(), vec![("DIFFPROBE_ANALYSIS__ATTRIBUTE_PROBE__FOLDS", "x")], vec![]),
        ("env unknown", MINIMAL.into(), vec![("DIFFPROBE_ANALYSIS__ATTRIBUTE_PROBE__ALPAH", "1")], vec![]),
        ("top", format!("{MINIMAL}\n[analysys]\n"), vec![], vec![]),
        ("set slurm time", MINIMAL.into(), vec![], vec!["slurm.time=01:00:00"]),
        ("set slurm time min", MINIMAL.into(), vec![], vec!["slurm.time=60"]),
        ("env name num", MINIMAL.into(), vec![("DIFFPROBE_JOB__NAME", "2024")], vec![]),
        ("set mem", MINIMAL.into(), vec![], vec!["slurm.mem=16G"]),
        ("set partition", MINIMAL.into(), vec![], vec!["slurm.partition=gpu"]),
        ("bad set", MINIMAL.into(), vec![], vec!["foo"]),
        ("missing section", MINIMAL.replace("[job]\nname = \"t\"\n", ""), vec![], vec![]),
        ("file type", format!("{MINIMAL}\n[capture]\nbatch_size = \"x\"\n"), vec![], vec![]),
        ("set top", MINIMAL.into(), vec![], vec!["bogus=1"]),
        ("env and set", MINIMAL.into(), vec![("DIFFPROBE_CAPTURE__BATCH_SIZE", "x")], vec!["capture.batch_size=y"]),
    ];
    for (name, text, env, sets) in cases {
        let f = fixture(&text);
        match load(&f, &env, &sets) {
            Ok(_) => println!("{name}: OK"),
            Err(e) => println!("{name}: {}", e.to_string().replace(&f.dir.path().display().to_string(), "{dir}")),
        }
    }
}
