//! `report/report.html`: the merged results as one self-contained page (inline CSS and SVG, no
//! script, no network; a Content-Security-Policy forbids any fetch), written beside `report.md`.
//!
//! Figures follow the paper's: % attributes significant in all folds, the mean relative
//! reduction ± SE (scale-free, unlike the mean RMSE, which the table adds) with the text
//! encoder's best layer as a reference line, the RMSE per attribute group, the P × α grid,
//! entanglement (identification accuracy; human vs model correlation matrices), odd-one-out
//! alignment with human triplets (when the spec asks for it), then a run summary. Each figure is a `<figure id="fig-…">` with its SVG panels, a caption saying what is
//! plotted and a table of the plotted numbers; a representation without results or a failed
//! unit is stated in the figure ("n/a" bars, notes), never left out silently. What a run has
//! nothing to show for by design (the U-Net panel of a text-only run, a grid or alignment the
//! spec does not ask for) is left out with one line saying why (`omitted`), not drawn empty.
//!
//! The page skeleton and its CSS are `template.html` (the one template); `svg.rs` draws.
//! Everything but the run summary is a pure function of the merged results. The run summary
//! adds wall time and attempt counts from `state.sqlite`, which differ between equal runs, so
//! `report.html` is the one report file that is not byte-identical across restarts (the crash and
//! Slurm tests compare the others).

mod svg;

use std::collections::BTreeMap;
use std::fmt::Write;

use common::spec::JobSpec;
use common::stimuli::Dataset;
use common::table::{analysis, AlignmentRow, GridRow};
use common::unit::{AlignmentTask, UnitSpec};

use crate::alignment::AlignmentResults;
use crate::db::{FailedAttempt, StateDb};
use crate::merge::{Cell, SummaryRow, Truth, SHRUNK_DF};
use svg::{esc, num, Bar, Bars, Heatmap, Scale};

const TEMPLATE: &str = include_str!("template.html");

/// The figure ids, in page order (the browser check looks for each).
pub(crate) const FIGURE_IDS: [&str; 7] = [
    "fig-significance",
    "fig-rmse",
    "fig-rmse-groups",
    "fig-grid",
    "fig-identification",
    "fig-correlation",
    "fig-alignment",
];

/// One unit as the state database knows it.
#[derive(Debug, Clone)]
pub(crate) struct UnitFact {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) state: String,
    pub(crate) attempts: u32,
    pub(crate) error: String,
    /// What the unit does, in words (`shard 0 (stimuli 0–250)`, `text.3/mean, folds 0–4`).
    pub(crate) what: String,
    /// The representation of a probe or grid unit.
    pub(crate) representation: Option<String>,
}

/// What the run summary needs from `state.sqlite`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// Every unit, in plan order.
    pub(crate) units: Vec<UnitFact>,
    pub(crate) failed: Vec<FailedAttempt>,
    pub(crate) attempts: i64,
    /// Coordinator starts (1 + resumes).
    pub(crate) sessions: i64,
    /// First coordinator start to last commit.
    pub(crate) wall_ms: Option<i64>,
    /// Worker-hours on CPU-only workers.
    pub(crate) cpu_hours: f64,
    /// Worker-hours on GPU workers.
    pub(crate) gpu_hours: f64,
    /// Units redone because a committed output failed verification: unit, what happened.
    pub(crate) redone: Vec<(String, String)>,
}

impl Facts {
    pub(crate) fn read(db: &StateDb) -> anyhow::Result<Facts> {
        let mut units = Vec::new();
        for (id, kind, state, attempts, error, descriptor) in db.unit_rows()? {
            let (what, representation) = match serde_json::from_str::<UnitSpec>(&descriptor) {
                Ok(UnitSpec::Capture(c)) => {
                    (format!("shard {} (stimuli {}–{})", c.shard, c.start, c.end), None)
                }
                Ok(UnitSpec::Probe(p)) => {
                    let key = p.representation.key();
                    (format!("{key}, folds {}", folds(&p.folds)), Some(key))
                }
                Ok(UnitSpec::Grid(p)) => {
                    let key = p.representation.key();
                    (format!("{key}, P × α grid"), Some(key))
                }
                Ok(UnitSpec::Alignment(a)) => {
                    let key = a.representation.key();
                    let what = match a.task {
                        AlignmentTask::Evaluate => format!("{key}, odd-one-out alignment"),
                        AlignmentTask::LinearProbe { fold } => {
                            format!("{key}, linear probe fold {fold}")
                        }
                    };
                    (what, Some(key))
                }
                Err(e) => (format!("(unreadable descriptor: {e})"), None),
            };
            units.push(UnitFact { id, kind, state, attempts, error, what, representation });
        }
        let (sessions, wall_ms) = db.wall_time()?;
        let (cpu_hours, gpu_hours) = db.worker_hours()?;
        Ok(Facts {
            cpu_hours,
            gpu_hours,
            units,
            failed: db.failed_attempts()?,
            attempts: db.attempt_count()?,
            sessions,
            wall_ms,
            redone: db.corrupt_events()?,
        })
    }
}

fn folds(f: &[usize]) -> String {
    match (f.first(), f.last()) {
        (Some(a), Some(b)) if f.len() > 1 && b - a + 1 == f.len() => format!("{a}–{b}"),
        _ => f.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "),
    }
}

