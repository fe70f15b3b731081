//! `report.md`: the report model as a readable page. Deterministic (no timestamps, no paths
//! that vary between runs), so equal sweeps give byte-identical reports.

use std::fmt::Write;

use common::spec::{AlignmentSection, EarlyStoppingChoice};

use crate::report::calibration::{Calibration, NullVerdict};
use crate::report::model::{Alignment, Fit, Grid, ReportModel, Series};
use crate::report::probe::{SummaryRow, SHRUNK_DF};
use crate::report::SIGNIFICANCE;

/// Renders `report.md`. When units are uncommitted the page opens with an "incomplete" banner.
pub(crate) fn render(m: &ReportModel) -> String {
    let a = &m.settings.probe;
    let mut md = String::new();
    let _ = writeln!(md, "# diffprobe report: {}\n", m.settings.job_name);
    let _ = writeln!(
        md,
        "Model `{}` ({}); {} stimuli ({} dropped for missing ratings); {} attributes; {} folds; PCA P = {}, ridge α = {}; {} permutations per fold (seed {}).\n",
        m.settings.model_name, m.settings.model_kind, m.stimuli.n, m.stimuli.dropped, m.stimuli.attributes.len(), a.folds, a.components, a.alpha, a.permutations, a.seed
    );
    let _ = writeln!(md, "An attribute is *significant* for a representation when its permutation p < {SIGNIFICANCE} in every fold (the paper's rule). q = Benjamini–Hochberg over the representation's attributes on the largest fold p. Reduction = 1 − RMSE / RMSE of predicting the training mean: significance without an effect size misleads. r = Pearson's r between predictions and ratings within each fold, averaged over folds (the arithmetic mean of the per-fold r; pooled over folds, each fold's own intercept would enter it); \"–\" where it is undefined (predictions constant within every fold).\n");
    let (done, total) = m.status.committed_of_total();
    if done < total {
        let _ = writeln!(
            md,
            "> **Incomplete: {done} of {total} units committed.** The tables below cover only the committed units; the run is still going, was interrupted, or has units to redo or quarantined. Finish it with `diffprobe resume`, then `diffprobe report` again.\n"
        );
    }
    let quarantined: Vec<_> = m.status.quarantined().collect();
    if !quarantined.is_empty() {
        let _ = writeln!(md, "**Incomplete: {} units were quarantined.**\n", quarantined.len());
        for u in quarantined {
            let _ = writeln!(md, "- `{}`: {}", u.id, u.error);
        }
        md.push('\n');
    }
    if let Some(c) = &m.calibration {
        calibration_section(&mut md, m, c);
    }
    let _ = writeln!(md, "## Representations (all attributes)\n");
    let _ = writeln!(md, "Mean reduction ± SE over attributes leads: it is scale-free, while the mean RMSE mixes the attributes' rating scales. Effective df = Σ λ/(λ + α) over the retained components (mean over attributes and folds): below {SHRUNK_DF} the ridge has shrunk the probe to the training mean.\n");
    let _ = writeln!(
        md,
        "| representation | mean reduction ± SE | mean RMSE ± SE | mean r | % significant | effective df |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for (s, fit) in all_rows(m) {
        let flag = match fit {
            Fit::Constant => " (constant)",
            Fit::Shrunk => " (shrunk to the mean)",
            Fit::Usable | Fit::NoResults => "",
        };
        let _ = writeln!(
            md,
            "| `{}` | {} | {:.4} ± {} | {} | {:.0} % | {:.3}{flag} |",
            s.representation,
            reduction_se(s),
            s.mean_rmse,
            se_of(s, s.se_rmse),
            fixed(s.mean_r, 3),
            s.pct_significant,
            s.effective_df
        );
    }
    let _ = writeln!(md, "\n## Entanglement\n");
    let _ = writeln!(md, "Both measures are computed within folds: each fold's mean is removed from the predictions and the ratings first, since every fold's predictions carry that fold's own intercept. \"–\": no attribute pair is defined (predictions constant within folds, as when the probe is shrunk to the mean).\n");
    let _ = writeln!(md, "Identification accuracy: over ordered attribute pairs, how often a prediction correlates more with its own ratings than with another attribute's (chance 0.5; lower = more entangled).\n");
    let _ = writeln!(md, "Correlation-structure delta: mean |off-diagonal correlation| of the predictions minus that of the human ratings, i.e. how much more the predictions of different attributes go together than the ratings do. Positive values are expected even from a perfect model of the noise-free ratings: ridge predictions carry none of the rating noise that lowers the human correlations, so compare representations with each other rather than with 0. The human correlations are uncorrected for attenuation (the ratings table gives no per-rating SD and number of raters). Per-pair values in `entanglement.parquet`.\n");
    let _ =
        writeln!(md, "| representation | identification accuracy | correlation-structure delta |");
    let _ = writeln!(md, "|---|---|---|");
    for (s, _) in all_rows(m) {
        let delta =
            if s.corr_delta.is_nan() { "–".to_string() } else { format!("{:+.3}", s.corr_delta) };
        let _ =
            writeln!(md, "| `{}` | {} | {delta} |", s.representation, fixed(s.identification, 3));
    }
    for g in &m.groups {
        let rows: Vec<&SummaryRow> = m.summary.iter().filter(|s| &s.group == g).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "\n## Group `{g}`\n");
        let _ = writeln!(
            md,
            "| representation | attributes | mean reduction ± SE | mean RMSE ± SE | mean r | % significant |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for s in rows {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {:.4} ± {} | {} | {:.0} % |",
                s.representation,
                s.n_attributes,
                reduction_se(s),
                s.mean_rmse,
                se_of(s, s.se_rmse),
                fixed(s.mean_r, 3),
                s.pct_significant
            );
        }
    }
    let _ = writeln!(md, "\n## Best representation per attribute (lowest mean RMSE)\n");
    let _ = writeln!(md, "| attribute | group | best representation | RMSE | baseline | reduction | r | significant in all folds | q | α (per fold) |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for (attr, best) in &m.best_per_attribute {
        if let Some(c) = best.map(|i| &m.cells[i]) {
            let _ = writeln!(
                md,
                "| {attr} | {} | `{}` | {:.4} | {:.4} | {:.1} % | {} | {} | {:.3} | {} |",
                c.group.as_deref().unwrap_or("-"),
                c.representation,
                c.rmse(),
                c.baseline(),
                100.0 * c.reduction(),
                fixed(c.pearson_r(), 3),
                if c.significant(a.folds) { "yes" } else { "no" },
                c.q,
                alphas(&c.alpha_fold)
            );
        } else {
            let _ = writeln!(md, "| {attr} | - | (no results: missing units) | | | | | | | |");
        }
    }
    grid_section(&mut md, &m.grid);
    shrunk_note(&mut md, m);
    if let (Some(a), Some(al)) = (&m.settings.alignment, &m.alignment) {
        alignment_section(&mut md, a, al);
    }
    if let Some(d) = &m.dense {
        super::dense::section(&mut md, d);
    }
    if let Some(s) = &m.semantic {
        super::semantic::section(&mut md, s);
    }
    if let Some(d) = &m.directions {
        super::directions::section(&mut md, d);
    }
    md
}

