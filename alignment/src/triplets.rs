//! [`Triplets`]: human odd-one-out judgements, M × 3 indices into N concepts, and their loading
//! from CSV files of indices or of concept names ([`Triplets::from_csv`]).
//!
//! **Convention (science.md B2):** fields 0 and 1 are the pair the participant kept together and
//! field 2 is the **human-chosen odd one out**. Indices are 0-based rows of the feature matrix
//! (concept order), or, with [`Concepts::with_index_list`], 0-based positions in an external
//! concept list (such as the 1,854 THINGS concepts) that are then matched to rows by name.
//!
//! **Invariant:** every [`Triplets`] value holds only in-range indices and three distinct
//! concepts per triplet; a file is rejected at its first bad entry, with the file, the line
//! (1-based, header included) and the field (0-based) in the error.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{AlignmentError, TripletProblem};

/// Odd-one-out triplets over `n_concepts` concepts; field 2 of each is the odd one out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triplets {
    rows: Vec<[usize; 3]>,
    n_concepts: usize,
}

impl Triplets {
    /// Checks and wraps triplets given in memory.
    ///
    /// # Errors
    /// [`AlignmentError::InvalidTriplet`] for an index `≥ n_concepts` or a concept repeated
    /// within a triplet. An empty list is allowed.
    pub fn new(rows: Vec<[usize; 3]>, n_concepts: usize) -> Result<Self, AlignmentError> {
        for (triplet, row) in rows.iter().enumerate() {
            for (field, &index) in row.iter().enumerate() {
                let problem = if index >= n_concepts {
                    Some(TripletProblem::OutOfRange { index, n: n_concepts })
                } else {
                    repeat_of(row, field).map(|first| TripletProblem::Duplicate {
                        concept: index.to_string(),
                        first,
                    })
                };
                if let Some(problem) = problem {
                    return Err(AlignmentError::InvalidTriplet { triplet, field, problem });
                }
            }
        }
        Ok(Self { rows, n_concepts })
    }

    /// Reads triplets from a CSV (or other delimited) file, resolving each field against
    /// `concepts` as `options.entries` says.
    ///
    /// Leading and trailing spaces of fields are ignored, and so are lines starting with `#`.
    /// Index fields must be non-negative integers (`3`, not `3.0`).
    ///
    /// # Errors
    /// [`AlignmentError::TripletFile`] naming the file, and where it applies the line and
    /// field, for: an unreadable or malformed file, a record without exactly three fields, a
    /// non-numeric index (`NaN`, `1.5`, `-1`, a name), an index out of range, a concept repeated
    /// within a row, an unknown concept name, a concept of the index list without a stimulus,
    /// and a file without triplets.
    pub fn from_csv(
        path: &Path,
        concepts: &Concepts,
        options: &CsvOptions,
    ) -> Result<Self, AlignmentError> {
        let fail = |line: Option<u64>, field: Option<usize>, problem: TripletProblem| {
            AlignmentError::TripletFile { path: path.to_owned(), line, field, problem }
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(options.has_header)
            .delimiter(options.delimiter)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .flexible(true)
            .from_path(path)
            .map_err(|e| fail(None, None, csv_problem(e)))?;
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map(csv::Position::line);
                fail(line, None, csv_problem(e))
            })?;
            let line = record.position().map(csv::Position::line);
            if record.len() != 3 {
                return Err(fail(line, None, TripletProblem::FieldCount { got: record.len() }));
            }
            let mut row = [0; 3];
            for (field, text) in record.iter().enumerate() {
                row[field] = concepts
                    .resolve(text, options.entries)
                    .map_err(|problem| fail(line, Some(field), problem))?;
                if let Some(first) = repeat_of(&row[..=field], field) {
                    let concept = text.to_owned();
                    return Err(fail(
                        line,
                        Some(field),
                        TripletProblem::Duplicate { concept, first },
                    ));
                }
            }
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(fail(None, None, TripletProblem::Empty));
        }
        Ok(Self { rows, n_concepts: concepts.len() })
    }

    /// Number of triplets M.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no triplets.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of concepts N the indices refer to (rows of the feature matrix).
    pub fn n_concepts(&self) -> usize {
        self.n_concepts
    }

    /// The triplets; field 2 of each is the odd one out.
    pub fn rows(&self) -> &[[usize; 3]] {
        &self.rows
    }
}

/// The first earlier field of `row[..field]` holding the same concept as `row[field]`.
fn repeat_of(row: &[usize], field: usize) -> Option<usize> {
    row[..field].iter().position(|&c| c == row[field])
}

