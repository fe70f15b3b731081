//! Alignment rows (`alignment/<unit>.a<n>.parquet` and the merged `report/alignment.parquet`,
//! same columns). In memory an [`AlignmentRow`] is one variant per analysis, each with only its
//! fields; on disk it is one wide row whose `analysis` column names the variant and whose other
//! columns are null (or an empty list) where the variant has no such field:
//!
//! | variant | `analysis` | `distance` | `fold` | set |
//! |---|---|---|---|---|
//! | `OddOneOut` | `odd_one_out` | each spec distance | null | accuracy, correct, ties, n_triplets, n_concepts, chance |
//! | `LinearProbeFold` | `linear_probe` | `dot` | a fold | accuracy, correct, n_triplets and n_concepts (test fold), chance, n_train, n_dropped, epochs, stopped_early, train_loss, test_loss |
//! | `LinearProbeMean` | `linear_probe` | `dot` | null | accuracy (mean over folds), correct and n_triplets (Σ over folds), n_concepts, chance |
//! | `RegressionFold` | `embedding_regression` | null | a fold | r2 (mean over dimensions), r2_dimensions, alpha_dimensions, n_concepts (test fold); n_triplets 0 |
//! | `RegressionPredicted` | `embedding_regression` | each spec distance | null | accuracy, correct, ties, n_triplets, n_concepts, chance of the out-of-fold predicted embedding; r2 (overall), r2_dimensions (mean over folds) |
//! | `HumanEmbedding` | `human_embedding` | each spec distance | null | accuracy, correct, ties, n_triplets, n_concepts, chance of the human embedding itself (merged only; representation empty) |
//!
//! The wide row ([`Record`]) is the table's one schema definition; [`AlignmentRow::flatten`] and
//! [`Record::unflatten`] are the only places that know the layout above.

use std::fs::File;
use std::path::Path;

use serde::de::IntoDeserializer;
use serde::{Deserialize, Serialize};

use super::{read_rows, write_rows};
use crate::error::DataError;
use crate::spec::AlignmentDistance;

/// The `analysis` values of the alignment table.
pub mod analysis {
    /// Odd-one-out accuracy of the representation itself.
    pub const ODD_ONE_OUT: &str = "odd_one_out";
    /// The linear-probe alignment.
    pub const LINEAR_PROBE: &str = "linear_probe";
    /// Ridge regression onto the human embedding.
    pub const EMBEDDING_REGRESSION: &str = "embedding_regression";
    /// Odd-one-out accuracy of the human embedding itself.
    pub const HUMAN_EMBEDDING: &str = "human_embedding";
}

/// The odd-one-out score of one matrix under one distance.
#[derive(Debug, Clone, PartialEq)]
pub struct TripletScore {
    /// The distance the triplets were scored by.
    pub distance: AlignmentDistance,
    /// Accuracy (ties count as wrong).
    pub accuracy: f64,
    /// Triplets answered as the human did.
    pub correct: u32,
    /// Triplets without a unique closest pair (counted wrong).
    pub ties: u32,
    /// Triplets scored.
    pub n_triplets: u32,
    /// Concepts involved.
    pub n_concepts: u32,
    /// Accuracy of guessing (1/3).
    pub chance: f64,
}

/// The linear probe's accuracy on test triplets (one fold's, or the mean over folds).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeScore {
    /// Accuracy on the test triplets (mean over folds for the merged row).
    pub accuracy: f64,
    /// Test triplets answered as the human did (Σ over folds for the merged row).
    pub correct: u32,
    /// Test triplets (Σ over folds for the merged row).
    pub n_triplets: u32,
    /// Concepts of the test fold (all, for the merged row).
    pub n_concepts: u32,
    /// Accuracy of guessing (1/3).
    pub chance: f64,
}

