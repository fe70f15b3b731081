//! The lease query's plan, the in-memory counts against a full recount, and what the
//! database reads back: every stored name round-trips, and a value this build does not know
//! is an error naming its table, row and value.

use common::ids::UnitId;
use common::spec::Pooling;
use common::unit::{CaptureUnit, ProbeUnit, Representation, UnitSpec};
use rusqlite::params;
use strum::IntoEnumIterator;

use super::units::LEASE_QUERY;
use super::*;
use crate::lease::RetryPolicy;

const POLICY: RetryPolicy = RetryPolicy { max_failures: 2, backoff_ms: 7, ttl_ms: 50 };

/// A database with `captures` capture units and `probes` probe units.
fn db(captures: usize, probes: usize) -> (tempfile::TempDir, StateDb) {
    let dir = tempfile::tempdir().unwrap();
    let mut db = StateDb::open(&dir.path().join("state.sqlite")).unwrap();
    let rep = Representation::text("text.1", Pooling::Mean);
    let mut units = Vec::new();
    for i in 0..captures {
        let u = CaptureUnit { shard: i, start: i, end: i + 1, representations: vec![] };
        units.push((UnitId::of(UnitKind::Capture, &i), UnitSpec::Capture(u)));
    }
    for i in 0..probes {
        let u = ProbeUnit {
            representation: rep.clone(),
            folds: vec![i],
            settings: Default::default(),
            inputs: vec![],
        };
        units.push((UnitId::of(UnitKind::Probe, &i), UnitSpec::Probe(u)));
    }
    db.insert_units(&units, 0).unwrap();
    (dir, db)
}

