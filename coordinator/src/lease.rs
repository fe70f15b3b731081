//! The unit lease state machine, pure: no clock reads, no SQL, no tonic. `db.rs` applies one
//! transition per transaction; the gRPC service only translates requests into transitions.
//!
//! ```text
//! Pending ──lease──▶ Leased ──complete──▶ Committed
//!    ▲                 │ fail(retryable) / expire ──▶ Pending (backoff) or Quarantined (cap)
//!    └──release────────┘ fail(fatal) ──▶ Quarantined
//! ```
//! A lease is named by (unit, attempt); a transition that names an older attempt is stale and
//! changes nothing, which makes late completions and heartbeats after a re-lease harmless.

/// Milliseconds since the Unix epoch (injected, never read here).
pub(crate) type Millis = i64;

/// Retry policy from `[sweep]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) max_failures: u32,
    pub(crate) backoff_ms: i64,
    pub(crate) ttl_ms: i64,
}

/// Where a unit stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnitState {
    /// Waiting to be leased, not before `not_before`.
    Pending { attempts: u32, failures: u32, not_before: Millis },
    /// Held by a worker until `deadline` unless renewed.
    Leased { attempts: u32, failures: u32, worker: String, deadline: Millis },
    /// Done; `attempt` wrote `output`.
    Committed { attempts: u32, failures: u32, attempt: u32, output: String, checksum: String },
    /// Gave up after repeated or fatal failures.
    Quarantined { attempts: u32, failures: u32, error: String },
}

/// What a transition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// The state changed.
    Changed(UnitState),
    /// Nothing to do: e.g. a completion from an attempt that no longer holds the lease.
    Stale,
    /// The unit was already committed by another attempt: discard this output.
    Duplicate,
}

impl UnitState {
    /// A new unit (the database inserts new units as pending rows directly).
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        UnitState::Pending { attempts: 0, failures: 0, not_before: 0 }
    }

    /// Number of leases ever granted; the current attempt number when leased.
    pub(crate) fn attempts(&self) -> u32 {
        match self {
            UnitState::Pending { attempts, .. }
            | UnitState::Leased { attempts, .. }
            | UnitState::Committed { attempts, .. }
            | UnitState::Quarantined { attempts, .. } => *attempts,
        }
    }

    /// Grants a lease to `worker` if the unit is pending and its backoff has passed.
    pub(crate) fn lease(&self, worker: &str, now: Millis, p: RetryPolicy) -> Effect {
        match self {
            UnitState::Pending { attempts, failures, not_before } if *not_before <= now => {
                Effect::Changed(UnitState::Leased {
                    attempts: attempts + 1,
                    failures: *failures,
                    worker: worker.to_string(),
                    deadline: now + p.ttl_ms,
                })
            }
            UnitState::Pending { .. }
            | UnitState::Leased { .. }
            | UnitState::Committed { .. }
            | UnitState::Quarantined { .. } => Effect::Stale,
        }
    }

    /// Extends the lease of `attempt`.
    pub(crate) fn heartbeat(&self, attempt: u32, now: Millis, p: RetryPolicy) -> Effect {
        match self {
            UnitState::Leased { attempts, failures, worker, .. } if *attempts == attempt => {
                Effect::Changed(UnitState::Leased {
                    attempts: *attempts,
                    failures: *failures,
                    worker: worker.clone(),
                    deadline: now + p.ttl_ms,
                })
            }
            UnitState::Pending { .. }
            | UnitState::Leased { .. }
            | UnitState::Committed { .. }
            | UnitState::Quarantined { .. } => Effect::Stale,
        }
    }

    /// Commits the verified output of `attempt`. Any attempt may commit while the unit is not
    /// yet committed (an expired lease's work is still good work); the first commit wins.
    pub(crate) fn complete(&self, attempt: u32, output: &str, checksum: &str) -> Effect {
        match self {
            UnitState::Committed { .. } => Effect::Duplicate,
            UnitState::Pending { attempts, failures, .. }
            | UnitState::Leased { attempts, failures, .. }
            | UnitState::Quarantined { attempts, failures, .. } => {
                if attempt == 0 || attempt > *attempts {
                    return Effect::Stale;
                }
                Effect::Changed(UnitState::Committed {
                    attempts: *attempts,
                    failures: *failures,
                    attempt,
                    output: output.to_string(),
                    checksum: checksum.to_string(),
                })
            }
        }
    }

    /// Records a failure of `attempt`: retry after backoff, or quarantine.
    pub(crate) fn fail(
        &self,
        attempt: u32,
        error: &str,
        retryable: bool,
        now: Millis,
        p: RetryPolicy,
    ) -> Effect {
        match self {
            UnitState::Leased { attempts, failures, .. } if *attempts == attempt => {
                Effect::Changed(after_failure(*attempts, failures + 1, error, retryable, now, p))
            }
            UnitState::Pending { .. }
            | UnitState::Leased { .. }
            | UnitState::Committed { .. }
            | UnitState::Quarantined { .. } => Effect::Stale,
        }
    }

    /// Gives the unit back without counting a failure (graceful shutdown of a worker).
    pub(crate) fn release(&self, attempt: u32, now: Millis) -> Effect {
        match self {
            UnitState::Leased { attempts, failures, .. } if *attempts == attempt => {
                Effect::Changed(UnitState::Pending {
                    attempts: *attempts,
                    failures: *failures,
                    not_before: now,
                })
            }
            UnitState::Pending { .. }
            | UnitState::Leased { .. }
            | UnitState::Committed { .. }
            | UnitState::Quarantined { .. } => Effect::Stale,
        }
    }

    /// Expires a lease whose deadline has passed: the worker is presumed dead, which counts as
    /// a failed attempt.
    pub(crate) fn expire(&self, now: Millis, p: RetryPolicy) -> Effect {
        match self {
            UnitState::Leased { attempts, failures, worker, deadline } if *deadline < now => {
                let error = format!("lease expired: worker {worker} sent no heartbeat");
                Effect::Changed(after_failure(*attempts, failures + 1, &error, true, now, p))
            }
            UnitState::Pending { .. }
            | UnitState::Leased { .. }
            | UnitState::Committed { .. }
            | UnitState::Quarantined { .. } => Effect::Stale,
        }
    }
}