/// How one linear-probe fold trained.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTraining {
    /// Training triplets.
    pub n_train: u32,
    /// Triplets dropped because they mix training and test concepts.
    pub n_dropped: u32,
    /// Epochs run.
    pub epochs: u32,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// Mean cross-entropy of the last epoch's training batches.
    pub train_loss: f64,
    /// Mean cross-entropy on the test triplets.
    pub test_loss: f64,
}

/// One alignment result; see the module documentation for its columns.
#[derive(Debug, Clone, PartialEq)]
pub enum AlignmentRow {
    /// The representation's own odd-one-out accuracy under one distance.
    OddOneOut {
        /// Representation key.
        representation: String,
        /// The score.
        score: TripletScore,
    },
    /// One fold of the linear probe (distance `dot`).
    LinearProbeFold {
        /// Representation key.
        representation: String,
        /// Fold index.
        fold: u32,
        /// Accuracy on the fold's test triplets.
        score: ProbeScore,
        /// How the fold trained.
        training: ProbeTraining,
    },
    /// The linear probe over the folds that ran (merged only; the paper's probing accuracy).
    LinearProbeMean {
        /// Representation key.
        representation: String,
        /// Mean accuracy over folds.
        score: ProbeScore,
    },
    /// One fold of the ridge regression onto the human embedding.
    RegressionFold {
        /// Representation key.
        representation: String,
        /// Fold index.
        fold: u32,
        /// Concepts of the test fold.
        n_concepts: u32,
        /// R², mean over embedding dimensions.
        r2: f64,
        /// R² per embedding dimension.
        r2_dimensions: Vec<f64>,
        /// Ridge α chosen per embedding dimension.
        alpha_dimensions: Vec<f64>,
    },
    /// The odd-one-out accuracy of the out-of-fold predicted embedding under one distance.
    RegressionPredicted {
        /// Representation key.
        representation: String,
        /// The predicted embedding's score.
        score: TripletScore,
        /// R² over all concepts.
        r2: f64,
        /// R² per embedding dimension, mean over folds.
        r2_dimensions: Vec<f64>,
    },
    /// The human embedding's own odd-one-out accuracy (merged only).
    HumanEmbedding {
        /// The embedding's score.
        score: TripletScore,
    },
}

impl AlignmentRow {
    /// Representation key (empty for the human embedding).
    pub fn representation(&self) -> &str {
        match self {
            Self::OddOneOut { representation, .. }
            | Self::LinearProbeFold { representation, .. }
            | Self::LinearProbeMean { representation, .. }
            | Self::RegressionFold { representation, .. }
            | Self::RegressionPredicted { representation, .. } => representation,
            Self::HumanEmbedding { .. } => "",
        }
    }