/// The `all` summary row of every representation with results, in plan order, with its fit.
fn all_rows(m: &ReportModel) -> impl Iterator<Item = (&SummaryRow, Fit)> {
    m.representations.iter().filter_map(|r| Some((&m.summary[r.all?], r.fit)))
}

/// A number with `decimals` decimals, or "–" when it is undefined (NaN).
fn fixed(x: f64, decimals: usize) -> String {
    if x.is_nan() {
        "–".to_string()
    } else {
        format!("{x:.decimals$}")
    }
}

/// An SE over attributes, or "–" for a single attribute (no spread to estimate).
fn se_of(s: &SummaryRow, se: f64) -> String {
    if s.n_attributes < 2 {
        "–".to_string()
    } else {
        format!("{se:.4}")
    }
}

/// Mean relative reduction ± SE over attributes, in percent.
fn reduction_se(s: &SummaryRow) -> String {
    let se = if s.n_attributes < 2 {
        "–".to_string()
    } else {
        format!("{:.1} %", 100.0 * s.se_reduction)
    };
    format!("{:.1} % ± {se}", 100.0 * s.mean_reduction)
}

/// The representations whose probes the penalty shrank to the mean ([`SHRUNK_DF`]), named with
/// what follows from it: the fit says nothing about the features, so rerun differently. Those
/// with no varying component at all are constant, and no setting helps them.
fn shrunk_note(md: &mut String, m: &ReportModel) {
    let shrunk = all_rows(m).filter(|(s, _)| s.shrunk());
    let (flat, small): (Vec<_>, Vec<_>) = shrunk.partition(|(_, fit)| *fit == Fit::Constant);
    if !small.is_empty() {
        let named: Vec<String> = small
            .iter()
            .map(|(s, _)| format!("`{}` ({:.3})", s.representation, s.effective_df))
            .collect();
        let _ = writeln!(md, "\n**Shrunk to the mean at this α; rerun with `zscore = true` or `alphas`**: {} (effective df in parentheses, below {SHRUNK_DF}). Their features vary little next to the penalty, so the ridge predicts almost the training mean whatever they hold: a reduction near 0 here says nothing about what these representations know, and a significant p is a tiny effect. Z-scoring the features or choosing α per attribute by leave-one-out tells.", named.join(", "));
    }
    if !flat.is_empty() {
        let named: Vec<String> =
            flat.iter().map(|(s, _)| format!("`{}`", s.representation)).collect();
        let _ = writeln!(md, "\n**Constant across stimuli**: {}: no principal component varies, so the probe is the training mean under any setting.", named.join(", "));
    }
}

