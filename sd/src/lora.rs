//! LoRA adapters merged into a component's weights at load time.
//!
//! A LoRA file (`pytorch_lora_weights.safetensors`) holds, per adapted layer with weight `W`
//! (out × in, or out × in × k × k for a convolution), a down matrix `A` (r × in [× k × k]), an up
//! matrix `B` (out × r [× 1 × 1]) and optionally `alpha`. Merging with strength `s` is
//! `W ← W + s·(alpha/r)·B·A`, reshaped to `W`'s shape: exactly what diffusers' `fuse_lora(lora_scale=s)`
//! does through PEFT, computed here in f32 before candle builds the modules (so a merged model
//! runs at the plain model's speed). Two key layouts are read:
//!
//! * diffusers / PEFT: `unet.<module>.lora_A.weight`, `….lora_B.weight`, optional `<module>.alpha`
//!   (absent: the `lora_alpha` of diffusers' `lora_adapter_metadata` in the file header, else
//!   alpha = r, as diffusers does; per-module alpha/rank patterns, rsLoRA and DoRA are refused);
//! * kohya: `lora_unet_<module with _ for .>.lora_down.weight`, `….lora_up.weight`, `….alpha`
//!   (the LCM-LoRA releases use this one). The underscored name is resolved against the
//!   component's own weight names, so it is never guessed.
//!
//! Text-encoder keys (`text_encoder.…`, `lora_te_…`) merge into the [`crate::TextEncoder`] and
//! are skipped by the U-Net, and the other way round. A key that is no LoRA tensor, belongs to no
//! component, or names a layer the model does not have is an [`SdError::Lora`] naming the key
//! and the file: a LoRA for another architecture must not load silently as a no-op. A scale of 0
//! still checks every key but leaves the weights untouched, bit for bit.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::SdError;

/// One LoRA file and the strength it is merged with (1.0 = as trained).
#[derive(Debug, Clone, PartialEq)]
pub struct Lora {
    /// The `.safetensors` file.
    pub path: PathBuf,
    /// The merge strength `s` in `W + s·(alpha/r)·B·A`.
    pub scale: f64,
}

/// Which component a merge targets: its key prefixes in both layouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// The diffusers/PEFT prefix (`unet`), followed by a `.`.
    peft: &'static str,
    /// The kohya prefix (`lora_unet_`).
    kohya: &'static str,
    /// What error messages call the component.
    what: &'static str,
}

/// The U-Net.
pub(crate) const UNET: Target = Target { peft: "unet", kohya: "lora_unet_", what: "U-Net" };
/// The CLIP text encoder.
pub(crate) const TEXT_ENCODER: Target =
    Target { peft: "text_encoder", kohya: "lora_te_", what: "text encoder" };
const TARGETS: [Target; 2] = [UNET, TEXT_ENCODER];

/// The three tensors of one adapted layer, as found in the file.
#[derive(Default)]
struct Adapter {
    down: Option<(String, Tensor)>,
    up: Option<(String, Tensor)>,
    alpha: Option<(String, Tensor)>,
}

/// Which tensor of an adapter a key suffix names.
enum Part {
    Down,
    Up,
    Alpha,
}

const SUFFIXES: [(&str, Part); 5] = [
    (".lora_A.weight", Part::Down),
    (".lora_B.weight", Part::Up),
    (".lora_down.weight", Part::Down),
    (".lora_up.weight", Part::Up),
    (".alpha", Part::Alpha),
];

/// The safetensors header entry where diffusers stores each component's PEFT `LoraConfig`.
const META_KEY: &str = "lora_adapter_metadata";

/// What a file's `lora_adapter_metadata` says about one component.
#[derive(Debug, Default, Clone, Copy)]
struct Meta {
    lora_alpha: Option<f64>,
    r: Option<usize>,
}