/// Everything the page shows.
pub(crate) struct Input<'a> {
    pub(crate) spec: &'a JobSpec,
    pub(crate) data: &'a Dataset,
    pub(crate) cells: &'a [Cell],
    pub(crate) summary: &'a [SummaryRow],
    pub(crate) grid: &'a [GridRow],
    /// The merged alignment results, when the spec asks for them.
    pub(crate) alignment: Option<&'a AlignmentResults>,
    pub(crate) truth: &'a Truth,
    pub(crate) facts: &'a Facts,
}

/// Renders the page.
pub(crate) fn render(input: &Input<'_>) -> String {
    let page = Page::new(input);
    let mut body = String::new();
    page.header(&mut body);
    body.push_str(&page.significance());
    body.push_str(&page.rmse());
    body.push_str(&page.rmse_groups());
    body.push_str(&page.grid());
    body.push_str(&page.identification());
    body.push_str(&page.correlation());
    body.push_str(&page.alignment());
    body.push_str(&page.run_summary());
    let title = format!("diffprobe report: {}", esc(&input.spec.job.name));
    let (head, tail) = TEMPLATE.split_once("{{body}}").expect("template has {{body}}");
    format!("{}{body}{tail}", head.replace("{{title}}", &title))
}

/// How far a representation's probe units got.
#[derive(Debug, Clone, Copy, Default)]
struct Coverage {
    planned: usize,
    committed: usize,
    quarantined: usize,
}

struct Page<'a> {
    input: &'a Input<'a>,
    /// Every representation, planned or with results, in plan order.
    reps: Vec<String>,
    /// The `all` summary row of each representation with results.
    all: BTreeMap<&'a str, &'a SummaryRow>,
    coverage: BTreeMap<String, Coverage>,
}

fn split(key: &str) -> (&str, &str) {
    key.rsplit_once('/').unwrap_or((key, ""))
}

