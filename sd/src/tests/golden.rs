//! Equality with diffusers / transformers: the golden files in `tests/golden/sd/` hold, for
//! each tiny fixture model and pipeline case, the text encoder's hidden states, every U-Net
//! call's inputs and every tap, and for image cases the VAE mean — all computed by PyTorch in
//! f32. Each is recomputed here in f32 on the CPU and must match to a relative error
//! (max |ours − ref| / max |ref|) of `TOLERANCE`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::tests::{max_relative_error, workspace_tests_dir};
use crate::{TapRecorder, TextEncoder, UNet, Vae};

const TOLERANCE: f64 = 1e-5;

/// One golden file: `{fixture}-{case}.safetensors`.
struct Golden {
    fixture: String,
    case: String,
    tensors: HashMap<String, Tensor>,
}

impl Golden {
    fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("{}-{}: no tensor {name}", self.fixture, self.case))
    }

    fn label(&self) -> String {
        format!("{}-{}", self.fixture, self.case)
    }

    /// The recorded U-Net call indices, ascending.
    fn calls(&self) -> Vec<usize> {
        let calls: BTreeSet<usize> = self
            .tensors
            .keys()
            .filter_map(|k| k.strip_prefix("call")?.strip_suffix(".sample")?.parse().ok())
            .collect();
        calls.into_iter().collect()
    }
}

fn fixture_dir(fixture: &str) -> PathBuf {
    workspace_tests_dir().join("fixtures").join(fixture)
}

/// Every golden file, with its fixture taken as the longest fixture folder name that
/// prefixes the file name.
fn golden_files() -> Vec<Golden> {
    let dir = workspace_tests_dir().join("golden/sd");
    let fixtures: Vec<String> = std::fs::read_dir(workspace_tests_dir().join("fixtures"))
        .expect("tests/fixtures exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no golden files in {}", dir.display());
    paths
        .iter()
        .map(|path| {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let fixture = fixtures
                .iter()
                .filter(|f| stem.starts_with(&format!("{f}-")))
                .max_by_key(|f| f.len())
                .unwrap_or_else(|| panic!("{stem}: no fixture folder matches"))
                .clone();
            let case = stem[fixture.len() + 1..].to_string();
            let tensors = candle_core::safetensors::load(path, &Device::Cpu)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Golden { fixture, case, tensors }
        })
        .collect()
}

/// Worst relative error per golden file and overall, printed as a table; fails on any
/// comparison above `TOLERANCE`.
#[derive(Default)]
struct Report {
    worst: BTreeMap<String, (f64, String)>,
    failures: Vec<String>,
}

impl Report {
    fn compare(&mut self, file: &str, what: &str, ours: &Tensor, reference: &Tensor) {
        if ours.dims() != reference.dims() {
            self.failures.push(format!(
                "{file} {what}: shape {:?}, golden {:?}",
                ours.dims(),
                reference.dims()
            ));
            return;
        }
        let error = max_relative_error(ours, reference);
        let entry = self.worst.entry(file.to_string()).or_insert((0.0, String::new()));
        if error > entry.0 || entry.1.is_empty() {
            *entry = (error, what.to_string());
        }
        if error > TOLERANCE || error.is_nan() {
            self.failures.push(format!("{file} {what}: relative error {error:.3e}"));
        }
    }

    fn finish(self, title: &str) {
        println!("{title}: worst relative error per golden file");
        for (file, (error, what)) in &self.worst {
            println!("  {file:<28} {error:.3e}  ({what})");
        }
        assert!(self.failures.is_empty(), "{title}:\n{}", self.failures.join("\n"));
    }
}

fn timestep(value: &Tensor) -> f64 {
    let values = value
        .to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .expect("timestep converts");
    assert_eq!(values.len(), 1, "timestep has one element");
    values[0]
}

#[test]
fn unet_taps_match_diffusers_golden() {
    let mut report = Report::default();
    let mut models: HashMap<String, UNet> = HashMap::new();
    for golden in golden_files() {
        let file = golden.label();
        let unet = models.entry(golden.fixture.clone()).or_insert_with(|| {
            let dir = fixture_dir(&golden.fixture).join("unet");
            UNet::load(&dir, DType::F32, &Device::Cpu).expect("fixture U-Net loads")
        });
        let listed: BTreeSet<String> = unet.taps().into_iter().map(|t| t.name).collect();
        let calls = golden.calls();
        assert!(!calls.is_empty(), "{file}: no recorded U-Net calls");
        for call in calls {
            let prefix = format!("call{call}.");
            let sample = golden.tensor(&format!("{prefix}sample"));
            let t = timestep(golden.tensor(&format!("{prefix}timestep")));
            let context = golden.tensor(&format!("{prefix}encoder_hidden_states"));
            let mut recorder = TapRecorder::all();
            unet.forward(sample, t, context, &mut recorder)
                .unwrap_or_else(|e| panic!("{file} call {call}: {e}"));
            let inputs = ["sample", "timestep", "encoder_hidden_states"];
            let golden_taps: BTreeSet<String> = golden
                .tensors
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter(|k| !inputs.contains(k))
                .map(str::to_string)
                .collect();
            assert_eq!(listed, golden_taps, "{file} call {call}: taps() vs golden taps");
            for tap in &golden_taps {
                let ours = recorder
                    .get(tap)
                    .unwrap_or_else(|| panic!("{file} call {call}: {tap} not recorded"));
                let reference = golden.tensor(&format!("{prefix}{tap}"));
                report.compare(&file, &format!("call{call}.{tap}"), ours, reference);
            }
        }
    }
    report.finish("U-Net");
}

#[test]
fn text_encoder_matches_transformers_golden() {
    let mut report = Report::default();
    let mut models: HashMap<String, TextEncoder> = HashMap::new();
    for golden in golden_files() {
        let file = golden.label();
        let encoder = models.entry(golden.fixture.clone()).or_insert_with(|| {
            let dir = fixture_dir(&golden.fixture).join("text_encoder");
            TextEncoder::load(&dir, DType::F32, &Device::Cpu).expect("fixture text encoder loads")
        });
        let out = encoder.forward(golden.tensor("text_ids")).unwrap();
        let stored = golden
            .tensors
            .keys()
            .filter(|k| k.strip_prefix("text.").is_some_and(|l| l.parse::<usize>().is_ok()))
            .count();
        assert_eq!(stored, out.hidden_states.len(), "{file}: hidden-state count");
        for (l, hidden) in out.hidden_states.iter().enumerate() {
            report.compare(
                &file,
                &format!("text.{l}"),
                hidden,
                golden.tensor(&format!("text.{l}")),
            );
        }
        report.compare(&file, "text.final", &out.last_hidden_state, golden.tensor("text.final"));
    }
    report.finish("text encoder");
}

#[test]
fn vae_mean_matches_diffusers_golden() {
    let mut report = Report::default();
    let mut compared = 0;
    for golden in golden_files() {
        let Some(image) = golden.tensors.get("image") else {
            continue;
        };
        let dir: &Path = &fixture_dir(&golden.fixture).join("vae");
        let vae = Vae::load(dir, DType::F32, &Device::Cpu).expect("fixture VAE loads");
        let mean = vae.encode_mean(image).unwrap();
        report.compare(&golden.label(), "vae_mean", &mean, golden.tensor("vae_mean"));
        compared += 1;
    }
    assert!(compared > 0, "no golden file has an image case");
    report.finish("VAE");
}
