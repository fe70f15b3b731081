//! `## Dense probes` of `report.md` (science-2.md §D): per target the best representation with
//! the all-foreground baseline for masks, where the score emerges along denoising, and the
//! table of every (target, representation).

use std::fmt::Write;

use crate::report::svg::num;

use crate::report::dense::{Dense, EMERGENCE};

/// Appends the section.
pub(crate) fn section(md: &mut String, d: &Dense) {
    let _ = writeln!(md, "\n## Dense probes (seed 002)\n");
    let fit = if d.paper_fit {
        "trained the paper's way on the training images (Adam on the per-pixel cross-entropy \
         of 2 logits for masks, Huber δ = 1 for continuous maps, output nearest-upsampled; \
         `fit = \"paper\"`, science-2.md §D; the last epoch's weights)"
    } else {
        "fitted in exact closed form on the training images (ridge on block means for \
         continuous maps, soft-label logistic regression for masks; science-2.md §D)"
    };
    let _ = writeln!(
        md,
        "A linear map from every token of an unreduced U-Net representation to each label map, \
         {fit} and scored on each test image at full resolution: Dice of the predicted mask, \
         Spearman ρ of a continuous map; mean ± SE over test images. For masks the \
         all-foreground Dice is the baseline."
    );
    let controlled = d.targets.iter().any(|t| t.control.is_some());
    let _ = writeln!(
        md,
        "{}",
        if controlled {
            "\nThe control is the paper's weight-permuted U-Net (every `weight` tensor's elements \
             shuffled, seeded; biases kept), run on the same inputs and probed against the same \
             labels (`/p<seed>` in a key); the gap is the best cell's score minus its control's."
        } else {
            "\nNo weight-permuted control was run (`control = \"permute_weights\"` adds it)."
        }
    );
    if d.cells.is_empty() {
        let _ = writeln!(md, "\nNo dense results (see the quarantined units above).");
        return;
    }
    for t in &d.targets {
        let metric = if t.kind == "mask" { "Dice" } else { "Spearman ρ" };
        let Some(b) = t.best.map(|i| &d.cells[i]) else {
            let _ = writeln!(md, "\n- **{}**: no scored test image.", t.target);
            continue;
        };
        let baseline = match t.kind.as_str() {
            "mask" => format!(" (all-foreground Dice {})", num(b.baseline, 3)),
            _ => String::new(),
        };
        let emerges = match &t.emerges {
            Some((context, i)) => format!(
                "; it first reaches {:.0} % of that at {context} (`{}`, {})",
                100.0 * EMERGENCE,
                d.cells[*i].representation,
                num(d.cells[*i].mean, 3)
            ),
            None if t.kind == "mask" => {
                "; it does not beat predicting all foreground, so nothing emerges".into()
            }
            None => "; the best ρ is not positive, so nothing emerges".into(),
        };
        let control = match t.control.map(|i| &d.cells[i]) {
            Some(c) => format!(
                "; the weight-permuted control there scores {} ± {} (gap {})",
                num(c.mean, 3),
                num(c.se, 3),
                num(b.mean - c.mean, 3)
            ),
            None => String::new(),
        };
        let _ = writeln!(
            md,
            "\n- **{}** ({}): best {metric} {} ± {} at `{}`{baseline}{control}{emerges}.",
            t.target,
            t.kind,
            num(b.mean, 3),
            num(b.se, 3),
            b.representation
        );
    }
    let _ = writeln!(md, "\n| target | representation | score (mean ± SE) | test images | skipped | all-foreground Dice |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for c in &d.cells {
        let _ = writeln!(
            md,
            "| {} | `{}` | {} ± {} | {} | {} | {} |",
            c.target,
            c.representation,
            num(c.mean, 3),
            num(c.se, 3),
            c.images,
            c.skipped,
            num(c.baseline, 3)
        );
    }
    let _ = writeln!(md, "\nEvery test image's Dice, ρ, r and RMSE is in dense.parquet.");
}
