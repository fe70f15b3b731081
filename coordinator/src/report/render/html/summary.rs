//! The run summary: what ran, how long, what failed, and the resolved spec.

use std::collections::BTreeMap;

use maud::{html, Markup};

use super::{code, table, text, Page, Row};

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

impl Page<'_> {
    pub(super) fn run_summary(&self) -> Markup {
        let (settings, st, status) = (&self.m.settings, &self.m.stimuli, &self.m.status);
        let attrs = html! {
            @for (i, (a, g)) in st.attributes.iter().enumerate() {
                @if i > 0 { ", " }
                (a)
                @if let Some(g) = g { " (" (g) ")" }
            }
        };
        let wall = match status.wall_ms {
            Some(ms) => format!(
                "{} from the first coordinator start to the last commit{}",
                duration(ms),
                if status.sessions > 1 {
                    format!(" ({} coordinator sessions, downtime included)", status.sessions)
                } else {
                    String::new()
                }
            ),
            None => "– (nothing committed)".into(),
        };
        let row = |k: &str, v: Markup| Row::new(vec![text(k), v]);
        let info_rows = vec![
            row("job", text(&settings.job_name)),
            row(
                "model",
                html! {
                    (code(&settings.model_path)) " (" (settings.model_kind) ", device "
                    (settings.device) ")"
                },
            ),
            row(
                "stimuli",
                text(format!("{} used, {} dropped for missing ratings", st.n, st.dropped)),
            ),
            row("attributes", attrs),
            row(
                "representations",
                text(format!("{} planned, {} with results", self.reps.len(), self.all.len())),
            ),
            row(
                "attempts",
                text(format!(
                    "{} leased, {} failed or expired",
                    status.attempts,
                    status.failed.len()
                )),
            ),
            row("wall time", text(wall)),
            row(
                "worker-hours",
                text(format!(
                    "{:.3} GPU-hours, {:.3} CPU-worker-hours",
                    status.gpu_hours, status.cpu_hours
                )),
            ),
        ];
        let unit_rows: Vec<Row> = status
            .by_kind()
            .into_iter()
            .map(|(k, c)| {
                let cells = vec![
                    text(k),
                    text(c.planned),
                    text(c.committed),
                    text(c.quarantined),
                    text(c.leased),
                    text(c.pending),
                ];
                if c.quarantined > 0 {
                    Row::missing(cells)
                } else {
                    Row::new(cells)
                }
            })
            .collect();
        let redone: Vec<Row> =
            status.redone.iter().map(|(u, d)| Row::new(vec![code(u), text(d)])).collect();
        let quarantined: Vec<Row> = status
            .quarantined()
            .map(|u| {
                Row::missing(vec![
                    code(&u.id),
                    text(&u.kind),
                    text(&u.what),
                    text(u.attempts),
                    text(&u.error),
                ])
            })
            .collect();
        let what: BTreeMap<&str, &str> =
            status.units.iter().map(|u| (u.id.as_str(), u.what.as_str())).collect();
        let failed: Vec<Row> = status
            .failed
            .iter()
            .map(|f| {
                Row::new(vec![
                    code(f.unit.as_str()),
                    text(what.get(f.unit.as_str()).copied().unwrap_or("")),
                    text(f.attempt),
                    text(&f.worker),
                    text(f.outcome),
                    text(&f.error),
                ])
            })
            .collect();
        html! {
            section.summary id="run-summary" {
                h2 { "Run summary" }
                (table(&[("", false), ("", false)], &info_rows))
                h3 { "Units" }
                (table(
                    &[
                        ("kind", false),
                        ("planned", true),
                        ("committed", true),
                        ("quarantined", true),
                        ("leased", true),
                        ("pending", true),
                    ],
                    &unit_rows,
                ))
                h3 { "Redone after failed verification" }
                @if redone.is_empty() {
                    p { "None: every committed output matched its checksum when read." }
                } @else {
                    (table(&[("unit", false), ("what happened", false)], &redone))
                }
                h3 { "Quarantined units" }
                @if quarantined.is_empty() {
                    p { "None." }
                } @else {
                    (table(
                        &[
                            ("unit", false),
                            ("kind", false),
                            ("what", false),
                            ("attempts", true),
                            ("error", false),
                        ],
                        &quarantined,
                    ))
                }
                h3 { "Failed attempts" }
                @if failed.is_empty() {
                    p { "None." }
                } @else {
                    (table(
                        &[
                            ("unit", false),
                            ("what", false),
                            ("attempt", true),
                            ("worker", false),
                            ("outcome", false),
                            ("error", false),
                        ],
                        &failed,
                    ))
                }
                details {
                    summary { "Resolved spec (spec.toml)" }
                    pre { (settings.spec_toml) }
                }
            }
        }
    }
}
