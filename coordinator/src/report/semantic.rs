//! The semantic-lens part of the report (`[analysis.semantic]`, science-2.md §L): the committed
//! rows in plan order (`report/semantic.parquet`) and, per distance, the representation that
//! keeps class semantics best by leave-one-out 1-NN accuracy, with the one interpretive sentence
//! of this part.
//!
//! **Verdict:** the best representation is *above chance* when the lower bound of its 95 %
//! bootstrap CI exceeds its chance level; otherwise the report says no representation is shown
//! to beat chance under that distance (without a bootstrap no claim is made). Only
//! untransformed representations before any denoising step compete: a transformed one is a
//! condition, reported in the invariance table (drift and cross-retrieval against its
//! untransformed twin), and so is one after DDIM steps (the steps table).

use common::table::SemanticRow;
use common::unit::Representation;

/// The score the best representation is chosen by.
pub(crate) const PRIMARY: &str = "knn1";

/// The semantic part of the model.
#[derive(Debug, Clone)]
pub(crate) struct Semantic {
    /// Every row, in plan order.
    pub(crate) rows: Vec<SemanticRow>,
    /// Per distance, in order of first appearance: the best row by [`PRIMARY`].
    pub(crate) best: Vec<Best>,
    /// The transforms of the run, in order of first appearance (empty without transforms).
    pub(crate) transforms: Vec<String>,
}

/// The transform part of a representation key (`rot90` of `…/t:rot90`), if any.
pub(crate) fn transform_of(key: &str) -> Option<String> {
    key.parse::<Representation>().ok()?.transform.map(|t| t.to_string())
}

/// Whether a representation is a condition of another (a transform, or denoising steps
/// taken): conditions never compete for the best representation.
pub(crate) fn is_condition(key: &str) -> bool {
    key.parse::<Representation>()
        .is_ok_and(|r| r.transform.is_some() || r.denoised.is_some_and(|d| d > 0))
}

/// The untransformed twin's key of a representation key.
pub(crate) fn untransformed(key: &str) -> String {
    match key.parse::<Representation>() {
        Ok(r) => Representation { transform: None, ..r }.key(),
        Err(_) => key.to_string(),
    }
}

/// The best representation under one distance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Best {
    pub(crate) distance: String,
    /// Index into `rows` of the best [`PRIMARY`] row.
    pub(crate) row: usize,
    pub(crate) verdict: Verdict,
}

/// Whether the best representation beats chance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its CI's lower bound is above chance.
    AboveChance,
    /// Its CI reaches chance.
    NotShown,
    /// No CI (no bootstrap): no claim.
    NoCi,
}

/// The model part from the committed rows (plan order).
pub(crate) fn reduce(rows: Vec<SemanticRow>) -> Semantic {
    let mut distances: Vec<&str> = Vec::new();
    for r in &rows {
        if !distances.contains(&r.distance.as_str()) {
            distances.push(&r.distance);
        }
    }
    let best = distances
        .iter()
        .filter_map(|&d| {
            let row = (0..rows.len())
                .filter(|&i| rows[i].distance == d && rows[i].score == PRIMARY)
                .filter(|&i| !is_condition(&rows[i].representation))
                .filter(|&i| rows[i].value.is_finite())
                .max_by(|&a, &b| rows[a].value.total_cmp(&rows[b].value))?;
            let r = &rows[row];
            let verdict = match (r.ci_low.is_finite(), r.ci_low > r.chance) {
                (false, _) => Verdict::NoCi,
                (true, true) => Verdict::AboveChance,
                (true, false) => Verdict::NotShown,
            };
            Some(Best { distance: d.to_string(), row, verdict })
        })
        .collect();
    let mut transforms: Vec<String> = Vec::new();
    for t in rows.iter().filter_map(|r| transform_of(&r.representation)) {
        if !transforms.contains(&t) {
            transforms.push(t);
        }
    }
    Semantic { rows, best, transforms }
}

