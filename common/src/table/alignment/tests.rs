//! Round trips of every variant, the golden file written before the enum, and bad rows.

use super::*;
use crate::table::golden;
use AlignmentDistance::{Cosine, Dot, Euclidean};

const THIRD: f64 = 1.0 / 3.0;

fn triplets(distance: AlignmentDistance, accuracy: f64, correct: u32, ties: u32) -> TripletScore {
    TripletScore { distance, accuracy, correct, ties, n_triplets: 6, n_concepts: 10, chance: THIRD }
}

/// The rows of `alignment.parquet`: one of each variant (two odd-one-out distances).
fn golden_rows() -> Vec<AlignmentRow> {
    let rep = || "text.1/mean".to_string();
    vec![
        AlignmentRow::OddOneOut { representation: rep(), score: triplets(Cosine, 0.5, 3, 1) },
        AlignmentRow::OddOneOut { representation: rep(), score: triplets(Dot, 0.25, 1, 0) },
        AlignmentRow::RegressionFold {
            representation: rep(),
            fold: 2,
            n_concepts: 2,
            r2: 0.25,
            r2_dimensions: vec![0.2, 0.3],
            alpha_dimensions: vec![1.0, 100.0],
        },
        AlignmentRow::RegressionPredicted {
            representation: rep(),
            score: triplets(Cosine, 0.75, 4, 0),
            r2: 0.125,
            r2_dimensions: vec![0.1, 0.15],
        },
        AlignmentRow::LinearProbeFold {
            representation: rep(),
            fold: 0,
            score: ProbeScore {
                accuracy: 0.4,
                correct: 2,
                n_triplets: 5,
                n_concepts: 4,
                chance: THIRD,
            },
            training: ProbeTraining {
                n_train: 40,
                n_dropped: 7,
                epochs: 12,
                stopped_early: true,
                train_loss: 1.05,
                test_loss: 1.09,
            },
        },
        AlignmentRow::LinearProbeMean {
            representation: rep(),
            score: ProbeScore {
                accuracy: 0.4,
                correct: 2,
                n_triplets: 5,
                n_concepts: 10,
                chance: THIRD,
            },
        },
        AlignmentRow::HumanEmbedding { score: triplets(Euclidean, 1.0, 6, 0) },
    ]
}

#[test]
fn alignment_rows_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.parquet");
    let rows = golden_rows();
    crate::fs::write_atomic(&path, |f| write_alignment_rows(f, &path, &rows)).unwrap();
    assert_eq!(read_alignment_rows(&path).unwrap(), rows);
}

#[test]
fn alignment_rows_match_the_golden_files() {
    assert_eq!(read_alignment_rows(&golden::path("alignment.parquet")).unwrap(), golden_rows());
    golden::assert_writes_same_bytes("alignment.parquet", |f, p| {
        write_alignment_rows(f, p, &golden_rows())
    });
    assert!(read_alignment_rows(&golden::path("alignment_empty.parquet")).unwrap().is_empty());
    golden::assert_writes_same_bytes("alignment_empty.parquet", |f, p| {
        write_alignment_rows(f, p, &[])
    });
}

fn grid_row() -> crate::table::GridRow {
    crate::table::GridRow {
        representation: "text.1/mean".into(),
        fold: 0,
        components: 2,
        n_components: 2,
        alpha: 1.0,
        mean_rmse: 0.5,
    }
}

#[test]
fn a_row_that_fits_no_variant_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.parquet");
    let mut bad = golden_rows()[0].flatten();
    bad.ties = None;
    let unknown = Record { analysis: "psychic".into(), ..bad.clone() };
    for (records, want) in [
        (vec![bad], "row 0 (odd_one_out): column ties is null"),
        (vec![golden_rows()[1].flatten(), unknown], "row 1 (psychic): unknown analysis"),
    ] {
        crate::fs::write_atomic(&path, |f| write_rows(f, &path, &records)).unwrap();
        let e = read_alignment_rows(&path).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
    let grid = dir.path().join("g.parquet");
    crate::fs::write_atomic(&grid, |f| crate::table::write_grid_rows(f, &grid, &[grid_row()]))
        .unwrap();
    let e = read_alignment_rows(&grid).unwrap_err().to_string();
    assert!(e.contains("not an alignment file"), "{e}");
}