/// Would catch a lease query (or a schema change) that scans the units table or sorts it on
/// every lease: the plan must search the `units_lease` index, in order.
#[test]
fn the_lease_query_searches_the_index_and_never_scans_units() {
    let (_dir, db) = db(2_000, 2_000);
    let mut stmt = db.conn.prepare(&format!("EXPLAIN QUERY PLAN {LEASE_QUERY}")).unwrap();
    let plan: Vec<String> = stmt
        .query_map(params![0, 0], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let text = plan.join(" | ");
    assert!(plan.iter().all(|d| !d.starts_with("SCAN")), "a scan: {text}");
    assert!(text.contains("USING INDEX units_lease"), "not the lease index: {text}");
    assert!(!text.contains("TEMP B-TREE"), "sorts on every lease: {text}");
}

/// A small deterministic generator, so a failing sequence can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The old full-scan answer, kept as the oracle for `has_open_work`.
fn open_by_scan(db: &StateDb) -> bool {
    db.conn
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM units WHERE state = 'leased')
                 OR EXISTS(SELECT 1 FROM units WHERE state = 'pending'
                           AND stage = (SELECT MIN(stage) FROM units WHERE state != 'committed'))",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Would catch a transition that changes a unit's state without its count (or counts one
/// that rolled back, or twice): after every step of a random sequence of leases,
/// heartbeats, completions (new, repeated, duplicate, stale), failures, releases, expiries
/// and requeues, the kept counts equal a full recount, and "open work" equals the old scan.
#[test]
fn kept_counts_equal_a_full_recount_after_random_transitions() {
    for seed in 1..=4u64 {
        let (_dir, mut db) = db(12, 8);
        let mut rng = Rng(seed * 0x9E37_79B9_7F4A_7C15);
        let mut held: Vec<(UnitId, u32, String)> = Vec::new();
        let mut now = 1_000;
        for step in 0..1_500 {
            now += rng.below(20) as i64;
            let worker = format!("w{}", rng.below(3));
            match rng.below(8) {
                0 | 1 => {
                    if let Some(g) = db.lease_next(&worker, now, POLICY).unwrap() {
                        held.push((g.unit, g.attempt, worker));
                    }
                }
                2 if !held.is_empty() => {
                    let (unit, attempt, w) = held[rng.below(held.len())].clone();
                    db.heartbeat(&w, &[(unit, attempt)], now, POLICY).unwrap();
                }
                3 | 4 if !held.is_empty() => {
                    // Sometimes the same completion again, sometimes another attempt's.
                    let (unit, attempt, _) = held[rng.below(held.len())].clone();
                    let out = format!("features/{unit}.a{attempt}.parquet");
                    let many: Vec<Completion> = (0..1 + rng.below(2))
                        .map(|_| Completion {
                            unit: unit.clone(),
                            attempt,
                            output: out.clone(),
                            checksum: "c".into(),
                        })
                        .collect();
                    db.complete_many(&many, now).unwrap();
                }
                5 if !held.is_empty() => {
                    let (unit, attempt, w) = held.swap_remove(rng.below(held.len()));
                    let retryable = rng.below(4) > 0;
                    db.fail(&w, &unit, attempt, "boom", retryable, now, POLICY).unwrap();
                }
                6 if !held.is_empty() => {
                    let (unit, attempt, w) = held.swap_remove(rng.below(held.len()));
                    db.release(&w, &unit, attempt, "bye", now).unwrap();
                }
                _ => {
                    db.expire(now, POLICY).unwrap();
                    if rng.below(10) == 0 {
                        db.requeue_quarantined(now).unwrap();
                    }
                }
            }
            assert_eq!(db.tally(), &db.recount().unwrap(), "seed {seed} step {step}");
            assert_eq!(db.has_open_work().unwrap(), open_by_scan(&db), "seed {seed} step {step}");
        }
        let total: u64 = db.counts().unwrap().values().map(Counts::total).sum();
        assert_eq!(total, 20);
    }
}

/// Would catch an idle lease that still writes: with nothing ready, no transaction is
/// begun (the change counter of the connection does not move).
#[test]
fn nothing_ready_is_answered_without_writing() {
    let (_dir, mut db) = db(1, 3);
    let g = db.lease_next("w1", 10, POLICY).unwrap().expect("the capture unit");
    let before = db.conn.total_changes();
    for _ in 0..100 {
        assert!(db.lease_next("w2", 20, POLICY).unwrap().is_none(), "probe units wait");
    }
    assert_eq!(db.conn.total_changes(), before);
    assert!(db.has_open_work().unwrap());
    let c = Completion { unit: g.unit, attempt: 1, output: "o".into(), checksum: "c".into() };
    let generation = db.inputs_generation();
    db.complete_many(&[c], 30).unwrap();
    assert_ne!(db.inputs_generation(), generation, "a committed capture changes the inputs");
    assert!(db.lease_next("w2", 40, POLICY).unwrap().is_some(), "stage 1 is ready now");
}

/// The [`types::Unreadable`] inside a database error.
fn unreadable(e: &rusqlite::Error) -> &types::Unreadable {
    let rusqlite::Error::FromSqlConversionFailure(_, _, inner) = e else {
        panic!("not a conversion error: {e}")
    };
    inner.downcast_ref().unwrap_or_else(|| panic!("not an unreadable row: {e}"))
}

/// Would catch an unknown state silently read as some state (it was `quarantined`): a real
/// SQLite file whose unit has a state this build does not know fails every read of that unit
/// with an error naming the table, the unit and the value, and so does opening it again.
#[test]
fn an_unknown_state_in_the_database_is_an_error_naming_the_row() {
    let (dir, mut db) = db(1, 1);
    let capture = UnitId::of(UnitKind::Capture, &0);
    db.conn.execute("UPDATE units SET state = 'paused' WHERE id = ?1", [capture.as_str()]).unwrap();
    // A transition loads the unit's state (it was read as `quarantined` before).
    let e = db.heartbeat("w1", &[(capture.clone(), 1)], 10, POLICY).unwrap_err();
    let u = unreadable(&e);
    assert_eq!((u.table, u.row.as_str(), u.column.as_str()), ("units", capture.as_str(), "state"));
    assert_eq!(u.value, "\"paused\"");
    let message = e.to_string();
    for part in ["units", capture.as_str(), "paused", "state"] {
        assert!(message.contains(part), "{message:?} does not name {part}");
    }
    let e = db.unit_rows().unwrap_err();
    assert_eq!(unreadable(&e).row, capture.as_str());
    drop(db);
    let e = StateDb::open(&dir.path().join("state.sqlite")).err().expect("refused on open");
    assert!(e.to_string().contains("paused"), "{e}");
}

/// Would catch a bad unit id or kind read as if it were one: each is an error naming the row.
#[test]
fn an_unknown_kind_or_a_bad_unit_id_is_an_error_naming_the_row() {
    let (_dir, db) = db(0, 1);
    let probe = UnitId::of(UnitKind::Probe, &0);
    db.conn.execute("UPDATE units SET kind = 'lens' WHERE id = ?1", [probe.as_str()]).unwrap();
    let e = db.unit_rows().unwrap_err();
    let u = unreadable(&e);
    assert_eq!(
        (u.row.as_str(), u.column.as_str(), u.value.as_str()),
        (probe.as_str(), "kind", "\"lens\"")
    );
    db.conn.execute("UPDATE units SET kind = 'probe', id = 'probe-1'", []).unwrap();
    let e = db.unit_rows().unwrap_err();
    let u = unreadable(&e);
    assert_eq!((u.table, u.row.as_str(), u.column.as_str()), ("units", "probe-1", "id"));
}

/// Would catch a name written one way and read another: every value of every stored enum
/// goes into a real SQLite file and comes back equal, as the same text as before the enums.
#[test]
fn every_stored_name_round_trips_through_sqlite() {
    fn round_trip<T>(conn: &rusqlite::Connection, values: impl Iterator<Item = T>, names: &[&str])
    where
        T: rusqlite::ToSql + rusqlite::types::FromSql + PartialEq + std::fmt::Debug,
    {
        let values: Vec<T> = values.collect();
        assert_eq!(values.len(), names.len());
        for (v, name) in values.iter().zip(names) {
            let text: String = conn.query_row("SELECT ?1", [v], |r| r.get(0)).unwrap();
            assert_eq!(&text, name);
            let back: T = conn.query_row("SELECT ?1", [name], |r| r.get(0)).unwrap();
            assert_eq!(&back, v);
        }
    }
    let (_dir, db) = db(0, 0);
    let c = &db.conn;
    round_trip(c, UnitStatus::iter(), &["pending", "leased", "committed", "quarantined"]);
    round_trip(c, WorkerState::iter(), &["alive", "lost", "finished"]);
    round_trip(
        c,
        AttemptOutcome::iter(),
        &["committed", "duplicate", "failed", "released", "expired"],
    );
    round_trip(
        c,
        EventKind::iter(),
        &[
            "meta",
            "planned",
            "coordinator_started",
            "coordinator_stopped",
            "worker_joined",
            "worker_lost",
            "worker_finished",
            "worker_killed",
            "process_exited",
            "process_crashed",
            "slurm_submitted",
            "slurm_ended",
            "slurm_error",
            "slurm_scaled_down",
            "slurm_cancelled",
            "leased",
            "committed",
            "duplicate",
            "complete_repeated",
            "failed",
            "quarantined",
            "released",
            "expired",
            "requeued",
            "corrupt",
        ],
    );
    for kind in UnitKind::iter() {
        let name: &str = kind.as_ref();
        let back: types::Parsed<UnitKind> = c.query_row("SELECT ?1", [name], |r| r.get(0)).unwrap();
        assert_eq!(back.0, kind);
        let id = UnitId::of(kind, &7);
        let back: types::Parsed<UnitId> =
            c.query_row("SELECT ?1", [id.as_str()], |r| r.get(0)).unwrap();
        assert_eq!(back.0, id);
    }
    for kind in [Gone::Lost, Gone::Finished] {
        assert_eq!(kind.event().to_string(), format!("worker_{}", kind.state()));
    }
}
