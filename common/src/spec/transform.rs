//! `capture.image.transforms`: geometric transforms applied to each image and its object mask
//! alike before the VAE (science-2.md §L, seed 003's invariance study). Each transform is a sweep
//! axis value: its representations carry it in their key (`…/mask_mean/n1/empty/t:rot90`), and
//! the untransformed image is always captured beside them.
//!
//! Written as text in specs and keys: `rot90`, `rot180`, `rot270`, `rotate:<deg>` (about the
//! centre, signed, fill 0), `flip_h`, `flip_v`, `scale:<percent>` (resize, then centre crop or
//! zero-pad back), `pad:<px>` / `pad_reflect:<px>` (pad every side, then resize back),
//! `crop:<percent>` (keep that share of each side around the object's box centre, then resize
//! back), `shift:<dx>,<dy>` (translate in pixels, fill 0). All parameters are integers, so a
//! transform has one spelling and representations stay `Eq + Ord + Hash`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One image-and-mask transform (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ImageTransform {
    /// Rotation by 90°, 180° or 270° counter-clockwise (exact).
    Rot90,
    /// Rotation by 180°.
    Rot180,
    /// Rotation by 270°.
    Rot270,
    /// Rotation by this many degrees counter-clockwise about the centre, bilinear, fill 0.
    Rotate(i32),
    /// Mirror left–right.
    FlipH,
    /// Mirror top–bottom.
    FlipV,
    /// Resize by this percentage, then centre crop or zero-pad back to the image size.
    Scale(u32),
    /// Pad every side by this many zero pixels, then resize back.
    Pad(u32),
    /// Pad every side by this many reflected pixels, then resize back.
    PadReflect(u32),
    /// Keep this percentage of each side, centred on the object's box, then resize back.
    Crop(u32),
    /// Translate by (dx, dy) pixels (right, down), fill 0.
    Shift(i32, i32),
}

impl fmt::Display for ImageTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageTransform::Rot90 => write!(f, "rot90"),
            ImageTransform::Rot180 => write!(f, "rot180"),
            ImageTransform::Rot270 => write!(f, "rot270"),
            ImageTransform::Rotate(d) => write!(f, "rotate:{d}"),
            ImageTransform::FlipH => write!(f, "flip_h"),
            ImageTransform::FlipV => write!(f, "flip_v"),
            ImageTransform::Scale(p) => write!(f, "scale:{p}"),
            ImageTransform::Pad(p) => write!(f, "pad:{p}"),
            ImageTransform::PadReflect(p) => write!(f, "pad_reflect:{p}"),
            ImageTransform::Crop(p) => write!(f, "crop:{p}"),
            ImageTransform::Shift(x, y) => write!(f, "shift:{x},{y}"),
        }
    }
}

impl FromStr for ImageTransform {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{text:?} is not a transform ({why}); expected rot90, rot180, rot270, \
                 rotate:<deg>, flip_h, flip_v, scale:<percent>, pad:<px>, pad_reflect:<px>, \
                 crop:<percent> or shift:<dx>,<dy>"
            )
        };
        let (name, arg) = text.split_once(':').unwrap_or((text, ""));
        let int = |s: &str| s.trim().parse::<i32>().map_err(|_| bad("a whole number is expected"));
        let positive = |s: &str| match s.trim().parse::<u32>() {
            Ok(v) if v > 0 => Ok(v),
            _ => Err(bad("a positive whole number is expected")),
        };
        let t = match (name, arg.is_empty()) {
            ("rot90", true) => ImageTransform::Rot90,
            ("rot180", true) => ImageTransform::Rot180,
            ("rot270", true) => ImageTransform::Rot270,
            ("flip_h", true) => ImageTransform::FlipH,
            ("flip_v", true) => ImageTransform::FlipV,
            ("rotate", false) => ImageTransform::Rotate(int(arg)?),
            ("scale", false) => ImageTransform::Scale(positive(arg)?),
            ("pad", false) => ImageTransform::Pad(positive(arg)?),
            ("pad_reflect", false) => ImageTransform::PadReflect(positive(arg)?),
            ("crop", false) => match positive(arg)? {
                p if p <= 100 => ImageTransform::Crop(p),
                _ => return Err(bad("a crop keeps at most 100 %")),
            },
            ("shift", false) => {
                let (x, y) = arg.split_once(',').ok_or_else(|| bad("shift:<dx>,<dy>"))?;
                ImageTransform::Shift(int(x)?, int(y)?)
            }
            _ => return Err(bad("unknown name or a missing or extra argument")),
        };
        Ok(t)
    }
}

impl TryFrom<String> for ImageTransform {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ImageTransform> for String {
    fn from(t: ImageTransform) -> String {
        t.to_string()
    }
}

impl ImageTransform {
    /// Whether the transform maps a `height × width` image onto itself only when it is square
    /// (quarter turns).
    pub fn needs_square(self) -> bool {
        matches!(self, ImageTransform::Rot90 | ImageTransform::Rot270)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_round_trip_through_text_and_bad_ones_are_named() {
        let all = [
            ImageTransform::Rot90,
            ImageTransform::Rot180,
            ImageTransform::Rot270,
            ImageTransform::Rotate(-15),
            ImageTransform::FlipH,
            ImageTransform::FlipV,
            ImageTransform::Scale(75),
            ImageTransform::Pad(32),
            ImageTransform::PadReflect(64),
            ImageTransform::Crop(50),
            ImageTransform::Shift(8, -16),
        ];
        for t in all {
            assert_eq!(t.to_string().parse::<ImageTransform>(), Ok(t));
        }
        for bad in ["rot45", "rotate", "scale:0", "crop:120", "shift:8", "flip_h:1", "pad:-3"] {
            let e = bad.parse::<ImageTransform>().unwrap_err();
            assert!(e.contains(bad) && e.contains("expected"), "{e}");
        }
    }
}