/// Reads the component's entries of `lora_adapter_metadata` from the safetensors header
/// (8-byte little-endian length, then JSON), refusing the options the merge does not implement.
fn read_meta(path: &Path, target: Target) -> Result<Meta, SdError> {
    use std::io::Read;
    let io = |source| SdError::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let mut header = vec![0u8; u64::from_le_bytes(len).min(100 << 20) as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap_or_default();
    let Some(raw) = header.pointer(&format!("/__metadata__/{META_KEY}")).and_then(|v| v.as_str())
    else {
        return Ok(Meta::default());
    };
    let bad = |message: String| lora_error(path, META_KEY, message);
    let meta: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| bad(format!("is not JSON: {e}")))?;
    let get = |field: &str| meta.get(format!("{}.{field}", target.peft)).filter(|v| !v.is_null());
    for field in ["alpha_pattern", "rank_pattern"] {
        if get(field).and_then(|v| v.as_object()).is_some_and(|o| !o.is_empty()) {
            return Err(bad(format!(
                "{}.{field}: per-module patterns are not supported",
                target.peft
            )));
        }
    }
    for field in ["use_rslora", "use_dora"] {
        if get(field).and_then(|v| v.as_bool()) == Some(true) {
            return Err(bad(format!("{}.{field} is not supported", target.peft)));
        }
    }
    let number = |field: &str| match get(field) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad(format!("{}.{field} is not a number", target.peft))),
    };
    Ok(Meta { lora_alpha: number("lora_alpha")?, r: number("r")?.map(|r| r as usize) })
}

fn lora_error(path: &Path, key: &str, message: impl Into<String>) -> SdError {
    SdError::Lora { path: path.to_path_buf(), key: key.to_string(), message: message.into() }
}

/// Merges every LoRA in `loras`, in order, into `weights` (the component's tensors by name).
pub(crate) fn merge_all(
    weights: &mut HashMap<String, Tensor>,
    loras: &[Lora],
    target: Target,
) -> Result<(), SdError> {
    for lora in loras {
        merge(weights, lora, target)?;
    }
    Ok(())
}

fn merge(
    weights: &mut HashMap<String, Tensor>,
    lora: &Lora,
    target: Target,
) -> Result<(), SdError> {
    let path = lora.path.as_path();
    if !lora.scale.is_finite() {
        return Err(lora_error(path, "", format!("scale {} is not finite", lora.scale)));
    }
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
        SdError::Weights { path: path.to_path_buf(), message: format!("not a LoRA file: {e}") }
    })?;
    let meta = read_meta(path, target)?;
    // The component's layer names in kohya's spelling, mapped back to the real ones.
    let mut kohya_names: HashMap<String, Option<String>> = HashMap::new();
    for name in weights.keys() {
        if let Some(module) = name.strip_suffix(".weight") {
            let underscored = format!("{}{}", target.kohya, module.replace('.', "_"));
            kohya_names
                .entry(underscored)
                .and_modify(|seen| *seen = None)
                .or_insert_with(|| Some(module.to_string()));
        }
    }
    let mut adapters: BTreeMap<String, Adapter> = BTreeMap::new();
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    for key in keys {
        let Some((stem, part)) =
            SUFFIXES.iter().find_map(|(s, p)| key.strip_suffix(s).map(|stem| (stem, p)))
        else {
            return Err(lora_error(
                path,
                key,
                "is not a LoRA tensor (lora_A/lora_B/lora_down/lora_up weight or alpha)",
            ));
        };
        let module = if let Some(m) =
            stem.strip_prefix(target.peft).and_then(|m| m.strip_prefix('.'))
        {
            m.to_string()
        } else if stem.starts_with(target.kohya) {
            match kohya_names.get(stem) {
                Some(Some(m)) => m.clone(),
                Some(None) => {
                    return Err(lora_error(
                        path,
                        key,
                        format!("is ambiguous in the {}", target.what),
                    ))
                }
                None => {
                    return Err(lora_error(
                        path,
                        key,
                        format!("matches no weight of the {}", target.what),
                    ))
                }
            }
        } else if TARGETS.iter().any(|t| {
            stem.starts_with(t.kohya)
                || stem.strip_prefix(t.peft).is_some_and(|m| m.starts_with('.'))
        }) {
            continue; // another component's layer
        } else {
            return Err(lora_error(path, key, "belongs to no component (expected a unet., text_encoder., lora_unet_ or lora_te_ prefix)"));
        };
        if !weights.contains_key(&format!("{module}.weight")) {
            return Err(lora_error(path, key, format!("matches no weight of the {}", target.what)));
        }
        let adapter = adapters.entry(module).or_default();
        let slot = match part {
            Part::Down => &mut adapter.down,
            Part::Up => &mut adapter.up,
            Part::Alpha => &mut adapter.alpha,
        };
        if slot.is_some() {
            return Err(lora_error(
                path,
                key,
                "repeats a tensor already given in the other layout",
            ));
        }
        *slot = Some((key.clone(), tensors[key].clone()));
    }
    for (module, adapter) in adapters {
        let name = format!("{module}.weight");
        let merged = merged_weight(&weights[&name], adapter, meta, lora.scale, path)?;
        if let Some(merged) = merged {
            weights.insert(name, merged);
        }
    }
    Ok(())
}