/// A family of curves: the x labels and, per representation, one value per x.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Curves {
    pub(crate) xs: Vec<String>,
    pub(crate) series: Vec<(String, Vec<Option<f64>>)>,
}

impl Semantic {
    /// 1-NN accuracy under `distance` against the DDIM steps taken (`…/d<k>`), one series per
    /// representation without its step; `None` without steps.
    pub(crate) fn step_curves(&self, distance: &str) -> Option<Curves> {
        let of = |r: &&SemanticRow| r.score == PRIMARY && r.distance == distance;
        let points: Vec<(String, u32, f64)> = self
            .rows
            .iter()
            .filter(of)
            .filter_map(|r| {
                let rep = r.representation.parse::<Representation>().ok()?;
                let k = rep.denoised?;
                Some((Representation { denoised: None, ..rep }.key(), k, r.value))
            })
            .collect();
        let mut steps: Vec<u32> = points.iter().map(|p| p.1).collect();
        steps.sort_unstable();
        steps.dedup();
        let xs = steps.iter().map(u32::to_string).collect();
        curves(xs, &points, |p, x| steps[x] == p.1)
    }

    /// Drift under `distance` against the frame gap (`video_drift_gap<Δτ>`), one series per
    /// representation; `None` without video rows.
    pub(crate) fn gap_curves(&self, distance: &str) -> Option<Curves> {
        let points: Vec<(String, i64, f64)> = self
            .rows
            .iter()
            .filter(|r| r.distance == distance)
            .filter_map(|r| {
                let gap = r.score.strip_prefix("video_drift_gap")?.parse().ok()?;
                Some((r.representation.clone(), gap, r.value))
            })
            .collect();
        let mut gaps: Vec<i64> = points.iter().map(|p| p.1).collect();
        gaps.sort_unstable();
        gaps.dedup();
        let xs = gaps.iter().map(i64::to_string).collect();
        curves(xs, &points, |p, x| gaps[x] == p.1)
    }
}

/// Curves from (series, x, value) points, series in order of first appearance.
fn curves<X>(
    xs: Vec<String>,
    points: &[(String, X, f64)],
    at: impl Fn(&(String, X, f64), usize) -> bool,
) -> Option<Curves> {
    if points.is_empty() {
        return None;
    }
    let mut names: Vec<&str> = Vec::new();
    for p in points {
        if !names.contains(&p.0.as_str()) {
            names.push(&p.0);
        }
    }
    let series = names
        .iter()
        .map(|&n| {
            let values = (0..xs.len())
                .map(|x| points.iter().find(|p| p.0 == n && at(p, x)).map(|p| p.2))
                .collect();
            (n.to_string(), values)
        })
        .collect();
    Some(Curves { xs, series })
}

