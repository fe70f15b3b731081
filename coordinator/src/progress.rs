//! Live progress, a consumer of the run's counts and events. On a terminal outside CI it draws
//! one indicatif bar per stage with rate and ETA; otherwise (a log file, CI, Slurm) it prints a
//! plain status line at most every 10 s, so logs get no bar spam. Worker events (joined, lost,
//! crashed, retried, quarantined) are always one line each.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use common::ids::{UnitId, UnitKind};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::db::{Counts, EventKind, EventRow};

/// The progress view of one run.
pub(crate) struct Progress {
    bars: Option<(MultiProgress, BTreeMap<UnitKind, ProgressBar>)>,
    last_plain: Instant,
    started: Instant,
    name: String,
}

impl Progress {
    pub(crate) fn new(name: &str) -> Progress {
        // Bars only on a real terminal and outside CI: elsewhere they would fill logs with
        // carriage-return noise.
        let tty = std::io::stderr().is_terminal()
            && std::env::var_os("CI").is_none()
            && std::env::var_os("SLURM_JOB_ID").is_none();
        let bars = tty.then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)),
                BTreeMap::new(),
            )
        });
        Progress {
            bars,
            last_plain: Instant::now() - Duration::from_secs(60),
            started: Instant::now(),
            name: name.to_string(),
        }
    }

    /// Prints one line above the bars (or plainly).
    pub(crate) fn line(&self, text: &str) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    pub(crate) fn update(&mut self, counts: &BTreeMap<UnitKind, Counts>) {
        match &mut self.bars {
            Some((multi, bars)) => {
                for (kind, c) in counts {
                    let bar = bars.entry(*kind).or_insert_with(|| {
                        let style = ProgressStyle::with_template(
                            "{prefix:>8} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
                        )
                        .expect("valid template")
                        .progress_chars("=> ");
                        multi.add(
                            ProgressBar::new(c.total())
                                .with_style(style)
                                .with_prefix(kind.to_string()),
                        )
                    });
                    bar.set_length(c.total());
                    bar.set_position(c.committed + c.quarantined);
                    bar.set_message(if c.quarantined > 0 {
                        format!("{} running, {} quarantined", c.leased, c.quarantined)
                    } else {
                        format!("{} running", c.leased)
                    });
                }
            }
            None => {
                if self.last_plain.elapsed() >= Duration::from_secs(10) {
                    self.last_plain = Instant::now();
                    eprintln!("{}", plain_status(&self.name, counts, self.started.elapsed()));
                }
            }
        }
    }

    pub(crate) fn finish(&mut self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars.values() {
                bar.finish();
            }
        }
    }
}

/// One status line: done/total per stage and elapsed time.
pub(crate) fn plain_status(
    name: &str,
    counts: &BTreeMap<UnitKind, Counts>,
    elapsed: Duration,
) -> String {
    let stages: Vec<String> = counts
        .iter()
        .map(|(k, c)| {
            let mut s = format!("{k} {}/{}", c.committed, c.total());
            if c.leased > 0 {
                s.push_str(&format!(" ({} running)", c.leased));
            }
            if c.quarantined > 0 {
                s.push_str(&format!(" ({} quarantined)", c.quarantined));
            }
            s
        })
        .collect();
    format!("[{name}] {} — {:.0} s", stages.join(", "), elapsed.as_secs_f64())
}

/// The line printed for an event, or `None` for routine events (leases, commits).
pub(crate) fn event_line(e: &EventRow) -> Option<String> {
    let unit = e.unit.as_ref().map_or("-", UnitId::as_str);
    let worker = e.worker.as_deref().unwrap_or("-");
    let detail = &e.detail;
    Some(match e.kind {
        EventKind::WorkerJoined => format!("worker {worker} joined: {detail}"),
        EventKind::WorkerLost => format!("worker {worker} lost: {detail}"),
        EventKind::ProcessCrashed => {
            format!("local worker {worker} crashed ({detail}); restarting")
        }
        EventKind::Expired => format!("unit {unit} re-queued: {detail}"),
        EventKind::Failed => format!("unit {unit} failed, will retry: {detail}"),
        EventKind::Quarantined => format!("unit {unit} quarantined: {detail}"),
        EventKind::Released => format!("unit {unit} released: {detail}"),
        EventKind::SlurmSubmitted => format!("slurm: submitted {detail}"),
        EventKind::SlurmEnded => format!("slurm task {worker} ended: {detail}"),
        EventKind::SlurmError => format!("slurm: {detail}"),
        EventKind::SlurmScaledDown | EventKind::SlurmCancelled => format!("slurm: {detail}"),
        EventKind::Meta => format!("set {detail}"),
        EventKind::Duplicate => {
            format!("unit {unit}: late duplicate moved to discarded/ ({detail})")
        }
        EventKind::Requeued => format!("unit {unit} back to pending: {detail}"),
        EventKind::Corrupt => format!("unit {unit} redone: {detail}"),
        EventKind::WorkerKilled => format!("local worker {worker} killed: {detail}"),
        // Routine: the progress bar and the status line show these.
        EventKind::Planned
        | EventKind::CoordinatorStarted
        | EventKind::CoordinatorStopped
        | EventKind::WorkerFinished
        | EventKind::ProcessExited
        | EventKind::Leased
        | EventKind::Committed
        | EventKind::CompleteRepeated => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_status_line_names_stages_and_problems() {
        let mut counts = BTreeMap::new();
        counts.insert(
            UnitKind::Capture,
            Counts { pending: 0, leased: 0, committed: 4, quarantined: 0 },
        );
        counts.insert(
            UnitKind::Probe,
            Counts { pending: 20, leased: 2, committed: 5, quarantined: 1 },
        );
        assert_eq!(
            plain_status("demo", &counts, Duration::from_secs(12)),
            "[demo] capture 4/4, probe 5/28 (2 running) (1 quarantined) — 12 s"
        );
        let unit = UnitId::of(UnitKind::Probe, &1);
        let event = |kind, worker: Option<&str>, detail: &str| EventRow {
            seq: 1,
            ts: 0,
            kind,
            unit: Some(unit.clone()),
            worker: worker.map(str::to_string),
            detail: detail.to_string(),
        };
        assert_eq!(event_line(&event(EventKind::Leased, Some("w1"), "attempt 1")), None);
        assert_eq!(
            event_line(&event(EventKind::Expired, None, "attempt 1: lease expired")).unwrap(),
            format!("unit {unit} re-queued: attempt 1: lease expired")
        );
    }
}
