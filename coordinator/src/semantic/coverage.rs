//! Each object's mask coverage: the weight of its mask (pixel value / 255; in an instance map,
//! the pixels of its value) over the frame's pixels, read at plan time. A `mask_mean` tap of P
//! positions pools an object of coverage c over c · P tokens' worth of area, so the semantic
//! units drop objects with c · P < 1 (under one token; science-2.md §L) and count them.

use std::path::{Path, PathBuf};

use common::spec::JobSpec;
use worker::capture::{MaskSource, ObjectTable};

/// The coverage of each of `stimuli`'s objects, in that order, or `None` without masks.
pub(crate) fn coverage(spec: &JobSpec, stimuli: &[String]) -> Result<Option<Vec<f64>>, String> {
    let image = &spec.capture.image;
    let Some(masks) = image.masks.as_deref() else { return Ok(None) };
    let table = image.objects.as_deref().map(ObjectTable::read).transpose()?;
    let mut out = Vec::with_capacity(stimuli.len());
    for s in stimuli {
        let (path, value): (PathBuf, Option<u8>) = match table.as_ref().and_then(|t| t.get(s)) {
            Some(o) => match &o.mask {
                MaskSource::File(file) => (masks.join(file), None),
                MaskSource::Value(v) => (file_of(masks, &o.image), Some(*v)),
            },
            None => (file_of(masks, s), None),
        };
        let luma = ::image::open(&path)
            .map_err(|e| format!("{}: cannot read the mask: {e}", path.display()))?
            .to_luma8();
        let weight: f64 = luma
            .pixels()
            .map(|p| match value {
                Some(v) => f64::from(u8::from(p.0[0] == v)),
                None => f64::from(p.0[0]) / 255.0,
            })
            .sum();
        out.push(weight / f64::from(luma.width() * luma.height()).max(1.0));
    }
    Ok(Some(out))
}

/// The mask file of a stimulus or image: `{name}.png`, else `.jpg` / `.jpeg` (as the capture).
fn file_of(folder: &Path, name: &str) -> PathBuf {
    ["png", "jpg", "jpeg"]
        .iter()
        .map(|ext| folder.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| folder.join(format!("{name}.png")))
}
