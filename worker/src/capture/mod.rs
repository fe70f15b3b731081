//! Activation capture: load a model once per worker, run stimuli through it and return one
//! pooled feature block per representation. Pooling happens on the device, before anything is
//! copied to the host.

mod bert;
pub mod scheduler;

use common::spec::{DeviceChoice, ModelKind, ModelSection};
use common::table::FeatureBlock;
use common::unit::Representation;

use crate::error::UnitError;

/// A tap a model offers, with its feature width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapInfo {
    /// Diffusers / transformers module name, e.g. `text.3`.
    pub name: String,
    /// Width of one pooled vector.
    pub dim: usize,
}

/// The taps of the model a spec names (reads only its config).
pub fn available_taps(model: &ModelSection) -> Result<Vec<TapInfo>, UnitError> {
    match model.kind {
        ModelKind::Bert => bert::taps(&model.path),
    }
}

/// A loaded model ready to capture.
pub struct Capturer {
    inner: bert::BertCapture,
}

impl Capturer {
    /// Loads the model named by the spec (memory-mapped safetensors).
    pub fn load(model: &ModelSection, max_tokens: usize) -> Result<Capturer, UnitError> {
        let device = device(model.device)?;
        match model.kind {
            ModelKind::Bert => {
                Ok(Capturer { inner: bert::BertCapture::load(&model.path, device, max_tokens)? })
            }
        }
    }

    /// Runs `texts` (stimuli `first..first + texts.len()`) in batches and returns one block per
    /// representation, in the order given.
    pub fn capture(
        &self,
        texts: &[String],
        first: usize,
        batch_size: usize,
        reps: &[Representation],
    ) -> Result<Vec<FeatureBlock>, UnitError> {
        self.inner.capture(texts, first, batch_size, reps)
    }
}

fn device(choice: DeviceChoice) -> Result<candle_core::Device, UnitError> {
    let model_err = |e: candle_core::Error| UnitError::Model {
        path: "(device)".into(),
        message: e.to_string(),
    };
    match choice {
        DeviceChoice::Cpu => Ok(candle_core::Device::Cpu),
        DeviceChoice::Auto => candle_core::Device::cuda_if_available(0).map_err(model_err),
        DeviceChoice::Cuda => {
            if !candle_core::utils::cuda_is_available() {
                return Err(UnitError::Invalid(
                    "model.device = \"cuda\" but this worker was built without CUDA or has no GPU"
                        .into(),
                ));
            }
            candle_core::Device::new_cuda(0).map_err(model_err)
        }
    }
}
