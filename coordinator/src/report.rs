//! `report.md`: the merged results as a readable page. Deterministic (no timestamps, no paths
//! that vary between runs), so equal sweeps give byte-identical reports.

use std::fmt::Write;

use common::spec::{EarlyStoppingChoice, JobSpec};
use common::stimuli::Dataset;
use common::table::{analysis, AlignmentRow, GridRow, ProbeTraining};

use crate::alignment::AlignmentResults;
use crate::merge::{Cell, SummaryRow, SHRUNK_DF};

/// Renders the report. `committed` is (units committed, units planned): when they differ the
/// page opens with an "incomplete" banner.
#[allow(clippy::too_many_arguments)]
pub(crate) fn markdown(
    spec: &JobSpec,
    data: &Dataset,
    cells: &[Cell],
    summary: &[SummaryRow],
    grid: &[GridRow],
    alignment: Option<&AlignmentResults>,
    quarantined: &[(String, String)],
    committed: (u64, u64),
) -> String {
    let a = &spec.analysis.attribute_probe;
    let mut md = String::new();
    let _ = writeln!(md, "# diffprobe report: {}\n", spec.job.name);
    let model =
        spec.model.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let _ = writeln!(
        md,
        "Model `{model}` ({:?}); {} stimuli ({} dropped for missing ratings); {} attributes; {} folds; PCA P = {}, ridge α = {}; {} permutations per fold (seed {}).\n",
        spec.model.kind, data.len(), data.dropped.len(), data.attributes.len(), a.folds, a.components, a.alpha, a.permutations, a.seed
    );
    let _ = writeln!(md, "An attribute is *significant* for a representation when its permutation p < 0.05 in every fold (the paper's rule). q = Benjamini–Hochberg over the representation's attributes on the largest fold p. Reduction = 1 − RMSE / RMSE of predicting the training mean: significance without an effect size misleads. r = Pearson's r between predictions and ratings within each fold, averaged over folds (the arithmetic mean of the per-fold r; pooled over folds, each fold's own intercept would enter it); \"–\" where it is undefined (predictions constant within every fold).\n");
    let (done, total) = committed;
    if done < total {
        let _ = writeln!(
            md,
            "> **Incomplete: {done} of {total} units committed.** The tables below cover only the committed units; the run is still going, was interrupted, or has units to redo or quarantined. Finish it with `diffprobe resume`, then `diffprobe report` again.\n"
        );
    }
    if !quarantined.is_empty() {
        let _ = writeln!(md, "**Incomplete: {} units were quarantined.**\n", quarantined.len());
        for (unit, err) in quarantined {
            let _ = writeln!(md, "- `{unit}`: {err}");
        }
        md.push('\n');
    }
    calibration_section(&mut md, spec, cells);
    let _ = writeln!(md, "## Representations (all attributes)\n");
    let _ = writeln!(md, "Mean reduction ± SE over attributes leads: it is scale-free, while the mean RMSE mixes the attributes' rating scales. Effective df = Σ λ/(λ + α) over the retained components (mean over attributes and folds): below {SHRUNK_DF} the ridge has shrunk the probe to the training mean.\n");
    let _ = writeln!(
        md,
        "| representation | mean reduction ± SE | mean RMSE ± SE | mean r | % significant | effective df |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for s in summary.iter().filter(|s| s.group == "all") {
        let flag = match (s.shrunk(), constant(cells, &s.representation)) {
            (_, true) => " (constant)",
            (true, false) => " (shrunk to the mean)",
            (false, false) => "",
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
    for s in summary.iter().filter(|s| s.group == "all") {
        let delta =
            if s.corr_delta.is_nan() { "–".to_string() } else { format!("{:+.3}", s.corr_delta) };
        let _ =
            writeln!(md, "| `{}` | {} | {delta} |", s.representation, fixed(s.identification, 3));
    }
    let groups: Vec<&str> = {
        let mut g: Vec<&str> =
            summary.iter().map(|s| s.group.as_str()).filter(|g| *g != "all").collect();
        g.dedup();
        g.sort();
        g.dedup();
        g
    };
    for g in groups {
        let _ = writeln!(md, "\n## Group `{g}`\n");
        let _ = writeln!(
            md,
            "| representation | attributes | mean reduction ± SE | mean RMSE ± SE | mean r | % significant |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for s in summary.iter().filter(|s| s.group == g) {
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
    for attr in &data.attributes {
        let best = cells
            .iter()
            .filter(|c| &c.attribute == attr)
            .min_by(|x, y| x.rmse().total_cmp(&y.rmse()));
        if let Some(c) = best {
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
    grid_section(&mut md, grid);
    shrunk_note(&mut md, cells, summary);
    alignment_section(&mut md, spec, alignment);
    md
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

/// Whether no fold of `rep` had a component to fit: its features are constant across stimuli.
fn constant(cells: &[Cell], rep: &str) -> bool {
    cells.iter().filter(|c| c.representation == rep).all(|c| c.n_components == 0)
}

/// The representations whose probes the penalty shrank to the mean ([`SHRUNK_DF`]), named with
/// what follows from it: the fit says nothing about the features, so rerun differently. Those
/// with no varying component at all are constant, and no setting helps them.
fn shrunk_note(md: &mut String, cells: &[Cell], summary: &[SummaryRow]) {
    let shrunk: Vec<&SummaryRow> =
        summary.iter().filter(|s| s.group == "all" && s.shrunk()).collect();
    let (flat, small): (Vec<&SummaryRow>, Vec<&SummaryRow>) =
        shrunk.into_iter().partition(|s| constant(cells, &s.representation));
    if !small.is_empty() {
        let named: Vec<String> = small
            .iter()
            .map(|s| format!("`{}` ({:.3})", s.representation, s.effective_df))
            .collect();
        let _ = writeln!(md, "\n**Shrunk to the mean at this α; rerun with `zscore = true` or `alphas`**: {} (effective df in parentheses, below {SHRUNK_DF}). Their features vary little next to the penalty, so the ridge predicts almost the training mean whatever they hold: a reduction near 0 here says nothing about what these representations know, and a significant p is a tiny effect. Z-scoring the features or choosing α per attribute by leave-one-out tells.", named.join(", "));
    }
    if !flat.is_empty() {
        let named: Vec<String> = flat.iter().map(|s| format!("`{}`", s.representation)).collect();
        let _ = writeln!(md, "\n**Constant across stimuli**: {}: no principal component varies, so the probe is the training mean under any setting.", named.join(", "));
    }
}

/// The per-fold rate of p < 0.05 over every (representation, attribute, fold). Under the null
/// it is 5 %; a null-control run states whether it is.
pub(crate) fn per_fold_rate(cells: &[Cell]) -> (usize, usize) {
    let ps = cells.iter().flat_map(|c| c.p_fold.iter());
    let total = ps.clone().count();
    (ps.filter(|&&p| p < 0.05).count(), total)
}

fn calibration_section(md: &mut String, spec: &JobSpec, cells: &[Cell]) {
    let (hits, total) = per_fold_rate(cells);
    if total == 0 {
        return;
    }
    let rate = 100.0 * hits as f64 / total as f64;
    let folds = spec.analysis.attribute_probe.folds;
    let significant = cells.iter().filter(|c| c.significant(folds)).count();
    if spec.job.null_control {
        let verdict = null_verdict(hits, total, significant);
        let (lo, hi) = binomial_band(total, 0.05, 0.99);
        let pct = |k: usize| 100.0 * k as f64 / total as f64;
        let _ = writeln!(md, "## Null control\n");
        let _ = writeln!(
            md,
            "This run is a **null control** (`job.null_control`): a model that should hold no knowledge of the ratings. Per-fold permutation p < 0.05 in {hits} of {total} tests = **{rate:.1} %** (nominal 5 %; the central 99 % of Binomial({total}, 0.05) is {lo}–{hi} tests, {:.1}–{:.1} %); {significant} of {} (representation, attribute) pairs pass the all-folds rule (under the null about 0.05^{folds} each, so none should). Folds and representations share data, so the tests are not independent and the interval is a guide rather than an exact test. Verdict: {}.\n",
            pct(lo),
            pct(hi),
            cells.len(),
            verdict.text()
        );
    } else {
        let _ = writeln!(
            md,
            "Per-fold permutation p < 0.05 in {hits} of {total} tests ({rate:.1} %; 5 % if no representation held any knowledge).\n"
        );
    }
}

/// What a null-control run's numbers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NullVerdict {
    /// The per-fold rate is inside the binomial band and no pair passes the all-folds rule.
    NoKnowledge,
    /// The per-fold rate is outside the band.
    OffRate,
    /// Some (representation, attribute) pair passes the all-folds rule.
    AllFoldsPasses,
}

impl NullVerdict {
    fn text(self) -> &'static str {
        match self {
            NullVerdict::NoKnowledge => {
                "consistent with no knowledge, as a null control should be"
            }
            NullVerdict::OffRate => {
                "**not** at the nominal rate: the per-fold rate is outside the binomial interval; check this model and the ratings"
            }
            NullVerdict::AllFoldsPasses => {
                "**not** consistent with no knowledge: a pair passes the all-folds rule, which under the null should essentially never happen; check this model and the ratings"
            }
        }
    }
}

/// The verdict of a null control from its per-fold hits out of `total` tests and the number of
/// pairs significant in all folds: the per-fold rate must lie in the central 99 % of
/// Binomial(total, 0.05), and no pair may pass the all-folds rule (with K folds a pair passes
/// under the null with probability about 0.05^K were the folds independent).
fn null_verdict(hits: usize, total: usize, significant: usize) -> NullVerdict {
    let (lo, hi) = binomial_band(total, 0.05, 0.99);
    if !(lo..=hi).contains(&hits) {
        NullVerdict::OffRate
    } else if significant > 0 {
        NullVerdict::AllFoldsPasses
    } else {
        NullVerdict::NoKnowledge
    }
}

/// The central `level` interval of Binomial(`n`, `p`) in counts: `(lo, hi)` with `lo` the
/// smallest k whose CDF reaches (1 − level)/2 and `hi` the smallest k whose CDF reaches
/// (1 + level)/2 (scipy's `binom.ppf` of those two quantiles). The probabilities are summed from
/// log-space terms, so large `n` does not underflow.
fn binomial_band(n: usize, p: f64, level: f64) -> (usize, usize) {
    let (low_q, high_q) = ((1.0 - level) / 2.0, (1.0 + level) / 2.0);
    let mut log_pmf = n as f64 * (1.0 - p).ln();
    let odds = (p / (1.0 - p)).ln();
    let mut cdf = 0.0;
    let mut lo = None;
    for k in 0..=n {
        if k > 0 {
            log_pmf += ((n - k + 1) as f64 / k as f64).ln() + odds;
        }
        cdf += log_pmf.exp();
        if lo.is_none() && cdf >= low_q {
            lo = Some(k);
        }
        if cdf >= high_q {
            return (lo.unwrap_or(k), k);
        }
    }
    (lo.unwrap_or(n), n)
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
fn grid_section(md: &mut String, grid: &[GridRow]) {
    if grid.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Hyper-parameter grid (fold {}, mean RMSE over attributes)\n",
        grid[0].fold
    );
    let _ = writeln!(
        md,
        "Scored on held-out fold {}, one of the probes' own test folds: the best cell is chosen on test data, so adopting it for the probes above would leak and overstate them. To tune, choose α on the training rows of each fold (`alphas`, by leave-one-out) instead.\n",
        grid[0].fold
    );
    let _ = writeln!(md, "| representation | best P (used) | best α | mean RMSE |");
    let _ = writeln!(md, "|---|---|---|---|");
    let mut reps: Vec<&str> = Vec::new();
    for g in grid {
        if !reps.contains(&g.representation.as_str()) {
            reps.push(&g.representation);
        }
    }
    let best_of = |rep: &str| {
        grid.iter()
            .filter(|g| g.representation == rep)
            .min_by(|a, b| a.mean_rmse.total_cmp(&b.mean_rmse))
    };
    for rep in &reps {
        if let Some(b) = best_of(rep) {
            let _ = writeln!(
                md,
                "| `{rep}` | {} ({}) | {} | {:.4} |",
                b.components, b.n_components, b.alpha, b.mean_rmse
            );
        }
    }
    let Some(overall) = grid.iter().min_by(|a, b| a.mean_rmse.total_cmp(&b.mean_rmse)) else {
        return;
    };
    let rep = &overall.representation;
    let mut alphas: Vec<f64> =
        grid.iter().filter(|g| &g.representation == rep).map(|g| g.alpha).collect();
    alphas.dedup();
    alphas.sort_by(f64::total_cmp);
    alphas.dedup();
    let _ = writeln!(md, "\nThe grid of `{rep}` (rows P, columns α):\n");
    let _ = writeln!(
        md,
        "| P | {} |",
        alphas.iter().map(|a| format!("α = {a}")).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(md, "|---|{}", "---|".repeat(alphas.len()));
    let mut sizes: Vec<u32> =
        grid.iter().filter(|g| &g.representation == rep).map(|g| g.components).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for p in sizes {
        let cells: Vec<String> = alphas
            .iter()
            .map(|a| {
                grid.iter()
                    .find(|g| &g.representation == rep && g.components == p && g.alpha == *a)
                    .map_or("-".to_string(), |g| format!("{:.4}", g.mean_rmse))
            })
            .collect();
        let _ = writeln!(md, "| {p} | {} |", cells.join(" | "));
    }
}

/// Names a representation key's context (step, noise level, conditioning) apart from its tap
/// and pooling: `mid_block/flatten/k10` → (`mid_block/flatten`, `k10`).
fn split_context(key: &str) -> (&str, &str) {
    match key.match_indices('/').nth(1) {
        Some((i, _)) => (&key[..i], &key[i + 1..]),
        None => (key, ""),
    }
}

fn acc(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite()).map_or("–".to_string(), |x| format!("{x:.3}"))
}

/// `## Odd-one-out alignment`: accuracy per representation and distance, the linear probe and
/// the embedding regression, the best representation named, and (for U-Net representations)
/// the primary distance's accuracy as a tap × context table.
fn alignment_section(md: &mut String, spec: &JobSpec, results: Option<&AlignmentResults>) {
    let (Some(a), Some(res)) = (&spec.analysis.alignment, results) else { return };
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
    let primary = a.distances[0].name();
    if a.linear_probe {
        let _ = writeln!(md, "Linear probe: in each of {} folds over concepts, E = XW + b is trained on the triplets whose three concepts are all outside the fold and scored by its dot-product OOOA on the triplets wholly inside it (mixed triplets dropped); λ = {} on ‖W‖_F, Adam lr {}, batch {}, ≤ {} epochs (early stopping on the {}); the column is the mean test OOOA over folds.\n", a.probe_folds, a.lambda, a.learning_rate, a.batch_size, a.max_epochs, match a.early_stopping { EarlyStoppingChoice::TestLoss => "test-fold loss, as the paper's code", EarlyStoppingChoice::ValidationLoss => "held-out training triplets" });
    }
    if !res.dimensions.is_empty() {
        let ceiling: Vec<String> = a
            .distances
            .iter()
            .map(|d| {
                format!(
                    "{} {}",
                    d.name(),
                    acc(res.accuracy("", analysis::HUMAN_EMBEDDING, d.name()))
                )
            })
            .collect();
        let _ = writeln!(md, "Embedding regression: ridge from each representation to the human embedding `{}` ({} dimensions), {} folds over concepts, α per dimension by leave-one-out; R² on the test fold, averaged over dimensions and folds; *predicted* = OOOA ({primary}) of the out-of-fold predicted embedding. The human embedding itself scores {} (what a perfect prediction would reach).\n", a.embedding.as_deref().map(file_name).unwrap_or_default(), res.dimensions.len(), a.embedding_folds, ceiling.join(", "));
    }
    let reps = res.representations();
    if reps.is_empty() {
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
    let mut silent = Vec::new();
    for rep in &reps {
        let mut cells: Vec<String> = a
            .distances
            .iter()
            .map(|d| acc(res.accuracy(rep, analysis::ODD_ONE_OUT, d.name())))
            .collect();
        if a.linear_probe {
            let folds: Vec<&ProbeTraining> = res
                .rows
                .iter()
                .filter_map(|r| match r {
                    AlignmentRow::LinearProbeFold { representation, training, .. }
                        if representation == rep =>
                    {
                        Some(training)
                    }
                    _ => None,
                })
                .collect();
            let mean = res.accuracy(rep, analysis::LINEAR_PROBE, "dot");
            let missing = if folds.len() < a.probe_folds && !folds.is_empty() {
                format!(" ({} of {} folds)", folds.len(), a.probe_folds)
            } else {
                String::new()
            };
            cells.push(format!("{}{missing}", acc(mean)));
            if !folds.is_empty() && folds.iter().all(|t| (t.train_loss - 3f64.ln()).abs() < 1e-3) {
                silent.push(format!("`{rep}`"));
            }
        }
        if !res.dimensions.is_empty() {
            let r = res.overall(rep, analysis::EMBEDDING_REGRESSION, Some(primary));
            cells.push(acc(r.and_then(AlignmentRow::r2)));
            cells.push(acc(r.and_then(AlignmentRow::accuracy)));
        }
        let _ = writeln!(md, "| `{rep}` | {} |", cells.join(" | "));
    }
    md.push('\n');
    if let Some((rep, best)) = res.best(analysis::ODD_ONE_OUT, primary) {
        let _ = write!(
            md,
            "**Best representation** by {primary} OOOA: `{rep}`, {best:.3} (chance 0.333)."
        );
    }
    if let Some((rep, best)) = res.best(analysis::LINEAR_PROBE, "dot") {
        let _ = write!(md, " By the linear probe: `{rep}`, {best:.3}.");
    }
    if let Some((rep, best)) = res.best(analysis::EMBEDDING_REGRESSION, primary) {
        let _ = write!(md, " By the predicted embedding: `{rep}`, {best:.3}.");
    }
    md.push('\n');
    let tied: Vec<String> = reps
        .iter()
        .filter_map(|rep| {
            let r = res.overall(rep, analysis::ODD_ONE_OUT, Some(primary))?.triplet_score()?;
            let t = Some(r.ties).filter(|&t| t > 0)?;
            Some(format!("`{rep}` {t} of {}", r.n_triplets))
        })
        .collect();
    if !tied.is_empty() {
        let _ = writeln!(md, "\n**Ties** ({primary}; no unique closest pair, counted wrong): {}. A representation whose every triplet ties is constant across stimuli (e.g. the `[CLS]` embedding at `text.0`) and scores 0, below chance, by this rule.", tied.join(", "));
    }
    if !silent.is_empty() {
        let _ = writeln!(md, "\n**The linear probe did not learn** for {}: its training loss stayed at ln 3 ≈ 1.099 in every fold, so it answers at chance. Either the representation carries no usable signal (e.g. it is near-constant across stimuli), or the penalty λ‖W‖_F won: its gradient has norm λ however small W is, which beats a weak signal or a narrow representation; try a lower `analysis.alignment.lambda` (e.g. 1e-3).", silent.join(", "));
    }
    // Diffusion representations: the primary OOOA as tap × (step | noise level / conditioning).
    let contexts: Vec<&str> = {
        let mut c: Vec<&str> =
            reps.iter().map(|r| split_context(r).1).filter(|c| !c.is_empty()).collect();
        c.dedup();
        let mut unique = Vec::new();
        for x in c {
            if !unique.contains(&x) {
                unique.push(x);
            }
        }
        unique
    };
    if contexts.is_empty() {
        return;
    }
    let mut bases: Vec<&str> = Vec::new();
    for r in &reps {
        let (b, c) = split_context(r);
        if !c.is_empty() && !bases.contains(&b) {
            bases.push(b);
        }
    }
    let _ = writeln!(md, "\nOOOA ({primary}) by tap and pooling (rows) and denoising step `k`, or noise level `n` / conditioning (columns):\n");
    let _ = writeln!(md, "| tap | {} |", contexts.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(contexts.len()));
    for b in bases {
        let cells: Vec<String> = contexts
            .iter()
            .map(|c| acc(res.accuracy(&format!("{b}/{c}"), analysis::ODD_ONE_OUT, primary)))
            .collect();
        let _ = writeln!(md, "| `{b}` | {} |", cells.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use common::stimuli::Dataset;
    use common::table::GridRow;

    use super::*;
    use crate::merge::{summarise, Truth};

    fn spec(null_control: bool) -> JobSpec {
        toml::from_str(&format!(
            r#"
[job]
name = "t"
null_control = {null_control}
[model]
kind = "bert"
path = "/m/minilm"
[stimuli]
file = "s.csv"
[targets]
file = "s.csv"
columns = {{ a = "a" }}
[analysis.attribute_probe]
folds = 2
"#
        ))
        .unwrap()
    }

    const N: usize = 8;
    const ATTRS: [&str; 3] = ["a", "b", "c"];

    fn data() -> Dataset {
        Dataset {
            stimuli: (0..N).map(|i| format!("s{i}")).collect(),
            texts: (0..N).map(|i| format!("s{i}")).collect(),
            attributes: ATTRS.iter().map(|s| s.to_string()).collect(),
            groups: vec![Some("g".into()), Some("g".into()), Some("h".into())],
            targets: (0..N)
                .flat_map(|i| (0..3).map(move |j| ((i * (j + 2)) % 5) as f64 + 0.3 * i as f64))
                .collect(),
            dropped: vec![],
        }
    }

    /// One cell per attribute of `rep`: predictions half the rating (a usable code), or each
    /// fold's training mean when `components` is 0 or the effective df is below 1.
    fn cells(data: &Dataset, rep: &str, df: f64, components: u32, p: f64) -> Vec<Cell> {
        (0..3)
            .map(|j| {
                let rating = |i: usize| data.targets[i * 3 + j];
                let train_mean = |f: usize| {
                    let v: Vec<f64> = (0..N).filter(|i| i % 2 != f).map(rating).collect();
                    v.iter().sum::<f64>() / v.len() as f64
                };
                let flat = components == 0 || df < 1.0;
                Cell {
                    representation: rep.into(),
                    attribute: ATTRS[j].into(),
                    group: data.groups[j].clone(),
                    rmse_fold: vec![0.8, 0.9],
                    baseline_fold: vec![1.0, 1.0],
                    p_fold: vec![p, p],
                    r_fold: if flat { vec![f64::NAN; 2] } else { vec![0.5, 0.7] },
                    df_fold: vec![df; 2],
                    n_components: components,
                    alpha_fold: vec![150.0; 2],
                    predicted: (0..N)
                        .map(|i| if flat { train_mean(i % 2) } else { 0.5 * rating(i) })
                        .collect(),
                    fold_of: (0..N).map(|i| Some((i % 2) as u32)).collect(),
                    q: p,
                }
            })
            .collect()
    }

    fn render(null_control: bool, all: &[Cell], grid: &[GridRow]) -> String {
        let (spec, data) = (spec(null_control), data());
        let summary = summarise(all, 2, &Truth::of(&data));
        markdown(&spec, &data, all, &summary, grid, None, &[], (1, 1))
    }

    #[test]
    fn an_unfinished_run_opens_with_the_incomplete_banner() {
        let (spec, data) = (spec(false), data());
        let all = cells(&data, "text.1/mean", 3.0, 5, 0.01);
        let summary = summarise(&all, 2, &Truth::of(&data));
        let md = markdown(&spec, &data, &all, &summary, &[], None, &[], (3, 5));
        assert!(md.contains("> **Incomplete: 3 of 5 units committed.**"), "{md}");
        let md = markdown(&spec, &data, &all, &summary, &[], None, &[], (5, 5));
        assert!(!md.contains("Incomplete"), "a complete run has no banner: {md}");
    }

    #[test]
    fn binomial_band_matches_scipy() {
        // scipy.stats.binom.ppf([0.005, 0.995], n, 0.05).
        assert_eq!(binomial_band(630, 0.05, 0.99), (18, 46));
        assert_eq!(binomial_band(980, 0.05, 0.99), (32, 67));
        assert_eq!(binomial_band(100, 0.05, 0.99), (0, 11));
        // Large n does not underflow: 0.95^100000 is below f64's range.
        let (lo, hi) = binomial_band(100_000, 0.05, 0.99);
        assert!(lo > 4800 && lo < 5000 && hi > 5000 && hi < 5200, "{lo} {hi}");
    }

    #[test]
    fn the_null_verdict_needs_the_rate_in_band_and_no_all_folds_pass() {
        assert_eq!(null_verdict(33, 630, 0), NullVerdict::NoKnowledge);
        // One pair passing every fold fails, though it is under 5 % of 63 pairs (the old rule).
        assert_eq!(null_verdict(33, 630, 1), NullVerdict::AllFoldsPasses);
        assert_eq!(null_verdict(47, 630, 0), NullVerdict::OffRate);
        assert_eq!(null_verdict(17, 630, 0), NullVerdict::OffRate);
        // In the report: 6 tests at p = 0.5 (rate 0, inside the band of Binomial(6, 0.05)).
        let data = data();
        let md = render(true, &cells(&data, "text.1/mean", 3.0, 5, 0.5), &[]);
        assert!(md.contains("Verdict: consistent with no knowledge"), "{md}");
        let md = render(true, &cells(&data, "text.1/mean", 3.0, 5, 0.01), &[]);
        assert!(md.contains("Verdict: **not**") && !md.contains("Verdict: consistent"), "{md}");
    }

    #[test]
    fn the_report_claims_only_what_its_numbers_support() {
        let data = data();
        let mut all = cells(&data, "text.0/cls", 0.0, 0, 1.0);
        all.extend(cells(&data, "text.1/cls", 0.004, 40, 0.04));
        all.extend(cells(&data, "text.1/mean", 3.0, 40, 0.001));
        for c in all.iter_mut().filter(|c| c.representation == "text.1/mean") {
            c.rmse_fold = vec![0.7, 0.8];
        }
        let grid = [GridRow {
            representation: "text.1/mean".into(),
            fold: 0,
            components: 10,
            n_components: 10,
            alpha: 1.0,
            mean_rmse: 0.5,
        }];
        let md = render(false, &all, &grid);
        // Shrunk fits are named as such, with what to do; constant ones apart; usable ones not.
        let shrunk = md.lines().find(|l| l.starts_with("**Shrunk to the mean")).expect("flag");
        assert!(shrunk.contains("rerun with `zscore = true` or `alphas`"), "{shrunk}");
        assert!(shrunk.contains("`text.1/cls` (0.004)") && !shrunk.contains("text.1/mean"));
        assert!(!shrunk.contains("text.0/cls"), "{shrunk}");
        assert!(md.contains("**Constant across stimuli**: `text.0/cls`"), "{md}");
        assert!(md.contains("| 0.000 (constant) |"), "{md}");
        assert!(md.contains("| `text.1/cls` | 15.0 % ± 0.0 % |"), "{md}");
        assert!(md.contains("| 0.004 (shrunk to the mean) |"), "{md}");
        assert!(md.contains("| 3.000 |"), "{md}");
        assert!(!md.contains("near-constant") && !md.contains("not a usable code"));
        // The headline leads with the scale-free reduction.
        assert!(md.contains("| representation | mean reduction ± SE | mean RMSE ± SE |"));
        // r and entanglement: undefined is "–", never 0 or a pooled artifact.
        assert!(md.contains("| `text.1/cls` | – | – |"), "{md}");
        assert!(
            md.contains("| a | g | `text.1/mean` | 0.7500 | 1.0000 | 25.0 % | 0.600 |"),
            "{md}"
        );
        assert!(md.contains("arithmetic mean of the per-fold r"));
        // The correlation-structure delta says what it measures.
        assert!(!md.contains("entangles what humans keep apart"));
        assert!(md.contains("uncorrected for attenuation"));
        // A single-attribute group has no SE.
        let h = md.split("## Group `h`").nth(1).unwrap().split("\n## ").next().unwrap();
        assert!(h.contains("15.0 % ± – | 0.8500 ± – |") && !h.contains("± 0.0000"), "{h}");
        // The grid is scored on a test fold: adopting its best cell leaks.
        assert!(md.contains("Scored on held-out fold 0, one of the probes' own test folds"));
    }
}
