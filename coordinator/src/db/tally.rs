//! Unit counts by kind and state, kept in memory beside the database: derived from `units` on
//! open and moved with every committed transition, so the supervision tick and an idle `Lease`
//! read them instead of scanning the table.

use std::collections::BTreeMap;

use common::ids::UnitKind;

use super::types::UnitStatus;

/// Unit counts by kind and state, and each kind's stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(super) counts: BTreeMap<UnitKind, Counts>,
    pub(super) stages: BTreeMap<UnitKind, u32>,
    /// Bumped whenever a stage-0 (capture) unit enters or leaves `committed`: the committed
    /// capture outputs, which stage-1 leases name through a manifest, may have changed.
    pub(super) inputs_generation: u64,
}

/// Unit counts by state for one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Counts {
    pub(crate) pending: u64,
    pub(crate) leased: u64,
    pub(crate) committed: u64,
    pub(crate) quarantined: u64,
}

impl Counts {
    pub(crate) fn total(&self) -> u64 {
        self.pending + self.leased + self.committed + self.quarantined
    }

    pub(super) fn slot(&mut self, state: UnitStatus) -> &mut u64 {
        match state {
            UnitStatus::Pending => &mut self.pending,
            UnitStatus::Leased => &mut self.leased,
            UnitStatus::Committed => &mut self.committed,
            UnitStatus::Quarantined => &mut self.quarantined,
        }
    }
}

impl Tally {
    fn moved(&mut self, kind: UnitKind, from: UnitStatus, to: UnitStatus) {
        if from == to {
            return;
        }
        let c = self.counts.entry(kind).or_default();
        let from_slot = c.slot(from);
        *from_slot = from_slot.saturating_sub(1);
        *c.slot(to) += 1;
        let committed = UnitStatus::Committed;
        if self.stages.get(&kind) == Some(&0) && (from == committed || to == committed) {
            self.inputs_generation += 1;
        }
    }

    /// Applies the moves of a committed transaction.
    pub(super) fn apply(&mut self, moves: Moves) {
        for (kind, from, to) in moves.0 {
            self.moved(kind, from, to);
        }
    }

    /// The lowest stage with a unit not yet committed, if any.
    pub(super) fn open_stage(&self) -> Option<u32> {
        self.counts
            .iter()
            .filter(|(_, c)| c.committed < c.total())
            .filter_map(|(kind, _)| self.stages.get(kind).copied())
            .min()
    }

    /// Pending units of `stage`.
    pub(super) fn pending_in(&self, stage: u32) -> u64 {
        self.counts
            .iter()
            .filter(|(kind, _)| self.stages.get(*kind) == Some(&stage))
            .map(|(_, c)| c.pending)
            .sum()
    }
}

/// State changes of one transaction, applied to the [`Tally`] once it has committed.
#[derive(Default)]
pub(super) struct Moves(Vec<(UnitKind, UnitStatus, UnitStatus)>);

impl Moves {
    pub(super) fn push(&mut self, kind: UnitKind, from: UnitStatus, to: UnitStatus) {
        self.0.push((kind, from, to));
    }
}
