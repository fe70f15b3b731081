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
        let col = column_index(&stim, &spec.stimuli.column).ok_or_else(|| {
            missing_column(spec_file, "stimuli.column", &spec.stimuli.column, &stim)
        })?;
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
        format!("{} has no column {column:?}; columns are {:?}", csv.path.display(), csv.header),
    )
}
