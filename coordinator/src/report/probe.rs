//! The attribute probe's reduction: committed probe rows merged into one [`Cell`] per
//! (representation, attribute), Benjamini–Hochberg q-values, the per-group [`SummaryRow`]s and
//! both entanglement measures.
//!
//! Pearson r is computed within each fold and averaged (the arithmetic mean of the per-fold r):
//! pooled over folds, the out-of-fold predictions carry each fold's own intercept, which alone
//! correlates (negatively) with the ratings. For the same reason the entanglement measures
//! remove each fold's mean from predictions and ratings first.

use std::collections::BTreeMap;

use common::stimuli::Dataset;
use common::table::ProbeRow;

use super::SIGNIFICANCE;

/// Below this many effective degrees of freedom (`probe::effective_df`) the ridge penalty has
/// shrunk the probe to the training mean: its features vary little next to α, which says
/// nothing about whether they hold the attribute (z-scoring or a per-attribute α may recover
/// it), so the report flags the fit, not the representation.
pub(crate) const SHRUNK_DF: f64 = 1.0;

/// One merged (representation, attribute).
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    pub(crate) representation: String,
    pub(crate) attribute: String,
    pub(crate) group: Option<String>,
    pub(crate) rmse_fold: Vec<f64>,
    pub(crate) baseline_fold: Vec<f64>,
    pub(crate) p_fold: Vec<f64>,
    /// Pearson r of predictions and ratings within each fold (NaN where the fold's predictions
    /// are constant).
    pub(crate) r_fold: Vec<f64>,
    /// Effective degrees of freedom of each fold's fit.
    pub(crate) df_fold: Vec<f64>,
    pub(crate) n_components: u32,
    pub(crate) alpha_fold: Vec<f64>,
    /// Out-of-fold predictions for every stimulus (NaN where a fold is missing).
    pub(crate) predicted: Vec<f64>,
    /// The test fold of every stimulus (`None` where its fold is missing).
    pub(crate) fold_of: Vec<Option<u32>>,
    pub(crate) q: f64,
}

impl Cell {
    pub(crate) fn rmse(&self) -> f64 {
        mean(&self.rmse_fold)
    }
    pub(crate) fn rmse_se(&self) -> f64 {
        se(&self.rmse_fold)
    }
    pub(crate) fn baseline(&self) -> f64 {
        mean(&self.baseline_fold)
    }
    pub(crate) fn reduction(&self) -> f64 {
        1.0 - self.rmse() / self.baseline()
    }
    pub(crate) fn p_max(&self) -> f64 {
        self.p_fold.iter().copied().fold(0.0, f64::max)
    }
    pub(crate) fn significant(&self, folds: usize) -> bool {
        self.p_fold.len() == folds && self.p_fold.iter().all(|&p| p < SIGNIFICANCE)
    }
    /// The arithmetic mean of the per-fold r over the folds where it is defined; NaN if none.
    pub(crate) fn pearson_r(&self) -> f64 {
        mean_defined(&self.r_fold)
    }
    /// The mean over folds of the effective degrees of freedom.
    pub(crate) fn effective_df(&self) -> f64 {
        mean(&self.df_fold)
    }
}

/// One row of the summary.
#[derive(Debug, Clone)]
pub(crate) struct SummaryRow {
    pub(crate) representation: String,
    pub(crate) group: String,
    pub(crate) n_attributes: usize,
    pub(crate) mean_rmse: f64,
    pub(crate) se_rmse: f64,
    pub(crate) mean_reduction: f64,
    /// SE over attributes of the relative reduction (0 for one attribute).
    pub(crate) se_reduction: f64,
    /// Mean over attributes of each attribute's mean per-fold r (attributes with a defined r).
    pub(crate) mean_r: f64,
    pub(crate) pct_significant: f64,
    /// Attributes significant in all folds.
    pub(crate) n_significant: usize,
    /// Mean over attributes and folds of the fit's effective degrees of freedom.
    pub(crate) effective_df: f64,
    /// Entanglement (i): identification accuracy over the set's attribute pairs (chance 0.5),
    /// within folds; NaN when no pair is defined.
    pub(crate) identification: f64,
    /// Entanglement (ii): mean |off-diagonal corr| of predictions − of human ratings, within
    /// folds; NaN when no pair is defined.
    pub(crate) corr_delta: f64,
}