fn after_failure(
    attempts: u32,
    failures: u32,
    error: &str,
    retryable: bool,
    now: Millis,
    p: RetryPolicy,
) -> UnitState {
    if !retryable || failures >= p.max_failures {
        return UnitState::Quarantined { attempts, failures, error: error.to_string() };
    }
    // Exponential backoff, capped at 64 × base.
    let factor = 1i64 << (failures - 1).min(6);
    UnitState::Pending { attempts, failures, not_before: now + p.backoff_ms * factor }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy { max_failures: 2, backoff_ms: 100, ttl_ms: 1000 };

    #[derive(Debug)]
    enum Ev {
        Lease(&'static str, Millis),
        Beat(u32, Millis),
        Done(u32),
        Fail(u32, bool, Millis),
        Release(u32, Millis),
        Expire(Millis),
    }

    /// Applies events in order and returns the final state and the effect kinds seen.
    fn check(events: &[Ev], expected: UnitState, effects: &str) {
        let mut s = UnitState::new();
        let mut seen = String::new();
        for e in events {
            let eff = match e {
                Ev::Lease(w, t) => s.lease(w, *t, P),
                Ev::Beat(a, t) => s.heartbeat(*a, *t, P),
                Ev::Done(a) => s.complete(*a, &format!("out{a}"), "sum"),
                Ev::Fail(a, r, t) => s.fail(*a, "boom", *r, *t, P),
                Ev::Release(a, t) => s.release(*a, *t),
                Ev::Expire(t) => s.expire(*t, P),
            };
            seen.push(match eff {
                Effect::Changed(next) => {
                    s = next;
                    'c'
                }
                Effect::Stale => 's',
                Effect::Duplicate => 'd',
            });
        }
        assert_eq!(s, expected, "events {events:?}");
        assert_eq!(seen, effects, "events {events:?}");
    }

    #[test]
    fn happy_path_commits() {
        check(
            &[Ev::Lease("w1", 0), Ev::Beat(1, 500), Ev::Done(1)],
            UnitState::Committed {
                attempts: 1,
                failures: 0,
                attempt: 1,
                output: "out1".into(),
                checksum: "sum".into(),
            },
            "ccc",
        );
    }

    #[test]
    fn late_completion_after_release_and_relet_is_harmless() {
        // w1's lease expires, w2 takes it and commits; w1's late completion is a duplicate.
        check(
            &[
                Ev::Lease("w1", 0),
                Ev::Expire(1001),
                Ev::Lease("w2", 1200),
                Ev::Done(2),
                Ev::Done(1),
            ],
            UnitState::Committed {
                attempts: 2,
                failures: 1,
                attempt: 2,
                output: "out2".into(),
                checksum: "sum".into(),
            },
            "ccccd",
        );
    }

    #[test]
    fn old_attempt_may_commit_before_new_one() {
        check(
            &[
                Ev::Lease("w1", 0),
                Ev::Expire(1001),
                Ev::Lease("w2", 1200),
                Ev::Done(1),
                Ev::Done(2),
                Ev::Beat(2, 1300),
            ],
            UnitState::Committed {
                attempts: 2,
                failures: 1,
                attempt: 1,
                output: "out1".into(),
                checksum: "sum".into(),
            },
            "ccccds",
        );
    }

    #[test]
    fn backoff_then_quarantine_at_cap() {
        check(
            &[
                Ev::Lease("w1", 0),
                Ev::Fail(1, true, 10),
                Ev::Lease("w1", 50),
                Ev::Lease("w1", 110),
                Ev::Fail(2, true, 120),
            ],
            UnitState::Quarantined { attempts: 2, failures: 2, error: "boom".into() },
            "ccscc",
        );
    }

    #[test]
    fn fatal_failure_quarantines_at_once_and_stale_events_change_nothing() {
        check(
            &[
                Ev::Lease("w1", 0),
                Ev::Fail(1, false, 5),
                Ev::Beat(1, 6),
                Ev::Release(1, 7),
                Ev::Expire(99999),
            ],
            UnitState::Quarantined { attempts: 1, failures: 1, error: "boom".into() },
            "ccsss",
        );
    }

    #[test]
    fn release_does_not_count_as_failure_and_heartbeat_prevents_expiry() {
        check(
            &[
                Ev::Lease("w1", 0),
                Ev::Beat(1, 900),
                Ev::Expire(1500),
                Ev::Release(1, 1600),
                Ev::Lease("w2", 1600),
            ],
            UnitState::Leased { attempts: 2, failures: 0, worker: "w2".into(), deadline: 2600 },
            "ccscc",
        );
    }

    #[test]
    fn expiry_during_coordinator_restart_requeues() {
        // The deadline is persisted; a restarted coordinator expires it on its first sweep.
        check(
            &[Ev::Lease("w1", 0), Ev::Expire(5000), Ev::Lease("w3", 5200)],
            UnitState::Leased { attempts: 2, failures: 1, worker: "w3".into(), deadline: 6200 },
            "ccc",
        );
    }
}
