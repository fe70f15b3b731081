//! Figure 7: odd-one-out accuracy per representation (one bar per distance, the linear probe
//! and the predicted embedding), chance as the reference line.

use maud::{html, Markup};

use super::{code, figure, info, list, note, omitted, table, text, Page, Row};
use crate::report::model::Series;
use crate::report::svg::{self, num, Bar, Bars};

impl Page<'_> {
    pub(super) fn alignment(&self) -> Markup {
        let title = "Figure 7. Odd-one-out alignment with triplet judgements";
        let id = "fig-alignment";
        let (Some(a), Some(al)) = (&self.m.settings.alignment, &self.m.alignment) else {
            return omitted(
                id,
                title,
                "no alignment analyses in this run ([analysis.alignment] is not set).",
            );
        };
        let res = &al.results;
        let primary = &al.primary;
        let titles: Vec<String> = al
            .series
            .iter()
            .map(|s| match s {
                Series::OddOneOut(i) => a.distances[*i].name().to_string(),
                Series::LinearProbe => "linear probe".to_string(),
                Series::PredictedEmbedding => format!("predicted embedding ({primary})"),
            })
            .collect();
        let chart = if al.rows.is_empty() {
            svg::placeholder("No results: no alignment unit was planned or merged")
        } else {
            svg::bar_chart(&Bars {
                categories: al.rows.iter().map(|r| r.representation.clone()).collect(),
                series: titles.clone(),
                values: al
                    .rows
                    .iter()
                    .map(|r| {
                        let bar = |v: f64| Bar { value: v, err: None, faded: false };
                        r.values.iter().map(|v| v.filter(|v| v.is_finite()).map(bar)).collect()
                    })
                    .collect(),
                x_label: "representation, bars by distance / analysis".into(),
                y_label: "odd-one-out accuracy".into(),
                y_max: Some(1.0),
                reference: Some((alignment::CHANCE, "chance 1/3".into())),
            })
        };
        let embedding = !res.dimensions.is_empty();
        let mut head: Vec<(&str, bool)> = vec![("representation", false)];
        head.extend(titles.iter().map(|t| (t.as_str(), true)));
        if embedding {
            head.push(("embedding R²", true));
        }
        let value = |v: Option<f64>| text(v.map_or("–".into(), |v| num(v, 3)));
        let rows: Vec<Row> = al
            .rows
            .iter()
            .map(|r| {
                let mut cells = vec![code(&r.representation)];
                cells.extend(r.values.iter().map(|v| value(*v)));
                if embedding {
                    cells.push(value(r.r2));
                }
                if r.values.iter().all(Option::is_none) {
                    Row::missing(cells)
                } else {
                    Row::new(cells)
                }
            })
            .collect();
        let failed: Vec<Markup> = al
            .missing_units
            .iter()
            .map(|(what, state)| text(format!("{what} ({state})")))
            .collect();
        let tied: Vec<Markup> = al
            .ties
            .iter()
            .map(|(rep, t, n)| html! { (code(rep)) " (" (t) " of " (n) ")" })
            .collect();
        let notes = html! {
            @if !failed.is_empty() {
                (note(html! { "Alignment units without results (drawn as n/a): " (list(&failed)) "." }))
            }
            @if !tied.is_empty() {
                (info(html! {
                    "Triplets without a unique closest pair (" (primary) ") count as wrong: "
                    (list(&tied)) ". A representation that is constant across stimuli ties on \
                    every triplet and scores 0, below chance."
                }))
            }
        };
        let caption = html! {
            "Odd-one-out accuracy on " (res.n_triplets) " triplets over " (res.n_concepts)
            " concepts (science.md B2, paper 001): the fraction of triplets whose closest pair \
            of representations leaves out the element the human chose; ties count as wrong; \
            the dashed line is chance (1/3). One bar per distance"
            @if a.linear_probe {
                ", the linear probe (mean test accuracy over " (a.probe_folds)
                " folds over concepts)"
            }
            @if embedding { ", and the out-of-fold embedding predicted by ridge regression" }
            "."
            @if let Some((rep, v)) = &al.best_odd_one_out {
                " The best representation by " (primary) " accuracy is " (code(rep)) " ("
                (format!("{v:.3}")) ")."
            }
            @if embedding {
                " The human embedding itself (" (res.dimensions.len()) " dimensions) scores "
                (al.ceiling[0].1.map_or("–".into(), |v| num(v, 3))) " (" (primary) "), the \
                most a perfect prediction of it could reach."
            }
            @if let Some(d) = &a.description { " " (d) }
            " Every number, per fold, is in alignment.parquet."
        };
        figure(id, title, &[(String::new(), chart)], caption, notes, table(&head, &rows))
    }
}