    /// The table's `analysis` value.
    pub fn analysis(&self) -> &'static str {
        match self {
            Self::OddOneOut { .. } => analysis::ODD_ONE_OUT,
            Self::LinearProbeFold { .. } | Self::LinearProbeMean { .. } => analysis::LINEAR_PROBE,
            Self::RegressionFold { .. } | Self::RegressionPredicted { .. } => {
                analysis::EMBEDDING_REGRESSION
            }
            Self::HumanEmbedding { .. } => analysis::HUMAN_EMBEDDING,
        }
    }

    /// The distance; none for the regression's per-fold R².
    pub fn distance(&self) -> Option<AlignmentDistance> {
        match self {
            Self::OddOneOut { score, .. }
            | Self::RegressionPredicted { score, .. }
            | Self::HumanEmbedding { score } => Some(score.distance),
            Self::LinearProbeFold { .. } | Self::LinearProbeMean { .. } => {
                Some(AlignmentDistance::Dot)
            }
            Self::RegressionFold { .. } => None,
        }
    }

    /// The fold; none for results over all concepts (or the mean over folds).
    pub fn fold(&self) -> Option<u32> {
        match self {
            Self::LinearProbeFold { fold, .. } | Self::RegressionFold { fold, .. } => Some(*fold),
            _ => None,
        }
    }

    /// The odd-one-out accuracy, where the row has one.
    pub fn accuracy(&self) -> Option<f64> {
        match self {
            Self::OddOneOut { score, .. }
            | Self::RegressionPredicted { score, .. }
            | Self::HumanEmbedding { score } => Some(score.accuracy),
            Self::LinearProbeFold { score, .. } | Self::LinearProbeMean { score, .. } => {
                Some(score.accuracy)
            }
            Self::RegressionFold { .. } => None,
        }
    }

    /// The distance-scored triplets, where the row scores a matrix by a distance.
    pub fn triplet_score(&self) -> Option<&TripletScore> {
        match self {
            Self::OddOneOut { score, .. }
            | Self::RegressionPredicted { score, .. }
            | Self::HumanEmbedding { score } => Some(score),
            _ => None,
        }
    }

    /// The regression's R² (mean over dimensions per fold, overall for the predicted embedding).
    pub fn r2(&self) -> Option<f64> {
        match self {
            Self::RegressionFold { r2, .. } | Self::RegressionPredicted { r2, .. } => Some(*r2),
            _ => None,
        }
    }

    /// The wide row written to Parquet.
    fn flatten(&self) -> Record {
        let mut rec = Record {
            representation: self.representation().to_string(),
            analysis: self.analysis().to_string(),
            distance: self.distance().map(|d| d.name().to_string()),
            fold: self.fold(),
            accuracy: self.accuracy(),
            r2: self.r2(),
            ..Record::default()
        };
        if let Some(s) = self.triplet_score() {
            rec.correct = Some(s.correct);
            rec.ties = Some(s.ties);
            (rec.n_triplets, rec.n_concepts, rec.chance) =
                (s.n_triplets, s.n_concepts, Some(s.chance));
        }
        match self {
            Self::LinearProbeFold { score, .. } | Self::LinearProbeMean { score, .. } => {
                rec.correct = Some(score.correct);
                (rec.n_triplets, rec.n_concepts) = (score.n_triplets, score.n_concepts);
                rec.chance = Some(score.chance);
            }
            _ => {}
        }
        match self {
            Self::LinearProbeFold { training: t, .. } => {
                (rec.n_train, rec.n_dropped, rec.epochs) =
                    (Some(t.n_train), Some(t.n_dropped), Some(t.epochs));
                rec.stopped_early = Some(t.stopped_early);
                (rec.train_loss, rec.test_loss) = (Some(t.train_loss), Some(t.test_loss));
            }
            Self::RegressionFold { n_concepts, r2_dimensions, alpha_dimensions, .. } => {
                rec.n_concepts = *n_concepts;
                rec.r2_dimensions.clone_from(r2_dimensions);
                rec.alpha_dimensions.clone_from(alpha_dimensions);
            }
            Self::RegressionPredicted { r2_dimensions, .. } => {
                rec.r2_dimensions.clone_from(r2_dimensions);
            }
            _ => {}
        }
        rec
    }
}

/// The on-disk alignment row: every variant's fields, nullable where some variant lacks them.
/// Field order is column order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    representation: String,
    analysis: String,
    distance: Option<String>,
    fold: Option<u32>,
    accuracy: Option<f64>,
    correct: Option<u32>,
    ties: Option<u32>,
    n_triplets: u32,
    n_concepts: u32,
    chance: Option<f64>,
    r2: Option<f64>,
    r2_dimensions: Vec<f64>,
    alpha_dimensions: Vec<f64>,
    n_train: Option<u32>,
    n_dropped: Option<u32>,
    epochs: Option<u32>,
    stopped_early: Option<bool>,
    train_loss: Option<f64>,
    test_loss: Option<f64>,
}

