//! The resolved dataset of a run: stimuli in order and their ratings (N × J), after the
//! missing-ratings policy. The coordinator builds it once at plan time and writes it to the run
//! directory (`dataset.json`), so every worker sees exactly the same stimuli and targets.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, SpecError};
use crate::spec::{JobSpec, MissingPolicy};

/// Stimuli and targets, row-aligned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dataset {
    /// Stimulus names, in sweep order.
    pub stimuli: Vec<String>,
    /// The text given to the model for each stimulus (template applied).
    pub texts: Vec<String>,
    /// Attribute names, in column order of `targets`.
    pub attributes: Vec<String>,
    /// Group of each attribute (`None` = ungrouped).
    pub groups: Vec<Option<String>>,
    /// Ratings, N × J row-major, no NaN.
    pub targets: Vec<f64>,
    /// Stimuli dropped by the missing-ratings policy, with the reason.
    pub dropped: Vec<(String, String)>,
}

/// Why a dataset could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The spec names something the data does not have.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A file could not be read or parsed.
    #[error(transparent)]
    Data(#[from] DataError),
}

impl Dataset {
    /// Reads the stimuli and targets tables named by the spec and applies the missing policy.
    pub fn load(spec: &JobSpec, spec_file: &str) -> Result<Dataset, DatasetError> {
        let stim = read_csv(&spec.stimuli.file)?;
        let stimuli = stimulus_column(&stim, spec, spec_file)?;
        let tgt = if spec.targets.file == spec.stimuli.file {
            stim.clone()
        } else {
            read_csv(&spec.targets.file)?
        };
        let key = column_index(&tgt, &spec.targets.key)
            .ok_or_else(|| missing_column(spec_file, "targets.key", &spec.targets.key, &tgt))?;
        let mut cols = Vec::new();
        for (column, attribute) in &spec.targets.columns {
            let idx = column_index(&tgt, column).ok_or_else(|| {
                missing_column(spec_file, &format!("targets.columns.{column}"), column, &tgt)
            })?;
            cols.push((idx, column.clone(), attribute.clone()));
        }
        let by_key: HashMap<&str, usize> =
            tgt.rows.iter().enumerate().map(|(i, r)| (r[key].trim(), i)).collect();
        let mut out = Dataset {
            stimuli: Vec::new(),
            texts: Vec::new(),
            attributes: cols.iter().map(|c| c.2.clone()).collect(),
            groups: cols.iter().map(|c| spec.targets.groups.get(&c.2).cloned()).collect(),
            targets: Vec::new(),
            dropped: Vec::new(),
        };
        for name in stimuli {
            let problem = match by_key.get(name.as_str()) {
                None => Some(format!(
                    "no row in {} with {} = {name:?}",
                    tgt.path.display(),
                    spec.targets.key
                )),
                Some(&row) => {
                    let mut values = Vec::with_capacity(cols.len());
                    let mut bad = None;
                    for (idx, column, _) in &cols {
                        match tgt.rows[row][*idx].trim().parse::<f64>() {
                            Ok(v) if v.is_finite() => values.push(v),
                            _ => {
                                bad = Some(format!(
                                    "row {}: column {column:?} has no numeric rating ({:?})",
                                    row + 2,
                                    tgt.rows[row][*idx]
                                ));
                                break;
                            }
                        }
                    }
                    if bad.is_none() {
                        out.targets.extend(values);
                    }
                    bad
                }
            };
            match (problem, spec.targets.missing) {
                (None, _) => {
                    out.texts.push(spec.stimuli.template.replace("{stimulus}", &name));
                    out.stimuli.push(name);
                }
                (Some(why), MissingPolicy::DropStimulus) => out.dropped.push((name, why)),
                (Some(why), MissingPolicy::Error) => {
                    return Err(DataError::table(
                        &tgt.path,
                        format!("{why} (targets.missing = \"error\")"),
                    )
                    .into())
                }
            }
        }
        if out.stimuli.len() < spec.analysis.attribute_probe.folds {
            return Err(SpecError::new(
                spec_file,
                "analysis.attribute_probe.folds",
                format!(
                    "{} folds need at least as many stimuli; {} remain after dropping {}",
                    spec.analysis.attribute_probe.folds,
                    out.stimuli.len(),
                    out.dropped.len()
                ),
            )
            .into());
        }
        Ok(out)
    }

