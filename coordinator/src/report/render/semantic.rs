//! `## Semantic lens` of `report.md` (science-2.md §L): the verdict per distance and the
//! representation × distance table of every score.

use std::fmt::Write;

use crate::report::svg::num;

use crate::report::semantic::{transform_of, untransformed, Semantic};

/// Appends the section.
pub(crate) fn section(md: &mut String, s: &Semantic) {
    let _ = writeln!(md, "\n## Semantic lens (seed 003)\n");
    let _ = writeln!(
        md,
        "How well each representation keeps an object's class: leave-one-out 1-NN and 5-NN \
         class accuracy and mAP@R (objects of the same image are never neighbours), same- vs \
         different-class AUC of the pair distances, the inter/intra-class distance ratio and the \
         silhouette, each with its chance level and a 95 % bootstrap CI over objects. No code or \
         full text of the seed is public: science-2.md §L is this tool's definition, \
         implemented as written. The best representation is chosen among all of them, so its CI \
         is optimistic: read a verdict as a screen, not a test."
    );
    if s.rows.is_empty() {
        let _ = writeln!(md, "\nNo semantic results (see the quarantined units above).");
        return;
    }
    let _ = writeln!(md);
    for b in &s.best {
        let _ = writeln!(md, "- {}.", b.sentence(&s.rows[b.row]));
    }
    dropped(md, s);
    invariance(md, s);
    steps(md, s);
    video(md, s);
    ablation(md, s);
    let _ = writeln!(
        md,
        "\n| representation | distance | score | value | 95 % CI | chance | objects |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for r in &s.rows {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | [{}, {}] | {} | {} |",
            r.representation,
            r.distance,
            r.score,
            num(r.value, 3),
            num(r.ci_low, 3),
            num(r.ci_high, 3),
            num(r.chance, 3),
            r.n
        );
    }
    let _ = writeln!(md, "\nEvery score is in semantic.parquet.");
}

/// The objects dropped as under one token of a tap, per representation (first distance).
fn dropped(md: &mut String, s: &Semantic) {
    let Some(distance) = s.best.first().map(|b| b.distance.as_str()) else { return };
    let counts: Vec<String> = s
        .rows
        .iter()
        .filter(|r| r.distance == distance && r.score == "dropped_under_one_token")
        .map(|r| format!("`{}` {} of {}", r.representation, num(r.value, 0), r.n))
        .collect();
    if !counts.is_empty() {
        let _ = writeln!(
            md,
            "\nObjects whose mask covers less than one token of a tap are dropped from that \
             tap's scores (science-2.md §L): {}.",
            counts.join(", ")
        );
    }
}

/// The representation × transform table of drift and class cross-retrieval under the first
/// distance.
fn invariance(md: &mut String, s: &Semantic) {
    let Some(distance) = s.best.first().map(|b| b.distance.as_str()) else { return };
    if s.transforms.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\nInvariance under {distance}: each image and its mask transformed alike before the VAE; \
         drift = δ(f, fᵀ) over the mean inter-class distance of the untransformed objects (0: \
         unchanged, chance 1), and class top-1 of each transformed object retrieved among the \
         untransformed ones of other images (chance in semantic.parquet). Cells: drift / class \
         top-1.\n"
    );
    let _ = writeln!(md, "| representation | {} |", s.transforms.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(s.transforms.len()));
    let mut keys: Vec<String> = Vec::new();
    for r in s.rows.iter().filter(|r| transform_of(&r.representation).is_some()) {
        let k = untransformed(&r.representation);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for key in keys {
        let cell = |t: &str, score: &str| {
            s.rows
                .iter()
                .find(|r| {
                    r.distance == distance
                        && r.score == score
                        && untransformed(&r.representation) == key
                        && transform_of(&r.representation).as_deref() == Some(t)
                })
                .map_or("–".to_string(), |r| num(r.value, 3))
        };
        let cells: Vec<String> = s
            .transforms
            .iter()
            .map(|t| format!("{} / {}", cell(t, "drift"), cell(t, "cross_class_top1")))
            .collect();
        let _ = writeln!(md, "| `{key}` | {} |", cells.join(" | "));
    }
}

