//! Plan-time inputs of `[analysis.directions]` and `[analysis.clusters]`: the contrasts file
//! (`common::spec::DirectionsSection` documents it) is read and its prompts resolved to dataset
//! rows, so that bad input is refused before any model runs (exit 2), naming the spec key, the
//! file, the line and the field. The result is embedded in the units' settings (and so in
//! their ids); the report names the prompts through the dataset.

use std::collections::BTreeMap;
use std::path::Path;

use common::error::SpecError;
use common::settings::{ContrastAxis, Contrasts};
use common::spec::JobSpec;
use common::stimuli::Dataset;

const KEY: &str = "analysis.directions.contrasts";

/// One line of a contrasts file.
#[derive(serde::Deserialize)]
struct Line {
    role: String,
    stimulus: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    reference: Option<f64>,
}

/// The spec's resolved contrasts, or `None` when it has no `[analysis.directions]`.
pub(crate) fn resolve(
    spec: &JobSpec,
    spec_file: &str,
    data: &Dataset,
) -> Result<Option<Contrasts>, SpecError> {
    let Some(d) = &spec.analysis.directions else { return Ok(None) };
    let err = |msg: String| SpecError::new(spec_file, KEY, msg);
    read(&d.contrasts, data).map(Some).map_err(err)
}

/// Reads and resolves a contrasts file; the error names the file and line.
fn read(path: &Path, data: &Dataset) -> Result<Contrasts, String> {
    let at = |line: usize, msg: String| format!("{}:{line}: {msg}", path.display());
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let header = reader.headers().map_err(|e| format!("{}: {e}", path.display()))?.clone();
    for want in ["role", "stimulus"] {
        if !header.iter().any(|h| h == want) {
            return Err(at(
                1,
                format!("no {want:?} column (header {:?})", header.iter().collect::<Vec<_>>()),
            ));
        }
    }
    let (mut base, mut poles) = (None, BTreeMap::<String, [Option<usize>; 2]>::new());
    let mut c = Contrasts {
        base: 0,
        axes: Vec::new(),
        queries: Vec::new(),
        categories: Vec::new(),
        references: Vec::new(),
        descriptors: Vec::new(),
        concepts: Vec::new(),
    };
    let mut axis_order = Vec::new();
    for (i, record) in reader.deserialize::<Line>().enumerate() {
        let line = i + 2;
        let l = record.map_err(|e| at(line, e.to_string()))?;
        let row = stimulus_row(data, &l.stimulus).map_err(|m| at(line, m))?;
        match l.role.as_str() {
            "base" if base.is_some() => return Err(at(line, "a second `base` prompt".into())),
            "base" => base = Some(row),
            "axis+" | "axis-" => {
                if l.label.is_empty() {
                    return Err(at(line, "an axis prompt needs its axis name as `label`".into()));
                }
                let pole = usize::from(l.role == "axis-");
                let entry = poles.entry(l.label.clone()).or_default();
                if entry[pole].replace(row).is_some() {
                    return Err(at(line, format!("axis {:?} has a second `{}`", l.label, l.role)));
                }
                if !axis_order.contains(&l.label) {
                    axis_order.push(l.label);
                }
            }
            "query" => {
                if l.reference.is_some_and(|r| !r.is_finite()) {
                    return Err(at(line, "the reference rate is not a finite number".into()));
                }
                c.queries.push(row);
                c.categories.push(l.label);
                c.references.push(l.reference);
            }
            "descriptor" => c.descriptors.push(row),
            "concept" => c.concepts.push(row),
            other => {
                let roles = "base, axis+, axis-, query, descriptor, concept";
                return Err(at(line, format!("role {other:?} is none of {roles}")));
            }
        }
    }
    if c.references.iter().all(Option::is_none) {
        c.references.clear();
    }
    c.base = base.ok_or_else(|| format!("{}: no `base` prompt", path.display()))?;
    for name in axis_order {
        match poles[&name] {
            [Some(positive), Some(negative)] => {
                c.axes.push(ContrastAxis { name, positive, negative })
            }
            _ => {
                return Err(format!(
                    "{}: axis {name:?} needs one `axis+` and one `axis-` prompt",
                    path.display()
                ))
            }
        }
    }
    if c.queries.is_empty() && !c.concepts.is_empty() && c.descriptors.is_empty() {
        return Err(format!("{}: concepts but no `descriptor` prompts to rank", path.display()));
    }
    Ok(c)
}

