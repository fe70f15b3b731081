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
//! Heartbeats, failures and releases must also come from the worker holding the lease, so one
//! worker cannot renew or fail another's unit.
//!
//! Completion is idempotent: the same attempt completing again with the same output and checksum
//! (a worker retrying after a lost reply) is [`Effect::Repeat`], answered "committed", and a
//! different attempt completing a committed unit is [`Effect::Duplicate`]; neither changes the
//! state, and the caller never removes the committed output for either.
//! `requeue` is the operator's way back from quarantine (`resume --retry-quarantined`).
//! `invalidate` takes a committed unit back to pending when its file no longer matches the
//! checksum recorded at commit (bit rot, a truncated copy): the only way out of `Committed`, and
//! only for the very output that failed verification.

/// Milliseconds since the Unix epoch (injected, never read here).
pub(crate) type Millis = i64;

/// Retry policy from `[sweep]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) max_failures: u32,
    pub(crate) backoff_ms: i64,
    pub(crate) ttl_ms: i64,
}

/// Where a unit stands. Its [`UnitStatus`] (the variant alone: `pending`, `leased`, `committed`,
/// `quarantined`) is what the `units.state` column stores.
#[derive(Debug, Clone, PartialEq, Eq, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(UnitStatus),
    derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::EnumIter, Hash),
    strum(serialize_all = "snake_case")
)]
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
    /// The unit was already committed by another attempt: this output is surplus.
    Duplicate,
    /// This very completion (same attempt, output and checksum) was already committed: a
    /// retried `Complete` after a lost reply. Answer "committed" again; nothing changes.
    Repeat,
}

