//! `## Prompt directions` of `report.md` (science-2.md §H): per axis and representation the
//! queries' β and the sign-test verdict, the top descriptors per concept, and the clusterings.

use std::fmt::Write;

use crate::report::svg::num;

use common::table::direction_analysis;

use crate::report::directions::Directions;

/// Descriptors listed per (representation, concept).
const TOP: usize = 5;

fn ci(low: f64, high: f64) -> String {
    if low.is_finite() && high.is_finite() {
        format!("[{low:.3}, {high:.3}]")
    } else {
        "–".to_string()
    }
}

/// Appends the section.
pub(crate) fn section(md: &mut String, d: &Directions) {
    let _ = writeln!(md, "\n## Prompt directions in h-space (seed 004)\n");
    let _ = writeln!(
        md,
        "Directions d(p | b) are paired differences of U-Net features averaged over replicates \
         that share their noise; β(q) = cos(d(q | b), a) for an axis a = d(x | b) − d(y | b); \
         95 % CIs are percentile bootstraps over replicates; the verdict is the exact sign \
         test over the queries. No code of the seed is public: science-2.md §H is this tool's \
         definition, implemented as written. A lean is not knowledge by itself: every d(q | b) \
         shares the component h̄(queries) − h(b), and nothing makes an axis orthogonal to it, \
         so even a model with random weights can lean; read an axis against control axes \
         (pairs of prompts that should not matter)."
    );
    if d.axes.is_empty() && d.rows.is_empty() && d.clusters.is_empty() {
        let _ = writeln!(md, "\nNo direction results (see the quarantined units above).");
        return;
    }
    if !d.axes.is_empty() {
        let rated = d.axes.iter().any(|a| a.reference.is_some());
        let _ = write!(md, "\n| representation | axis | queries | mean β | verdict |");
        let _ = writeln!(md, "{}", if rated { " β vs reference: r, ρ (queries) |" } else { "" });
        let _ = writeln!(md, "|---|---|---|---|---|{}", if rated { "---|" } else { "" });
        for a in &d.axes {
            let _ = write!(
                md,
                "| `{}` | {} | {} | {} | {} |",
                a.representation,
                a.axis,
                a.queries,
                num(a.mean_beta, 3),
                a.sentence()
            );
            let reference = match a.reference {
                Some(r) => {
                    format!(" {}, {} ({}) |", num(r.pearson, 3), num(r.spearman, 3), r.queries)
                }
                None if rated => " – |".to_string(),
                None => String::new(),
            };
            let _ = writeln!(md, "{reference}");
        }
    }
    let mut concepts: Vec<(&str, &str)> = Vec::new();
    for r in d.rows.iter().filter(|r| r.analysis == direction_analysis::RANKING) {
        if !concepts.contains(&(r.representation.as_str(), r.reference.as_str())) {
            concepts.push((&r.representation, &r.reference));
        }
    }
    if !concepts.is_empty() {
        let _ = writeln!(
            md,
            "\nDescriptors closest to each concept (top {TOP}, cosine of directions):\n"
        );
        let _ = writeln!(md, "| representation | concept | rank | descriptor | cos | 95 % CI |");
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for (rep, concept) in concepts {
            let ranked = d.rows.iter().filter(|r| {
                r.analysis == direction_analysis::RANKING
                    && r.representation == rep
                    && r.reference == concept
            });
            for r in ranked.take(TOP) {
                let _ = writeln!(
                    md,
                    "| `{rep}` | {concept} | {} | {} | {} | {} |",
                    r.rank,
                    r.prompt,
                    num(r.value, 3),
                    ci(r.ci_low, r.ci_high)
                );
            }
        }
    }
    if !d.clusters.is_empty() {
        let _ =
            writeln!(md, "\nClusters of the queries (L2-normalised {}):\n", d.clusters[0].space);
        let _ = writeln!(md, "| representation | method | k | ARI | NMI | purity | silhouette |");
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for c in &d.clusters {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} | {} | {} |",
                c.representation,
                c.method,
                c.k,
                num(c.ari, 3),
                num(c.nmi, 3),
                num(c.purity, 3),
                num(c.silhouette, 3)
            );
        }
    }
    let _ = writeln!(md, "\nEvery β, projection and CI is in directions.parquet; labels and map coordinates in clusters.parquet.");
}
