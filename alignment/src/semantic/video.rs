//! Consistency of an object across video frames (science-2.md §L, DAVIS in seed 003): each
//! object may sit on a [`Track`] (its instance, video and frame).
//!
//! - **Drift by frame gap** Δτ: the mean distance between the two descriptors of one instance
//!   in frames exactly Δτ apart, over the mean inter-class distance of the whole set (as
//!   [`super::drift`]); 0 for an unchanged descriptor, **chance** 1. One value per gap with its
//!   number of pairs; a gap without pairs is left out.
//! - **Instance re-identification top-1**: each tracked object against the objects of the same
//!   video in *other frames*; a hit when the nearest (ties to the lower index) is the same
//!   instance. **Chance**: the mean, over the objects scored, of the share of their candidates
//!   that are the same instance. Objects without a candidate, or without a same-instance one,
//!   are not scored.

use crate::error::AlignmentError;

use super::distance::DistanceRows;
use super::score::{weighted_mean, with_bootstrap, Score, SemanticConfig, Which};
use super::scores::not_scorable;

/// Where an object sits in a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Track {
    /// The object across frames (an index shared by its descriptors in every frame).
    pub instance: usize,
    /// The video (an index).
    pub video: usize,
    /// The frame number.
    pub frame: i64,
}

/// The drift of one frame gap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GapDrift {
    /// Δτ in frames.
    pub gap: i64,
    /// Mean distance of same-instance pairs Δτ apart over the mean inter-class distance.
    pub value: f64,
    /// Pairs averaged.
    pub pairs: usize,
}

/// Drift of same-instance pairs per frame gap (module doc); `inter_class` is
/// [`super::mean_inter_class_distance`] of the set under the same distance.
///
/// # Errors
/// [`AlignmentError::LabelCount`] unless there is one track entry per row of `dm`.
pub fn drift_by_gap<R: DistanceRows + ?Sized>(
    dm: &R,
    tracks: &[Option<Track>],
    gaps: &[i64],
    inter_class: f64,
) -> Result<Vec<GapDrift>, AlignmentError> {
    check(dm, tracks)?;
    // Per gap: the sum of same-instance distances and their pairs.
    let mut totals = vec![(0.0, 0usize); gaps.len()];
    dm.for_each_row(&mut |i, row| {
        let Some(a) = tracks[i] else { return };
        for (j, b) in tracks.iter().enumerate().skip(i + 1) {
            let Some(b) = b else { continue };
            if a.video == b.video && a.instance == b.instance {
                let gap = (a.frame - b.frame).abs();
                for (t, _) in totals.iter_mut().zip(gaps).filter(|(_, &g)| g == gap) {
                    t.0 += row[j];
                    t.1 += 1;
                }
            }
        }
    });
    Ok(gaps
        .iter()
        .zip(totals)
        .filter(|(_, (_, pairs))| *pairs > 0)
        .map(|(&gap, (sum, pairs))| GapDrift {
            gap,
            value: sum / pairs as f64 / inter_class,
            pairs,
        })
        .collect())
}

/// Instance re-identification top-1 across frames (module doc), with its chance and CI.
///
/// # Errors
/// [`AlignmentError::LabelCount`] on a length mismatch, [`AlignmentError::NotScorable`] if no
/// object has a same-instance candidate in another frame.
pub fn reidentification<R: DistanceRows + ?Sized>(
    dm: &R,
    tracks: &[Option<Track>],
    config: &SemanticConfig,
) -> Result<Score, AlignmentError> {
    check(dm, tracks)?;
    let (mut hits, mut chances) = (Vec::new(), Vec::new());
    dm.for_each_row(&mut |i, row| {
        let Some(a) = tracks[i] else { return };
        let candidates: Vec<usize> = (0..tracks.len())
            .filter(|&j| tracks[j].is_some_and(|b| b.video == a.video && b.frame != a.frame))
            .collect();
        let same = |j: usize| tracks[j].is_some_and(|b| b.instance == a.instance);
        let matching = candidates.iter().filter(|&&j| same(j)).count();
        if matching == 0 {
            return;
        }
        // The first strict minimum: ties go to the lower index.
        let nearest = candidates.iter().copied().fold(None, |best: Option<usize>, j| match best {
            Some(b) if row[b] <= row[j] => Some(b),
            _ => Some(j),
        });
        hits.push(f64::from(u8::from(nearest.is_some_and(same))));
        chances.push(matching as f64 / candidates.len() as f64);
    });
    if hits.is_empty() {
        return Err(not_scorable(
            "re-identification",
            "no tracked object has its instance in another frame of its video",
        ));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (value, chance) = (mean(&hits), mean(&chances));
    let which = Which::Reidentification.index(0);
    Ok(with_bootstrap(value, chance, hits.len(), config, which, |w| weighted_mean(&hits, w)))
}

fn check<R: DistanceRows + ?Sized>(dm: &R, tracks: &[Option<Track>]) -> Result<(), AlignmentError> {
    if tracks.len() == dm.len() {
        Ok(())
    } else {
        Err(AlignmentError::LabelCount { what: "tracks", got: tracks.len(), rows: dm.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::Matrix;
    use crate::odd_one_out::Distance;
    use crate::semantic::DistanceMatrix;

    /// Two instances in one video over four frames, drifting linearly; an untracked object.
    /// Drift grows with the gap exactly as planted, re-identification is perfect while the
    /// instances stay apart, and a shuffled instance labelling falls to chance.
    #[test]
    fn drift_grows_with_the_gap_and_instances_are_reidentified() {
        let mut rows = Vec::new();
        let mut tracks = Vec::new();
        for frame in 0..4 {
            for (instance, base) in [(0, 0.0), (1, 100.0)] {
                rows.extend([base + frame as f64, 0.0]);
                tracks.push(Some(Track { instance, video: 0, frame }));
            }
        }
        rows.extend([50.0, 50.0]);
        tracks.push(None);
        let m = Matrix::new("f", &rows, 9, 2).unwrap();
        let dm = DistanceMatrix::new(&m, Distance::Euclidean);
        let d = drift_by_gap(&dm, &tracks, &[1, 2, 3, 9], 10.0).unwrap();
        let got: Vec<(i64, f64, usize)> = d.iter().map(|g| (g.gap, g.value, g.pairs)).collect();
        assert_eq!(got, [(1, 0.1, 6), (2, 0.2, 4), (3, 0.3, 2)]);
        let config = SemanticConfig { bootstrap: 0, permutations: 0, seed: 0 };
        let r = reidentification(&dm, &tracks, &config).unwrap();
        assert_eq!((r.value, r.n), (1.0, 8));
        assert!((r.chance - 0.5).abs() < 1e-12);
        // Instance labels that do not follow the descriptors: hits at chance.
        let swapped: Vec<Option<Track>> = tracks
            .iter()
            .map(|t| t.map(|t| Track { instance: (t.instance + t.frame as usize) % 2, ..t }))
            .collect();
        let r = reidentification(&dm, &swapped, &config).unwrap();
        assert!(r.value < 0.5, "{r:?}");
        assert!(reidentification(&dm, &[None; 9], &config).is_err());
    }
}
