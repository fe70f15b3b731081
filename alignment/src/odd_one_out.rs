//! Odd-one-out accuracy (OOOA) of a representation on human triplets (science.md B2).
//!
//! For a triplet `(i, j, k)` the distances of the pairs (0,1), (0,2), (1,2) are computed from the
//! feature rows; the predicted odd one out is the element outside the closest pair. OOOA is the
//! fraction of triplets whose prediction is field 2, the human choice; chance is 1/3.
//!
//! **Ties are wrong:** when the smallest distance is shared by two or three pairs (for example
//! three identical rows) there is no prediction and the triplet counts as wrong. A tie between
//! the two *larger* distances does not matter: the closest pair is still unique. (Muttenthaler
//! et al.'s code also rejects that case; with continuous features it does not occur.)
//! Distances are compared exactly, in `f64`.
//!
//! **Cosine of a zero row:** its cosine similarity with anything is 0 (distance 1), as in
//! scikit-learn's `cosine_distances`, instead of NaN (likewise a constant row under the
//! correlation distance).
//!
//! [`Distance`] also holds the semantic lens's distances (L1, L∞, correlation; see
//! [`crate::semantic`]); odd-one-out accepts them too, computed as the distance itself.

use std::fmt;
use std::str::FromStr;

use crate::error::AlignmentError;
use crate::matrix::Matrix;
use crate::triplets::Triplets;

/// The accuracy of always guessing one of three.
pub const CHANCE: f64 = 1.0 / 3.0;

/// The distance between two concept representations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Distance {
    /// `1 − cos(a, b)` (the paper's default).
    #[default]
    Cosine,
    /// `‖a − b‖` (compared as its square, which orders pairs the same way).
    Euclidean,
    /// `−a·b`: the most similar pair has the largest dot product (the linear probe's similarity).
    NegDot,
    /// `Σ|a − b|` (scipy's `cityblock`).
    L1,
    /// `max|a − b|` (scipy's `chebyshev`).
    LInf,
    /// `1 − corr(a, b)`: the cosine distance of the rows centred on their own means (scipy's
    /// `correlation`).
    Correlation,
}

impl Distance {
    /// The odd-one-out analysis's distances (science.md B2), in a fixed order.
    pub const ALL: [Distance; 3] = [Distance::Cosine, Distance::Euclidean, Distance::NegDot];

    /// The semantic lens's distances (science-2.md §L), in a fixed order.
    pub const SEMANTIC: [Distance; 5] = [
        Distance::Cosine,
        Distance::Euclidean,
        Distance::L1,
        Distance::LInf,
        Distance::Correlation,
    ];

    /// The name used in job specs and reports: `cosine`, `euclidean`, `dot`, `l1`, `linf`,
    /// `correlation`.
    pub fn name(self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::Euclidean => "euclidean",
            Distance::NegDot => "dot",
            Distance::L1 => "l1",
            Distance::LInf => "linf",
            Distance::Correlation => "correlation",
        }
    }
}

impl fmt::Display for Distance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Distance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Distance::ALL.into_iter().chain(Distance::SEMANTIC).find(|d| d.name() == s).ok_or_else(
            || {
                format!(
                    "unknown distance {s:?}; expected cosine, euclidean, dot, l1, linf or \
                     correlation"
                )
            },
        )
    }
}

/// The outcome of one odd-one-out evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct OddOneOut {
    /// Per triplet, the predicted odd one out as a field (0, 1 or 2), or `None` for a tie.
    pub predictions: Vec<Option<u8>>,
    /// Number of triplets predicted as the human chose (field 2).
    pub correct: usize,
    /// `correct / M`; NaN when there are no triplets.
    pub accuracy: f64,
}

/// Odd-one-out accuracy of `features` (one row per concept) on `triplets` under `distance`.
///
/// # Errors
/// [`AlignmentError::RowMismatch`] if `features` does not have one row per concept.
pub fn odd_one_out<T: Copy + Into<f64>>(
    features: &Matrix<'_, T>,
    triplets: &Triplets,
    distance: Distance,
) -> Result<OddOneOut, AlignmentError> {
    features.check_rows(triplets.n_concepts())?;
    Ok(evaluate(features, triplets.rows(), distance))
}

/// [`odd_one_out`] on a list of already-validated triplets.
pub(crate) fn evaluate<T: Copy + Into<f64>>(
    features: &Matrix<'_, T>,
    triplets: &[[usize; 3]],
    distance: Distance,
) -> OddOneOut {
    let norms: Vec<f64> = match distance {
        Distance::Cosine => {
            (0..features.rows()).map(|i| dot(features.row(i), features.row(i)).sqrt()).collect()
        }
        _ => Vec::new(),
    };
    let pair = |a: usize, b: usize| -> f64 {
        let (x, y) = (features.row(a), features.row(b));
        match distance {
            Distance::Cosine if norms[a] == 0.0 || norms[b] == 0.0 => 1.0,
            Distance::Cosine => 1.0 - dot(x, y) / (norms[a] * norms[b]),
            Distance::Euclidean => squared_distance(x, y),
            Distance::NegDot => -dot(x, y),
            Distance::L1 | Distance::LInf | Distance::Correlation => {
                crate::semantic::pair_distance(x, y, distance)
            }
        }
    };
    let predictions: Vec<Option<u8>> =
        triplets.iter().map(|&[i, j, k]| predict([pair(i, j), pair(i, k), pair(j, k)])).collect();
    let correct = predictions.iter().filter(|&&p| p == Some(2)).count();
    OddOneOut { correct, accuracy: correct as f64 / triplets.len() as f64, predictions }
}