    /// Number of stimuli.
    pub fn len(&self) -> usize {
        self.stimuli.len()
    }

    /// True when there are no stimuli.
    pub fn is_empty(&self) -> bool {
        self.stimuli.is_empty()
    }

    /// A content fingerprint of the stimuli and targets (part of probe unit ids).
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(&(&self.texts, &self.attributes, &self.targets))
            .expect("serialises");
        crate::ids::fingerprint(&bytes)
    }

    /// Group name → attribute indices, for every named group (BTreeMap: stable order).
    pub fn group_members(&self) -> BTreeMap<String, Vec<usize>> {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (j, g) in self.groups.iter().enumerate() {
            if let Some(g) = g {
                groups.entry(g.clone()).or_default().push(j);
            }
        }
        groups
    }

    /// Writes `dataset.json` atomically.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let bytes = serde_json::to_vec(self).expect("serialises");
        crate::fs::write_bytes_atomic(path, &bytes)
    }

    /// Reads `dataset.json`.
    pub fn open(path: &Path) -> Result<Dataset, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| DataError::table(path, e.to_string()))
    }
}

/// The stimulus names of `stimuli.file` in file order, before the missing-ratings policy
/// drops any (what triplet indices count, unless the spec gives an index list).
pub fn listed_stimuli(spec: &JobSpec, spec_file: &str) -> Result<Vec<String>, DatasetError> {
    stimulus_column(&read_csv(&spec.stimuli.file)?, spec, spec_file)
}

/// The non-empty, unique names of the stimulus column.
fn stimulus_column(
    stim: &Csv,
    spec: &JobSpec,
    spec_file: &str,
) -> Result<Vec<String>, DatasetError> {
    let col = column_index(stim, &spec.stimuli.column)
        .ok_or_else(|| missing_column(spec_file, "stimuli.column", &spec.stimuli.column, stim))?;
    let mut stimuli = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (row, rec) in stim.rows.iter().enumerate() {
        let name = rec[col].trim().to_string();
        if name.is_empty() {
            return Err(DataError::table(
                &stim.path,
                format!("row {}: empty stimulus in column {:?}", row + 2, spec.stimuli.column),
            )
            .into());
        }
        if !seen.insert(name.clone()) {
            return Err(DataError::table(
                &stim.path,
                format!("row {}: stimulus {name:?} appears twice", row + 2),
            )
            .into());
        }
        stimuli.push(name);
    }
    Ok(stimuli)
}

/// The resolved inputs of the alignment analyses (`[analysis.alignment]`): the triplets as rows
/// of the dataset and the human embedding in dataset order. The coordinator builds them once
/// at plan time and writes them to the run directory (`alignment.json`), like `dataset.json`,
/// so every worker scores the same triplets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlignmentInputs {
    /// Number of concepts (= dataset rows) the triplets index.
    pub n_concepts: usize,
    /// Triplets as dataset rows; field 2 is the human-chosen odd one out.
    pub triplets: Vec<[u32; 3]>,
    /// The human embedding, when the spec names one.
    pub embedding: Option<Embedding>,
}

/// A human embedding (e.g. VICE), one row per dataset stimulus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Embedding {
    /// Dimension (column) names.
    pub dimensions: Vec<String>,
    /// N × K row-major, finite.
    pub values: Vec<f64>,
}

impl AlignmentInputs {
    /// A content fingerprint (part of alignment unit ids).
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("serialises");
        crate::ids::fingerprint(&bytes)
    }

    /// Writes `alignment.json` atomically.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let bytes = serde_json::to_vec(self).expect("serialises");
        crate::fs::write_bytes_atomic(path, &bytes)
    }

    /// Reads `alignment.json`.
    pub fn open(path: &Path) -> Result<AlignmentInputs, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| DataError::table(path, e.to_string()))
    }
}

