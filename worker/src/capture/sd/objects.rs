//! `capture.image.objects`: several objects per image. Each stimulus is one object of an image,
//! with its own mask: a file in `capture.image.masks`, or the pixels of `masks/{image}.png` equal
//! to its `mask_value` (an instance map, e.g. Pascal VOC's `SegmentationObject` converted to
//! grayscale ids). The capture encodes and denoises each image once per batch and pools every
//! object of it by its own mask.

use std::collections::HashMap;
use std::path::Path;

/// Where an object's mask comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskSource {
    /// A mask file (name in the masks folder): white = object.
    File(String),
    /// The object's value in the image's instance map `masks/{image}.png`.
    Value(u8),
}

/// One object: its image (the file stem in `capture.image.folder`) and its mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSource {
    pub image: String,
    pub mask: MaskSource,
}

/// The objects table, by stimulus.
#[derive(Debug, Clone, Default)]
pub struct ObjectTable {
    rows: HashMap<String, ObjectSource>,
}

#[derive(serde::Deserialize)]
struct Line {
    stimulus: String,
    image: String,
    #[serde(default)]
    mask: Option<String>,
    #[serde(default)]
    mask_value: Option<String>,
}

impl ObjectTable {
    /// Reads the table; other columns (class, instance, video, frame) are for the analyses and
    /// ignored here. Errors name the file and line.
    pub fn read(path: &Path) -> Result<ObjectTable, String> {
        let at = |line: usize, m: String| format!("{}:{line}: {m}", path.display());
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut rows = HashMap::new();
        for (i, record) in reader.deserialize::<Line>().enumerate() {
            let line = i + 2;
            let l = record.map_err(|e| at(line, e.to_string()))?;
            let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
            let mask = match (nonempty(l.mask), nonempty(l.mask_value)) {
                (Some(file), None) => MaskSource::File(file),
                (None, Some(v)) => MaskSource::Value(v.parse().map_err(|_| {
                    at(line, format!("mask_value {v:?} is not a whole number in 1..=255"))
                })?),
                _ => return Err(at(line, "give exactly one of mask and mask_value".into())),
            };
            if mask == MaskSource::Value(0) {
                return Err(at(line, "mask_value 0 is the background".into()));
            }
            if l.image.is_empty() {
                return Err(at(line, "empty image".into()));
            }
            let source = ObjectSource { image: l.image, mask };
            if rows.insert(l.stimulus.clone(), source).is_some() {
                return Err(at(line, format!("stimulus {:?} is listed twice", l.stimulus)));
            }
        }
        Ok(ObjectTable { rows })
    }

    /// The object of `stimulus`.
    pub fn get(&self, stimulus: &str) -> Option<&ObjectSource> {
        self.rows.get(stimulus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_read_and_bad_lines_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("objects.csv");
        let read = |text: &str| {
            std::fs::write(&path, text).unwrap();
            ObjectTable::read(&path)
        };
        let t = read("stimulus,image,mask,mask_value,class\na,img1,,2,box\nb,img1,b.png,,cat\n")
            .unwrap();
        assert_eq!(t.get("a").unwrap().mask, MaskSource::Value(2));
        assert_eq!(
            t.get("b").unwrap(),
            &ObjectSource { image: "img1".into(), mask: MaskSource::File("b.png".into()) }
        );
        let e = read("stimulus,image,mask,mask_value\na,img1,a.png,3\n").unwrap_err();
        assert!(e.contains("objects.csv:2") && e.contains("exactly one"), "{e}");
        let e = read("stimulus,image,mask_value\na,img1,300\n").unwrap_err();
        assert!(e.contains("not a whole number"), "{e}");
        let e = read("stimulus,image,mask_value\na,img1,1\na,img2,2\n").unwrap_err();
        assert!(e.contains(":3") && e.contains("twice"), "{e}");
    }
}
