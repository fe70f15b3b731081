//! Label files of `[analysis.dense_probe]` (`common::spec::DenseProbeSection` documents the
//! layout): where a (stimulus, target) label lives, and reading it as an `H × W` map. PNG
//! through the `image` crate; `.npy` (NumPy's format, version 1–3, C order, 2-D, little-endian
//! `f4`/`f8`/`i4`/`i8`/`u1`/`b1`) by the small parser here, since no maintained crate for it
//! builds in this workspace.

use std::path::{Path, PathBuf};

use common::spec::DenseTargetKind;

/// A file-name-safe form of a stimulus name (what `save_images` names files by).
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect()
}

/// The label file of (`stimulus`, `target`) in `dir`: `{stem}[.r0].{target}.png`, else `.npy`.
///
/// # Errors
/// A message naming both candidates when neither exists.
pub fn label_path(
    dir: &Path,
    stimulus: &str,
    target: &str,
    generated: bool,
) -> Result<PathBuf, String> {
    let replicate = if generated { ".r0" } else { "" };
    let base = format!("{}{replicate}.{target}", file_stem(stimulus));
    let png = dir.join(format!("{base}.png"));
    if png.is_file() {
        return Ok(png);
    }
    let npy = dir.join(format!("{base}.npy"));
    if npy.is_file() {
        return Ok(npy);
    }
    Err(format!("no label {} or {}", png.display(), npy.display()))
}

/// A label map: `values` (`height × width`, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMap {
    pub values: Vec<f64>,
    pub height: usize,
    pub width: usize,
}

impl LabelMap {
    /// The map as a mask (`true` = foreground): a PNG above 127, an array's non-zero values.
    pub fn mask(&self, png: bool) -> Vec<bool> {
        let cut = if png { 127.0 } else { 0.0 };
        self.values.iter().map(|&v| v > cut).collect()
    }
}

/// Reads a label file; the error names the file and what is wrong.
pub fn read_label(path: &Path, _kind: DenseTargetKind) -> Result<LabelMap, String> {
    let at = |m: String| format!("{}: {m}", path.display());
    if path.extension().is_some_and(|e| e == "png") {
        let img = ::image::open(path).map_err(|e| at(e.to_string()))?.into_luma8();
        let (w, h) = img.dimensions();
        let values = img.into_raw().into_iter().map(f64::from).collect();
        return Ok(LabelMap { values, height: h as usize, width: w as usize });
    }
    let bytes = std::fs::read(path).map_err(|e| at(e.to_string()))?;
    parse_npy(&bytes).map_err(at)
}

/// Parses a 2-D C-order `.npy` file.
fn parse_npy(bytes: &[u8]) -> Result<LabelMap, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => {
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or non-UTF-8 .npy header")?;
    let field = |key: &str| -> Option<&str> {
        let rest = &header[header.find(&format!("'{key}'"))? + key.len() + 2..];
        Some(rest.trim_start().strip_prefix(':')?.trim_start())
    };
    let descr =
        field("descr").and_then(|d| d.split('\'').nth(1)).ok_or("no 'descr' in the .npy header")?;
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err(
            "Fortran-order arrays are not supported (save with np.ascontiguousarray)".into()
        );
    }
    let shape = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or("no 'shape' in the .npy header")?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape entry {s:?}")))
        .collect::<Result<_, _>>()?;
    let [height, width] = dims[..] else {
        return Err(format!("expected a 2-D array (H × W), found shape {dims:?}"));
    };
    let data = &bytes[start + header_len..];
    let n = height * width;
    let read = |size: usize, f: &dyn Fn(&[u8]) -> f64| -> Result<Vec<f64>, String> {
        if data.len() != n * size {
            return Err(format!("{} data bytes for {height} × {width} of {descr}", data.len()));
        }
        Ok(data.chunks_exact(size).map(f).collect())
    };
    let values = match descr {
        "<f4" => read(4, &|b| f64::from(f32::from_le_bytes(b.try_into().expect("4 bytes"))))?,
        "<f8" => read(8, &|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))?,
        "<i4" => read(4, &|b| f64::from(i32::from_le_bytes(b.try_into().expect("4 bytes"))))?,
        "<i8" => read(8, &|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64)?,
        "|u1" | "|b1" => read(1, &|b| f64::from(b[0]))?,
        other => {
            return Err(format!(
                "unsupported dtype {other:?} (use float32, float64, int32, int64, uint8 or bool)"
            ))
        }
    };
    Ok(LabelMap { values, height, width })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8], version: u8) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (header.len() + 11) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.extend([version, 0]);
        match version {
            1 => out.extend((header.len() as u16).to_le_bytes()),
            _ => out.extend((header.len() as u32).to_le_bytes()),
        }
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    /// The dtypes numpy writes for label maps parse to the same values; a 1-D or Fortran-order
    /// array, a short file or a wrong magic are refused with what is wrong.
    #[test]
    fn npy_files_parse_or_say_why_not() {
        let values = [0.5f64, -1.0, 2.25, 3.0, 0.0, 1.0];
        let f4: Vec<u8> = values.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
        let f8: Vec<u8> = values.iter().flat_map(|&v| v.to_le_bytes()).collect();
        for (bytes, v) in [(npy("<f4", "(2, 3)", &f4, 1), 1), (npy("<f8", "(2, 3)", &f8, 2), 2)] {
            let m = parse_npy(&bytes).unwrap();
            assert_eq!(
                (m.height, m.width, m.values.as_slice()),
                (2, 3, &values[..]),
                "version {v}"
            );
        }
        let u1 = parse_npy(&npy("|u1", "(1, 3)", &[0, 7, 255], 1)).unwrap();
        assert_eq!(u1.mask(false), vec![false, true, true]);
        for (bytes, want) in [
            (npy("<f8", "(6,)", &f8, 1), "expected a 2-D array"),
            (npy("<f8", "(2, 3)", &f8[..40], 1), "40 data bytes"),
            (npy(">f8", "(2, 3)", &f8, 1), "unsupported dtype"),
            (b"PK\x03\x04 not numpy".to_vec(), "not a .npy file"),
        ] {
            let e = parse_npy(&bytes).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        let fortran: Vec<u8> = npy("<f8", "(2, 3)", &f8, 1);
        let at = fortran.windows(5).position(|w| w == b"False").unwrap();
        let mut fortran = fortran;
        fortran[at..at + 5].copy_from_slice(b"True ");
        assert!(parse_npy(&fortran).unwrap_err().contains("Fortran-order"));
    }
}