fn is_text(key: &str) -> bool {
    key.starts_with("text.")
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

fn figure(
    id: &str,
    title: &str,
    panels: &[(String, String)],
    caption: &str,
    notes: &str,
    table: &str,
) -> String {
    let mut s = format!(r#"<figure id="{id}"><h2>{}</h2><div class="panels">"#, esc(title));
    for (heading, svg) in panels {
        let _ = write!(s, r#"<div class="panel">"#);
        if !heading.is_empty() {
            let _ = write!(s, "<h3>{}</h3>", esc(heading));
        }
        let _ = write!(s, "{svg}</div>");
    }
    let _ = writeln!(s, "</div><figcaption>{caption}</figcaption>{notes}{table}</figure>");
    s
}

/// A table; `head` gives each column's title and whether it is numeric (right-aligned).
/// Cells are HTML (already escaped). A row whose first cell starts with `!` is marked missing.
fn table(head: &[(&str, bool)], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table>");
    if head.iter().any(|h| !h.0.is_empty()) {
        s.push_str("<thead><tr>");
        for (h, _) in head {
            let _ = write!(s, "<th>{}</th>", esc(h));
        }
        s.push_str("</tr></thead>");
    }
    s.push_str("<tbody>");
    for row in rows {
        let missing = row.first().is_some_and(|c| c.starts_with('!'));
        s.push_str(if missing { r#"<tr class="missing">"# } else { "<tr>" });
        for (i, c) in row.iter().enumerate() {
            let c = if i == 0 && missing { &c[1..] } else { c.as_str() };
            let class = if head.get(i).is_some_and(|h| h.1) { r#" class="n""# } else { "" };
            let _ = write!(s, "<td{class}>{c}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    if rows.len() > 16 {
        format!(r#"<div class="scroll">{s}</div>"#)
    } else {
        s
    }
}

fn code(s: &str) -> String {
    format!("<code>{}</code>", esc(s))
}

fn note(html: &str) -> String {
    format!(r#"<p class="note">{html}</p>"#)
}

fn info(html: &str) -> String {
    format!(r#"<p class="note info">{html}</p>"#)
}

fn duration(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {:.0} s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{} h {:02} min", (s / 3600.0).floor(), ((s % 3600.0) / 60.0).floor())
    }
}

const NO_UNET: &str = "No U-Net panel: this run has no U-Net taps, only text-encoder ones.";
const NO_TEXT: &str = "No text-encoder panel: this run has no text-encoder taps.";

/// A figure the run has nothing to show for: its heading and one line saying why.
fn omitted(id: &str, title: &str, why: &str) -> String {
    format!(
        r#"<figure id="{id}" class="omitted"><h2>{}</h2><p class="note info">Not shown: {}</p></figure>
"#,
        esc(title),
        esc(why)
    )
}

impl<'a> Page<'a> {
    fn new(input: &'a Input<'a>) -> Page<'a> {
        let mut reps = Vec::new();
        let mut coverage: BTreeMap<String, Coverage> = BTreeMap::new();
        for u in input.facts.units.iter().filter(|u| u.kind == "probe") {
            let Some(rep) = &u.representation else { continue };
            push_unique(&mut reps, rep);
            let c = coverage.entry(rep.clone()).or_default();
            c.planned += 1;
            c.committed += usize::from(u.state == "committed");
            c.quarantined += usize::from(u.state == "quarantined");
        }
        let mut all = BTreeMap::new();
        for s in input.summary.iter().filter(|s| s.group == "all") {
            push_unique(&mut reps, &s.representation);
            all.insert(s.representation.as_str(), s);
        }
        Page { input, reps, all, coverage }
    }

    fn quarantined(&self) -> Vec<&UnitFact> {
        self.input.facts.units.iter().filter(|u| u.state == "quarantined").collect()
    }

    fn header(&self, out: &mut String) {
        let (spec, data) = (self.input.spec, self.input.data);
        let a = &spec.analysis.attribute_probe;
        let model = spec
            .model
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let alpha = if a.alphas.is_empty() {
            format!("ridge α = {}", a.alpha)
        } else {
            format!("ridge α chosen per fold by leave-one-out from {:?}", a.alphas)
        };
        let _ = write!(
            out,
            "<h1>diffprobe report: {}</h1><p>Model {} ({:?}); {} stimuli ({} \
                dropped for missing ratings); {} attributes; {} folds; PCA P = {}, {}; \
                {} permutations per fold (seed {}).</p>",
            esc(&spec.job.name),
            code(&model),
            spec.model.kind,
            data.len(),
            data.dropped.len(),
            data.attributes.len(),
            a.folds,
            a.components,
            esc(&alpha),
            a.permutations,
            a.seed
        );
        let units = &self.input.facts.units;
        let done = units.iter().filter(|u| u.state == "committed").count();
        if done < units.len() {
            let _ = write!(
                out,
                r#"<div class="banner"><b>Incomplete: {done} of {} units committed.</b> The figures cover only the committed units; the run is still going, was interrupted, or has units to redo or quarantined. Finish it with <code>diffprobe resume</code>, then <code>diffprobe report</code> again.</div>"#,
                units.len()
            );
        }
        let q = self.quarantined();
        let missing: Vec<&String> =
            self.reps.iter().filter(|r| !self.all.contains_key(r.as_str())).collect();
        if self.all.is_empty() {
            let _ = write!(
                out,
                r#"<div class="banner"><b>No results:</b> no probe results were merged, so every figure below is empty.{}</div>"#,
                if q.is_empty() {
                    String::new()
                } else {
                    format!(" {} units were quarantined (see the run summary).", q.len())
                }
            );
        } else if !q.is_empty() || !missing.is_empty() {
            let _ = write!(
                out,
                r#"<div class="banner"><b>Incomplete:</b> {} quarantined units; {} of {} representations without results. The figures mark what is missing; the run summary lists the errors.</div>"#,
                q.len(),
                missing.len(),
                self.reps.len()
            );
        }
        out.push_str("<nav>");
        for (id, name) in FIGURE_IDS.iter().zip([
            "Significance",
            "RMSE",
            "RMSE by group",
            "P × α grid",
            "Identification",
            "Correlation structure",
            "Alignment",
        ]) {
            let _ = write!(out, r##"<a href="#{id}">{name}</a>"##);
        }
        out.push_str(r##"<a href="#run-summary">Run summary</a></nav>"##);
    }

    /// Notes on representations without results or with missing probe units, on fits shrunk
    /// to the mean (drawn pale), and on a representation panel left out.
    fn notes(&self, has: &dyn Fn(&str) -> bool, pale: bool) -> String {
        let mut s = String::new();
        if self.reps.is_empty() {
            return note("No results: no representation was planned or merged.");
        }
        let mut none = Vec::new();
        let mut partial = Vec::new();
        for rep in &self.reps {
            let c = self.coverage.get(rep).copied().unwrap_or_default();
            let why = if c.planned == 0 {
                String::new()
            } else if c.quarantined > 0 {
                format!(" ({} of {} probe units quarantined)", c.quarantined, c.planned)
            } else if c.committed < c.planned {
                format!(" ({} of {} probe units not run)", c.planned - c.committed, c.planned)
            } else {
                String::new()
            };
            if !has(rep) {
                none.push(format!("{}{}", code(rep), esc(&why)));
            } else if c.committed < c.planned {
                partial.push(format!("{}{}", code(rep), esc(&why)));
            }
        }
        if !none.is_empty() {
            s.push_str(&note(&format!("No results (drawn as n/a): {}.", none.join(", "))));
        }
        if !partial.is_empty() {
            s.push_str(&note(&format!(
                "Missing folds, so numbers cover only the folds that ran and no \
                    attribute can be significant in all folds: {}.",
                partial.join(", ")
            )));
        }
        let shrunk: Vec<String> =
            self.all.values().filter(|r| r.shrunk()).map(|r| code(&r.representation)).collect();
        if pale && !shrunk.is_empty() {
            s.push_str(&info(&format!(
                "Pale bars: shrunk to the mean at this α (effective degrees of freedom \
                    Σ λ/(λ + α) &lt; {SHRUNK_DF}); rerun with <code>zscore = true</code> or \
                    <code>alphas</code>. Their features vary little next to the penalty, so \
                    the probe predicts almost the training mean whatever they hold: {}.",
                shrunk.join(", ")
            )));
        }
        if pale {
            let text = self.reps.iter().any(|r| is_text(r));
            let other = self.reps.iter().any(|r| !is_text(r));
            if text && !other {
                s.push_str(&info(&esc(NO_UNET)));
            } else if other && !text {
                s.push_str(&info(&esc(NO_TEXT)));
            }
        }
        s
    }

    /// Two panels over the representations: text-encoder layers (taps × pooling) and U-Net taps.
    fn rep_panels(
        &self,
        value: &dyn Fn(&SummaryRow) -> Bar,
        y_label: &str,
        y_max: Option<f64>,
        reference: Option<(f64, String)>,
    ) -> Vec<(String, String)> {
        let panel = |keys: Vec<&String>, x_label: &str| -> String {
            let mut taps = Vec::new();
            let mut pools = Vec::new();
            for k in &keys {
                let (t, p) = split(k);
                push_unique(&mut taps, t);
                push_unique(&mut pools, p);
            }
            let values = taps
                .iter()
                .map(|t| {
                    pools
                        .iter()
                        .map(|p| {
                            let key = if p.is_empty() { t.clone() } else { format!("{t}/{p}") };
                            self.all.get(key.as_str()).map(|r| value(r))
                        })
                        .collect()
                })
                .collect();
            svg::bar_chart(&Bars {
                categories: taps,
                series: pools,
                values,
                x_label: x_label.into(),
                y_label: y_label.into(),
                y_max,
                reference: reference.clone(),
            })
        };
        let text: Vec<&String> = self.reps.iter().filter(|r| is_text(r)).collect();
        let other: Vec<&String> = self.reps.iter().filter(|r| !is_text(r)).collect();
        if text.is_empty() && other.is_empty() {
            return vec![(
                String::new(),
                svg::placeholder("No results: no representation was planned or merged"),
            )];
        }
        // A panel the run has no representations for is left out; `notes` says so.
        let mut panels = Vec::new();
        if !text.is_empty() {
            panels.push((
                "Text encoder, by layer".to_string(),
                panel(text, "text-encoder tap (text.0 = embeddings), bars by pooling"),
            ));
        }
        if !other.is_empty() {
            panels.push((
                "U-Net taps × denoising step".to_string(),
                panel(other, "U-Net tap × step"),
            ));
        }
        panels
    }

    fn has_all(&self) -> impl Fn(&str) -> bool + '_ {
        move |r: &str| self.all.contains_key(r)
    }

    fn rep_rows(&self, cols: usize, row: &dyn Fn(&SummaryRow) -> Vec<String>) -> Vec<Vec<String>> {
        self.reps
            .iter()
            .map(|rep| match self.all.get(rep.as_str()) {
                Some(r) => {
                    let mut v = vec![code(rep)];
                    v.extend(row(r));
                    v
                }
                None => {
                    let mut v = vec![format!("!{}", code(rep)), "no results".into()];
                    v.resize(cols, String::new());
                    v
                }
            })
            .collect()
    }

    fn significance(&self) -> String {
        let folds = self.input.spec.analysis.attribute_probe.folds;
        let panels = self.rep_panels(
            &|r| Bar { value: r.pct_significant, err: None, faded: r.shrunk() },
            "% attributes significant",
            Some(100.0),
            None,
        );
        let rows = self.rep_rows(4, &|r| {
            vec![
                r.n_attributes.to_string(),
                format!("{:.0}", r.pct_significant * r.n_attributes as f64 / 100.0),
                num(r.pct_significant, 1),
            ]
        });
        figure(
            "fig-significance",
            "Figure 1. Attributes significant in all folds",
            &panels,
            &format!(
                "Percentage of attributes whose probe beats its permutation null (p \
                    &lt; 0.05) in every one of the {folds} folds, per representation (the \
                    paper's rule; paper Fig. 2), by text-encoder layer and by U-Net \
                    tap × step."
            ),
            &self.notes(&self.has_all(), true),
            &table(
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

    /// The text encoder's best representation by mean relative reduction (all attributes).
    fn best_text(&self) -> Option<&SummaryRow> {
        self.all
            .values()
            .copied()
            .filter(|r| is_text(&r.representation) && r.mean_reduction.is_finite())
            .max_by(|a, b| {
                a.mean_reduction
                    .total_cmp(&b.mean_reduction)
                    .then(b.representation.cmp(&a.representation))
            })
    }

    fn rmse(&self) -> String {
        let best = self.best_text();
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
                format!("{} %", num(100.0 * r.mean_reduction, 1)),
                format!("{} %", num(100.0 * r.se_reduction, 1)),
                num(r.mean_rmse, 4),
                num(r.se_rmse, 4),
                num(r.mean_r, 3),
                num(r.effective_df, 3),
            ]
        });
        let best_txt = best
            .map(|b| {
                format!(
                    " The dashed line is the text encoder's best representation, {} (mean \
                        reduction {:.1} %).",
                    code(&b.representation),
                    100.0 * b.mean_reduction
                )
            })
            .unwrap_or_default();
        figure(
            "fig-rmse",
            "Figure 2. Reduction of probe error per representation",
            &panels,
            &format!(
                "Relative reduction of the held-out RMSE, 1 − RMSE / RMSE of predicting the \
                    training mean, averaged over attributes, with the standard error over \
                    attributes; higher is better. It is scale-free, so it leads; the mean \
                    RMSE (paper Fig. 3) mixes the attributes' rating scales and is in the \
                    table. Each attribute's RMSE is its mean over folds; r is Pearson's r \
                    within each fold, averaged over folds; effective df = Σ λ/(λ + α) over \
                    the retained components.{best_txt}"
            ),
            &self.notes(&self.has_all(), true),
            &table(
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

    fn rmse_groups(&self) -> String {
        let mut groups: Vec<String> = self.input.data.groups.iter().flatten().cloned().collect();
        groups.sort();
        groups.dedup();
        let by: BTreeMap<(&str, &str), &SummaryRow> = self
            .input
            .summary
            .iter()
            .map(|s| ((s.representation.as_str(), s.group.as_str()), s))
            .collect();
        let caption = "Mean held-out RMSE ± SE over the attributes of each group, per \
            representation (paper Fig. 4: spatial vs non-spatial). Groups come \
            from [targets.groups]; groups use different rating scales, so compare \
            representations within a group.";
        if groups.is_empty() {
            return figure(
                "fig-rmse-groups",
                "Figure 3. Probe error by attribute group",
                &[(
                    String::new(),
                    svg::placeholder("No attribute groups: the spec sets no [targets.groups]"),
                )],
                caption,
                "",
                &table(&[("representation", false), ("group", false)], &[]),
            );
        }
        let values = self
            .reps
            .iter()
            .map(|rep| {
                groups
                    .iter()
                    .map(|g| {
                        by.get(&(rep.as_str(), g.as_str())).map(|r| Bar {
                            value: r.mean_rmse,
                            err: Some(r.se_rmse).filter(|_| r.n_attributes > 1),
                            faded: r.shrunk(),
                        })
                    })
                    .collect()
            })
            .collect();
        let chart = svg::bar_chart(&Bars {
            categories: self.reps.clone(),
            series: groups.clone(),
            values,
            x_label: "representation, bars by attribute group".into(),
            y_label: "mean RMSE ± SE".into(),
            y_max: None,
            reference: None,
        });
        let mut rows = Vec::new();
        for rep in &self.reps {
            for g in &groups {
                match by.get(&(rep.as_str(), g.as_str())) {
                    Some(r) => rows.push(vec![
                        code(rep),
                        esc(g),
                        r.n_attributes.to_string(),
                        num(r.mean_rmse, 4),
                        if r.n_attributes < 2 {
                            "– (one attribute)".into()
                        } else {
                            num(r.se_rmse, 4)
                        },
                        num(r.pct_significant, 0),
                    ]),
                    None => rows.push(vec![
                        format!("!{}", code(rep)),
                        esc(g),
                        "no results".into(),
                        String::new(),
                        String::new(),
                        String::new(),
                    ]),
                }
            }
        }
        figure(
            "fig-rmse-groups",
            "Figure 3. Probe error by attribute group",
            &[(String::new(), chart)],
            caption,
            &self.notes(&self.has_all(), true),
            &table(
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

    fn grid(&self) -> String {
        let grid = self.input.grid;
        let a = &self.input.spec.analysis.attribute_probe;
        let title = "Figure 4. P × α grid";
        let grid_units: Vec<&UnitFact> =
            self.input.facts.units.iter().filter(|u| u.kind == "grid").collect();
        let bad: Vec<String> = grid_units
            .iter()
            .filter(|u| u.state != "committed")
            .map(|u| {
                format!("{} ({})", esc(u.representation.as_deref().unwrap_or("?")), esc(&u.state))
            })
            .collect();
        let notes = if bad.is_empty() {
            String::new()
        } else {
            note(&format!("Grid units without results: {}.", bad.join(", ")))
        };
        let Some(best) = grid
            .iter()
            .filter(|g| g.mean_rmse.is_finite())
            .min_by(|x, y| x.mean_rmse.total_cmp(&y.mean_rmse))
        else {
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
                "Mean held-out RMSE over attributes on fold 0 for every PCA size P and \
                    ridge penalty α (paper Fig. 5), shown when the spec asks for a grid.",
                &notes,
                &table(
                    &[("representation", false), ("P", true), ("α", true), ("mean RMSE", true)],
                    &[],
                ),
            );
        };
        let rep = &best.representation;
        let mine: Vec<&GridRow> = grid.iter().filter(|g| &g.representation == rep).collect();
        let mut ps: Vec<u32> = mine.iter().map(|g| g.components).collect();
        ps.sort_unstable();
        ps.dedup();
        let mut alphas: Vec<f64> = mine.iter().map(|g| g.alpha).collect();
        alphas.sort_by(f64::total_cmp);
        alphas.dedup();
        let at = |p: u32, al: f64| mine.iter().find(|g| g.components == p && g.alpha == al);
        let values: Vec<Vec<Option<f64>>> = ps
            .iter()
            .map(|&p| alphas.iter().map(|&al| at(p, al).map(|g| g.mean_rmse)).collect())
            .collect();
        let finite = mine.iter().map(|g| g.mean_rmse).filter(|v| v.is_finite());
        let lo = finite.clone().fold(f64::INFINITY, f64::min);
        let hi = finite.fold(f64::NEG_INFINITY, f64::max);
        let mark = ps
            .iter()
            .position(|&p| p == best.components)
            .zip(alphas.iter().position(|&al| al == best.alpha));
        let chart = svg::heatmap(&Heatmap {
            rows: ps.iter().map(|p| p.to_string()).collect(),
            cols: alphas.iter().map(|al| format!("{al}")).collect(),
            values,
            row_label: "PCA components P".into(),
            col_label: "ridge α".into(),
            scale: Scale::Sequential { lo, hi },
            decimals: 4,
            mark,
        });
        let mut reps: Vec<String> = Vec::new();
        for g in grid {
            push_unique(&mut reps, &g.representation);
        }
        let rows: Vec<Vec<String>> = reps
            .iter()
            .filter_map(|r| {
                grid.iter()
                    .filter(|g| &g.representation == r)
                    .min_by(|x, y| x.mean_rmse.total_cmp(&y.mean_rmse))
            })
            .map(|g| {
                vec![
                    code(&g.representation),
                    format!("{} ({} used)", g.components, g.n_components),
                    format!("{}", g.alpha),
                    num(g.mean_rmse, 4),
                ]
            })
            .collect();
        figure(
            "fig-grid",
            title,
            &[(format!("{rep}, fold {}", best.fold), chart)],
            &format!(
                "Mean held-out RMSE over attributes on fold {} for every PCA size P \
                    (rows) and ridge penalty α (columns) of {}, the representation with \
                    the lowest grid RMSE (paper Fig. 5); the cell outlined in orange is \
                    its best (P = {}, α = {}). Darker is lower. The table gives every \
                    representation's best cell; the whole grid is in grid.parquet. Fold {} \
                    is also one of the probes' test folds, so the best cell is chosen on \
                    test data: adopting it for the probes would leak and overstate them; \
                    choose α on each fold's training rows (<code>alphas</code>) instead.",
                best.fold,
                code(rep),
                best.components,
                best.alpha,
                best.fold
            ),
            &notes,
            &table(
                &[
                    ("representation", false),
                    ("best P", true),
                    ("best α", true),
                    ("mean RMSE", true),
                ],
                &rows,
            ),
        )
    }

    fn identification(&self) -> String {
        let panels = self.rep_panels(
            &|r| Bar { value: r.identification, err: None, faded: r.shrunk() },
            "identification accuracy",
            Some(1.0),
            Some((0.5, "chance 0.5".into())),
        );
        let signed = |v: f64| if v.is_finite() { format!("{v:+.3}") } else { "–".into() };
        let rows = self.rep_rows(3, &|r| vec![num(r.identification, 3), signed(r.corr_delta)]);
        figure(
            "fig-identification",
            "Figure 5. Entanglement: identification accuracy",
            &panels,
            "Over ordered attribute pairs, how often an attribute's out-of-fold \
                predictions correlate more with its own human ratings than with the \
                other attribute's (chance 0.5, dashed; lower = more entangled), within \
                folds: each fold's mean is removed from predictions and ratings first, \
                since each fold's predictions carry its own intercept; n/a and – where no \
                pair is defined (predictions constant within folds). The table adds the \
                correlation-structure delta: mean |off-diagonal r| of the predictions \
                minus that of the human ratings, i.e. how much more the predictions of \
                different attributes go together than the ratings do. It is positive even \
                for a perfect model of the noise-free ratings, since predictions carry no \
                rating noise; the human correlations are uncorrected for attenuation.",
            &self.notes(&self.has_all(), true),
            &table(
                &[
                    ("representation", false),
                    ("identification accuracy", true),
                    ("correlation-structure delta", true),
                ],
                &rows,
            ),
        )
    }

    fn correlation(&self) -> String {
        let title = "Figure 6. Entanglement: human vs model correlation structure";
        let best = self.all.values().copied().filter(|r| r.mean_rmse.is_finite()).min_by(|a, b| {
            a.mean_rmse.total_cmp(&b.mean_rmse).then(a.representation.cmp(&b.representation))
        });
        let head = [
            ("attribute a", false),
            ("attribute b", false),
            ("human r", true),
            ("model r", true),
            ("|model r| − |human r|", true),
        ];
        let caption_base = "Pearson correlations between attributes, within folds: of the human \
            ratings (left), of the probes' out-of-fold predictions (middle), and the \
            change in absolute correlation |model r| − |human r| (right; red = the \
            predictions of the pair go together more than the ratings do, blue = less). \
            Ridge predictions carry none of the rating noise that lowers the human \
            correlations, so red is expected even from a perfect model of the \
            noise-free ratings; the human correlations are uncorrected for attenuation \
            (the ratings table gives no per-rating SD and number of raters).";
        let Some(best) = best else {
            return figure(
                "fig-correlation",
                title,
                &[(String::new(), svg::placeholder("No results: no representation to show"))],
                caption_base,
                &self.notes(&self.has_all(), false),
                &table(&head, &[]),
            );
        };
        let rep = &best.representation;
        let set: Vec<&Cell> =
            self.input.cells.iter().filter(|c| &c.representation == rep).collect();
        if set.len() < 2 {
            return figure(
                "fig-correlation",
                title,
                &[(String::new(), svg::placeholder("Needs at least two attributes with results"))],
                caption_base,
                &self.notes(&self.has_all(), false),
                &table(&head, &[]),
            );
        }
        let names: Vec<String> = set.iter().map(|c| c.attribute.clone()).collect();
        let j = names.len();
        let mut human = vec![vec![None; j]; j];
        let mut model = vec![vec![None; j]; j];
        let mut diff = vec![vec![None; j]; j];
        let idx = |n: &str| names.iter().position(|x| x == n);
        let pairs = crate::merge::pair_table(&set, self.input.truth);
        let fin = |v: f64| v.is_finite().then_some(v);
        for (a, b, h, m) in &pairs {
            if let (Some(x), Some(y)) = (idx(a), idx(b)) {
                for (p, q) in [(x, y), (y, x)] {
                    human[p][q] = fin(*h);
                    model[p][q] = fin(*m);
                    diff[p][q] = fin(m.abs() - h.abs());
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
        let rows: Vec<Vec<String>> = pairs
            .iter()
            .map(|(a, b, h, m)| {
                vec![esc(a), esc(b), num(*h, 3), num(*m, 3), format!("{:+.3}", m.abs() - h.abs())]
            })
            .collect();
        figure(
            "fig-correlation",
            title,
            &panels,
            &format!(
                "{caption_base} Shown for {}, the representation with the lowest mean \
                    RMSE, on the stimuli every attribute has a prediction for; every \
                    representation's pairs are in entanglement.parquet.",
                code(rep)
            ),
            &self.notes(&self.has_all(), false),
            &table(&head, &rows),
        )
    }

    /// Figure 7: odd-one-out accuracy per representation (one bar per distance, the linear
    /// probe and the predicted embedding), chance as the reference line.
    fn alignment(&self) -> String {
        let title = "Figure 7. Odd-one-out alignment with triplet judgements";
        let id = "fig-alignment";
        let (Some(a), Some(res)) = (&self.input.spec.analysis.alignment, self.input.alignment)
        else {
            return omitted(
                id,
                title,
                "no alignment analyses in this run ([analysis.alignment] is not set).",
            );
        };
        let primary = a.distances[0].name();
        // (column title, analysis, distance) of each series.
        let mut series: Vec<(String, &str, &str)> = a
            .distances
            .iter()
            .map(|d| (d.name().to_string(), analysis::ODD_ONE_OUT, d.name()))
            .collect();
        if a.linear_probe {
            series.push(("linear probe".into(), analysis::LINEAR_PROBE, "dot"));
        }
        if !res.dimensions.is_empty() {
            series.push((
                format!("predicted embedding ({primary})"),
                analysis::EMBEDDING_REGRESSION,
                primary,
            ));
        }
        // Every representation with an alignment unit, planned or with results.
        let mut reps: Vec<String> = Vec::new();
        for u in self.input.facts.units.iter().filter(|u| u.kind == "alignment") {
            if let Some(r) = &u.representation {
                push_unique(&mut reps, r);
            }
        }
        for r in res.representations() {
            push_unique(&mut reps, r);
        }
        let value = |rep: &str, (_, an, d): &(String, &str, &str)| res.accuracy(rep, an, d);
        let chart = if reps.is_empty() {
            svg::placeholder("No results: no alignment unit was planned or merged")
        } else {
            svg::bar_chart(&Bars {
                categories: reps.clone(),
                series: series.iter().map(|s| s.0.clone()).collect(),
                values: reps
                    .iter()
                    .map(|rep| {
                        series
                            .iter()
                            .map(|s| {
                                value(rep, s).filter(|v| v.is_finite()).map(|v| Bar {
                                    value: v,
                                    err: None,
                                    faded: false,
                                })
                            })
                            .collect()
                    })
                    .collect(),
                x_label: "representation, bars by distance / analysis".into(),
                y_label: "odd-one-out accuracy".into(),
                y_max: Some(1.0),
                reference: Some((alignment::CHANCE, "chance 1/3".into())),
            })
        };
        let mut head: Vec<(&str, bool)> = vec![("representation", false)];
        head.extend(series.iter().map(|s| (s.0.as_str(), true)));
        if !res.dimensions.is_empty() {
            head.push(("embedding R²", true));
        }
        let rows: Vec<Vec<String>> = reps
            .iter()
            .map(|rep| {
                let mut row = vec![code(rep)];
                let mut any = false;
                for s in &series {
                    let v = value(rep, s);
                    any |= v.is_some();
                    row.push(v.map_or("–".into(), |v| num(v, 3)));
                }
                if !res.dimensions.is_empty() {
                    let r2 = res
                        .overall(rep, analysis::EMBEDDING_REGRESSION, Some(primary))
                        .and_then(AlignmentRow::r2);
                    row.push(r2.map_or("–".into(), |v| num(v, 3)));
                }
                if !any {
                    row[0] = format!("!{}", row[0]);
                }
                row
            })
            .collect();
        let failed: Vec<String> = self
            .input
            .facts
            .units
            .iter()
            .filter(|u| u.kind == "alignment" && u.state != "committed")
            .map(|u| format!("{} ({})", esc(&u.what), esc(&u.state)))
            .collect();
        let mut notes = String::new();
        if !failed.is_empty() {
            notes.push_str(&note(&format!(
                "Alignment units without results (drawn as n/a): {}.",
                failed.join(", ")
            )));
        }
        let tied: Vec<String> = reps
            .iter()
            .filter_map(|rep| {
                let r = res.overall(rep, analysis::ODD_ONE_OUT, Some(primary))?.triplet_score()?;
                let t = Some(r.ties).filter(|&t| t > 0)?;
                Some(format!("{} ({t} of {})", code(rep), r.n_triplets))
            })
            .collect();
        if !tied.is_empty() {
            notes.push_str(&info(&format!(
                "Triplets without a unique closest pair ({primary}) count as wrong: {}. A \
                    representation that is constant across stimuli ties on every triplet and \
                    scores 0, below chance.",
                tied.join(", ")
            )));
        }
        let best = res
            .best(analysis::ODD_ONE_OUT, primary)
            .map(|(rep, v)| {
                format!(" The best representation by {primary} accuracy is {} ({v:.3}).", code(rep))
            })
            .unwrap_or_default();
        let ceiling = if res.dimensions.is_empty() {
            String::new()
        } else {
            format!(
                " The human embedding itself ({} dimensions) scores {} ({primary}), the most a \
                    perfect prediction of it could reach.",
                res.dimensions.len(),
                res.accuracy("", analysis::HUMAN_EMBEDDING, primary)
                    .map_or("–".into(), |v| num(v, 3))
            )
        };
        let what = a.description.as_deref().map(|d| format!(" {}", esc(d))).unwrap_or_default();
        figure(
            id,
            title,
            &[(String::new(), chart)],
            &format!(
                "Odd-one-out accuracy on {} triplets over {} concepts (science.md B2, \
                    paper 001): the fraction of triplets whose \
                    closest pair of representations leaves out the element the human chose; \
                    ties count as wrong; the dashed line is chance (1/3). One bar per distance{}{}.\
                    {best}{ceiling}{what} Every number, per fold, is in alignment.parquet.",
                res.n_triplets,
                res.n_concepts,
                if a.linear_probe {
                    format!(
                        ", the linear probe (mean test accuracy over {} folds over concepts)",
                        a.probe_folds
                    )
                } else {
                    String::new()
                },
                if res.dimensions.is_empty() {
                    String::new()
                } else {
                    ", and the out-of-fold embedding predicted by ridge regression".to_string()
                },
            ),
            &notes,
            &table(&head, &rows),
        )
    }

    fn run_summary(&self) -> String {
        let (spec, data, facts) = (self.input.spec, self.input.data, self.input.facts);
        let mut s =
            String::from(r#"<section class="summary" id="run-summary"><h2>Run summary</h2>"#);
        let mut kinds: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
        for u in &facts.units {
            let k = kinds.entry(u.kind.as_str()).or_default();
            k[0] += 1;
            match u.state.as_str() {
                "committed" => k[1] += 1,
                "quarantined" => k[2] += 1,
                "leased" => k[3] += 1,
                _ => k[4] += 1,
            }
        }
        let attrs: Vec<String> = data
            .attributes
            .iter()
            .zip(&data.groups)
            .map(|(a, g)| match g {
                Some(g) => format!("{} ({})", esc(a), esc(g)),
                None => esc(a),
            })
            .collect();
        let wall = match facts.wall_ms {
            Some(ms) => format!(
                "{} from the first coordinator start to the last commit{}",
                duration(ms),
                if facts.sessions > 1 {
                    format!(" ({} coordinator sessions, downtime included)", facts.sessions)
                } else {
                    String::new()
                }
            ),
            None => "– (nothing committed)".into(),
        };
        let info_rows = vec![
            vec!["job".into(), esc(&spec.job.name)],
            vec![
                "model".into(),
                format!(
                    "{} ({:?}, device {:?})",
                    code(&spec.model.path.display().to_string()),
                    spec.model.kind,
                    spec.model.device
                ),
            ],
            vec![
                "stimuli".into(),
                format!("{} used, {} dropped for missing ratings", data.len(), data.dropped.len()),
            ],
            vec!["attributes".into(), attrs.join(", ")],
            vec![
                "representations".into(),
                format!("{} planned, {} with results", self.reps.len(), self.all.len()),
            ],
            vec![
                "attempts".into(),
                format!("{} leased, {} failed or expired", facts.attempts, facts.failed.len()),
            ],
            vec!["wall time".into(), wall],
            vec![
                "worker-hours".into(),
                format!(
                    "{:.3} GPU-hours, {:.3} CPU-worker-hours",
                    facts.gpu_hours, facts.cpu_hours
                ),
            ],
        ];
        s.push_str(&table(&[("", false), ("", false)], &info_rows));
        let unit_rows: Vec<Vec<String>> = kinds
            .iter()
            .map(|(k, c)| {
                let first = if c[2] > 0 { format!("!{}", esc(k)) } else { esc(k) };
                vec![
                    first,
                    c[0].to_string(),
                    c[1].to_string(),
                    c[2].to_string(),
                    c[3].to_string(),
                    c[4].to_string(),
                ]
            })
            .collect();
        s.push_str("<h3>Units</h3>");
        s.push_str(&table(
            &[
                ("kind", false),
                ("planned", true),
                ("committed", true),
                ("quarantined", true),
                ("leased", true),
                ("pending", true),
            ],
            &unit_rows,
        ));
        s.push_str("<h3>Redone after failed verification</h3>");
        if facts.redone.is_empty() {
            s.push_str("<p>None: every committed output matched its checksum when read.</p>");
        } else {
            let rows: Vec<Vec<String>> =
                facts.redone.iter().map(|(u, d)| vec![code(u), esc(d)]).collect();
            s.push_str(&table(&[("unit", false), ("what happened", false)], &rows));
        }
        let q = self.quarantined();
        s.push_str("<h3>Quarantined units</h3>");
        if q.is_empty() {
            s.push_str("<p>None.</p>");
        } else {
            let rows: Vec<Vec<String>> = q
                .iter()
                .map(|u| {
                    vec![
                        format!("!{}", code(&u.id)),
                        esc(&u.kind),
                        esc(&u.what),
                        u.attempts.to_string(),
                        esc(&u.error),
                    ]
                })
                .collect();
            s.push_str(&table(
                &[
                    ("unit", false),
                    ("kind", false),
                    ("what", false),
                    ("attempts", true),
                    ("error", false),
                ],
                &rows,
            ));
        }
        s.push_str("<h3>Failed attempts</h3>");
        if facts.failed.is_empty() {
            s.push_str("<p>None.</p>");
        } else {
            let what: BTreeMap<&str, &str> =
                facts.units.iter().map(|u| (u.id.as_str(), u.what.as_str())).collect();
            let rows: Vec<Vec<String>> = facts
                .failed
                .iter()
                .map(|(unit, attempt, worker, outcome, error)| {
                    vec![
                        code(unit),
                        esc(what.get(unit.as_str()).copied().unwrap_or("")),
                        attempt.to_string(),
                        esc(worker),
                        esc(outcome),
                        esc(error),
                    ]
                })
                .collect();
            s.push_str(&table(
                &[
                    ("unit", false),
                    ("what", false),
                    ("attempt", true),
                    ("worker", false),
                    ("outcome", false),
                    ("error", false),
                ],
                &rows,
            ));
        }
        let _ = writeln!(
            s,
            "<details><summary>Resolved spec \
                (spec.toml)</summary><pre>{}</pre></details></section>",
            esc(&spec.to_toml())
        );
        s
    }
}

#[cfg(test)]
mod tests;