fn verdict_text(v: NullVerdict) -> &'static str {
    match v {
        NullVerdict::NoKnowledge => "consistent with no knowledge, as a null control should be",
        NullVerdict::OffRate => {
            "**not** at the nominal rate: the per-fold rate is outside the binomial interval; check this model and the ratings"
        }
        NullVerdict::AllFoldsPasses => {
            "**not** consistent with no knowledge: a pair passes the all-folds rule, which under the null should essentially never happen; check this model and the ratings"
        }
    }
}

fn calibration_section(md: &mut String, m: &ReportModel, c: &Calibration) {
    let (hits, total, significant) = (c.hits, c.total, c.significant);
    let rate = c.rate();
    let nominal = 100.0 * SIGNIFICANCE;
    let folds = m.settings.probe.folds;
    if let Some(null) = &c.null {
        let pct = |k: usize| 100.0 * k as f64 / total as f64;
        let _ = writeln!(md, "## Null control\n");
        let _ = writeln!(
            md,
            "This run is a **null control** (`job.null_control`): a model that should hold no knowledge of the ratings. Per-fold permutation p < {SIGNIFICANCE} in {hits} of {total} tests = **{rate:.1} %** (nominal {nominal:.0} %; the central 99 % of Binomial({total}, {SIGNIFICANCE}) is {}–{} tests, {:.1}–{:.1} %); {significant} of {} (representation, attribute) pairs pass the all-folds rule (under the null about {SIGNIFICANCE}^{folds} each, so none should). Folds and representations share data, so the tests are not independent and the interval is a guide rather than an exact test. Verdict: {}.\n",
            null.lo,
            null.hi,
            pct(null.lo),
            pct(null.hi),
            c.pairs,
            verdict_text(null.verdict)
        );
    } else {
        let _ = writeln!(
            md,
            "Per-fold permutation p < {SIGNIFICANCE} in {hits} of {total} tests ({rate:.1} %; {nominal:.0} % if no representation held any knowledge).\n"
        );
    }
}

