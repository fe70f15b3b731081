//! `report.md`: the merged results as a readable page. Deterministic (no timestamps, no paths
//! that vary between runs), so equal sweeps give byte-identical reports.

use std::fmt::Write;

use common::spec::{EarlyStoppingChoice, JobSpec};
use common::stimuli::Dataset;
use common::table::{analysis, AlignmentRow, GridRow};

use crate::alignment::AlignmentResults;
use crate::merge::{Cell, SummaryRow, NEAR_CONSTANT_SPREAD};

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
    let _ = writeln!(md, "An attribute is *significant* for a representation when its permutation p < 0.05 in every fold (the paper's rule). q = Benjamini–Hochberg over the representation's attributes on the largest fold p. Reduction = 1 − RMSE / RMSE of predicting the training mean: significance without an effect size misleads.\n");
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
    let _ = writeln!(
        md,
        "| representation | mean RMSE ± SE | reduction | mean r | % significant | spread |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for s in summary.iter().filter(|s| s.group == "all") {
        let flag = if s.spread < NEAR_CONSTANT_SPREAD { " (near-constant)" } else { "" };
        let _ = writeln!(
            md,
            "| `{}` | {:.4} ± {:.4} | {:.1} % | {:.3} | {:.0} % | {:.2e}{flag} |",
            s.representation,
            s.mean_rmse,
            s.se_rmse,
            100.0 * s.mean_reduction,
            s.mean_r,
            s.pct_significant,
            s.spread
        );
    }
    let _ = writeln!(md, "\n## Entanglement\n");
    let _ = writeln!(md, "Identification accuracy: over ordered attribute pairs, how often a prediction correlates more with its own ratings than with another attribute's (chance 0.5; lower = more entangled). Correlation-structure delta: mean |off-diagonal correlation| of the predictions minus that of the human ratings (positive = the model entangles what humans keep apart); per-pair values in `entanglement.parquet`.\n");
    let _ =
        writeln!(md, "| representation | identification accuracy | correlation-structure delta |");
    let _ = writeln!(md, "|---|---|---|");
    for s in summary.iter().filter(|s| s.group == "all") {
        let _ = writeln!(
            md,
            "| `{}` | {:.3} | {:+.3} |",
            s.representation, s.identification, s.corr_delta
        );
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
            "| representation | attributes | mean RMSE ± SE | reduction | mean r | % significant |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for s in summary.iter().filter(|s| s.group == g) {
            let _ = writeln!(
                md,
                "| `{}` | {} | {:.4} ± {:.4} | {:.1} % | {:.3} | {:.0} % |",
                s.representation,
                s.n_attributes,
                s.mean_rmse,
                s.se_rmse,
                100.0 * s.mean_reduction,
                s.mean_r,
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
                "| {attr} | {} | `{}` | {:.4} | {:.4} | {:.1} % | {:.3} | {} | {:.3} | {} |",
                c.group.as_deref().unwrap_or("-"),
                c.representation,
                c.rmse(),
                c.baseline(),
                100.0 * c.reduction(),
                c.pearson_r,
                if c.significant(a.folds) { "yes" } else { "no" },
                c.q,
                alphas(&c.alpha_fold)
            );
        } else {
            let _ = writeln!(md, "| {attr} | - | (no results: missing units) | | | | | | | |");
        }
    }
    grid_section(&mut md, grid);
    let flagged: Vec<&str> = summary
        .iter()
        .filter(|s| s.group == "all" && s.spread < NEAR_CONSTANT_SPREAD)
        .map(|s| s.representation.as_str())
        .collect();
    if !flagged.is_empty() {
        let _ = writeln!(md, "\n**Near-constant representations** (spread < {NEAR_CONSTANT_SPREAD:e}): {}. Their probes predict almost the mean; a significant p there reflects tiny differences, not a usable code.", flagged.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", "));
    }
    alignment_section(&mut md, spec, alignment);
    md
}

/// The α of each fold, compactly: one value when every fold used the same.
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
        // The binomial 99 % band for independent tests; folds and representations share data,
        // so this is a rough guide, not a test.
        let half = 2.576 * (0.05 * 0.95 / total as f64).sqrt() * 100.0;
        let (lo, hi) = (5.0 - half, 5.0 + half);
        let verdict = if (lo..=hi).contains(&rate) && significant * 20 <= cells.len() {
            "consistent with no knowledge, as a null control should be"
        } else {
            "**not** at the nominal rate: check this model and the ratings"
        };
        let _ = writeln!(md, "## Null control\n");
        let _ = writeln!(
            md,
            "This run is a **null control** (`job.null_control`): a model that should hold no knowledge of the ratings. Per-fold permutation p < 0.05 in {hits} of {total} tests = **{rate:.1} %** (nominal 5 %; 99 % band for independent tests {lo:.1}–{hi:.1} %); {significant} of {} (representation, attribute) pairs pass the all-folds rule. Verdict: {verdict}.\n",
            cells.len()
        );
    } else {
        let _ = writeln!(
            md,
            "Per-fold permutation p < 0.05 in {hits} of {total} tests ({rate:.1} %; 5 % if no representation held any knowledge).\n"
        );
    }
}

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
            let folds: Vec<&AlignmentRow> = res
                .rows
                .iter()
                .filter(|r| {
                    &r.representation == rep
                        && r.analysis == analysis::LINEAR_PROBE
                        && r.fold.is_some()
                })
                .collect();
            let mean = res.accuracy(rep, analysis::LINEAR_PROBE, "dot");
            let missing = if folds.len() < a.probe_folds && !folds.is_empty() {
                format!(" ({} of {} folds)", folds.len(), a.probe_folds)
            } else {
                String::new()
            };
            cells.push(format!("{}{missing}", acc(mean)));
            if !folds.is_empty()
                && folds.iter().all(|r| r.train_loss.is_some_and(|l| (l - 3f64.ln()).abs() < 1e-3))
            {
                silent.push(format!("`{rep}`"));
            }
        }
        if !res.dimensions.is_empty() {
            let r = res.overall(rep, analysis::EMBEDDING_REGRESSION, Some(primary));
            cells.push(acc(r.and_then(|r| r.r2)));
            cells.push(acc(r.and_then(|r| r.accuracy)));
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
            let r = res.overall(rep, analysis::ODD_ONE_OUT, Some(primary))?;
            let t = r.ties.filter(|&t| t > 0)?;
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
