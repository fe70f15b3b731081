//! Growing an existing run: which spec changes a run directory takes.
//!
//! A study often runs in two phases under one `[job]` name: capture (and save images) first,
//! then, once the user has labels or a new question, the same spec with an `[analysis.*]`
//! section added or changed. Capture is the expensive part, so a changed spec is taken when it
//! cannot change what was captured, and refused otherwise:
//!
//! * **fixed**: `[model]`, `[stimuli]`, `[capture]`, the stimulus list they yield (a changed
//!   `[targets]` may drop other stimuli for missing ratings) and the capture shards
//!   (`sweep.stimuli_per_unit`). Every capture unit of the new plan must be one the run already
//!   has, id for id;
//! * **free**: `[targets]` (within the above), `[analysis.*]`, the rest of `[sweep]`, `[slurm]`
//!   and `[job] null_control`.
//!
//! The new spec replaces the run's `spec.toml`; analysis units the new plan no longer holds are
//! retired (`StateDb::retire_unplanned`), those it still holds keep their committed outputs, and
//! new ones are queued. The report is then the report of the new spec, equal to a fresh run's.

use std::collections::BTreeSet;

use common::error::SpecError;
use common::ids::UnitId;
use common::layout::RunLayout;
use common::spec::JobSpec;
use common::stimuli::Dataset;

use crate::db::StateDb;
use crate::plan::Plan;

/// What to say when a changed spec would change the captures.
const ONLY: &str = "only [targets], [analysis.*], [sweep] (but stimuli_per_unit) and [slurm] \
                    may change in an existing run; use another [job] name for a new run";

/// Refuses `plan` for the run in `layout`, whose spec was `previous`, when the change would alter
/// a capture; names the first section that differs. `spec_file` is the user's spec.
pub(crate) fn check_sections(
    layout: &RunLayout,
    previous: &JobSpec,
    plan: &Plan,
    spec_file: &str,
) -> Result<(), SpecError> {
    let new = &plan.spec;
    let refuse = |field: &str, what: &str| {
        let dir = layout.root().display();
        Err(SpecError::new(spec_file, field, format!("{what} of the run in {dir}; {ONLY}")))
    };
    if new.model != previous.model {
        return refuse("[model]", "differs from the model");
    }
    if new.stimuli != previous.stimuli {
        return refuse("[stimuli]", "differs from the stimuli");
    }
    if new.capture != previous.capture {
        return refuse("[capture]", "differs from the capture");
    }
    if new.sweep.stimuli_per_unit != previous.sweep.stimuli_per_unit {
        return refuse("sweep.stimuli_per_unit", "differs from the capture shards");
    }
    let dataset_file = layout.root().join("dataset.json");
    let old = Dataset::open(&dataset_file)
        .map_err(|e| SpecError::new(spec_file, "[stimuli]", e.to_string()))?;
    if old.stimuli != plan.dataset.stimuli || old.texts != plan.dataset.texts {
        return refuse("[targets]", "yields another stimulus list (missing ratings) than that");
    }
    Ok(())
}

/// Refuses `plan` unless its capture units are exactly those of the run in `db`: the backstop
/// behind [`check_sections`] for anything else that feeds a capture id.
pub(crate) fn check_captures(
    db: &StateDb,
    layout: &RunLayout,
    plan: &Plan,
    spec_file: &str,
) -> anyhow::Result<()> {
    let have: BTreeSet<UnitId> = db.unit_ids_in_stage(0)?.into_iter().collect();
    let want: BTreeSet<UnitId> =
        plan.units.iter().filter(|(_, u)| u.stage() == 0).map(|(id, _)| id.clone()).collect();
    if have != want {
        let new = want.difference(&have).count();
        let what = format!("would plan {new} capture units the run does not have");
        let dir = layout.root().display();
        let message = format!("{what} (in {dir}); {ONLY}");
        return Err(SpecError::new(spec_file, "[capture]", message).into());
    }
    Ok(())
}
