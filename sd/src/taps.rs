//! Activation taps: named points inside a model whose outputs a caller can record.
//!
//! Tap names are diffusers module paths (`down_blocks.0.resnets.1`, `mid_block`, `out`), so a
//! tap recorded here and a forward hook on the same module in diffusers see the same tensor.
//! A model asks its `TapSink` whether it wants a name before handing the tensor over, so
//! recording nothing costs nothing.

use candle_core::Tensor;

/// Receives tap outputs during a forward pass.
pub trait TapSink {
    /// Whether `name` is recorded (lets the model skip work).
    fn wants(&self, name: &str) -> bool;
    /// Receives a tap's output for the full batch.
    fn record(&mut self, name: &str, value: &Tensor) -> candle_core::Result<()>;
}

/// A `TapSink` that wants nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTaps;

impl TapSink for NoTaps {
    fn wants(&self, _name: &str) -> bool {
        false
    }

    fn record(&mut self, _name: &str, _value: &Tensor) -> candle_core::Result<()> {
        Ok(())
    }
}

/// A `TapSink` that keeps every tap it is given (or only the listed ones), in recording order.
#[derive(Debug, Clone, Default)]
pub struct TapRecorder {
    only: Option<Vec<String>>,
    /// The recorded `(name, value)` pairs, in the order the model produced them.
    pub recorded: Vec<(String, Tensor)>,
}

impl TapRecorder {
    /// Records every tap.
    pub fn all() -> Self {
        TapRecorder::default()
    }

    /// Records only the taps named in `names`.
    pub fn only<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        TapRecorder {
            only: Some(names.into_iter().map(Into::into).collect()),
            recorded: Vec::new(),
        }
    }

    /// The recorded value of `name`, if it was recorded.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.recorded.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

impl TapSink for TapRecorder {
    fn wants(&self, name: &str) -> bool {
        match &self.only {
            None => true,
            Some(names) => names.iter().any(|n| n == name),
        }
    }

    fn record(&mut self, name: &str, value: &Tensor) -> candle_core::Result<()> {
        self.recorded.push((name.to_string(), value.clone()));
        Ok(())
    }
}

/// A recordable tap and the shape of what it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapShape {
    /// The diffusers module path, e.g. `down_blocks.0.attentions.1`.
    pub name: String,
    /// Channels (feature size) of the recorded tensor.
    pub channels: usize,
    /// Layout and resolution of the recorded tensor.
    pub kind: TapKind,
}

/// Layout of a tap's tensor, for an `h × w` latent whose sides are multiples of the
/// U-Net's total downsampling factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapKind {
    /// `B × C × (h/downsample) × (w/downsample)`.
    Spatial {
        /// How much smaller than the latent the feature map is.
        downsample: usize,
    },
    /// `B × ((h/downsample)·(w/downsample)) × C`, tokens in row-major pixel order.
    Tokens {
        /// How much smaller than the latent the token grid is.
        downsample: usize,
    },
}

/// Hands `value` to `sink` if it wants `name`.
pub(crate) fn emit(sink: &mut dyn TapSink, name: &str, value: &Tensor) -> candle_core::Result<()> {
    if sink.wants(name) {
        sink.record(name, value)?;
    }
    Ok(())
}
