//! The run's status as `state.sqlite` knows it, read once before the reduction: every unit
//! with its state and what it does, attempts, wall time and worker-hours. Only the HTML's run
//! summary shows the timing numbers, which differ between equal runs.

use std::collections::BTreeMap;

use common::unit::{AlignmentTask, UnitSpec};

use crate::db::{FailedAttempt, StateDb};

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

/// How many units of one kind are in each state.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KindCounts {
    pub(crate) planned: usize,
    pub(crate) committed: usize,
    pub(crate) quarantined: usize,
    pub(crate) leased: usize,
    pub(crate) pending: usize,
}

/// What the report needs from `state.sqlite`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunStatus {
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

impl RunStatus {
    pub(crate) fn read(db: &StateDb) -> anyhow::Result<RunStatus> {
        let mut units = Vec::new();
        for row in db.unit_rows()? {
            let (what, representation) = match serde_json::from_str::<UnitSpec>(&row.descriptor) {
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
                Ok(UnitSpec::Directions(d)) => {
                    let key = d.representation.key();
                    (format!("{key}, prompt directions"), Some(key))
                }
                Ok(UnitSpec::Dense(d)) => {
                    let key = d.representation.key();
                    (format!("{key}, dense probes"), Some(key))
                }
                Ok(UnitSpec::Semantic(s)) => {
                    let key = s.representation.key();
                    (format!("{key}, semantic lens"), Some(key))
                }
                Ok(UnitSpec::Clusters(c)) => {
                    let key = c.representation.key();
                    (format!("{key}, concept clusters"), Some(key))
                }
                Ok(UnitSpec::Alignment(a)) => {
                    let key = a.representation.key();
                    let what = match a.task {
                        AlignmentTask::Evaluate(_) => format!("{key}, odd-one-out alignment"),
                        AlignmentTask::LinearProbe { fold, .. } => {
                            format!("{key}, linear probe fold {fold}")
                        }
                    };
                    (what, Some(key))
                }
                Err(e) => (format!("(unreadable descriptor: {e})"), None),
            };
            units.push(UnitFact {
                id: row.id.0,
                kind: row.kind.to_string(),
                state: row.state.to_string(),
                attempts: row.attempts,
                error: row.error,
                what,
                representation,
            });
        }
        let (sessions, wall_ms) = db.wall_time()?;
        let (cpu_hours, gpu_hours) = db.worker_hours()?;
        Ok(RunStatus {
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

impl RunStatus {
    /// Units committed and units planned: the report says it is incomplete when they differ.
    pub(crate) fn committed_of_total(&self) -> (u64, u64) {
        let done = self.units.iter().filter(|u| u.state == "committed").count();
        (done as u64, self.units.len() as u64)
    }

    /// Units by kind (name order): planned, committed, quarantined, leased and pending.
    pub(crate) fn by_kind(&self) -> BTreeMap<&str, KindCounts> {
        let mut kinds: BTreeMap<&str, KindCounts> = BTreeMap::new();
        for u in &self.units {
            let k = kinds.entry(u.kind.as_str()).or_default();
            k.planned += 1;
            match u.state.as_str() {
                "committed" => k.committed += 1,
                "quarantined" => k.quarantined += 1,
                "leased" => k.leased += 1,
                _ => k.pending += 1,
            }
        }
        kinds
    }

    /// The quarantined units, in plan order.
    pub(crate) fn quarantined(&self) -> impl Iterator<Item = &UnitFact> {
        self.units.iter().filter(|u| u.state == "quarantined")
    }
}

fn folds(f: &[usize]) -> String {
    match (f.first(), f.last()) {
        (Some(a), Some(b)) if f.len() > 1 && b - a + 1 == f.len() => format!("{a}–{b}"),
        _ => f.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "),
    }
}
