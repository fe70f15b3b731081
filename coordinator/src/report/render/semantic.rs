//! `## Semantic lens` of `report.md` (science-2.md §L): the verdict per distance and the
//! representation × distance table of every score.

use std::fmt::Write;

use crate::report::svg::num;

use crate::report::semantic::Semantic;

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
         is optimistic: read a verdict as a screen, not a test. Transforms, denoising steps, \
         video and several objects per image are not run yet."
    );
    if s.rows.is_empty() {
        let _ = writeln!(md, "\nNo semantic results (see the quarantined units above).");
        return;
    }
    let _ = writeln!(md);
    for b in &s.best {
        let _ = writeln!(md, "- {}.", b.sentence(&s.rows[b.row]));
    }
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
