//! The units of the analyses that read a representation's capture rows beyond the attribute
//! probe and alignment: dense probes, prompt directions and clusters, the semantic lens. Each
//! unit's id hashes the dataset fingerprint, the capture units' ids and the unit itself (its
//! resolved settings and inputs' fingerprints included).

use common::ids::UnitId;
use common::settings::{Contrasts, SemanticSettings};
use common::spec::JobSpec;
use common::unit::{
    ClustersUnit, DenseUnit, DirectionsUnit, Representation, SemanticUnit, UnitSpec,
};

/// The representations dense units probe: the unreduced (`none`) U-Net ones of the model's
/// own weights (replicate means only).
pub(super) fn dense_representations<'a>(
    reps: &'a [Representation],
    dense: &'a crate::dense::DenseInputs,
) -> impl Iterator<Item = &'a Representation> {
    reps.iter().filter(|r| {
        r.pooling == common::spec::Pooling::None
            && r.replicate.is_none()
            && r.permuted.is_none()
            && (r.step.is_some() || r.noise.is_some())
            && dense.channels.contains_key(&r.tap)
    })
}

/// One dense unit per representation of `reps` (all from [`dense_representations`], or their
/// weight-permuted controls).
pub(super) fn dense_units(
    reps: &[Representation],
    dense: &crate::dense::DenseInputs,
    inputs: (&String, &UnitId),
) -> Vec<(UnitId, UnitSpec)> {
    reps.iter()
        .filter_map(|rep| {
            let channels = *dense.channels.get(&rep.tap)?;
            let unit = DenseUnit {
                representation: rep.clone(),
                channels,
                settings: dense.settings.clone(),
                inputs: Vec::new(),
            };
            Some((UnitId::of("dense", &(inputs, &unit)), UnitSpec::Dense(unit)))
        })
        .collect()
}

/// The directions and clusters units: one of each per replicate-mean representation whose
/// replicates are kept (the spec's validation makes `[analysis.directions]` keep them).
pub(super) fn direction_units(
    spec: &JobSpec,
    reps: &[Representation],
    contrasts: &Contrasts,
    inputs: (&String, &UnitId),
) -> Vec<(UnitId, UnitSpec)> {
    let replicates = spec.capture.generate.replicates;
    let kept = |r: &Representation| r.replicate.is_none() && reps.contains(&r.of_replicate(0));
    let settings =
        spec.analysis.directions.as_ref().map(|d| d.directions_settings(contrasts.clone()));
    let clusters = spec.analysis.clusters.as_ref().map(|c| c.cluster_settings(contrasts));
    let mut units = Vec::new();
    for rep in reps.iter().filter(|r| kept(r)) {
        if let Some(settings) = &settings {
            let unit = DirectionsUnit {
                representation: rep.clone(),
                replicates,
                settings: settings.clone(),
                inputs: Vec::new(),
            };
            let id = UnitId::of("directions", &(inputs, &unit));
            units.push((id, UnitSpec::Directions(unit)));
        }
        if let Some(settings) = &clusters {
            let unit = ClustersUnit {
                representation: rep.clone(),
                replicates,
                settings: settings.clone(),
                inputs: Vec::new(),
            };
            let id = UnitId::of("clusters", &(inputs, &unit));
            units.push((id, UnitSpec::Clusters(unit)));
        }
    }
    units
}

/// One semantic unit per representation (replicate means only), and with `ablation` one per
/// context (pooling, step, noise level, conditioning; untransformed) that has at least two taps.
pub(super) fn semantic_units(
    reps: &[Representation],
    settings: &SemanticSettings,
    ablation: bool,
    inputs: (&String, &UnitId),
) -> Vec<(UnitId, UnitSpec)> {
    let (fingerprint, captures) = inputs;
    let unit = |representation: &Representation, ablation: Vec<Representation>| {
        let unit = SemanticUnit {
            representation: representation.clone(),
            ablation,
            settings: settings.clone(),
            inputs: Vec::new(),
        };
        (UnitId::of("semantic", &(fingerprint, captures, &unit)), UnitSpec::Semantic(unit))
    };
    let means: Vec<&Representation> = reps.iter().filter(|r| r.replicate.is_none()).collect();
    let mut units: Vec<_> = means.iter().map(|r| unit(r, Vec::new())).collect();
    if ablation {
        let mut groups: Vec<Vec<Representation>> = Vec::new();
        let plain = means.iter().filter(|r| r.transform.is_none() && r.permuted.is_none());
        for r in plain {
            // The same representation but for its tap.
            let same = |g: &&mut Vec<Representation>| {
                Representation { tap: String::new(), ..g[0].clone() }
                    == Representation { tap: String::new(), ..(*r).clone() }
            };
            match groups.iter_mut().find(|g| same(g)) {
                Some(g) => g.push((*r).clone()),
                None => groups.push(vec![(*r).clone()]),
            }
        }
        units.extend(groups.into_iter().filter(|g| g.len() > 1).map(|g| unit(&g[0].clone(), g)));
    }
    units
}