/// `W + s·(alpha/r)·B·A` in f32, or `None` when `s` is 0 (the weight stays as it was).
fn merged_weight(
    weight: &Tensor,
    adapter: Adapter,
    meta: Meta,
    scale: f64,
    path: &Path,
) -> Result<Option<Tensor>, SdError> {
    let (down_key, down) = match (adapter.down, &adapter.up) {
        (Some(d), _) => d,
        (None, Some((up_key, _))) => {
            return Err(lora_error(path, up_key, "has no down (lora_A) matrix"))
        }
        (None, None) => {
            let key = adapter.alpha.map(|(k, _)| k).unwrap_or_default();
            return Err(lora_error(path, &key, "has no lora_A/lora_B matrices"));
        }
    };
    let Some((_, up)) = adapter.up else {
        return Err(lora_error(path, &down_key, "has no up (lora_B) matrix"));
    };
    let shape_error = |what: String| lora_error(path, &down_key, what);
    let dims = weight.dims();
    let rank = down.dims().first().copied().unwrap_or(0);
    let out = dims[0];
    let rest: usize = dims[1..].iter().product();
    let up_ok = up.dims().len() >= 2
        && up.dims()[0] == out
        && up.dims()[1] == rank
        && up.dims()[2..].iter().all(|&d| d == 1);
    if rank == 0 || down.elem_count() != rank * rest || !up_ok {
        return Err(shape_error(format!(
            "shapes {:?} (down) and {:?} (up) do not fit the weight {:?}",
            down.dims(),
            up.dims(),
            dims
        )));
    }
    if meta.r.is_some_and(|r| r != rank) {
        return Err(shape_error(format!("has rank {rank}, {META_KEY} says r = {:?}", meta.r)));
    }
    let alpha = match adapter.alpha {
        None => meta.lora_alpha.unwrap_or(rank as f64),
        Some((key, a)) => a
            .to_dtype(DType::F64)
            .and_then(|a| a.flatten_all())
            .and_then(|a| a.to_vec1::<f64>())
            .ok()
            .filter(|v| v.len() == 1)
            .map(|v| v[0])
            .ok_or_else(|| lora_error(path, &key, "alpha must be a single number"))?,
    };
    if scale == 0.0 {
        return Ok(None);
    }
    let f32 = |t: &Tensor| t.to_dtype(DType::F32);
    let delta = f32(&up)?.reshape((out, rank))?.matmul(&f32(&down)?.reshape((rank, rest))?)?;
    let delta = (delta * (alpha / rank as f64 * scale))?.reshape(dims)?;
    Ok(Some((f32(weight)? + delta)?))
}
