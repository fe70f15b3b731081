//! Figure 4: the P × α grid of the representation with the lowest grid RMSE, and every
//! representation's best cell.

use maud::{html, Markup};

use super::{code, figure, note, omitted, table, text, Page, Row};
use crate::report::svg::{self, num, Heatmap, Scale};

impl Page<'_> {
    pub(super) fn grid(&self) -> Markup {
        let grid = &self.m.grid;
        let a = &self.m.settings.probe;
        let title = "Figure 4. P × α grid";
        let bad: Vec<Markup> = grid
            .missing_units
            .iter()
            .map(|(rep, state)| text(format!("{rep} ({state})")))
            .collect();
        let notes = html! {
            @if !bad.is_empty() {
                (note(html! { "Grid units without results: " (super::list(&bad)) "." }))
            }
        };
        let head =
            [("representation", false), ("best P", true), ("best α", true), ("mean RMSE", true)];
        let Some(best) = &grid.best else {
            if a.grid_components.is_empty() || a.grid_alphas.is_empty() {
                return omitted(
                    "fig-grid",
                    title,
                    "no P × α grid in this sweep (analysis.attribute_probe.grid_components / \
                        grid_alphas unset).",
                );
            }
            let msg = "The P × α grid was asked for but no grid unit has results";
            return figure(
                "fig-grid",
                title,
                &[(String::new(), svg::placeholder(msg))],
                text(
                    "Mean held-out RMSE over attributes on fold 0 for every PCA size P and \
                    ridge penalty α (paper Fig. 5), shown when the spec asks for a grid.",
                ),
                notes,
                table(
                    &[("representation", false), ("P", true), ("α", true), ("mean RMSE", true)],
                    &[],
                ),
            );
        };
        let cell = &best.cell;
        let (lo, hi) = best.range;
        let chart = svg::heatmap(&Heatmap {
            rows: best.components.iter().map(|p| p.to_string()).collect(),
            cols: best.alphas.iter().map(|al| format!("{al}")).collect(),
            values: best.values.clone(),
            row_label: "PCA components P".into(),
            col_label: "ridge α".into(),
            scale: Scale::Sequential { lo, hi },
            decimals: 4,
            mark: best.mark,
        });
        let rows: Vec<Row> = grid
            .best_per_rep
            .iter()
            .map(|g| {
                Row::new(vec![
                    code(&g.representation),
                    text(format!("{} ({} used)", g.components, g.n_components)),
                    text(g.alpha),
                    text(num(g.mean_rmse, 4)),
                ])
            })
            .collect();
        figure(
            "fig-grid",
            title,
            &[(format!("{}, fold {}", cell.representation, cell.fold), chart)],
            html! {
                "Mean held-out RMSE over attributes on fold " (cell.fold) " for every PCA size P \
                (rows) and ridge penalty α (columns) of " (code(&cell.representation)) ", the \
                representation with the lowest grid RMSE (paper Fig. 5); the cell outlined in \
                orange is its best (P = " (cell.components) ", α = " (cell.alpha) "). Darker is \
                lower. The table gives every representation's best cell; the whole grid is in \
                grid.parquet. Fold " (cell.fold) " is also one of the probes' test folds, so \
                the best cell is chosen on test data: adopting it for the probes would leak and \
                overstate them; choose α on each fold's training rows (" code { "alphas" } ") \
                instead."
            },
            notes,
            table(&head, &rows),
        )
    }
}