/// The α of each fold, compactly: one value when every fold used the same.
fn alphas(per_fold: &[f64]) -> String {
    match per_fold.first() {
        Some(first) if per_fold.iter().all(|a| a == first) => format!("{first}"),
        _ => per_fold.iter().map(|a| format!("{a}")).collect::<Vec<_>>().join(", "),
    }
}

/// The hyper-parameter grid (paper Fig. 5): the best (P, α) of each representation, and the
/// whole grid of the representation with the lowest RMSE.
fn grid_section(md: &mut String, grid: &Grid) {
    let Some(first) = grid.rows.first() else { return };
    let _ = writeln!(
        md,
        "\n## Hyper-parameter grid (fold {}, mean RMSE over attributes)\n",
        first.fold
    );
    let _ = writeln!(
        md,
        "Scored on held-out fold {}, one of the probes' own test folds: the best cell is chosen on test data, so adopting it for the probes above would leak and overstate them. To tune, choose α on the training rows of each fold (`alphas`, by leave-one-out) instead.\n",
        first.fold
    );
    let _ = writeln!(md, "| representation | best P (used) | best α | mean RMSE |");
    let _ = writeln!(md, "|---|---|---|---|");
    for b in &grid.best_per_rep {
        let _ = writeln!(
            md,
            "| `{}` | {} ({}) | {} | {:.4} |",
            b.representation, b.components, b.n_components, b.alpha, b.mean_rmse
        );
    }
    let Some(best) = &grid.best else { return };
    let _ = writeln!(md, "\nThe grid of `{}` (rows P, columns α):\n", best.cell.representation);
    let _ = writeln!(
        md,
        "| P | {} |",
        best.alphas.iter().map(|a| format!("α = {a}")).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(md, "|---|{}", "---|".repeat(best.alphas.len()));
    for (p, row) in best.components.iter().zip(&best.values) {
        let cells: Vec<String> =
            row.iter().map(|v| v.map_or("-".to_string(), |v| format!("{v:.4}"))).collect();
        let _ = writeln!(md, "| {p} | {} |", cells.join(" | "));
    }
}

fn acc(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite()).map_or("–".to_string(), |x| format!("{x:.3}"))
}

