//! Plan-time inputs of `[analysis.semantic]`: the objects file (`common::spec::SemanticSection`
//! documents it) read and resolved to dataset rows, classes and images, so bad input is refused
//! before any model runs, naming the file and line. The result is embedded in the semantic
//! units' settings (and so their ids).

mod coverage;

use common::error::SpecError;
use common::settings::{ObjectTrack, SemanticSettings};
use common::spec::JobSpec;
use common::stimuli::Dataset;

const KEY: &str = "analysis.semantic.objects";

#[derive(serde::Deserialize)]
struct Line {
    stimulus: String,
    class: String,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    video: Option<String>,
    #[serde(default)]
    frame: Option<String>,
}

/// The spec's semantic settings, or `None` without `[analysis.semantic]`.
/// `tap_positions`: the spatial positions of each U-Net tap at the run's size (name, P).
pub(crate) fn resolve(
    spec: &JobSpec,
    spec_file: &str,
    data: &Dataset,
    tap_positions: &[(String, usize)],
) -> Result<Option<SemanticSettings>, SpecError> {
    let Some(s) = &spec.analysis.semantic else { return Ok(None) };
    let path = &s.objects;
    let err = |msg: String| SpecError::new(spec_file, KEY, msg);
    let at = |line: usize, msg: String| err(format!("{}:{line}: {msg}", path.display()));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| err(format!("{}: {e}", path.display())))?;
    let (mut classes, mut class_names) = (Vec::new(), Vec::<String>::new());
    let (mut items, mut images, mut image_names) = (Vec::new(), Vec::new(), Vec::<String>::new());
    let (mut tracks, mut instance_names, mut video_names) =
        (Vec::new(), Vec::<String>::new(), Vec::<String>::new());
    for (i, record) in reader.deserialize::<Line>().enumerate() {
        let line = i + 2;
        let l = record.map_err(|e| at(line, e.to_string()))?;
        let row = data.stimuli.iter().position(|s| *s == l.stimulus).ok_or_else(|| {
            match data.dropped.iter().find(|(s, _)| *s == l.stimulus) {
                Some((_, why)) => {
                    at(line, format!("stimulus {:?} was dropped ({why})", l.stimulus))
                }
                None => at(line, format!("no stimulus {:?} in stimuli.file", l.stimulus)),
            }
        })?;
        if l.class.is_empty() {
            return Err(at(line, "empty class".into()));
        }
        let index = |names: &mut Vec<String>, name: &str| {
            names.iter().position(|n| n == name).unwrap_or_else(|| {
                names.push(name.to_string());
                names.len() - 1
            })
        };
        classes.push(index(&mut class_names, &l.class));
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let track = match (nonempty(l.instance), nonempty(l.video), nonempty(l.frame)) {
            (Some(instance), Some(video), Some(frame)) => Some(ObjectTrack {
                // Instances are named within their video.
                instance: index(&mut instance_names, &format!("{video}\u{0}{instance}")),
                video: index(&mut video_names, &video),
                frame: frame
                    .parse()
                    .map_err(|_| at(line, format!("frame {frame:?} is not a whole number")))?,
            }),
            (None, None, None) => None,
            _ => return Err(at(line, "give all of instance, video and frame, or none".into())),
        };
        tracks.push(track);
        let image = l.image.filter(|s| !s.is_empty()).unwrap_or(l.stimulus);
        images.push(index(&mut image_names, &image));
        items.push(row);
    }
    if !(s.max_matrix_gib > 0.0 && s.max_matrix_gib.is_finite()) {
        let msg = format!("must be a positive number of GiB, not {}", s.max_matrix_gib);
        return Err(SpecError::new(spec_file, "analysis.semantic.max_matrix_gib", msg));
    }
    let names: Vec<String> = items.iter().map(|&i| data.stimuli[i].clone()).collect();
    let coverage = coverage::coverage(spec, &names)
        .map_err(|e| SpecError::new(spec_file, "capture.image.masks", e))?
        .unwrap_or_default();
    let coverage_empty = coverage.is_empty();
    if class_names.len() < 2 || items.len() < 3 {
        let msg = format!(
            "{} objects in {} classes; scores need at least 3 objects and 2 classes",
            items.len(),
            class_names.len()
        );
        return Err(err(format!("{}: {msg}", path.display())));
    }
    Ok(Some(SemanticSettings {
        items,
        classes,
        class_names,
        images,
        distances: s.distances.clone(),
        bootstrap: s.bootstrap,
        permutations: s.permutations,
        seed: s.seed,
        frame_gaps: if tracks.iter().any(Option::is_some) {
            s.frame_gaps.clone()
        } else {
            Vec::new()
        },
        tracks: if tracks.iter().any(Option::is_some) { tracks } else { Vec::new() },
        max_matrix_bytes: (s.max_matrix_gib * f64::from(1_u32 << 30)) as u64,
        coverage,
        tap_positions: if coverage_empty { Vec::new() } else { tap_positions.to_vec() },
    }))
}