impl Best {
    /// The verdict as one sentence about `row`.
    pub(crate) fn sentence(&self, row: &SemanticRow) -> String {
        let numbers = format!(
            "1-NN accuracy {:.3}, 95 % CI [{:.3}, {:.3}], chance {:.3}",
            row.value, row.ci_low, row.ci_high, row.chance
        );
        match self.verdict {
            Verdict::AboveChance => format!(
                "under {}, `{}` keeps class semantics best, above chance ({numbers})",
                self.distance, row.representation
            ),
            Verdict::NotShown => format!(
                "under {}, no representation is shown to beat chance: the best, `{}`, has its CI \
                 reaching chance ({numbers})",
                self.distance, row.representation
            ),
            Verdict::NoCi => format!(
                "under {}, the highest 1-NN accuracy is `{}`'s ({:.3}, chance {:.3}); without a \
                 bootstrap no claim is made",
                self.distance, row.representation, row.value, row.chance
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rep: &str, distance: &str, value: f64, ci: (f64, f64), chance: f64) -> SemanticRow {
        SemanticRow {
            representation: rep.into(),
            distance: distance.into(),
            score: PRIMARY.into(),
            value,
            chance,
            se: 0.01,
            ci_low: ci.0,
            ci_high: ci.1,
            n: 50,
        }
    }

    /// "Above chance" is claimed only when the best CI clears chance; a best whose CI reaches
    /// chance is reported as not shown; without a CI no claim is made; other scores never
    /// compete for best.
    #[test]
    fn above_chance_is_claimed_only_when_the_ci_clears_it() {
        let mut other = row("a", "cosine", 0.99, (0.9, 1.0), 0.5);
        other.score = "auc".into();
        let rows = vec![
            row("a", "cosine", 0.62, (0.55, 0.7), 0.5),
            row("b", "cosine", 0.8, (0.72, 0.88), 0.5),
            other,
            row("a", "l1", 0.58, (0.49, 0.66), 0.5),
            row("b", "l1", 0.52, (0.45, 0.6), 0.5),
            row("a", "linf", 0.7, (f64::NAN, f64::NAN), 0.5),
        ];
        let s = reduce(rows);
        let got: Vec<(&str, &str, Verdict)> = s
            .best
            .iter()
            .map(|b| (b.distance.as_str(), s.rows[b.row].representation.as_str(), b.verdict))
            .collect();
        assert_eq!(
            got,
            [
                ("cosine", "b", Verdict::AboveChance),
                ("l1", "a", Verdict::NotShown),
                ("linf", "a", Verdict::NoCi)
            ]
        );
        assert!(s.best[1].sentence(&s.rows[s.best[1].row]).contains("no representation is shown"));
        assert!(s.transforms.is_empty());
    }

    /// A transformed representation never wins, even when it scores higher: it is a condition.
    #[test]
    fn transformed_representations_are_conditions_not_candidates() {
        let rows = vec![
            row("a/mask_mean/n20/empty", "cosine", 0.6, (0.55, 0.7), 0.5),
            row("a/mask_mean/n20/empty/t:rot90", "cosine", 0.9, (0.85, 0.95), 0.5),
        ];
        let s = reduce(rows);
        assert_eq!(s.rows[s.best[0].row].representation, "a/mask_mean/n20/empty");
        assert_eq!(s.transforms, ["rot90"]);
        assert_eq!(untransformed("a/mask_mean/n20/empty/t:rot90"), "a/mask_mean/n20/empty");
    }

    /// Curves: 1-NN against steps k in step order whatever the row order, drift against the
    /// frame gap per representation, a missing point left blank; other distances ignored.
    #[test]
    fn curves_follow_steps_and_frame_gaps_with_missing_points_blank() {
        let base: Representation = "a/mask_mean/n20/empty".parse().unwrap();
        let at = |k| Representation { denoised: Some(k), ..base.clone() }.key();
        let ci = (0.0, 1.0);
        let gap = |rep: &str, g: i64, v: f64| SemanticRow {
            score: format!("video_drift_gap{g}"),
            ..row(rep, "cosine", v, ci, 1.0)
        };
        let rows = vec![
            row(&at(0), "cosine", 0.8, ci, 0.5),
            row(&at(2), "cosine", 0.6, ci, 0.5),
            row(&at(1), "cosine", 0.7, ci, 0.5),
            row(&at(1), "l1", 0.1, ci, 0.5),
            gap("a/mask_mean/n20/empty", 1, 0.2),
            gap("a/mask_mean/n20/empty", 5, 0.5),
            gap("b/mask_mean/n20/empty", 1, 0.3),
        ];
        let s = reduce(rows);
        let steps = s.step_curves("cosine").unwrap();
        assert_eq!(steps.xs, ["0", "1", "2"]);
        assert_eq!(steps.series, [(base.key(), vec![Some(0.8), Some(0.7), Some(0.6)])]);
        let gaps = s.gap_curves("cosine").unwrap();
        assert_eq!(gaps.xs, ["1", "5"]);
        assert_eq!(
            gaps.series,
            [
                ("a/mask_mean/n20/empty".to_string(), vec![Some(0.2), Some(0.5)]),
                ("b/mask_mean/n20/empty".to_string(), vec![Some(0.3), None]),
            ]
        );
        assert!(s.gap_curves("l1").is_none());
    }
}
