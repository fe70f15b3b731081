//! The prompt-directions part of the report (`[analysis.directions]`, `[analysis.clusters]`,
//! science-2.md §H): the committed rows in plan order, written as `report/directions.parquet`
//! and `report/clusters.parquet`, and per (representation, axis) the sign test of the queries'
//! β with its verdict, the one interpretive sentence of this part.
//!
//! **Verdict:** an axis *leans* toward its `axis+` pole when the exact two-sided sign test over
//! the queries' β has p < [`SIGNIFICANCE`] and most non-zero β are positive (toward `axis-` when
//! most are negative); otherwise no lean is detected. The sign test asks whether the queries
//! as a set fall on one side; one query's own CI says whether that query does.

use alignment::directions::sign_test;
use common::table::{direction_analysis, ClusterRow, DirectionsRow};

use super::SIGNIFICANCE;

/// The directions part of the model.
#[derive(Debug, Clone)]
pub(crate) struct Directions {
    /// Every bias and ranking row, in plan order.
    pub(crate) rows: Vec<DirectionsRow>,
    /// Every clustering, in plan order.
    pub(crate) clusters: Vec<ClusterRow>,
    /// Per (representation, axis), in row order.
    pub(crate) axes: Vec<AxisVerdict>,
}

/// The queries' β along one axis of one representation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AxisVerdict {
    pub(crate) representation: String,
    pub(crate) axis: String,
    pub(crate) queries: usize,
    pub(crate) mean_beta: f64,
    /// Queries with β > 0, and with β ≠ 0.
    pub(crate) positive: usize,
    pub(crate) nonzero: usize,
    pub(crate) p_value: f64,
    pub(crate) lean: Lean,
    /// Pearson r and Spearman ρ of β with the queries' reference rates, over the queries that
    /// have one (at least 3), and how many.
    pub(crate) reference: Option<Reference>,
}

/// β against the contrasts file's reference rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reference {
    pub(crate) queries: usize,
    pub(crate) pearson: f64,
    pub(crate) spearman: f64,
}

/// Which way the queries of an axis lean, if they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lean {
    /// The sign test detects no lean.
    None,
    /// Toward the `axis+` prompt.
    Positive,
    /// Toward the `axis-` prompt.
    Negative,
}

/// The model part from the committed rows (plan order).
pub(crate) fn reduce(rows: Vec<DirectionsRow>, clusters: Vec<ClusterRow>) -> Directions {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in rows.iter().filter(|r| r.analysis == direction_analysis::BIAS) {
        if !keys.contains(&(r.representation.as_str(), r.reference.as_str())) {
            keys.push((&r.representation, &r.reference));
        }
    }
    let axes = keys
        .iter()
        .map(|&(rep, axis)| {
            let of_axis: Vec<&DirectionsRow> = rows
                .iter()
                .filter(|r| r.analysis == direction_analysis::BIAS)
                .filter(|r| r.representation == rep && r.reference == axis)
                .collect();
            let betas: Vec<f64> = of_axis.iter().map(|r| r.value).collect();
            let rated: Vec<(f64, f64)> = of_axis
                .iter()
                .filter(|r| r.reference_rate.is_finite())
                .map(|r| (r.value, r.reference_rate))
                .collect();
            AxisVerdict { reference: reference(&rated), ..verdict(rep, axis, &betas) }
        })
        .collect();
    Directions { rows, clusters, axes }
}

/// The sign test of `betas` and its verdict (module doc).
pub(crate) fn verdict(representation: &str, axis: &str, betas: &[f64]) -> AxisVerdict {
    let t = sign_test(betas);
    let lean = match (t.p_value < SIGNIFICANCE, 2 * t.positive > t.nonzero) {
        (false, _) => Lean::None,
        (true, true) => Lean::Positive,
        (true, false) => Lean::Negative,
    };
    AxisVerdict {
        representation: representation.into(),
        axis: axis.into(),
        queries: betas.len(),
        mean_beta: betas.iter().sum::<f64>() / betas.len().max(1) as f64,
        positive: t.positive,
        nonzero: t.nonzero,
        p_value: t.p_value,
        lean,
        reference: None,
    }
}

/// Pearson r and Spearman ρ (Pearson of average ranks) of (β, rate) pairs; `None` under 3.
pub(crate) fn reference(pairs: &[(f64, f64)]) -> Option<Reference> {
    if pairs.len() < 3 {
        return None;
    }
    let (betas, rates): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
    Some(Reference {
        queries: pairs.len(),
        pearson: probe::pearson(&betas, &rates),
        spearman: probe::pearson(&ranks(&betas), &ranks(&rates)),
    })
}