fn csv_problem(e: csv::Error) -> TripletProblem {
    match e.kind() {
        csv::ErrorKind::Io(io) => TripletProblem::Io(io.to_string()),
        _ => TripletProblem::Csv(e.to_string()),
    }
}

/// What the fields of a triplet file hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Entries {
    /// 0-based integer indices (rows, or positions in the index list).
    #[default]
    Indices,
    /// Concept names, matched exactly (after trimming spaces) to the stimuli's names.
    Names,
}

/// How a triplet file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// What the fields hold.
    pub entries: Entries,
    /// Whether the first record is a header to skip.
    pub has_header: bool,
    /// The field delimiter (`b','` for CSV, `b'\t'` for TSV, `b' '` for THINGS' `.txt` files).
    pub delimiter: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self { entries: Entries::Indices, has_header: false, delimiter: b',' }
    }
}

/// The concepts that triplet entries are resolved against: one name per row of the feature
/// matrix (the stimuli, in row order), and optionally the external list that integer entries
/// index.
#[derive(Debug, Clone)]
pub struct Concepts {
    names: Vec<String>,
    row_of: HashMap<String, usize>,
    index_list: Option<Vec<String>>,
}

impl Concepts {
    /// The concept of each feature row, in row order; integer entries are row indices.
    ///
    /// # Errors
    /// [`AlignmentError::DuplicateConcept`] if a name appears twice.
    pub fn new(names: Vec<String>) -> Result<Self, AlignmentError> {
        let row_of = index_names(&names, "concept list")?;
        Ok(Self { names, row_of, index_list: None })
    }

    /// Integer entries index `list` (for example THINGS' concept order) instead of the rows;
    /// each listed concept is matched to the row with the same name. Names found in `list` but
    /// not among the rows are reported as "no stimulus" rather than "unknown".
    ///
    /// # Errors
    /// [`AlignmentError::DuplicateConcept`] if a name appears twice in `list`.
    pub fn with_index_list(mut self, list: Vec<String>) -> Result<Self, AlignmentError> {
        index_names(&list, "index list")?;
        self.index_list = Some(list);
        Ok(self)
    }

    /// Number of concepts with a row (N).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no concepts.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The row names, in row order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The row of one field's text.
    fn resolve(&self, text: &str, entries: Entries) -> Result<usize, TripletProblem> {
        match entries {
            Entries::Indices => {
                let index: usize = text
                    .parse()
                    .map_err(|_| TripletProblem::NotAnIndex { value: text.to_owned() })?;
                let Some(list) = &self.index_list else {
                    return if index < self.len() {
                        Ok(index)
                    } else {
                        Err(TripletProblem::OutOfRange { index, n: self.len() })
                    };
                };
                let name =
                    list.get(index).ok_or(TripletProblem::OutOfRange { index, n: list.len() })?;
                self.row_of
                    .get(name)
                    .copied()
                    .ok_or(TripletProblem::NoStimulus { name: name.clone() })
            }
            Entries::Names => self.row_of.get(text).copied().ok_or_else(|| {
                let name = text.to_owned();
                match &self.index_list {
                    Some(list) if list.iter().any(|n| n == text) => {
                        TripletProblem::NoStimulus { name }
                    }
                    _ => TripletProblem::UnknownConcept { name },
                }
            }),
        }
    }
}

