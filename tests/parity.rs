//! Activation parity: diffprobe's MiniLM capture against transformers' hidden states on the same
//! weights (`tests/golden/minilm_hidden.json`, written by `scripts/make_golden_minilm.py`).
//! Words are batched together, so padding and masking are exercised too.

use common::spec::{CaptureSection, DeviceChoice, ModelKind, ModelSection, Pooling, StorageDtype};
use common::unit::Representation;

use crate::util;

#[test]
fn minilm_layers_match_transformers() {
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(util::repo().join("tests/golden/minilm_hidden.json")).unwrap(),
    )
    .unwrap();
    let words: Vec<String> = golden["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    let model = ModelSection {
        kind: ModelKind::Bert,
        path: util::demo_data().join("minilm"),
        device: DeviceChoice::Cpu,
        dtype: StorageDtype::F32,
        lora: Vec::new(),
    };
    let capture = CaptureSection::default();
    let capturer = worker::capture::Capturer::load(&model, &capture).unwrap();
    let layers = golden["cls"].as_array().unwrap().len();
    let mut reps = Vec::new();
    for l in 0..layers {
        for pooling in [Pooling::Cls, Pooling::Mean] {
            reps.push(Representation::text(format!("text.{l}"), pooling));
        }
    }
    let stimuli = worker::capture::Stimuli { names: &words, texts: &words, first: 0, images: None };
    let blocks = capturer.capture(&stimuli, words.len(), &reps).unwrap();
    let mut worst = 0f64;
    for (rep, block) in reps.iter().zip(&blocks) {
        let l: usize = rep.tap[5..].parse().unwrap();
        let key = if rep.pooling == Pooling::Cls { "cls" } else { "mean" };
        for (w, _) in words.iter().enumerate() {
            let want = golden[key][l][w].as_array().unwrap();
            for (k, v) in want.iter().enumerate() {
                let got = block.values[w * block.dim + k] as f64;
                worst = worst.max((got - v.as_f64().unwrap()).abs());
            }
        }
    }
    eprintln!(
        "MiniLM parity: max |diffprobe − transformers| = {worst:.2e} over {} representations",
        reps.len()
    );
    assert!(worst < 1e-4, "max abs difference {worst}");
}
