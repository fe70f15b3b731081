//! Plan-time inputs of `[analysis.dense_probe]`: the seeded train/test split over stimuli, the
//! label file of every (stimulus, target) found (a missing one is refused before any model
//! runs, naming the file), and the fingerprint of their contents, which enters the dense
//! units' ids so new labels are new units while the captures stay.

use std::collections::BTreeMap;

use common::error::SpecError;
use common::settings::{DenseSettings, DenseTarget, PaperFit};
use common::spec::{CaptureMode, DenseControl, DenseFit, JobSpec};
use common::stimuli::Dataset;

const KEY: &str = "analysis.dense_probe";

/// What the dense units of a plan share: their settings, each U-Net tap's channels, and the
/// seed of the weight-permuted control, if the spec asks for it.
pub(crate) struct DenseInputs {
    pub(crate) settings: DenseSettings,
    pub(crate) channels: BTreeMap<String, usize>,
    pub(crate) control: Option<u64>,
}

/// The spec's dense settings, or `None` without `[analysis.dense_probe]`.
pub(crate) fn resolve(
    spec: &JobSpec,
    spec_file: &str,
    data: &Dataset,
    channels: BTreeMap<String, usize>,
) -> Result<Option<DenseInputs>, SpecError> {
    let Some(d) = &spec.analysis.dense_probe else { return Ok(None) };
    let err = |key: &str, msg: String| SpecError::new(spec_file, format!("{KEY}.{key}"), msg);
    let n = data.len();
    let (train, test) = match &d.split {
        Some(path) => read_split(path, data).map_err(|m| err("split", m))?,
        None => probe::train_test_split(n, d.train_fraction, d.seed),
    };
    if train.is_empty() || test.is_empty() {
        let msg = format!("{n} stimuli leave no training or no test image at {}", d.train_fraction);
        return Err(err("train_fraction", msg));
    }
    let generated = spec.capture.mode == CaptureMode::Generate;
    let targets: Vec<DenseTarget> =
        d.targets.iter().map(|(name, &kind)| DenseTarget { name: name.clone(), kind }).collect();
    let mut hasher = blake3::Hasher::new();
    for stimulus in &data.stimuli {
        for t in &targets {
            let path = worker::dense_labels::label_path(&d.labels, stimulus, &t.name, generated)
                .map_err(|m| err("labels", m))?;
            let bytes = std::fs::read(&path)
                .map_err(|e| err("labels", format!("{}: {e}", path.display())))?;
            hasher.update(path.file_name().unwrap_or_default().as_encoded_bytes());
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
    }
    let settings = DenseSettings {
        targets,
        train,
        test,
        alpha: d.alpha,
        l2: d.l2,
        generated,
        labels_fingerprint: hasher.finalize().to_hex().to_string(),
        paper: (d.fit == DenseFit::Paper).then(|| PaperFit {
            epochs: d.epochs,
            batch: d.batch,
            learning_rates: d
                .targets
                .keys()
                .map(|t| d.learning_rates.get(t).copied().unwrap_or(d.learning_rate))
                .collect(),
            seed: d.fit_seed,
        }),
    };
    let control = d.control.map(|c| match c {
        DenseControl::PermuteWeights => d.control_seed,
    });
    Ok(Some(DenseInputs { settings, channels, control }))
}

/// A split file: `stimulus,split` with `train` or `test` for every stimulus; the error names
/// the file and line.
fn read_split(path: &std::path::Path, data: &Dataset) -> Result<(Vec<usize>, Vec<usize>), String> {
    #[derive(serde::Deserialize)]
    struct Line {
        stimulus: String,
        split: String,
    }
    let at = |line: usize, m: String| format!("{}:{line}: {m}", path.display());
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut side: Vec<Option<bool>> = vec![None; data.len()];
    for (i, record) in reader.deserialize::<Line>().enumerate() {
        let l = record.map_err(|e| at(i + 2, e.to_string()))?;
        let Some(row) = data.stimuli.iter().position(|s| *s == l.stimulus) else {
            continue; // a stimulus of another run (or dropped): not in this split
        };
        let train = match l.split.as_str() {
            "train" => true,
            "test" => false,
            other => return Err(at(i + 2, format!("split {other:?} is neither train nor test"))),
        };
        if side[row].replace(train).is_some() {
            return Err(at(i + 2, format!("stimulus {:?} is listed twice", l.stimulus)));
        }
    }
    if let Some(row) = side.iter().position(Option::is_none) {
        return Err(format!("{}: stimulus {:?} has no split", path.display(), data.stimuli[row]));
    }
    let pick = |want: bool| (0..data.len()).filter(|&i| side[i] == Some(want)).collect();
    Ok((pick(true), pick(false)))
}

#[cfg(test)]
mod tests {
    /// The split is a partition of the stimuli, its size the stated fraction, and it depends on
    /// the seed alone.
    #[test]
    fn split_partitions_the_stimuli() {
        let split = probe::train_test_split;
        let (train, test) = split(617, 0.4, 7);
        assert_eq!((train.len(), test.len()), (247, 370));
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..617).collect::<Vec<_>>());
        assert_eq!(split(617, 0.4, 7), (train.clone(), test));
        assert_ne!(split(617, 0.4, 8).0, train);
    }

    /// A split file gives each stimulus its side; an unknown side, a stimulus listed twice or
    /// one without a side is refused naming the file.
    #[test]
    fn split_files() {
        let stimuli: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let data = common::stimuli::Dataset {
            texts: stimuli.clone(),
            stimuli,
            attributes: vec!["x".into()],
            groups: vec![None],
            targets: vec![0.0; 3],
            dropped: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.csv");
        let read = |text: &str| {
            std::fs::write(&path, text).unwrap();
            super::read_split(&path, &data)
        };
        let ok = read("stimulus,split\na,test\nb,train\nc,test\nzz,train\n").unwrap();
        assert_eq!(ok, (vec![1], vec![0, 2]));
        assert!(read("stimulus,split\na,val\n").unwrap_err().contains("split.csv:2"));
        assert!(read("stimulus,split\na,test\na,train\n").unwrap_err().contains("twice"));
        assert!(read("stimulus,split\na,test\nb,train\n")
            .unwrap_err()
            .contains("\"c\" has no split"));
    }
}