/// The odd one out from the distances of the pairs (0,1), (0,2), (1,2): the field outside the
/// unique closest pair, or `None` when the smallest distance is shared (or a distance is NaN).
pub fn predict(distances: [f64; 3]) -> Option<u8> {
    if distances.iter().any(|d| d.is_nan()) {
        return None;
    }
    let min = distances.iter().copied().fold(f64::INFINITY, f64::min);
    let mut closest = distances.iter().enumerate().filter(|(_, &d)| d == min).map(|(p, _)| p);
    let pair = closest.next()?;
    if closest.next().is_some() {
        return None;
    }
    // Pair (0,1) leaves 2 out, (0,2) leaves 1, (1,2) leaves 0.
    Some(2 - pair as u8)
}

fn dot<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x.into() * y.into()).sum()
}

fn squared_distance<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x.into() - y.into();
            d * d
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accuracy(values: &[f64], d: usize, rows: Vec<[usize; 3]>, distance: Distance) -> OddOneOut {
        let f = Matrix::new("features", values, values.len() / d, d).unwrap();
        let t = Triplets::new(rows, f.rows()).unwrap();
        odd_one_out(&f, &t, distance).unwrap()
    }

    #[test]
    fn predict_leaves_out_the_element_outside_the_closest_pair() {
        assert_eq!(predict([0.1, 0.5, 0.9]), Some(2));
        assert_eq!(predict([0.5, 0.1, 0.9]), Some(1));
        assert_eq!(predict([0.5, 0.9, 0.1]), Some(0));
        assert_eq!(predict([0.3, 0.3, 0.3]), None, "all equal");
        assert_eq!(predict([0.3, 0.3, 0.9]), None, "two tied for closest");
        assert_eq!(predict([0.1, 0.3, 0.3]), Some(2), "a tie among the far pairs is harmless");
        assert_eq!(predict([f64::NAN, 0.3, 0.9]), None);
    }

    #[test]
    fn known_answers_for_each_distance() {
        // Rows: 0 = (1, 0), 1 = (2, 0.2), 2 = (0, 1), 3 = (10, 0), 4 = (-1, 0).
        let f = [1.0, 0.0, 2.0, 0.2, 0.0, 1.0, 10.0, 0.0, -1.0, 0.0];
        let rows = vec![[0, 1, 2], [0, 2, 1], [0, 3, 1], [0, 4, 2]];
        // Cosine: 0, 1 and 3 point almost or exactly the same way, 2 is orthogonal, 4 opposite.
        let cos = accuracy(&f, 2, rows.clone(), Distance::Cosine);
        assert_eq!(cos.predictions, vec![Some(2), Some(1), Some(2), None]);
        assert_eq!((cos.correct, cos.accuracy), (2, 0.5));
        // Euclidean: 3 is far from both 0 and 1; in the last triplet 2 is √2 from 0 and from 4.
        let euc = accuracy(&f, 2, rows.clone(), Distance::Euclidean);
        assert_eq!(euc.predictions, vec![Some(2), Some(1), Some(1), None]);
        assert_eq!((euc.correct, euc.accuracy), (1, 0.25));
        // Dot: the largest product (3·1 = 20) is the closest pair; 0·2 = 4·2 = 0 tie.
        let neg = accuracy(&f, 2, rows, Distance::NegDot);
        assert_eq!(neg.predictions, vec![Some(2), Some(1), Some(0), None]);
        assert_eq!((neg.correct, neg.accuracy), (1, 0.25));
    }

    #[test]
    fn ties_count_as_wrong() {
        // Orthonormal rows: every cosine and dot is 0 and every distance √2.
        let f = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        for distance in Distance::ALL {
            let r = accuracy(&f, 3, vec![[0, 1, 2], [2, 0, 1]], distance);
            assert_eq!(r.predictions, vec![None, None], "{distance}");
            assert_eq!(r.accuracy, 0.0);
        }
        // A zero row has cosine 0 with everything: rows 0 and 1 are both zero.
        let z = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0];
        assert_eq!(accuracy(&z, 2, vec![[0, 1, 2]], Distance::Cosine).predictions, vec![None]);
    }

    #[test]
    fn distance_names_round_trip() {
        for d in Distance::ALL.into_iter().chain(Distance::SEMANTIC) {
            assert_eq!(d.name().parse::<Distance>(), Ok(d));
        }
        assert!("manhattan".parse::<Distance>().is_err());
    }
}