/// Reads a human embedding: a CSV file with a header row, the concept names in column `key`
/// and one numeric column per dimension (every other column). Returns the rows of `stimuli`, in
/// their order; rows of other concepts are ignored.
///
/// # Errors
/// [`DataError::Table`] naming the file and, where it applies, the row (1-based, header = 1)
/// and column: a missing key column, no dimension column, an empty or repeated key, a value
/// that is not a finite number (NaN, inf, empty, text), or a stimulus without a row.
pub fn read_embedding(path: &Path, key: &str, stimuli: &[String]) -> Result<Embedding, DataError> {
    let csv = read_csv(path)?;
    let k = column_index(&csv, key).ok_or_else(|| {
        DataError::table(path, format!("no column {key:?}; {}", describe_header(&csv)))
    })?;
    let dims: Vec<usize> = (0..csv.header.len()).filter(|&c| c != k).collect();
    if dims.is_empty() {
        return Err(DataError::table(path, format!("no dimension column beside {key:?}")));
    }
    let mut row_of: HashMap<&str, usize> = HashMap::with_capacity(csv.rows.len());
    for (row, rec) in csv.rows.iter().enumerate() {
        let name = rec[k].trim();
        if name.is_empty() {
            return Err(DataError::table(path, format!("row {}: empty {key:?}", row + 2)));
        }
        if let Some(first) = row_of.insert(name, row) {
            return Err(DataError::table(
                path,
                format!("row {}: {key} {name:?} repeats row {}", row + 2, first + 2),
            ));
        }
    }
    let mut values = Vec::with_capacity(stimuli.len() * dims.len());
    for (i, name) in stimuli.iter().enumerate() {
        let row = *row_of.get(name.as_str()).ok_or_else(|| {
            DataError::table(path, format!("no row with {key} = {name:?} (stimulus {i})"))
        })?;
        for &c in &dims {
            let text = csv.rows[row][c].trim();
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => values.push(v),
                _ => {
                    return Err(DataError::table(
                        path,
                        format!(
                            "row {}: column {:?} is not a finite number ({text:?})",
                            row + 2,
                            csv.header[c]
                        ),
                    ))
                }
            }
        }
    }
    Ok(Embedding { dimensions: dims.iter().map(|&c| csv.header[c].clone()).collect(), values })
}

#[derive(Clone)]
struct Csv {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn read_csv(path: &Path) -> Result<Csv, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .map_err(|e| DataError::table(path, e.to_string()))?;
    let header = reader.headers().map_err(|e| DataError::table(path, e.to_string()))?;
    let header: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| DataError::table(path, e.to_string()))?;
        rows.push(rec.iter().map(str::to_string).collect());
    }
    Ok(Csv { path: path.to_path_buf(), header, rows })
}

fn column_index(csv: &Csv, name: &str) -> Option<usize> {
    csv.header.iter().position(|h| h == name)
}

fn missing_column(spec_file: &str, key: &str, column: &str, csv: &Csv) -> SpecError {
    SpecError::new(
        spec_file,
        key,
        format!("{} has no column {column:?}; {}", csv.path.display(), describe_header(csv)),
    )
}

/// The header's columns, for an error message, when the file looks like a comma-separated
/// table; otherwise only that it does not. A file that is not a table (`/etc/shadow` named by
/// mistake or on purpose) must not have its first line copied into an error, a log or a
/// terminal, so its content is never echoed.
fn describe_header(csv: &Csv) -> String {
    const MAX_COLUMNS: usize = 32;
    const MAX_NAME: usize = 64;
    let tabular = csv.header.len() >= 2
        && csv.header.iter().all(|h| {
            h.len() <= MAX_NAME && !h.chars().any(|c| c.is_control() || matches!(c, ':' | '$'))
        });
    if !tabular {
        return format!(
            "it does not look like a comma-separated table with a header row ({} field(s) in its first line; content not shown)",
            csv.header.len()
        );
    }
    let shown: Vec<&String> = csv.header.iter().take(MAX_COLUMNS).collect();
    let more = csv.header.len().saturating_sub(MAX_COLUMNS);
    if more > 0 {
        format!("columns are {shown:?} and {more} more")
    } else {
        format!("columns are {shown:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_of(text: &str) -> Csv {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        read_csv(&path).unwrap()
    }

    #[test]
    fn a_file_that_is_not_a_table_never_has_its_content_in_the_error() {
        let shadow = csv_of("root:$6$SECRETHASH:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n");
        let e = missing_column("spec.toml", "targets.key", "word", &shadow).to_string();
        assert!(!e.contains("SECRET") && !e.contains("root"), "{e}");
        assert!(e.contains("does not look like a comma-separated table"), "{e}");
        // A real table still lists its columns, to help with a misspelt name.
        let table = csv_of("word,auditory,visual\nabdomen,1.0,2.0\n");
        let e = missing_column("spec.toml", "targets.key", "wrod", &table).to_string();
        assert!(e.contains(r#"columns are ["word", "auditory", "visual"]"#), "{e}");
    }
}