impl SummaryRow {
    /// Whether the fits are shrunk to the training mean at their α ([`SHRUNK_DF`]).
    pub(crate) fn shrunk(&self) -> bool {
        self.effective_df < SHRUNK_DF
    }
}

/// Human ratings by attribute name, for the entanglement measures.
pub(crate) struct Truth {
    pub(crate) n: usize,
    pub(crate) columns: BTreeMap<String, Vec<f64>>,
}

impl Truth {
    pub(crate) fn of(data: &Dataset) -> Truth {
        let j = data.attributes.len();
        let columns = data
            .attributes
            .iter()
            .enumerate()
            .map(|(a, name)| {
                (name.clone(), (0..data.len()).map(|i| data.targets[i * j + a]).collect())
            })
            .collect();
        Truth { n: data.len(), columns }
    }
}

/// The entanglement inputs of a set of attributes of one representation: predictions and
/// ratings (`rows × j`, row-major) and the test fold of each row, on the stimuli every attribute
/// has an out-of-fold prediction for, all in the same fold.
fn entanglement_inputs(set: &[&Cell], truth: &Truth) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    let rows: Vec<usize> = (0..truth.n)
        .filter(|&i| {
            set.iter().all(|c| c.predicted[i].is_finite() && c.fold_of[i] == set[0].fold_of[i])
        })
        .collect();
    let pred = rows.iter().flat_map(|&i| set.iter().map(move |c| c.predicted[i])).collect();
    let real = rows
        .iter()
        .flat_map(|&i| set.iter().map(move |c| truth.columns[&c.attribute][i]))
        .collect();
    let folds = rows.iter().map(|&i| set[0].fold_of[i].unwrap_or(0) as usize).collect();
    (pred, real, folds)
}

/// Both entanglement measures over a set of attributes of one representation, within folds.
fn entanglement(set: &[&Cell], truth: &Truth) -> (f64, f64) {
    let (pred, real, folds) = entanglement_inputs(set, truth);
    let (n, j) = (folds.len(), set.len());
    (
        probe::identification_accuracy(&pred, &real, n, j, &folds),
        probe::correlation_structure(&pred, &real, n, j, &folds).delta,
    )
}

/// The per-pair correlation table of one representation, within folds: (attribute a,
/// attribute b, human r, model r).
pub(crate) fn pair_table(set: &[&Cell], truth: &Truth) -> Vec<(String, String, f64, f64)> {
    let (pred, real, folds) = entanglement_inputs(set, truth);
    probe::correlation_structure(&pred, &real, folds.len(), set.len(), &folds)
        .pairs
        .into_iter()
        .map(|(a, b, h, m)| (set[a].attribute.clone(), set[b].attribute.clone(), h, m))
        .collect()
}

pub(crate) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The mean of the values that are not NaN; NaN if there are none.
pub(crate) fn mean_defined(v: &[f64]) -> f64 {
    let defined: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if defined.is_empty() {
        return f64::NAN;
    }
    mean(&defined)
}

/// Standard error of the mean: sample sd (ddof 1) / √n; 0 for a single value.
pub(crate) fn se(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64;
    (var / v.len() as f64).sqrt()
}

/// Merges the committed probe rows (in commit order, which is plan order) into cells.
pub(crate) fn merge(probe_rows: impl IntoIterator<Item = ProbeRow>, data: &Dataset) -> Vec<Cell> {
    let mut order: Vec<String> = Vec::new();
    let mut rows: BTreeMap<(usize, u32), Vec<ProbeRow>> = BTreeMap::new();
    for row in probe_rows {
        let idx = match order.iter().position(|r| r == &row.representation) {
            Some(i) => i,
            None => {
                order.push(row.representation.clone());
                order.len() - 1
            }
        };
        rows.entry((idx, row.attribute)).or_default().push(row);
    }
    let mut out = Vec::new();
    for ((rep, attr), mut fold_rows) in rows {
        fold_rows.sort_by_key(|r| r.fold);
        let mut predicted = vec![f64::NAN; data.len()];
        let mut fold_of = vec![None; data.len()];
        for r in &fold_rows {
            for (&i, &p) in r.test_indices.iter().zip(&r.predictions) {
                predicted[i as usize] = p;
                fold_of[i as usize] = Some(r.fold);
            }
        }
        out.push(Cell {
            representation: order[rep].clone(),
            attribute: data.attributes[attr as usize].clone(),
            group: data.groups[attr as usize].clone(),
            rmse_fold: fold_rows.iter().map(|r| r.rmse).collect(),
            baseline_fold: fold_rows.iter().map(|r| r.baseline_rmse).collect(),
            p_fold: fold_rows.iter().map(|r| r.p_value).collect(),
            r_fold: fold_rows.iter().map(|r| r.pearson_r).collect(),
            df_fold: fold_rows.iter().map(|r| r.effective_df).collect(),
            n_components: fold_rows.iter().map(|r| r.n_components).min().unwrap_or(0),
            alpha_fold: fold_rows.iter().map(|r| r.alpha).collect(),
            predicted,
            fold_of,
            q: f64::NAN,
        });
    }
    // BH across the attributes of each representation, on p_max.
    for rep in &order {
        let idx: Vec<usize> = (0..out.len()).filter(|&i| &out[i].representation == rep).collect();
        let p: Vec<f64> = idx.iter().map(|&i| out[i].p_max()).collect();
        for (&i, q) in idx.iter().zip(probe::bh_qvalues(&p)) {
            out[i].q = q;
        }
    }
    out
}

