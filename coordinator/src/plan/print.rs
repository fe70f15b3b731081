//! `diffprobe plan`'s output: the run, its representations with their sizes, the units, the
//! bytes to write and the work, including the dense units' memory and multiply-adds.

use super::{Estimate, Plan};

/// Prints the plan and its estimate for `diffprobe plan`.
pub(crate) fn print(plan: &Plan, e: &Estimate) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("job {} → {}", plan.spec.job.name, plan.spec.run_dir().display());
    println!("stimuli: {} ({} dropped for missing ratings)", e.stimuli, e.dropped_stimuli);
    println!("attributes: {} ({})", e.attributes, plan.dataset.attributes.join(", "));
    println!("representations: {}", e.representations);
    let width = plan.representations.iter().map(|(r, _)| r.key().len()).max().unwrap_or(0);
    for (rep, dim) in &plan.representations {
        println!(
            "  {:<width$} D = {dim}, {:.2} MiB",
            rep.key(),
            mib((e.stimuli
                * dim
                * if plan.spec.capture.dtype == common::spec::StorageDtype::F16 { 2 } else { 4 })
                as u64)
        );
    }
    let mut units = format!("units: {} capture + {} probe", e.capture_units, e.probe_units);
    if e.alignment_units > 0 {
        units += &format!(" + {} alignment ({} triplets)", e.alignment_units, e.triplets);
    }
    if e.direction_units > 0 {
        units += &format!(" + {} directions/clusters", e.direction_units);
    }
    if e.dense_units > 0 {
        units += &format!(" + {} dense", e.dense_units);
    }
    if e.control_capture_units > 0 {
        units += &format!(
            " (of which {} capture and half the dense through the weight-permuted U-Net)",
            e.control_capture_units
        );
    }
    if e.semantic_units > 0 {
        units += &format!(" + {} semantic", e.semantic_units);
    }
    println!("{units}");
    println!(
        "bytes to write: {:.1} MiB features + {:.1} MiB probe results",
        mib(e.feature_bytes),
        mib(e.probe_bytes)
    );
    println!(
        "work: {} forward passes, {} eigendecompositions, {} permutation refits",
        e.forward_passes, e.eigendecompositions, e.permutation_fits
    );
    print_dense(plan);
    print_semantic(plan);
}

/// Per dense unit (one representation): what a worker holds and its multiply-adds: one Gram
/// pass (`N_train · tokens · C²`) shared by the ridge targets and the masks' preconditioner,
/// then about 20 L-BFGS iterations per mask of two gradient passes (`2 · N_train · tokens · C`).
fn print_dense(plan: &Plan) {
    use common::spec::DenseTargetKind;
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let n = plan.dataset.len();
    let mut total = 0.0;
    let mut largest: Option<(String, f64, f64)> = None;
    for (_, unit) in &plan.units {
        let common::unit::UnitSpec::Dense(d) = unit else { continue };
        // A weight-permuted control has its own representation's width.
        let own = common::unit::Representation { permuted: None, ..d.representation.clone() };
        let dim = plan.representations.iter().find(|(r, _)| *r == own).map_or(0, |r| r.1);
        let c = d.channels as f64;
        let tokens = dim as f64 / c;
        let masks =
            d.settings.targets.iter().filter(|t| t.kind == DenseTargetKind::Mask).count() as f64;
        let n_train = d.settings.train.len() as f64;
        let macs = n_train * tokens * c * c + masks * 40.0 * n_train * tokens * c;
        let memory = (n * dim * 4) as f64 + 2.0 * c * c * 8.0;
        total += macs;
        if largest.as_ref().is_none_or(|l| memory > l.1) {
            largest = Some((d.representation.key(), memory, macs));
        }
    }
    if let Some((key, memory, macs)) = largest {
        println!(
            "dense: {:.1} GMAC in all; the largest unit ({key}) holds {:.1} MiB (one \
             representation in f32 plus its C × C equations) and does {:.2} GMAC",
            total / 1e9,
            mib(memory),
            macs / 1e9
        );
    }
}

/// The semantic units' scale: objects, the distance matrix a unit holds (`N²` in f64, one
/// distance at a time) or its row blocks beyond `max_matrix_gib`, the pairs it scores and the
/// same-class pairs its AUC holds.
pub(super) fn print_semantic(plan: &Plan) {
    let mut units = 0;
    let mut ablations = 0;
    let mut settings = None;
    for (_, unit) in &plan.units {
        let common::unit::UnitSpec::Semantic(s) = unit else { continue };
        settings = Some(&s.settings);
        if s.ablation.is_empty() {
            units += 1;
        } else {
            ablations += 1;
        }
    }
    let Some(s) = settings else { return };
    let objects = s.items.len();
    let (n, mib) = (objects as f64, 1024.0 * 1024.0);
    let matrix = n * n * 8.0;
    let held = if matrix <= s.max_matrix_bytes as f64 {
        format!("holds one {objects} × {objects} distance matrix ({:.1} MiB in f64)", matrix / mib)
    } else {
        let block = (s.max_matrix_bytes as f64 / (8.0 * n)).floor().max(1.0);
        format!(
            "computes its {objects} × {objects} distances ({:.1} GiB in f64, over \
             analysis.semantic.max_matrix_gib) in blocks of {block} rows, again on each pass (two \
             for the six scores)",
            matrix / (mib * 1024.0)
        )
    };
    // The AUC holds its same-class pairs across images (16 bytes each), sorted.
    let mut per_class = std::collections::HashMap::<usize, f64>::new();
    s.classes.iter().for_each(|&c| *per_class.entry(c).or_default() += 1.0);
    let same: f64 = per_class.values().map(|m| m * (m - 1.0) / 2.0).sum();
    print_dropped(plan, s);
    println!(
        "semantic: {objects} objects; each of {units} units {held} and scores {:.2e} pairs under \
         each of {} distances (its AUC holds up to {:.1} MiB of same-class pairs); {ablations} \
         ablation units",
        n * (n - 1.0) / 2.0,
        s.distances.len(),
        same * 16.0 / mib,
    );
}

/// The objects under one token of each semantic unit's tap, which its units drop.
fn print_dropped(plan: &Plan, s: &common::settings::SemanticSettings) {
    let mut taps: Vec<&str> = Vec::new();
    for (_, unit) in &plan.units {
        if let common::unit::UnitSpec::Semantic(u) = unit {
            if !taps.contains(&u.representation.tap.as_str()) {
                taps.push(&u.representation.tap);
            }
        }
    }
    let under: Vec<String> = taps
        .iter()
        .map(|t| (t, (0..s.items.len()).filter(|&i| !s.covers_a_token(i, &[t])).count()))
        .filter(|(_, k)| *k > 0)
        .map(|(t, k)| format!("{t} {k}"))
        .collect();
    if !under.is_empty() {
        println!(
            "semantic: objects under one token, dropped from a tap's units: {}",
            under.join(", ")
        );
    }
}