/// 1-based ranks, ties given their average rank (as scipy's `rankdata`).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

impl AxisVerdict {
    /// The verdict as one sentence.
    pub(crate) fn sentence(&self) -> String {
        let counts = format!(
            "{} of {} non-zero β positive, sign test p = {:.3}",
            self.positive, self.nonzero, self.p_value
        );
        match self.lean {
            Lean::None => format!("no lean detected ({counts})"),
            Lean::Positive => format!("the queries lean toward the axis+ pole ({counts})"),
            Lean::Negative => format!("the queries lean toward the axis- pole ({counts})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict holds where it must and not where it must not: 10 of 10 positive β lean
    /// positive (p = 2⁻⁹), 10 of 10 negative lean negative, 6 of 10 positive (p ≈ 0.75) and
    /// 9 of 10 positive (p ≈ 0.021) at the edge, zeros not counted.
    #[test]
    fn lean_is_claimed_only_when_the_sign_test_rejects() {
        let lean = |betas: &[f64]| verdict("r", "a", betas).lean;
        let pos = [0.1; 10];
        let neg = [-0.2; 10];
        assert_eq!(lean(&pos), Lean::Positive);
        assert_eq!(lean(&neg), Lean::Negative);
        let six: Vec<f64> = (0..10).map(|i| if i < 6 { 0.3 } else { -0.3 }).collect();
        assert_eq!(lean(&six), Lean::None);
        let nine: Vec<f64> = (0..10).map(|i| if i < 9 { 0.3 } else { -0.3 }).collect();
        let v = verdict("r", "a", &nine);
        assert!((v.p_value - 22.0 / 1024.0).abs() < 1e-12, "{}", v.p_value);
        assert_eq!(v.lean, Lean::Positive);
        let with_zeros: Vec<f64> = [0.0; 20].iter().chain(&[0.1; 5]).copied().collect();
        let v = verdict("r", "a", &with_zeros);
        assert_eq!((v.positive, v.nonzero, v.lean), (5, 5, Lean::None), "p = 2⁻⁴ ≥ 0.05");
        assert!(v.sentence().starts_with("no lean detected (5 of 5"), "{}", v.sentence());
    }

    /// Spearman ρ is Pearson's r of average ranks: a monotone but non-linear relation gives
    /// ρ = 1 and r < 1; ties share their rank; fewer than 3 rated queries give none.
    #[test]
    fn reference_correlations() {
        let pairs: Vec<(f64, f64)> = (1..=6).map(|i| (i as f64, (i as f64).powi(3))).collect();
        let r = reference(&pairs).unwrap();
        assert!((r.spearman - 1.0).abs() < 1e-12 && r.pearson < 0.99, "{r:?}");
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert!(reference(&pairs[..2]).is_none());
        let flipped: Vec<(f64, f64)> = pairs.iter().map(|&(b, r)| (-b, r)).collect();
        assert!((reference(&flipped).unwrap().spearman + 1.0).abs() < 1e-12);
    }

    /// Axes are kept apart by representation and axis, in row order.
    #[test]
    fn one_verdict_per_representation_and_axis() {
        let row = |rep: &str, axis: &str, v: f64| DirectionsRow {
            representation: rep.into(),
            analysis: direction_analysis::BIAS.into(),
            reference: axis.into(),
            prompt: "q".into(),
            category: String::new(),
            rank: 0,
            value: v,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            projection: v,
            projection_ci_low: f64::NAN,
            projection_ci_high: f64::NAN,
            reference_rate: f64::NAN,
            replicates: 2,
        };
        let mut rows = Vec::new();
        for i in 0..8 {
            rows.push(row("k1", "gender", 0.5));
            rows.push(row("k1", "age", if i % 2 == 0 { 0.5 } else { -0.5 }));
            rows.push(row("k3", "gender", -0.5));
        }
        let d = reduce(rows, Vec::new());
        let got: Vec<(&str, &str, Lean)> =
            d.axes.iter().map(|a| (a.representation.as_str(), a.axis.as_str(), a.lean)).collect();
        assert_eq!(
            got,
            [
                ("k1", "gender", Lean::Positive),
                ("k1", "age", Lean::None),
                ("k3", "gender", Lean::Negative)
            ]
        );
    }
}
