//! Finding and opening a component folder in the diffusers layout: `config.json` plus one
//! safetensors file (`<stem>.safetensors`, else `<stem>.fp16.safetensors`).
//!
//! Every failure here names the path involved; weights are memory-mapped and converted to the
//! requested dtype tensor by tensor as the model asks for them.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;

use crate::error::SdError;
use crate::lora::{self, Lora};

/// The two files of one component (`unet/`, `text_encoder/`, `vae/`).
#[derive(Debug, Clone)]
pub(crate) struct ComponentFiles {
    pub(crate) config: PathBuf,
    pub(crate) weights: PathBuf,
}

impl ComponentFiles {
    /// Locates `dir/config.json` and the weights file named after `weights_stem`.
    pub(crate) fn locate(dir: &Path, weights_stem: &str) -> Result<Self, SdError> {
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(SdError::Io {
                    path: dir.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotADirectory,
                        "not a directory",
                    ),
                })
            }
            Err(source) => return Err(SdError::Io { path: dir.to_path_buf(), source }),
        }
        let full = dir.join(format!("{weights_stem}.safetensors"));
        let half = dir.join(format!("{weights_stem}.fp16.safetensors"));
        let weights = if full.is_file() {
            full
        } else if half.is_file() {
            half
        } else {
            return Err(SdError::MissingWeights { path: full });
        };
        Ok(ComponentFiles { config: dir.join("config.json"), weights })
    }

    /// Reads and parses `config.json`, returning the typed config and the raw JSON (for the
    /// checks of fields this crate does not model).
    pub(crate) fn read_config<T: DeserializeOwned>(
        &self,
    ) -> Result<(T, serde_json::Value), SdError> {
        let text = std::fs::read_to_string(&self.config)
            .map_err(|source| SdError::Io { path: self.config.clone(), source })?;
        let raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| self.config_error(e.to_string()))?;
        let typed = T::deserialize(&raw)
            .map_err(|e| self.config_error(culprit::<T>(&raw).unwrap_or_else(|| e.to_string())))?;
        Ok((typed, raw))
    }

    /// A `Config` error about this component's `config.json`.
    pub(crate) fn config_error(&self, message: impl Into<String>) -> SdError {
        SdError::Config { path: self.config.clone(), message: message.into() }
    }

    /// A `Weights` error about this component's weights file.
    pub(crate) fn weights_error(&self, error: candle_core::Error) -> SdError {
        // candle attaches a backtrace when RUST_BACKTRACE is set; the message is what matters.
        let mut error = &error;
        while let candle_core::Error::WithBacktrace { inner, .. } = error {
            error = inner;
        }
        SdError::Weights { path: self.weights.clone(), message: error.to_string() }
    }

    /// Memory-maps the weights file.
    pub(crate) fn var_builder(
        &self,
        dtype: DType,
        device: &Device,
    ) -> Result<VarBuilder<'static>, SdError> {
        // SAFETY: the file is mapped read-only and only read while the model is being built;
        // like every mmap user we rely on nobody truncating the file meanwhile.
        unsafe { VarBuilder::from_mmaped_safetensors(&[&self.weights], dtype, device) }
            .map_err(|e| self.weights_error(e))
    }
}

impl ComponentFiles {
    /// The weights with `loras` merged into them and, with `permute`, every `*weight` tensor
    /// shuffled by that seed ([`crate::permute`]): read whole into memory (on the CPU, in their
    /// stored dtype), merged in f32, then converted to `dtype` on `device` as each tensor is
    /// asked for. Without either this is [`Self::var_builder`] (memory-mapped, unchanged).
    pub(crate) fn var_builder_modified(
        &self,
        dtype: DType,
        device: &Device,
        loras: &[Lora],
        target: lora::Target,
        permute: Option<u64>,
    ) -> Result<VarBuilder<'static>, SdError> {
        if loras.is_empty() && permute.is_none() {
            return self.var_builder(dtype, device);
        }
        let mut weights = candle_core::safetensors::load(&self.weights, &Device::Cpu)
            .map_err(|e| self.weights_error(e))?;
        lora::merge_all(&mut weights, loras, target)?;
        if let Some(seed) = permute {
            crate::permute::permute_weights(&mut weights, seed)
                .map_err(|e| self.weights_error(e))?;
        }
        Ok(VarBuilder::from_tensors(weights, dtype, device))
    }
}

/// Names the first field that alone fails to deserialize into `T` (whose fields all have
/// defaults), since serde's own message does not say which field had the wrong type.
fn culprit<T: DeserializeOwned>(raw: &serde_json::Value) -> Option<String> {
    let serde_json::Value::Object(fields) = raw else {
        return Some("expected a JSON object".to_string());
    };
    fields.iter().find_map(|(key, value)| {
        let alone = serde_json::Value::Object([(key.clone(), value.clone())].into_iter().collect());
        T::deserialize(&alone).err().map(|e| format!("{key}: {e}"))
    })
}