/// Per representation and group (`all` first, then named groups in name order).
pub(crate) fn summarise(cells: &[Cell], folds: usize, truth: &Truth) -> Vec<SummaryRow> {
    let mut reps: Vec<&str> = Vec::new();
    for c in cells {
        if !reps.contains(&c.representation.as_str()) {
            reps.push(&c.representation);
        }
    }
    let mut groups: Vec<String> = cells.iter().filter_map(|c| c.group.clone()).collect();
    groups.sort();
    groups.dedup();
    let mut out = Vec::new();
    for rep in reps {
        let mine: Vec<&Cell> = cells.iter().filter(|c| c.representation == rep).collect();
        let mut sets: Vec<(String, Vec<&Cell>)> = vec![("all".into(), mine.clone())];
        for g in &groups {
            sets.push((
                g.clone(),
                mine.iter().copied().filter(|c| c.group.as_ref() == Some(g)).collect(),
            ));
        }
        for (group, set) in sets {
            if set.is_empty() {
                continue;
            }
            let rmse: Vec<f64> = set.iter().map(|c| c.rmse()).collect();
            let reduction: Vec<f64> = set.iter().map(|c| c.reduction()).collect();
            let sig = set.iter().filter(|c| c.significant(folds)).count();
            let (identification, corr_delta) = entanglement(&set, truth);
            out.push(SummaryRow {
                representation: rep.to_string(),
                group,
                n_attributes: set.len(),
                mean_rmse: mean(&rmse),
                se_rmse: se(&rmse),
                mean_reduction: mean(&reduction),
                se_reduction: se(&reduction),
                mean_r: mean_defined(&set.iter().map(|c| c.pearson_r()).collect::<Vec<_>>()),
                pct_significant: 100.0 * sig as f64 / set.len() as f64,
                n_significant: sig,
                effective_df: mean(&set.iter().map(|c| c.effective_df()).collect::<Vec<_>>()),
                identification,
                corr_delta,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(rep: &str, attr: &str, group: &str, rmse: &[f64], p: &[f64]) -> Cell {
        Cell {
            representation: rep.into(),
            attribute: attr.into(),
            group: Some(group.into()),
            rmse_fold: rmse.to_vec(),
            baseline_fold: vec![1.0; rmse.len()],
            p_fold: p.to_vec(),
            r_fold: vec![0.5; rmse.len()],
            df_fold: vec![4.0; rmse.len()],
            n_components: 10,
            alpha_fold: vec![150.0; rmse.len()],
            predicted: vec![0.0, 1.0, 2.0, 3.0],
            fold_of: vec![Some(0), Some(1), Some(0), Some(1)],
            q: f64::NAN,
        }
    }

    fn truth(attrs: &[&str], n: usize, f: impl Fn(usize, usize) -> f64) -> Truth {
        let columns = attrs
            .iter()
            .enumerate()
            .map(|(a, name)| (name.to_string(), (0..n).map(|i| f(i, a)).collect()))
            .collect();
        Truth { n, columns }
    }

    #[test]
    fn all_folds_rule_and_group_summary() {
        let cells = vec![
            cell("text.1/cls", "a", "g1", &[0.5, 0.7], &[0.01, 0.02]),
            cell("text.1/cls", "b", "g1", &[0.9, 0.9], &[0.01, 0.2]),
            cell("text.1/cls", "c", "g2", &[0.4, 0.4], &[0.001, 0.001]),
        ];
        assert!(cells[0].significant(2) && !cells[1].significant(2));
        assert!(!cells[0].significant(3), "a missing fold is never significant");
        let s = summarise(&cells, 2, &truth(&["a", "b", "c"], 4, |i, _| i as f64));
        assert_eq!(s.iter().map(|r| r.group.as_str()).collect::<Vec<_>>(), ["all", "g1", "g2"]);
        assert!((s[0].pct_significant - 200.0 / 3.0).abs() < 1e-12);
        assert!((s[1].mean_rmse - 0.75).abs() < 1e-12);
        // SE over attributes: sd(0.6, 0.9) / sqrt(2) = 0.15, of the RMSE and of the reduction.
        assert!((s[1].se_rmse - 0.15).abs() < 1e-12);
        assert!((s[1].mean_reduction - 0.25).abs() < 1e-12);
        assert!((s[1].se_reduction - 0.15).abs() < 1e-12);
        assert_eq!(s[2].n_attributes, 1);
        assert_eq!(s[2].se_rmse, 0.0);
    }

    #[test]
    fn r_is_the_mean_of_the_per_fold_r_where_defined() {
        let mut c = cell("text.6/mean", "a", "g", &[0.5, 0.5, 0.5], &[0.01; 3]);
        c.r_fold = vec![0.2, f64::NAN, 0.4];
        assert!((c.pearson_r() - 0.3).abs() < 1e-15);
        c.r_fold = vec![f64::NAN; 3];
        assert!(c.pearson_r().is_nan(), "constant predictions in every fold: no r, not 0");
        let mut d = cell("text.6/mean", "b", "g", &[0.5, 0.5, 0.5], &[0.01; 3]);
        d.r_fold = vec![0.6; 3];
        let s = summarise(&[c, d], 3, &truth(&["a", "b"], 4, |i, a| (i * (a + 1)) as f64));
        assert!((s[0].mean_r - 0.6).abs() < 1e-15, "the undefined attribute is left out");
    }

    #[test]
    fn a_probe_that_predicts_its_training_mean_has_no_entanglement_and_is_flagged() {
        // Eight stimuli in two folds; the probes predict each fold's training mean: constant
        // within folds, different between them. Pooled over folds those intercepts correlate
        // perfectly with each other, which read as maximal entanglement before.
        let n = 8;
        let folds: Vec<Option<u32>> = (0..n).map(|i| Some((i % 2) as u32)).collect();
        let t = truth(&["a", "b", "c"], n, |i, a| ((i * (a + 2)) % 5) as f64 + i as f64 * 0.3);
        let mk = |attr: &str, df: f64| {
            let ratings = &t.columns[attr];
            let train_mean = |f: usize| {
                let v: Vec<f64> = (0..n).filter(|i| i % 2 != f).map(|i| ratings[i]).collect();
                mean(&v)
            };
            Cell {
                predicted: (0..n).map(|i| train_mean(i % 2)).collect(),
                fold_of: folds.clone(),
                df_fold: vec![df; 2],
                r_fold: vec![f64::NAN; 2],
                ..cell("text.3/cls", attr, "g", &[1.0, 1.0], &[0.5, 0.5])
            }
        };
        let cells: Vec<Cell> = ["a", "b", "c"].iter().map(|a| mk(a, 0.004)).collect();
        let s = summarise(&cells, 2, &t);
        assert!(s[0].identification.is_nan(), "{:?}", s[0]);
        assert!(s[0].corr_delta.is_nan(), "{:?}", s[0]);
        assert!(s[0].mean_r.is_nan());
        assert!(s[0].shrunk(), "effective df 0.004 < {SHRUNK_DF}");
        let set: Vec<&Cell> = cells.iter().collect();
        assert!(pair_table(&set, &t).iter().all(|p| p.3.is_nan() && p.2.is_finite()));
        // The same fits with effective df above 1 are not flagged.
        let fine: Vec<Cell> = ["a", "b", "c"].iter().map(|a| mk(a, 2.5)).collect();
        assert!(!summarise(&fine, 2, &t)[0].shrunk());
    }
}