fn index_names(
    names: &[String],
    list: &'static str,
) -> Result<HashMap<String, usize>, AlignmentError> {
    let mut row_of = HashMap::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if let Some(first) = row_of.insert(name.clone(), i) {
            return Err(AlignmentError::DuplicateConcept {
                list,
                name: name.clone(),
                first,
                second: i,
            });
        }
    }
    Ok(row_of)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn concepts(names: &[&str]) -> Concepts {
        Concepts::new(names.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    /// Loads `text` and returns the triplets or the error message without the path.
    fn load(text: &str, c: &Concepts, options: CsvOptions) -> Result<Vec<[usize; 3]>, String> {
        let f = file(text);
        Triplets::from_csv(f.path(), c, &options).map(|t| t.rows().to_vec()).map_err(|e| {
            let msg = e.to_string();
            msg.strip_prefix(&f.path().display().to_string()).unwrap_or(&msg).to_owned()
        })
    }

    #[test]
    fn reads_indices_and_names() {
        let c = concepts(&["cat", "dog", "car", "bus"]);
        let indices = CsvOptions::default();
        assert_eq!(
            load("0,1,2\n 3 , 2,0\n# a comment\n", &c, indices),
            Ok(vec![[0, 1, 2], [3, 2, 0]])
        );
        let names = CsvOptions { entries: Entries::Names, has_header: true, delimiter: b'\t' };
        assert_eq!(load("a\tb\todd\ncat\tdog\tcar\n", &c, names), Ok(vec![[0, 1, 2]]));
        let spaces = CsvOptions { delimiter: b' ', ..indices };
        assert_eq!(load("1 2 3\n", &c, spaces), Ok(vec![[1, 2, 3]]));
    }

    #[test]
    fn bad_entries_name_line_and_field() {
        let c = concepts(&["cat", "dog", "car", "bus"]);
        let opt = CsvOptions::default();
        let cases = [
            ("0,1,2\n0,1,4\n", ", line 2, field 2: index 4 is out of range for 4 concepts"),
            ("0,1,2\n0,1,0\n", ", line 2, field 2: concept 0 repeats field 0"),
            (
                "0,NaN,2\n",
                ", line 1, field 1: \"NaN\" is not a concept index (a non-negative integer)",
            ),
            (
                "0,1.5,2\n",
                ", line 1, field 1: \"1.5\" is not a concept index (a non-negative integer)",
            ),
            (
                "-1,1,2\n",
                ", line 1, field 0: \"-1\" is not a concept index (a non-negative integer)",
            ),
            (
                "0,1\n",
                ", line 1: found 2 fields; expected 3 (two kept together, then the odd one out)",
            ),
            ("# nothing\n", ": the file holds no triplets"),
        ];
        for (text, want) in cases {
            assert_eq!(load(text, &c, opt).unwrap_err(), want, "{text:?}");
        }
        let names = CsvOptions { entries: Entries::Names, ..opt };
        assert_eq!(
            load("cat,dog,cow\n", &c, names).unwrap_err(),
            ", line 1, field 2: unknown concept name \"cow\""
        );
        assert_eq!(
            load("cat,dog,dog\n", &c, names).unwrap_err(),
            ", line 1, field 2: concept dog repeats field 1"
        );
    }

    #[test]
    fn index_list_maps_external_indices_to_rows_by_name() {
        let list = ["aardvark", "bus", "cat", "dog"].map(String::from).to_vec();
        let c = concepts(&["dog", "cat", "bus"]).with_index_list(list).unwrap();
        let opt = CsvOptions::default();
        assert_eq!(load("3,2,1\n", &c, opt), Ok(vec![[0, 1, 2]]));
        assert_eq!(
            load("3,2,0\n", &c, opt).unwrap_err(),
            ", line 1, field 2: concept \"aardvark\" has no stimulus (no row in the features)"
        );
        assert_eq!(
            load("3,2,4\n", &c, opt).unwrap_err(),
            ", line 1, field 2: index 4 is out of range for 4 concepts"
        );
        let names = CsvOptions { entries: Entries::Names, ..opt };
        assert_eq!(
            load("dog,aardvark,cat\n", &c, names).unwrap_err(),
            ", line 1, field 1: concept \"aardvark\" has no stimulus (no row in the features)"
        );
        assert_eq!(
            load("dog,emu,cat\n", &c, names).unwrap_err(),
            ", line 1, field 1: unknown concept name \"emu\""
        );
    }

    #[test]
    fn unreadable_files_and_duplicate_names_are_refused() {
        let c = concepts(&["a", "b", "c"]);
        let e = Triplets::from_csv(Path::new("/nonexistent/t.csv"), &c, &CsvOptions::default())
            .unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/t.csv: cannot read the file: "), "{e}");
        let e = Concepts::new(vec!["a".into(), "b".into(), "a".into()]).unwrap_err();
        assert_eq!(e.to_string(), "the concept list names concept \"a\" twice (entries 0 and 2)");
    }

    #[test]
    fn in_memory_triplets_are_checked() {
        assert!(Triplets::new(vec![[0, 1, 2]], 3).is_ok());
        let e = Triplets::new(vec![[0, 1, 2], [0, 3, 1]], 3).unwrap_err();
        assert_eq!(e.to_string(), "triplet 1, field 1: index 3 is out of range for 3 concepts");
        let e = Triplets::new(vec![[2, 1, 2]], 3).unwrap_err();
        assert_eq!(e.to_string(), "triplet 0, field 2: concept 2 repeats field 0");
    }
}
