//! The layer ablation: each tap alone, then greedy forward selection of concatenated taps.
//!
//! Every tap's columns are z-scored over the items (population standard deviation; a constant
//! column becomes 0) before concatenation, so that no tap dominates by its scale alone. The path
//! starts from the best z-scored single tap and adds, at each step, the tap whose concatenation
//! scores highest (ties: the lower tap index), until all taps are in; the best step is the first
//! with the path's highest score (the smallest set reaching it).

use crate::error::AlignmentError;
use crate::matrix::Matrix;
use crate::odd_one_out::Distance;

use super::distance::Distances;
use super::items::Items;

/// One step of the forward selection.
#[derive(Debug, Clone, PartialEq)]
pub struct AblationStep {
    /// The taps concatenated, in the order they were added.
    pub taps: Vec<usize>,
    /// Their score.
    pub score: f64,
}

/// The outcome of [`ablation`].
#[derive(Debug, Clone, PartialEq)]
pub struct Ablation {
    /// The score of each tap alone, on its raw (not z-scored) descriptors.
    pub singles: Vec<f64>,
    /// The forward-selection path, one step per added tap.
    pub path: Vec<AblationStep>,
    /// Index into `path` of the best step.
    pub best: usize,
}

/// The ablation over `taps` (descriptor sets of the same items, any widths), each set scored by
/// `score` on its distances under `distance` (e.g. the value of 1-NN accuracy), held whole up to
/// `max_bytes` ([`Distances::new`]).
///
/// # Errors
/// [`AlignmentError::LabelCount`] if a tap does not have one row per item,
/// [`AlignmentError::Config`] without taps, and any error of `score`.
pub fn ablation<T: Copy + Into<f64>>(
    taps: &[Matrix<'_, T>],
    items: &Items<'_>,
    distance: Distance,
    max_bytes: usize,
    score: &dyn Fn(&Distances, &Items<'_>) -> Result<f64, AlignmentError>,
) -> Result<Ablation, AlignmentError> {
    if taps.is_empty() {
        return Err(AlignmentError::Config { setting: "taps", problem: "none given".into() });
    }
    for tap in taps {
        items.check(tap.rows())?;
    }
    let singles = taps
        .iter()
        .map(|tap| score(&Distances::new(tap, distance, max_bytes), items))
        .collect::<Result<Vec<_>, _>>()?;
    let z: Vec<Vec<f64>> = taps.iter().map(zscore).collect();
    let n = items.len();
    let mut chosen: Vec<usize> = Vec::new();
    let mut path = Vec::new();
    while chosen.len() < taps.len() {
        let mut best: Option<(usize, f64)> = None;
        for t in (0..taps.len()).filter(|t| !chosen.contains(t)) {
            let set: Vec<usize> = chosen.iter().copied().chain([t]).collect();
            let values = concatenate(&z, taps, &set, n);
            let m = Matrix::new("concatenation", &values, n, values.len() / n)?;
            let s = score(&Distances::new(&m, distance, max_bytes), items)?;
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((t, s));
            }
        }
        let Some((t, s)) = best else { break };
        chosen.push(t);
        path.push(AblationStep { taps: chosen.clone(), score: s });
    }
    let top = path.iter().map(|p| p.score).fold(f64::NEG_INFINITY, f64::max);
    let best = path.iter().position(|p| p.score == top).unwrap_or(0);
    Ok(Ablation { singles, path, best })
}

/// The columns of `m` z-scored over its rows, row-major.
pub(crate) fn zscore<T: Copy + Into<f64>>(m: &Matrix<'_, T>) -> Vec<f64> {
    let (rows, cols) = (m.rows(), m.cols());
    let mut out: Vec<f64> = m.values().iter().map(|&v| v.into()).collect();
    for c in 0..cols {
        let mean = (0..rows).map(|r| out[r * cols + c]).sum::<f64>() / rows as f64;
        let var = (0..rows).map(|r| (out[r * cols + c] - mean).powi(2)).sum::<f64>() / rows as f64;
        let sd = var.sqrt();
        for r in 0..rows {
            let v = &mut out[r * cols + c];
            *v = if sd > 0.0 { (*v - mean) / sd } else { 0.0 };
        }
    }
    out
}

/// The z-scored taps of `set`, side by side, row-major.
fn concatenate<T: Copy + Into<f64>>(
    z: &[Vec<f64>],
    taps: &[Matrix<'_, T>],
    set: &[usize],
    n: usize,
) -> Vec<f64> {
    let width: usize = set.iter().map(|&t| taps[t].cols()).sum();
    let mut values = Vec::with_capacity(n * width);
    for r in 0..n {
        for &t in set {
            let c = taps[t].cols();
            values.extend_from_slice(&z[t][r * c..(r + 1) * c]);
        }
    }
    values
}