impl UnitState {
    /// A new unit (the database inserts new units as pending rows directly).
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        UnitState::Pending { attempts: 0, failures: 0, not_before: 0 }
    }

    /// The variant alone, as stored.
    pub(crate) fn status(&self) -> UnitStatus {
        self.into()
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

    /// Extends the lease of `attempt`, if `by` is the worker holding it.
    pub(crate) fn heartbeat(&self, by: &str, attempt: u32, now: Millis, p: RetryPolicy) -> Effect {
        match self {
            UnitState::Leased { attempts, failures, worker, .. }
                if *attempts == attempt && worker == by =>
            {
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
    /// The same completion again is a [`Effect::Repeat`]; the same attempt with another output
    /// or checksum is stale (the committed file is what the database says, not this claim).
    pub(crate) fn complete(&self, attempt: u32, output: &str, checksum: &str) -> Effect {
        match self {
            UnitState::Committed { attempt: done, output: o, checksum: c, .. } => {
                if *done != attempt {
                    Effect::Duplicate
                } else if o == output && c == checksum {
                    Effect::Repeat
                } else {
                    Effect::Stale
                }
            }
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

    /// Records a failure of `attempt` reported by `by`, the worker holding it: retry after
    /// backoff, or quarantine.
    pub(crate) fn fail(
        &self,
        by: &str,
        attempt: u32,
        error: &str,
        retryable: bool,
        now: Millis,
        p: RetryPolicy,
    ) -> Effect {
        match self {
            UnitState::Leased { attempts, failures, worker, .. }
                if *attempts == attempt && worker == by =>
            {
                Effect::Changed(after_failure(*attempts, failures + 1, error, retryable, now, p))
            }
            UnitState::Pending { .. }
            | UnitState::Leased { .. }
            | UnitState::Committed { .. }
            | UnitState::Quarantined { .. } => Effect::Stale,
        }
    }

    /// Gives the unit back without counting a failure (graceful shutdown of `by`, the worker
    /// holding it).
    pub(crate) fn release(&self, by: &str, attempt: u32, now: Millis) -> Effect {
        match self {
            UnitState::Leased { attempts, failures, worker, .. }
                if *attempts == attempt && worker == by =>
            {
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

    /// Puts a quarantined unit back to pending with its failure count reset, once the operator
    /// has fixed the cause (`resume --retry-quarantined`). Attempt numbers keep counting, so the
    /// next attempt writes a new file.
    pub(crate) fn requeue(&self, now: Millis) -> Effect {
        match self {
            UnitState::Quarantined { attempts, .. } => Effect::Changed(UnitState::Pending {
                attempts: *attempts,
                failures: 0,
                not_before: now,
            }),
            UnitState::Pending { .. } | UnitState::Leased { .. } | UnitState::Committed { .. } => {
                Effect::Stale
            }
        }
    }
}

impl UnitState {
    /// Takes a committed unit back to pending because its output `checksum` failed
    /// verification: the file changed after it was committed. Only the committed output with
    /// that checksum is invalidated (a unit re-committed since with another file is stale); the
    /// failure count is unchanged (the attempt did nothing wrong), and attempt numbers keep
    /// counting, so the re-run writes a new file.
    pub(crate) fn invalidate(&self, checksum: &str, now: Millis) -> Effect {
        match self {
            UnitState::Committed { attempts, failures, checksum: c, .. } if c == checksum => {
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
    let base = std::time::Duration::from_millis(p.backoff_ms.max(0) as u64);
    let wait = common::backoff::Backoff::new(base, base * 64).delay(failures - 1);
    UnitState::Pending { attempts, failures, not_before: now + wait.as_millis() as Millis }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy { max_failures: 2, backoff_ms: 100, ttl_ms: 1000 };

    /// Events; the worker named in `Beat`, `Fail` and `Release` is the one sending them.
    #[derive(Debug)]
    enum Ev {
        Lease(&'static str, Millis),
        Beat(&'static str, u32, Millis),
        Done(u32),
        /// A completion with an explicit checksum (`Done` claims "sum").
        DoneWith(u32, &'static str),
        Fail(&'static str, u32, bool, Millis),
        Release(&'static str, u32, Millis),
        Expire(Millis),
        Requeue(Millis),
        /// The committed output with this checksum failed verification.
        Invalidate(&'static str, Millis),
    }

    /// Applies events in order and returns the final state and the effect kinds seen.
    fn check(events: &[Ev], expected: UnitState, effects: &str) {
        let mut s = UnitState::new();
        let mut seen = String::new();
        for e in events {
            let eff = match e {
                Ev::Lease(w, t) => s.lease(w, *t, P),
                Ev::Beat(w, a, t) => s.heartbeat(w, *a, *t, P),
                Ev::Done(a) => s.complete(*a, &format!("out{a}"), "sum"),
                Ev::DoneWith(a, sum) => s.complete(*a, &format!("out{a}"), sum),
                Ev::Fail(w, a, r, t) => s.fail(w, *a, "boom", *r, *t, P),
                Ev::Release(w, a, t) => s.release(w, *a, *t),
                Ev::Expire(t) => s.expire(*t, P),
                Ev::Requeue(t) => s.requeue(*t),
                Ev::Invalidate(sum, t) => s.invalidate(sum, *t),
            };
            seen.push(match eff {
                Effect::Changed(next) => {
                    s = next;
                    'c'
                }
                Effect::Stale => 's',
                Effect::Duplicate => 'd',
                Effect::Repeat => 'r',
            });
        }
        assert_eq!(s, expected, "events {events:?}");
        assert_eq!(seen, effects, "events {events:?}");
    }

    #[test]
    fn happy_path_commits() {
        check(
            &[Ev::Lease("w1", 0), Ev::Beat("w1", 1, 500), Ev::Done(1)],
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
                Ev::Beat("w2", 2, 1300),
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
                Ev::Fail("w1", 1, true, 10),
                Ev::Lease("w1", 50),
                Ev::Lease("w1", 110),
                Ev::Fail("w1", 2, true, 120),
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
                Ev::Fail("w1", 1, false, 5),
                Ev::Beat("w1", 1, 6),
                Ev::Release("w1", 1, 7),
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
                Ev::Beat("w1", 1, 900),
                Ev::Expire(1500),
                Ev::Release("w1", 1, 1600),
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

    fn committed(attempts: u32, failures: u32, attempt: u32) -> UnitState {
        UnitState::Committed {
            attempts,
            failures,
            attempt,
            output: format!("out{attempt}"),
            checksum: "sum".into(),
        }
    }

    #[test]
    fn a_retried_completion_is_answered_committed_and_changes_nothing() {
        // A worker whose `Complete` reply was lost sends it again: same attempt, file, checksum.
        check(
            &[Ev::Lease("w1", 0), Ev::Done(1), Ev::Done(1), Ev::Done(1)],
            committed(1, 0, 1),
            "ccrr",
        );
        // The same attempt claiming another checksum is not the committed file: stale, not a
        // repeat, and not a duplicate either (whose file the caller would move aside).
        check(
            &[Ev::Lease("w1", 0), Ev::Done(1), Ev::DoneWith(1, "other")],
            committed(1, 0, 1),
            "ccs",
        );
    }

    #[test]
    fn a_late_other_attempt_is_a_duplicate_and_a_repeat_after_it_still_commits() {
        check(
            &[
                Ev::Lease("w1", 0),
                Ev::Expire(1001),
                Ev::Lease("w2", 1200),
                Ev::Done(2),
                Ev::Done(1),
                Ev::Done(2),
            ],
            committed(2, 1, 2),
            "ccccdr",
        );
    }

    #[test]
    fn only_the_holder_may_renew_fail_or_release_a_lease() {
        // w2 names w1's lease: every one of its messages is stale, and w1's lease still expires
        // on its own deadline (w2's beat did not extend it).
        check(
            &[
                Ev::Lease("w1", 0),
                Ev::Beat("w2", 1, 900),
                Ev::Fail("w2", 1, false, 950),
                Ev::Release("w2", 1, 960),
                Ev::Expire(1001),
            ],
            UnitState::Pending { attempts: 1, failures: 1, not_before: 1101 },
            "csssc",
        );
    }

    #[test]
    fn requeue_takes_only_quarantined_units_back_with_failures_reset() {
        check(
            &[
                Ev::Lease("w1", 0),
                Ev::Fail("w1", 1, false, 5),
                Ev::Requeue(10),
                Ev::Requeue(11),
                Ev::Lease("w2", 20),
                Ev::Requeue(21),
                Ev::Done(2),
                Ev::Requeue(30),
            ],
            committed(2, 0, 2),
            "cccscscs",
        );
    }

    #[test]
    fn a_committed_output_that_fails_verification_goes_back_to_pending_once() {
        // Committed by attempt 1 with checksum "sum"; its file rots. Invalidating another
        // checksum (a stale report) changes nothing; the right one re-queues it without counting
        // a failure; a second invalidation of the same file is stale (it is pending already);
        // the re-run is attempt 2 and commits again.
        check(
            &[
                Ev::Lease("w1", 0),
                Ev::Done(1),
                Ev::Invalidate("other", 5),
                Ev::Invalidate("sum", 6),
                Ev::Invalidate("sum", 7),
                Ev::Lease("w2", 8),
                Ev::Invalidate("sum", 9),
                Ev::Done(2),
            ],
            committed(2, 0, 2),
            "ccscscsc",
        );
    }
}
