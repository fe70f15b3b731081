//! Activation capture: load a model once per worker, run stimuli through it and return one
//! pooled feature block per representation. Pooling happens on the device, before anything is
//! copied to the host.

#[cfg(test)]
mod batch_invariance;
mod bert;
mod sd;
mod tokens;

use common::spec::{CaptureSection, DeviceChoice, ModelKind, ModelSection, Pooling};
use common::table::FeatureBlock;
use common::unit::Representation;

use crate::error::UnitError;

/// A tap a model offers, with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapInfo {
    /// Diffusers / transformers module name, e.g. `text.3`, `up_blocks.1`.
    pub name: String,
    /// Channels (width of one token or position).
    pub channels: usize,
    /// Spatial positions or tokens of a U-Net tap at the run's image size; `None` for text taps.
    pub positions: Option<usize>,
}

impl TapInfo {
    fn text(name: String, channels: usize) -> TapInfo {
        TapInfo { name, channels, positions: None }
    }

    /// Whether this is a text-encoder tap (token poolings apply).
    pub fn is_text(&self) -> bool {
        self.positions.is_none()
    }

    /// Width of one stimulus's vector under `pooling`.
    pub fn dim(&self, pooling: Pooling) -> usize {
        match pooling {
            Pooling::Flatten | Pooling::None => self.channels * self.positions.unwrap_or(1),
            _ => self.channels,
        }
    }
}

/// The stimuli of one capture unit.
pub struct Stimuli<'a> {
    /// Stimulus names (image file stems in real-image mode; seeds derive from them).
    pub names: &'a [String],
    /// The text given to the model (template applied).
    pub texts: &'a [String],
    /// Index of the first stimulus in the dataset.
    pub first: usize,
    /// Where generated images go when the spec asks for them (the run's `images/`).
    pub images: Option<&'a std::path::Path>,
}

/// The taps of the model a spec names, at the spec's image size. For `sd` this also loads the
/// U-Net with its LoRAs merged (in f16, on the CPU) and builds the sampler, so that a LoRA key
/// that matches nothing or a sampler the schedule cannot run is refused at plan time.
pub fn available_taps(
    model: &ModelSection,
    capture: &CaptureSection,
) -> Result<Vec<TapInfo>, UnitError> {
    match model.kind {
        ModelKind::Bert => bert::taps(&model.path),
        ModelKind::Sd => sd::taps(model, capture),
    }
}

pub use sd::{check_image, MaskSource, ObjectSource, ObjectTable};

/// The (height, width) in pixels of an `sd` run's images.
pub fn image_size(
    model: &ModelSection,
    capture: &CaptureSection,
) -> Result<(usize, usize), UnitError> {
    sd::pixel_size(&model.path, capture)
}

/// A loaded model ready to capture.
pub struct Capturer {
    inner: Inner,
}

enum Inner {
    Bert(Box<bert::BertCapture>),
    Sd(Box<sd::SdCapture>),
}

impl Capturer {
    /// Loads the model named by the spec (memory-mapped safetensors).
    pub fn load(model: &ModelSection, capture: &CaptureSection) -> Result<Capturer, UnitError> {
        Self::load_permuted(model, capture, None)
    }

    /// [`Capturer::load`], with the U-Net's weights permuted by `permuted`'s seed if given
    /// (`sd::UNet::load_permuted`; an `sd` model only).
    pub fn load_permuted(
        model: &ModelSection,
        capture: &CaptureSection,
        permuted: Option<u64>,
    ) -> Result<Capturer, UnitError> {
        if permuted.is_some() && model.kind != ModelKind::Sd {
            return Err(UnitError::Invalid("weight permutation needs an sd model".into()));
        }
        let device = device(model.device)?;
        let inner = match model.kind {
            ModelKind::Bert => Inner::Bert(Box::new(bert::BertCapture::load(
                &model.path,
                device,
                capture.max_tokens,
            )?)),
            ModelKind::Sd => {
                Inner::Sd(Box::new(sd::SdCapture::load(model, capture, device, permuted)?))
            }
        };
        Ok(Capturer { inner })
    }

    /// Runs the stimuli in batches and returns one block per representation, in the order
    /// given.
    pub fn capture(
        &self,
        stimuli: &Stimuli<'_>,
        batch_size: usize,
        reps: &[Representation],
    ) -> Result<Vec<FeatureBlock>, UnitError> {
        match &self.inner {
            Inner::Bert(b) => b.capture(stimuli.texts, stimuli.first, batch_size, reps),
            Inner::Sd(s) => s.capture(stimuli, batch_size.max(1), reps),
        }
    }
}

pub(crate) fn device(choice: DeviceChoice) -> Result<candle_core::Device, UnitError> {
    match choice {
        DeviceChoice::Cpu => Ok(candle_core::Device::Cpu),
        DeviceChoice::Auto => Ok(open_cuda().unwrap_or(candle_core::Device::Cpu)),
        DeviceChoice::Cuda => open_cuda().map_err(|why| {
            UnitError::Invalid(format!("model.device = \"cuda\" but no CUDA device: {why}"))
        }),
    }
}

/// Whether this worker can open CUDA device 0 (what it registers as its device).
pub fn cuda_present() -> bool {
    open_cuda().is_ok()
}

/// Opens CUDA device 0. cudarc loads the driver library lazily and panics when it is missing,
/// so the attempt runs under `catch_unwind` with the panic message kept as the reason.
fn open_cuda() -> Result<candle_core::Device, String> {
    if !candle_core::utils::cuda_is_available() {
        return Err("this worker was built without CUDA (see scripts/build-cuda.sh)".into());
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| candle_core::Device::new_cuda(0));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the CUDA driver library could not be loaded".into())),
    }
}
