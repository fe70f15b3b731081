//! Figures 1–3, 5 and 6: the attribute probe's significance, error reduction, error by group
//! and both entanglement measures (Figure 4, the grid, is `grid.rs`).

use maud::{html, Markup};

use super::{code, figure, table, text, Page, Row};
use crate::report::model::Correlation;
use crate::report::svg::{self, num, Bar, Heatmap, Scale};
use crate::report::SIGNIFICANCE;

impl Page<'_> {
    pub(super) fn significance(&self) -> Markup {
        let folds = self.m.settings.probe.folds;
        let panels = self.rep_panels(
            &|r| Bar { value: r.pct_significant, err: None, faded: r.shrunk() },
            "% attributes significant",
            Some(100.0),
            None,
        );
        let rows = self.rep_rows(4, &|r| {
            vec![text(r.n_attributes), text(r.n_significant), text(num(r.pct_significant, 1))]
        });
        figure(
            "fig-significance",
            "Figure 1. Attributes significant in all folds",
            &panels,
            html! {
                "Percentage of attributes whose probe beats its permutation null (p < "
                (SIGNIFICANCE) ") in every one of the " (folds) " folds, per representation \
                (the paper's rule; paper Fig. 2), by text-encoder layer and by U-Net \
                tap × step."
            },
            self.notes(true),
            table(
                &[
                    ("representation", false),
                    ("attributes", true),
                    ("significant in all folds", true),
                    ("%", true),
                ],
                &rows,
            ),
        )
    }

    pub(super) fn rmse(&self) -> Markup {
        let best =
            self.m.best_text.and_then(|i| self.all.get(self.m.representations[i].key.as_str()));
        let reference = best.map(|b| {
            let pct = 100.0 * b.mean_reduction;
            (pct, format!("best text layer {} = {pct:.1} %", b.representation))
        });
        let panels = self.rep_panels(
            &|r| Bar {
                value: 100.0 * r.mean_reduction,
                err: Some(100.0 * r.se_reduction).filter(|_| r.n_attributes > 1),
                faded: r.shrunk(),
            },
            "mean reduction ± SE (%)",
            None,
            reference,
        );
        let rows = self.rep_rows(7, &|r| {
            vec![
                text(format!("{} %", num(100.0 * r.mean_reduction, 1))),
                text(format!("{} %", num(100.0 * r.se_reduction, 1))),
                text(num(r.mean_rmse, 4)),
                text(num(r.se_rmse, 4)),
                text(num(r.mean_r, 3)),
                text(num(r.effective_df, 3)),
            ]
        });
        figure(
            "fig-rmse",
            "Figure 2. Reduction of probe error per representation",
            &panels,
            html! {
                "Relative reduction of the held-out RMSE, 1 − RMSE / RMSE of predicting the \
                training mean, averaged over attributes, with the standard error over \
                attributes; higher is better. It is scale-free, so it leads; the mean RMSE \
                (paper Fig. 3) mixes the attributes' rating scales and is in the table. Each \
                attribute's RMSE is its mean over folds; r is Pearson's r within each fold, \
                averaged over folds; effective df = Σ λ/(λ + α) over the retained components."
                @if let Some(b) = best {
                    " The dashed line is the text encoder's best representation, "
                    (code(&b.representation)) " (mean reduction "
                    (format!("{:.1}", 100.0 * b.mean_reduction)) " %)."
                }
            },
            self.notes(true),
            table(
                &[
                    ("representation", false),
                    ("mean reduction", true),
                    ("SE", true),
                    ("mean RMSE", true),
                    ("SE", true),
                    ("mean r", true),
                    ("effective df", true),
                ],
                &rows,
            ),
        )
    }

    pub(super) fn rmse_groups(&self) -> Markup {
        let groups = &self.m.groups;
        let by = |rep: &str, g: &str| {
            self.m.summary.iter().find(|s| s.representation == rep && s.group == g)
        };
        let id = "fig-rmse-groups";
        let title = "Figure 3. Probe error by attribute group";
        let caption = text(
            "Mean held-out RMSE ± SE over the attributes of each group, per representation \
            (paper Fig. 4: spatial vs non-spatial). Groups come from [targets.groups]; groups \
            use different rating scales, so compare representations within a group.",
        );
        if groups.is_empty() {
            let msg = "No attribute groups: the spec sets no [targets.groups]";
            return figure(
                id,
                title,
                &[(String::new(), svg::placeholder(msg))],
                caption,
                html! {},
                table(&[("representation", false), ("group", false)], &[]),
            );
        }
        let values = self
            .reps
            .iter()
            .map(|rep| {
                groups
                    .iter()
                    .map(|g| {
                        by(rep, g).map(|r| Bar {
                            value: r.mean_rmse,
                            err: Some(r.se_rmse).filter(|_| r.n_attributes > 1),
                            faded: r.shrunk(),
                        })
                    })
                    .collect()
            })
            .collect();
        let chart = svg::bar_chart(&svg::Bars {
            categories: self.reps.iter().map(|r| r.to_string()).collect(),
            series: groups.clone(),
            values,
            x_label: "representation, bars by attribute group".into(),
            y_label: "mean RMSE ± SE".into(),
            y_max: None,
            reference: None,
        });
        let mut rows = Vec::new();
        for &rep in &self.reps {
            for g in groups {
                rows.push(match by(rep, g) {
                    Some(r) => Row::new(vec![
                        code(rep),
                        text(g),
                        text(r.n_attributes),
                        text(num(r.mean_rmse, 4)),
                        if r.n_attributes < 2 {
                            text("– (one attribute)")
                        } else {
                            text(num(r.se_rmse, 4))
                        },
                        text(num(r.pct_significant, 0)),
                    ]),
                    None => Row::missing(vec![
                        code(rep),
                        text(g),
                        text("no results"),
                        html! {},
                        html! {},
                        html! {},
                    ]),
                });
            }
        }
        figure(
            id,
            title,
            &[(String::new(), chart)],
            caption,
            self.notes(true),
            table(
                &[
                    ("representation", false),
                    ("group", false),
                    ("attributes", true),
                    ("mean RMSE", true),
                    ("SE", true),
                    ("% significant", true),
                ],
                &rows,
            ),
        )
    }

    pub(super) fn identification(&self) -> Markup {
        let panels = self.rep_panels(
            &|r| Bar { value: r.identification, err: None, faded: r.shrunk() },
            "identification accuracy",
            Some(1.0),
            Some((0.5, "chance 0.5".into())),
        );
        let signed = |v: f64| if v.is_finite() { format!("{v:+.3}") } else { "–".into() };
        let rows =
            self.rep_rows(3, &|r| vec![text(num(r.identification, 3)), text(signed(r.corr_delta))]);
        figure(
            "fig-identification",
            "Figure 5. Entanglement: identification accuracy",
            &panels,
            text(
                "Over ordered attribute pairs, how often an attribute's out-of-fold predictions \
                correlate more with its own human ratings than with the other attribute's \
                (chance 0.5, dashed; lower = more entangled), within folds: each fold's mean \
                is removed from predictions and ratings first, since each fold's predictions \
                carry its own intercept; n/a and – where no pair is defined (predictions \
                constant within folds). The table adds the correlation-structure delta: mean \
                |off-diagonal r| of the predictions minus that of the human ratings, i.e. how \
                much more the predictions of different attributes go together than the \
                ratings do. It is positive even for a perfect model of the noise-free ratings, \
                since predictions carry no rating noise; the human correlations are \
                uncorrected for attenuation.",
            ),
            self.notes(true),
            table(
                &[
                    ("representation", false),
                    ("identification accuracy", true),
                    ("correlation-structure delta", true),
                ],
                &rows,
            ),
        )
    }

    pub(super) fn correlation(&self) -> Markup {
        let title = "Figure 6. Entanglement: human vs model correlation structure";
        let head = [
            ("attribute a", false),
            ("attribute b", false),
            ("human r", true),
            ("model r", true),
            ("|model r| − |human r|", true),
        ];
        let caption_base = "Pearson correlations between attributes, within folds: of the \
            human ratings (left), of the probes' out-of-fold predictions (middle), and the \
            change in absolute correlation |model r| − |human r| (right; red = the predictions \
            of the pair go together more than the ratings do, blue = less). Ridge predictions \
            carry none of the rating noise that lowers the human correlations, so red is \
            expected even from a perfect model of the noise-free ratings; the human \
            correlations are uncorrected for attenuation (the ratings table gives no \
            per-rating SD and number of raters).";
        let empty = |msg: &str| {
            figure(
                "fig-correlation",
                title,
                &[(String::new(), svg::placeholder(msg))],
                text(caption_base),
                self.notes(false),
                table(&head, &[]),
            )
        };
        let (rep, names, pairs) = match &self.m.correlation {
            Correlation::NoResults => return empty("No results: no representation to show"),
            Correlation::TooFewAttributes => {
                return empty("Needs at least two attributes with results")
            }
            Correlation::Shown { representation, attributes, pairs } => {
                (representation, attributes, pairs)
            }
        };
        let j = names.len();
        let mut human = vec![vec![None; j]; j];
        let mut model = vec![vec![None; j]; j];
        let mut diff = vec![vec![None; j]; j];
        let idx = |n: &str| names.iter().position(|x| x == n);
        let fin = |v: f64| v.is_finite().then_some(v);
        for p in pairs {
            if let (Some(x), Some(y)) = (idx(&p.a), idx(&p.b)) {
                for (r, c) in [(x, y), (y, x)] {
                    human[r][c] = fin(p.human_r);
                    model[r][c] = fin(p.model_r);
                    diff[r][c] = fin(p.abs_delta());
                }
            }
        }
        for i in 0..j {
            human[i][i] = Some(1.0);
            model[i][i] = Some(1.0);
        }
        let dmax = diff.iter().flatten().flatten().map(|v: &f64| v.abs()).fold(0.0, f64::max);
        let dlim = ((dmax * 10.0).ceil() / 10.0).max(0.1);
        let hm = |values, scale| {
            svg::heatmap(&Heatmap {
                rows: names.clone(),
                cols: names.clone(),
                values,
                row_label: "attribute".into(),
                col_label: "attribute".into(),
                scale,
                decimals: 2,
                mark: None,
            })
        };
        let panels = vec![
            ("Human ratings".to_string(), hm(human, Scale::Diverging { limit: 1.0 })),
            (format!("Model predictions ({rep})"), hm(model, Scale::Diverging { limit: 1.0 })),
            ("|model r| − |human r|".to_string(), hm(diff, Scale::Diverging { limit: dlim })),
        ];
        let rows: Vec<Row> = pairs
            .iter()
            .map(|p| {
                Row::new(vec![
                    text(&p.a),
                    text(&p.b),
                    text(num(p.human_r, 3)),
                    text(num(p.model_r, 3)),
                    text(format!("{:+.3}", p.abs_delta())),
                ])
            })
            .collect();
        figure(
            "fig-correlation",
            title,
            &panels,
            html! {
                (caption_base) " Shown for " (code(rep)) ", the representation with the lowest \
                mean RMSE, on the stimuli every attribute has a prediction for; every \
                representation's pairs are in entanglement.parquet."
            },
            self.notes(false),
            table(&head, &rows),
        )
    }
}
