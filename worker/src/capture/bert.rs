//! BERT-family text encoders (BERT, MiniLM, …) with per-layer hidden states. candle's
//! `BertModel` returns only the last layer, so the model is assembled from candle-transformers'
//! own parts: a zero-layer `BertModel` gives the embeddings (`text.0`), and one single-layer
//! `BertEncoder` per layer, loaded through a renaming `VarBuilder`, gives `text.{l}`. Every
//! numeric operation is candle-transformers' code (exact erf GELU, as transformers uses).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertEncoder, BertModel, Config};
use common::table::FeatureBlock;
use common::unit::Representation;
use tokenizers::Tokenizer;

use super::TapInfo;
use crate::error::UnitError;

pub(super) struct BertCapture {
    embeddings: BertModel,
    layers: Vec<BertEncoder>,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_tokens: usize,
    path: PathBuf,
}

fn model_err(path: &Path, e: impl std::fmt::Display) -> UnitError {
    UnitError::Model { path: path.display().to_string(), message: e.to_string() }
}

fn read_config(dir: &Path) -> Result<Config, UnitError> {
    let file = dir.join("config.json");
    let text = std::fs::read_to_string(&file).map_err(|e| model_err(&file, e))?;
    serde_json::from_str(&text).map_err(|e| model_err(&file, format!("not a BERT config: {e}")))
}

pub(super) fn taps(dir: &Path) -> Result<Vec<TapInfo>, UnitError> {
    let config = read_config(dir)?;
    Ok((0..=config.num_hidden_layers)
        .map(|l| TapInfo::text(format!("text.{l}"), config.hidden_size))
        .collect())
}

impl BertCapture {
    pub(super) fn load(dir: &Path, device: Device, max_tokens: usize) -> Result<Self, UnitError> {
        let config = read_config(dir)?;
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(model_err(&weights, "missing weight file"));
        }
        let tok_file = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_file).map_err(|e| model_err(&tok_file, e))?;
        // Shipped tokenizers may pad to a fixed length; pooling must see only real tokens, and a
        // long stimulus must be an error rather than silently truncated.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| model_err(&tok_file, e))?;
        // SAFETY: the file is memory-mapped read-only; diffprobe never writes model files while
        // a worker runs.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| model_err(&weights, e))?;
        let prefix =
            if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let root = if prefix.is_empty() { vb.clone() } else { vb.pp("bert") };
        let mut emb_config = config.clone();
        emb_config.num_hidden_layers = 0;
        let embeddings =
            BertModel::load(root.clone(), &emb_config).map_err(|e| model_err(&weights, e))?;
        let mut one = config.clone();
        one.num_hidden_layers = 1;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let from = format!("{prefix}encoder.layer.0.");
            let to = format!("{prefix}encoder.layer.{l}.");
            let renamed = vb.clone().rename_f(move |name: &str| name.replacen(&from, &to, 1));
            let renamed = if prefix.is_empty() { renamed } else { renamed.pp("bert") };
            layers.push(
                BertEncoder::load(renamed.pp("encoder"), &one)
                    .map_err(|e| model_err(&weights, format!("layer {l}: {e}")))?,
            );
        }
        Ok(BertCapture {
            embeddings,
            layers,
            tokenizer,
            device,
            dim: config.hidden_size,
            max_tokens,
            path: dir.to_path_buf(),
        })
    }

    pub(super) fn capture(
        &self,
        texts: &[String],
        first: usize,
        batch_size: usize,
        reps: &[Representation],
    ) -> Result<Vec<FeatureBlock>, UnitError> {
        let mut blocks: Vec<FeatureBlock> = reps
            .iter()
            .map(|r| FeatureBlock {
                key: r.key(),
                dim: self.dim,
                stimuli: Vec::new(),
                values: Vec::new(),
            })
            .collect();
        let layer_of = |r: &Representation| -> Result<usize, UnitError> {
            r.tap
                .strip_prefix("text.")
                .and_then(|l| l.parse().ok())
                .filter(|l| *l <= self.layers.len())
                .ok_or_else(|| {
                    UnitError::Invalid(format!(
                        "tap {:?} is not a layer of this model (text.0..text.{})",
                        r.tap,
                        self.layers.len()
                    ))
                })
        };
        let wanted: Vec<usize> = reps.iter().map(layer_of).collect::<Result<_, _>>()?;
        for (b, chunk) in texts.chunks(batch_size.max(1)).enumerate() {
            let start = first + b * batch_size;
            let states = self.forward(chunk, start).map_err(|e| model_err(&self.path, e))?;
            for ((rep, &layer), block) in reps.iter().zip(&wanted).zip(blocks.iter_mut()) {
                let pooled = super::tokens::pool(
                    &states.hidden[layer],
                    &states.mask,
                    &states.lengths,
                    rep.pooling,
                )
                .map_err(|e| model_err(&self.path, e))?;
                let host: Vec<Vec<f32>> = pooled
                    .to_dtype(DType::F32)
                    .and_then(|t| t.to_vec2())
                    .map_err(|e| model_err(&self.path, e))?;
                for (i, row) in host.into_iter().enumerate() {
                    block.stimuli.push((start + i) as u32);
                    block.values.extend(row);
                }
            }
        }
        Ok(blocks)
    }

    fn forward(&self, texts: &[String], start: usize) -> Result<States, UnitError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| model_err(&self.path, e))?;
        let longest = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        for (i, e) in encodings.iter().enumerate() {
            if e.get_ids().len() > self.max_tokens {
                return Err(UnitError::Invalid(format!(
                    "stimulus {} ({:?}) has {} tokens, more than capture.max_tokens = {}",
                    start + i,
                    texts[i],
                    e.get_ids().len(),
                    self.max_tokens
                )));
            }
        }
        let n = texts.len();
        let mut ids = vec![0u32; n * longest];
        let mut mask = vec![0u32; n * longest];
        let mut lengths = Vec::with_capacity(n);
        for (i, e) in encodings.iter().enumerate() {
            let len = e.get_ids().len();
            ids[i * longest..i * longest + len].copy_from_slice(e.get_ids());
            mask[i * longest..i * longest + len].fill(1);
            lengths.push(len as u32);
        }
        let run = || -> candle_core::Result<States> {
            let ids = Tensor::from_vec(ids, (n, longest), &self.device)?;
            let mask = Tensor::from_vec(mask, (n, longest), &self.device)?;
            let types = ids.zeros_like()?;
            let h0 = self.embeddings.forward(&ids, &types, Some(&mask))?;
            let extended = extended_mask(&mask, h0.dtype())?;
            let mut hidden = vec![h0];
            for layer in &self.layers {
                let next = layer.forward(hidden.last().expect("non-empty"), &extended)?;
                hidden.push(next);
            }
            let lengths = Tensor::from_vec(lengths, n, &self.device)?;
            Ok(States { hidden, mask, lengths })
        };
        run().map_err(|e| model_err(&self.path, e))
    }
}

struct States {
    hidden: Vec<Tensor>,
    mask: Tensor,
    lengths: Tensor,
}

/// transformers' extended attention mask: 0 for real tokens, the dtype's minimum for padding.
fn extended_mask(mask: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    let m = mask.unsqueeze(1)?.unsqueeze(1)?.to_dtype(dtype)?;
    (m.ones_like()? - &m)?.broadcast_mul(&Tensor::new(f32::MIN, mask.device())?.to_dtype(dtype)?)
}