impl Record {
    /// The variant this wide row stores; an error names the first missing column or bad value.
    /// Columns the variant does not use are not read.
    fn unflatten(self) -> Result<AlignmentRow, String> {
        fn need<T>(v: Option<T>, column: &str) -> Result<T, String> {
            v.ok_or_else(|| format!("column {column} is null"))
        }
        let distance = |d: &Option<String>| -> Result<AlignmentDistance, String> {
            let name = need(d.as_deref(), "distance")?;
            AlignmentDistance::deserialize(name.into_deserializer())
                .map_err(|e: serde::de::value::Error| format!("column distance: {e}"))
        };
        let triplets = |r: &Record| -> Result<TripletScore, String> {
            Ok(TripletScore {
                distance: distance(&r.distance)?,
                accuracy: need(r.accuracy, "accuracy")?,
                correct: need(r.correct, "correct")?,
                ties: need(r.ties, "ties")?,
                n_triplets: r.n_triplets,
                n_concepts: r.n_concepts,
                chance: need(r.chance, "chance")?,
            })
        };
        let probe = |r: &Record| -> Result<ProbeScore, String> {
            Ok(ProbeScore {
                accuracy: need(r.accuracy, "accuracy")?,
                correct: need(r.correct, "correct")?,
                n_triplets: r.n_triplets,
                n_concepts: r.n_concepts,
                chance: need(r.chance, "chance")?,
            })
        };
        let row = match (self.analysis.as_str(), self.fold) {
            (analysis::ODD_ONE_OUT, _) => AlignmentRow::OddOneOut {
                score: triplets(&self)?,
                representation: self.representation,
            },
            (analysis::LINEAR_PROBE, Some(fold)) => AlignmentRow::LinearProbeFold {
                fold,
                score: probe(&self)?,
                training: ProbeTraining {
                    n_train: need(self.n_train, "n_train")?,
                    n_dropped: need(self.n_dropped, "n_dropped")?,
                    epochs: need(self.epochs, "epochs")?,
                    stopped_early: need(self.stopped_early, "stopped_early")?,
                    train_loss: need(self.train_loss, "train_loss")?,
                    test_loss: need(self.test_loss, "test_loss")?,
                },
                representation: self.representation,
            },
            (analysis::LINEAR_PROBE, None) => AlignmentRow::LinearProbeMean {
                score: probe(&self)?,
                representation: self.representation,
            },
            (analysis::EMBEDDING_REGRESSION, Some(fold)) => AlignmentRow::RegressionFold {
                fold,
                n_concepts: self.n_concepts,
                r2: need(self.r2, "r2")?,
                r2_dimensions: self.r2_dimensions,
                alpha_dimensions: self.alpha_dimensions,
                representation: self.representation,
            },
            (analysis::EMBEDDING_REGRESSION, None) => AlignmentRow::RegressionPredicted {
                score: triplets(&self)?,
                r2: need(self.r2, "r2")?,
                r2_dimensions: self.r2_dimensions,
                representation: self.representation,
            },
            (analysis::HUMAN_EMBEDDING, _) => {
                AlignmentRow::HumanEmbedding { score: triplets(&self)? }
            }
            (other, _) => return Err(format!("unknown analysis {other:?}")),
        };
        Ok(row)
    }
}

/// Writes alignment rows as one record batch (a unit's output, and the merged table).
pub fn write_alignment_rows(
    file: &mut File,
    path: &Path,
    rows: &[AlignmentRow],
) -> Result<(), DataError> {
    let records: Vec<Record> = rows.iter().map(AlignmentRow::flatten).collect();
    write_rows(file, path, &records)
}

/// Reads alignment rows; a row that fits no variant is an error naming the row.
pub fn read_alignment_rows(path: &Path) -> Result<Vec<AlignmentRow>, DataError> {
    read_rows::<Record>(path, "an alignment file")?
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let analysis = r.analysis.clone();
            r.unflatten().map_err(|m| DataError::table(path, format!("row {i} ({analysis}): {m}")))
        })
        .collect()
}

#[cfg(test)]
mod tests;
