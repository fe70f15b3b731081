//! Stable Diffusion 1.x / 2.x models in candle with activation taps named as in diffusers.
//!
//! Three components, each loaded from its folder of a diffusers-layout checkpoint
//! (`config.json` + safetensors, f32/f16/bf16 on disk, any dtype in memory):
//!
//! - [`UNet`] (`unet/`): the denoiser; [`UNet::forward`] hands every block, resnet, attention,
//!   self-attention and resampler output to a [`TapSink`] under its diffusers module path
//!   (`down_blocks.0.attentions.1`, `mid_block`, `up_blocks.2.upsamplers.0`, `out`), and
//!   [`UNet::taps`] lists them with their shapes.
//! - [`TextEncoder`] (`text_encoder/`): CLIP text tower returning all hidden states.
//! - [`Vae`] (`vae/`): the image encoder, returning the latent mean; [`VaeDecoder`] turns
//!   generated latents back into images.
//!
//! [`UNet::load_with_loras`] and [`TextEncoder::load_with_loras`] merge LoRA files
//! ([`lora`], diffusers/PEFT or kohya layout) into the weights as they load.
//!
//! Beside them, [`scheduler`] is diffusers' DDIM, Euler, LMS and LCM schedulers and the real-image
//! noise mapping as pure host-side math (no candle), from `scheduler/scheduler_config.json`.
//!
//! All three are numerically equal to diffusers / transformers in f32 (relative error around
//! 1e-6), which the golden tests check; in particular the transformer feed-forward uses exact
//! erf GELU, unlike candle's stock Stable Diffusion code. Loading failures name the folder,
//! file, field or tensor at fault (`SdError`).

mod config_check;
mod error;
mod files;
pub mod lora;
mod permute;
mod taps;
mod text;
mod unet;
mod vae;
mod vae_decoder;
mod vae_mid;

pub mod scheduler;

#[cfg(test)]
mod tests;

pub use error::SdError;
pub use lora::Lora;
pub use taps::{NoTaps, TapKind, TapRecorder, TapShape, TapSink};
pub use text::{HiddenAct, TextConfig, TextEncoder, TextOutput};
pub use unet::{PerBlock, UNet, UNetConfig, OUT_TAP};
pub use vae::{Vae, VaeConfig};
pub use vae_decoder::VaeDecoder;