/// `## Odd-one-out alignment`: accuracy per representation and distance, the linear probe and
/// the embedding regression, the best representation named, and (for U-Net representations)
/// the primary distance's accuracy as a tap × context table.
fn alignment_section(md: &mut String, a: &AlignmentSection, al: &Alignment) {
    let res = &al.results;
    let file_name = |p: &std::path::Path| {
        p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    };
    let _ = writeln!(md, "\n## Odd-one-out alignment\n");
    let _ = writeln!(
        md,
        "Triplets: `{}`, {} triplets over {} concepts; the third entry of each is the odd one out the human chose.{}\n",
        file_name(&a.triplets),
        res.n_triplets,
        res.n_concepts,
        a.description.as_deref().map(|d| format!(" {d}")).unwrap_or_default()
    );
    let _ = writeln!(md, "Odd-one-out accuracy (OOOA): how often the element outside the closest pair of representations is the human's choice; ties count as wrong; chance = 1/3.\n");
    let primary = &al.primary;
    if a.linear_probe {
        let _ = writeln!(md, "Linear probe: in each of {} folds over concepts, E = XW + b is trained on the triplets whose three concepts are all outside the fold and scored by its dot-product OOOA on the triplets wholly inside it (mixed triplets dropped); λ = {} on ‖W‖_F, Adam lr {}, batch {}, ≤ {} epochs (early stopping on the {}); the column is the mean test OOOA over folds.\n", a.probe_folds, a.lambda, a.learning_rate, a.batch_size, a.max_epochs, match a.early_stopping { EarlyStoppingChoice::TestLoss => "test-fold loss, as the paper's code", EarlyStoppingChoice::ValidationLoss => "held-out training triplets" });
    }
    if !res.dimensions.is_empty() {
        let ceiling: Vec<String> =
            al.ceiling.iter().map(|(d, v)| format!("{d} {}", acc(*v))).collect();
        let _ = writeln!(md, "Embedding regression: ridge from each representation to the human embedding `{}` ({} dimensions), {} folds over concepts, α per dimension by leave-one-out; R² on the test fold, averaged over dimensions and folds; *predicted* = OOOA ({primary}) of the out-of-fold predicted embedding. The human embedding itself scores {} (what a perfect prediction would reach).\n", a.embedding.as_deref().map(file_name).unwrap_or_default(), res.dimensions.len(), a.embedding_folds, ceiling.join(", "));
    }
    let rows: Vec<_> = al.rows.iter().filter(|r| r.has_results).collect();
    if rows.is_empty() {
        let _ = writeln!(md, "No alignment results (see the quarantined units above).");
        return;
    }
    let mut head: Vec<String> = a.distances.iter().map(|d| format!("OOOA {}", d.name())).collect();
    if a.linear_probe {
        head.push("linear probe".into());
    }
    if !res.dimensions.is_empty() {
        head.push("embedding R²".into());
        head.push(format!("predicted ({primary})"));
    }
    let _ = writeln!(md, "| representation | {} |", head.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(head.len()));
    for row in rows {
        let mut cells = Vec::new();
        for (s, v) in al.series.iter().zip(&row.values) {
            match s {
                Series::OddOneOut(_) => cells.push(acc(*v)),
                Series::LinearProbe => {
                    let missing = row
                        .probe_folds_run
                        .map(|n| format!(" ({n} of {} folds)", a.probe_folds))
                        .unwrap_or_default();
                    cells.push(format!("{}{missing}", acc(*v)));
                }
                Series::PredictedEmbedding => {
                    cells.push(acc(row.r2));
                    cells.push(acc(*v));
                }
            }
        }
        let _ = writeln!(md, "| `{}` | {} |", row.representation, cells.join(" | "));
    }
    md.push('\n');
    if let Some((rep, best)) = &al.best_odd_one_out {
        let _ = write!(
            md,
            "**Best representation** by {primary} OOOA: `{rep}`, {best:.3} (chance 0.333)."
        );
    }
    if let Some((rep, best)) = &al.best_linear_probe {
        let _ = write!(md, " By the linear probe: `{rep}`, {best:.3}.");
    }
    if let Some((rep, best)) = &al.best_embedding {
        let _ = write!(md, " By the predicted embedding: `{rep}`, {best:.3}.");
    }
    md.push('\n');
    if !al.ties.is_empty() {
        let tied: Vec<String> =
            al.ties.iter().map(|(rep, t, n)| format!("`{rep}` {t} of {n}")).collect();
        let _ = writeln!(md, "\n**Ties** ({primary}; no unique closest pair, counted wrong): {}. A representation whose every triplet ties is constant across stimuli (e.g. the `[CLS]` embedding at `text.0`) and scores 0, below chance, by this rule.", tied.join(", "));
    }
    if !al.silent.is_empty() {
        let silent: Vec<String> = al.silent.iter().map(|r| format!("`{r}`")).collect();
        let _ = writeln!(md, "\n**The linear probe did not learn** for {}: its training loss stayed at ln 3 ≈ 1.099 in every fold, so it answers at chance. Either the representation carries no usable signal (e.g. it is near-constant across stimuli), or the penalty λ‖W‖_F won: its gradient has norm λ however small W is, which beats a weak signal or a narrow representation; try a lower `analysis.alignment.lambda` (e.g. 1e-3).", silent.join(", "));
    }
    if al.contexts.is_empty() {
        return;
    }
    let _ = writeln!(md, "\nOOOA ({primary}) by tap and pooling (rows) and denoising step `k`, or noise level `n` / conditioning (columns):\n");
    let _ = writeln!(md, "| tap | {} |", al.contexts.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(al.contexts.len()));
    for (b, values) in &al.by_context {
        let cells: Vec<String> = values.iter().map(|v| acc(*v)).collect();
        let _ = writeln!(md, "| `{b}` | {} |", cells.join(" | "));
    }
}

#[cfg(test)]
mod tests;