/// The dataset row of a stimulus, or why there is none.
fn stimulus_row(data: &Dataset, name: &str) -> Result<usize, String> {
    if let Some(i) = data.stimuli.iter().position(|s| s == name) {
        return Ok(i);
    }
    match data.dropped.iter().find(|(s, _)| s == name) {
        Some((_, why)) => Err(format!("stimulus {name:?} was dropped for missing ratings ({why})")),
        None => Err(format!("no stimulus {name:?} in stimuli.file")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Dataset {
        let stimuli: Vec<String> = ["person", "man", "woman", "nurse", "judge", "kind"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Dataset {
            texts: stimuli.clone(),
            stimuli,
            attributes: vec!["a".into()],
            groups: vec![None],
            targets: vec![0.0; 6],
            dropped: vec![("pilot".into(), "no rating for a".into())],
        }
    }

    fn resolve_text(text: &str) -> Result<Contrasts, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contrasts.csv");
        std::fs::write(&path, text).unwrap();
        read(&path, &data()).map_err(|e| e.replace(&path.display().to_string(), "F"))
    }

    /// Every role resolves to its dataset row, in file order; the label is the axis name or the
    /// query's category.
    #[test]
    fn roles_resolve_to_rows() {
        let c = resolve_text(
            "role,stimulus,label\nbase,person,\naxis+,man,gender\naxis-,woman,gender\n\
             query,nurse,care\nquery,judge,law\ndescriptor,kind,\nconcept,nurse,\n",
        )
        .unwrap();
        assert_eq!(c.base, 0);
        assert_eq!(c.axes, vec![ContrastAxis { name: "gender".into(), positive: 1, negative: 2 }]);
        assert_eq!((c.queries, c.categories), (vec![3, 4], vec!["care".into(), "law".into()]));
        assert_eq!((c.descriptors, c.concepts), (vec![5], vec![3]));
        assert!(c.references.is_empty(), "no reference column, no references");
        let c = resolve_text(
            "role,stimulus,label,reference\nbase,person,,\nquery,nurse,care,0.87\nquery,judge,law,\n",
        )
        .unwrap();
        assert_eq!(c.references, vec![Some(0.87), None]);
        let e = resolve_text("role,stimulus,label,reference\nbase,person,,\nquery,nurse,,lots\n");
        assert!(e.unwrap_err().starts_with("F:3: "), "a rate that is no number names its line");
    }

    /// Each bad file is refused naming the file, the line and what is wrong.
    #[test]
    fn bad_contrasts_name_the_line() {
        let head = "role,stimulus,label\n";
        for (body, want) in [
            ("base,person,\nbase,man,\n", "F:3: a second `base` prompt"),
            ("base,nobody,\n", "F:2: no stimulus \"nobody\" in stimuli.file"),
            (
                "base,pilot,\n",
                "F:2: stimulus \"pilot\" was dropped for missing ratings (no rating for a)",
            ),
            (
                "base,person,\nquery,nurse,\naxis+,man,g\n",
                "F: axis \"g\" needs one `axis+` and one `axis-` prompt",
            ),
            ("base,person,\naxis+,man,\n", "F:3: an axis prompt needs its axis name as `label`"),
            ("base,person,\nqueery,man,\n", "F:3: role \"queery\" is none of"),
            ("query,man,\n", "F: no `base` prompt"),
        ] {
            let e = resolve_text(&format!("{head}{body}")).unwrap_err();
            assert!(e.starts_with(want), "{body:?}: {e}");
        }
    }
}