/// The layer ablation under the first distance: each tap alone, then the forward-selection path,
/// the best set marked.
fn ablation(md: &mut String, s: &Semantic) {
    let Some(distance) = s.best.first().map(|b| b.distance.as_str()) else { return };
    let rows: Vec<_> = s
        .rows
        .iter()
        .filter(|r| r.distance == distance && r.score.starts_with("ablation_"))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\nLayer ablation under {distance}, by 1-NN accuracy: each tap alone (raw descriptors), \
         then greedy forward selection of z-scored concatenations; the best set is the smallest \
         reaching the path's highest accuracy. Chosen on the same objects it is scored on, so \
         optimistic.\n"
    );
    let _ = writeln!(md, "| step | representations | 1-NN accuracy |");
    let _ = writeln!(md, "|---|---|---|");
    let mut step = 0;
    for r in rows {
        let label = match r.score.as_str() {
            "ablation_single" => {
                step = 0;
                "alone".to_string()
            }
            "ablation_step" => {
                step += 1;
                format!("{step}")
            }
            _ => "**best**".to_string(),
        };
        let _ = writeln!(md, "| {label} | `{}` | {} |", r.representation, num(r.value, 3));
    }
}

/// 1-NN accuracy under the first distance against the number of DDIM steps taken from each
/// noise level (`capture.image.denoise_steps`): one row per representation without the step.
fn steps(md: &mut String, s: &Semantic) {
    let Some(distance) = s.best.first().map(|b| b.distance.as_str()) else { return };
    let Some(c) = s.step_curves(distance) else { return };
    let _ = writeln!(
        md,
        "\n1-NN accuracy under {distance} after k deterministic DDIM steps from the noise level \
         (img2img without guidance; 0 steps: the noised image's own pass).\n"
    );
    let heads: Vec<String> = c.xs.iter().map(|k| format!("{k} steps")).collect();
    let _ = writeln!(md, "| representation | {} |", heads.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(c.xs.len()));
    for (key, values) in &c.series {
        let cells: Vec<String> =
            values.iter().map(|v| v.map_or("–".to_string(), |v| num(v, 3))).collect();
        let _ = writeln!(md, "| `{key}` | {} |", cells.join(" | "));
    }
}

/// Drift per frame gap and instance re-identification under the first distance, one row per
/// representation with video scores.
fn video(md: &mut String, s: &Semantic) {
    let Some(distance) = s.best.first().map(|b| b.distance.as_str()) else { return };
    let Some(c) = s.gap_curves(distance) else { return };
    let _ = writeln!(
        md,
        "\nVideo under {distance}: drift of one instance between frames Δτ apart (over the mean \
         inter-class distance; 0 unchanged, chance 1) and instance re-identification top-1 \
         against the objects of other frames of the same video (chance in brackets).\n"
    );
    let heads: Vec<String> = c.xs.iter().map(|g| format!("drift Δτ = {g}")).collect();
    let _ = writeln!(md, "| representation | {} | re-identification |", heads.join(" | "));
    let _ = writeln!(md, "|---|{}---|", "---|".repeat(c.xs.len()));
    for (key, values) in &c.series {
        let cells: Vec<String> =
            values.iter().map(|v| v.map_or("–".to_string(), |v| num(v, 3))).collect();
        let reid = s
            .rows
            .iter()
            .find(|r| {
                r.distance == distance && &r.representation == key && r.score == "video_reid_top1"
            })
            .map_or("–".into(), |r| format!("{} ({})", num(r.value, 3), num(r.chance, 3)));
        let _ = writeln!(md, "| `{key}` | {} | {reid} |", cells.join(" | "));
    }
}
