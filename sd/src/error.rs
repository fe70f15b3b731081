//! `SdError`, the one error type of this crate.
//!
//! Loading fails with the path that was wrong (a folder, a `config.json`, a weights file) and,
//! for weights, with candle's message, which names the offending tensor; a forward pass fails
//! with `Input` when the caller's tensors do not fit the model, or with `Candle` for anything
//! the tensor library reports.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a Stable Diffusion component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdError {
    /// A file or folder could not be read (it is missing, or unreadable).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A `config.json` is malformed, inconsistent, or asks for something this crate does not
    /// implement; `message` names the field.
    #[error("{}: {message}", path.display())]
    Config {
        /// The `config.json`.
        path: PathBuf,
        /// What is wrong, starting with the field name.
        message: String,
    },
    /// A component folder holds no weights file: neither `path` nor its `.fp16.safetensors`
    /// variant exists.
    #[error("missing weights: {} (nor its .fp16.safetensors variant)", path.display())]
    MissingWeights {
        /// The weights file that was expected first.
        path: PathBuf,
    },
    /// A weights file is unreadable, or a tensor in it is missing or has the wrong shape;
    /// `message` names the tensor.
    #[error("{}: {message}", path.display())]
    Weights {
        /// The safetensors file.
        path: PathBuf,
        /// What is wrong, naming the tensor.
        message: String,
    },
    /// A LoRA file's tensor `key` cannot be merged: it is no LoRA tensor, names a layer the
    /// model does not have, or its shapes do not fit that layer.
    #[error("LoRA {}: {key} {message}", path.display())]
    Lora {
        /// The LoRA file.
        path: PathBuf,
        /// The tensor name in the file.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The tensors passed to a forward pass do not fit the model (rank, channels, batch,
    /// sequence length, dtype).
    #[error("bad input: {message}")]
    Input {
        /// What does not fit.
        message: String,
    },
    /// An error from candle while running a model.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl SdError {
    pub(crate) fn input(message: impl Into<String>) -> Self {
        SdError::Input { message: message.into() }
    }
}
