//! A unit's state as a row of `units`: [`load`] reads the columns of its [`UnitState`]
//! (strictly: an unknown state is an error naming the unit), [`store`] writes them, one
//! exhaustive match per column group, so a new state cannot be stored half-way.

use common::ids::{UnitId, UnitKind};
use rusqlite::{params, OptionalExtension, Transaction};

use super::types::{self, UnitStatus};
use crate::lease::UnitState;

/// A unit's state, descriptor (JSON) and kind.
pub(super) struct Loaded {
    pub(super) state: UnitState,
    pub(super) descriptor: String,
    pub(super) kind: UnitKind,
}

pub(super) fn load(tx: &Transaction<'_>, unit: &UnitId) -> rusqlite::Result<Loaded> {
    load_opt(tx, unit)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub(super) fn load_opt(tx: &Transaction<'_>, unit: &UnitId) -> rusqlite::Result<Option<Loaded>> {
    tx.prepare_cached(
        "SELECT state, attempts, failures, not_before, worker, deadline, committed_attempt, output, checksum, error, descriptor, kind FROM units WHERE id = ?1",
    )?
    .query_row([unit.as_str()], |r| {
        let attempts = types::cell(r, 1, "units", unit)?;
        let failures = types::cell(r, 2, "units", unit)?;
        let state = match types::cell::<UnitStatus>(r, 0, "units", unit)? {
            UnitStatus::Pending => UnitState::Pending {
                attempts,
                failures,
                not_before: types::cell(r, 3, "units", unit)?,
            },
            UnitStatus::Leased => UnitState::Leased {
                attempts,
                failures,
                worker: types::cell(r, 4, "units", unit)?,
                deadline: types::cell(r, 5, "units", unit)?,
            },
            UnitStatus::Committed => UnitState::Committed {
                attempts,
                failures,
                attempt: types::cell(r, 6, "units", unit)?,
                output: types::cell(r, 7, "units", unit)?,
                checksum: types::cell(r, 8, "units", unit)?,
            },
            UnitStatus::Quarantined => UnitState::Quarantined {
                attempts,
                failures,
                error: types::cell(r, 9, "units", unit)?,
            },
        };
        Ok(Loaded {
            state,
            descriptor: types::cell(r, 10, "units", unit)?,
            kind: types::unit_kind(r, 11, "units", unit)?,
        })
    })
    .optional()
}

pub(super) fn store(tx: &Transaction<'_>, unit: &UnitId, s: &UnitState) -> rusqlite::Result<()> {
    let (attempts, failures) = match s {
        UnitState::Pending { attempts, failures, .. }
        | UnitState::Leased { attempts, failures, .. }
        | UnitState::Committed { attempts, failures, .. }
        | UnitState::Quarantined { attempts, failures, .. } => (attempts, failures),
    };
    let (not_before, worker, deadline) = match s {
        UnitState::Pending { not_before, .. } => (*not_before, None, None),
        UnitState::Leased { worker, deadline, .. } => (0, Some(worker.as_str()), Some(*deadline)),
        UnitState::Committed { .. } | UnitState::Quarantined { .. } => (0, None, None),
    };
    let (c_attempt, output, checksum) = match s {
        UnitState::Committed { attempt, output, checksum, .. } => {
            (Some(*attempt), Some(output.as_str()), Some(checksum.as_str()))
        }
        UnitState::Pending { .. } | UnitState::Leased { .. } | UnitState::Quarantined { .. } => {
            (None, None, None)
        }
    };
    let error = match s {
        UnitState::Quarantined { error, .. } => Some(error.as_str()),
        UnitState::Pending { .. } | UnitState::Leased { .. } | UnitState::Committed { .. } => None,
    };
    tx.prepare_cached(
        "UPDATE units SET state = ?2, attempts = ?3, failures = ?4, not_before = ?5, worker = ?6, deadline = ?7,
         committed_attempt = ?8, output = ?9, checksum = ?10, error = ?11 WHERE id = ?1",
    )?
    .execute(params![
        unit.as_str(),
        s.status(),
        attempts,
        failures,
        not_before,
        worker,
        deadline,
        c_attempt,
        output,
        checksum,
        error
    ])?;
    Ok(())
}
