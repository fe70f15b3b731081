//! The text values of the state database as types: each column that holds a name (a unit's
//! kind and state, an event's kind, a worker's state, an attempt's outcome) is an enum here,
//! stored as the same snake_case text as before, so existing run databases read the same.
//!
//! Reading is strict: a value this build does not know is an [`Unreadable`] error naming the
//! table, the row and the value, never a default. `common`'s [`UnitKind`] and [`UnitId`] have no
//! rusqlite impls (`common` does not depend on rusqlite): they are written as their text
//! (`as_ref()`, `as_str()`) and read through [`Parsed`], which parses with their `FromStr`.

use std::str::FromStr;

use common::ids::{UnitId, UnitKind};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::Row;

pub(crate) use crate::lease::UnitStatus;

/// What an event records (`events.kind`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[strum(serialize_all = "snake_case")]
pub(crate) enum EventKind {
    /// A meta value was set.
    Meta,
    /// The plan's units were inserted.
    Planned,
    CoordinatorStarted,
    CoordinatorStopped,
    WorkerJoined,
    WorkerLost,
    WorkerFinished,
    /// The local launcher killed a hung worker.
    WorkerKilled,
    /// A local worker process exited cleanly.
    ProcessExited,
    ProcessCrashed,
    SlurmSubmitted,
    SlurmEnded,
    SlurmError,
    SlurmScaledDown,
    SlurmCancelled,
    Leased,
    Committed,
    /// A late completion of an attempt other than the committed one.
    Duplicate,
    /// The committed completion sent again (a retry after a lost reply).
    CompleteRepeated,
    /// A failed attempt that will be retried.
    Failed,
    Quarantined,
    Released,
    /// A lease past its deadline, retried.
    Expired,
    /// A quarantined unit put back by the operator.
    Requeued,
    /// A committed output failed verification; the unit runs again.
    Corrupt,
}

/// A worker's state (`workers.state`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    serde::Serialize,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub(crate) enum WorkerState {
    /// Registered and heard from within a lease TTL.
    Alive,
    /// Silent for longer than a lease TTL (alive again if it calls).
    Lost,
    /// Told to stop: the sweep is done or the coordinator is shutting down.
    Finished,
}

/// How a worker left ([`crate::db::StateDb::worker_gone`]): its new state and the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gone {
    Lost,
    Finished,
}

impl Gone {
    pub(crate) fn state(self) -> WorkerState {
        match self {
            Gone::Lost => WorkerState::Lost,
            Gone::Finished => WorkerState::Finished,
        }
    }

    pub(crate) fn event(self) -> EventKind {
        match self {
            Gone::Lost => EventKind::WorkerLost,
            Gone::Finished => EventKind::WorkerFinished,
        }
    }
}

/// How an attempt ended (`attempts.outcome`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[strum(serialize_all = "snake_case")]
pub(crate) enum AttemptOutcome {
    Committed,
    Duplicate,
    Failed,
    Released,
    Expired,
}

/// Text in the database that names no value of its column's type.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub(crate) struct UnknownName {
    what: &'static str,
    value: String,
}

/// A row this build cannot read: which table, which row (a unit id, a worker id, an event's
/// sequence number), which column and value, and why.
#[derive(Debug, thiserror::Error)]
#[error("unreadable row in table {table}: row {row}, column {column} = {value}: {source}")]
pub(crate) struct Unreadable {
    pub(crate) table: &'static str,
    pub(crate) row: String,
    pub(crate) column: String,
    pub(crate) value: String,
    #[source]
    pub(crate) source: rusqlite::Error,
}

/// A value read through its `FromStr` (for `common`'s types, which have no `FromSql`).
pub(crate) struct Parsed<T>(pub(crate) T);

impl<T: FromStr> FromSql for Parsed<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map(Parsed).map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// `ToSql` / `FromSql` as the variant's snake_case name.
macro_rules! stored_as_name {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(<&'static str>::from(*self)))
            }
        }

        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                text.parse().map_err(|_| {
                    FromSqlError::Other(Box::new(UnknownName {
                        what: stringify!($t),
                        value: text.to_string(),
                    }))
                })
            }
        }
    )*};
}

stored_as_name!(UnitStatus, EventKind, WorkerState, AttemptOutcome);

/// Column `idx` of a row of `table` whose key is `row`, read as `T`; any failure is an
/// [`Unreadable`] naming the table, the row, the column and the value.
pub(crate) fn cell<T: FromSql>(
    r: &Row<'_>,
    idx: usize,
    table: &'static str,
    row: &dyn std::fmt::Display,
) -> rusqlite::Result<T> {
    r.get::<_, T>(idx).map_err(|source| {
        let raw = r.get_ref(idx).ok();
        let value = match raw {
            Some(ValueRef::Text(t)) => format!("{:?}", String::from_utf8_lossy(t)),
            Some(other) => format!("{other:?}"),
            None => "(missing)".to_string(),
        };
        let column = r.as_ref().column_name(idx).map_or_else(|_| idx.to_string(), str::to_string);
        let ty = raw.map_or(rusqlite::types::Type::Null, |v| v.data_type());
        let unreadable = Unreadable { table, row: row.to_string(), column, value, source };
        rusqlite::Error::FromSqlConversionFailure(idx, ty, Box::new(unreadable))
    })
}

/// The unit id in column `idx` of a row of `table` (the row's key when `table` is `units`).
pub(crate) fn unit_id(r: &Row<'_>, idx: usize, table: &'static str) -> rusqlite::Result<UnitId> {
    let raw: String = r.get(idx)?;
    Ok(cell::<Parsed<UnitId>>(r, idx, table, &raw)?.0)
}

/// A unit kind in column `idx` of the row of `table` whose key is `row`.
pub(crate) fn unit_kind(
    r: &Row<'_>,
    idx: usize,
    table: &'static str,
    row: &dyn std::fmt::Display,
) -> rusqlite::Result<UnitKind> {
    Ok(cell::<Parsed<UnitKind>>(r, idx, table, row)?.0)
}
