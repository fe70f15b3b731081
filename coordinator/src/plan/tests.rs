//! Unit ids against spec changes (a property test): a change that can alter a unit's result
//! changes the id of every unit it affects and of no other, and a change that cannot (job name,
//! output folder, supervision and Slurm keys, the device, paths to the same content) changes no
//! id. The plan's inputs are fixed (model identity, dataset, alignment inputs), so what varies
//! is the spec alone. Worker counts are command-line flags, not spec keys, and never reach a
//! unit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::spec::{
    AlignmentDistance, DeviceChoice, EarlyStoppingChoice, LoraEntry, NoiseSeeding, ProbePrecision,
    SamplerKind, StorageDtype,
};
use common::stimuli::Embedding;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::Union;

use super::*;

/// Which units a change may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Capture,
    Probe,
    Grid,
    Evaluate,
    LinearProbe,
    Directions,
    Clusters,
}
use Class::*;

const ALL: &[Class] = &[Capture, Probe, Grid, Evaluate, LinearProbe, Directions, Clusters];

/// One spec change: the units whose ids must all change (`must`), and those whose ids may
/// change without it being wrong (`may`: e.g. regrouping folds into units). All others keep
/// their ids.
#[derive(Clone)]
struct Change {
    what: String,
    must: &'static [Class],
    may: &'static [Class],
    apply: Arc<dyn Fn(&mut JobSpec)>,
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

fn change<T: std::fmt::Debug + Clone + 'static>(
    key: &'static str,
    must: &'static [Class],
    may: &'static [Class],
    set: fn(&mut JobSpec, T),
) -> impl Fn(T) -> Change + Clone {
    move |v: T| Change {
        what: format!("{key} = {v:?}"),
        must,
        may,
        apply: Arc::new(move |s: &mut JobSpec| set(s, v.clone())),
    }
}

fn al(s: &mut JobSpec) -> &mut AlignmentSection {
    s.analysis.alignment.as_mut().expect("the base spec has [analysis.alignment]")
}

fn dirs(s: &mut JobSpec) -> &mut common::spec::DirectionsSection {
    s.analysis.directions.as_mut().expect("the base spec has [analysis.directions]")
}

fn clu(s: &mut JobSpec) -> &mut common::spec::ClustersSection {
    s.analysis.clusters.as_mut().expect("the base spec has [analysis.clusters]")
}

fn base_spec() -> JobSpec {
    toml::from_str(
        r#"
[job]
name = "base"
[model]
kind = "bert"
path = "model"
[stimuli]
file = "stimuli.csv"
[targets]
file = "ratings.csv"
columns = { r = "size" }
[analysis.attribute_probe]
grid_components = [2, 3]
grid_alphas = [1.0, 10.0]
[analysis.alignment]
triplets = "triplets.csv"
linear_probe = true
embedding = "embedding.csv"
[analysis.directions]
contrasts = "contrasts.csv"
[analysis.clusters]
"#,
    )
    .expect("the base spec parses")
}

/// Unit ids by class, for a spec, on fixed plan inputs.
fn ids(spec: &JobSpec) -> BTreeMap<Class, BTreeSet<UnitId>> {
    let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    let data = Dataset {
        stimuli: names.clone(),
        texts: names,
        attributes: vec!["size".into()],
        groups: vec![None],
        targets: vec![1.0, 2.0, 3.0, 4.0, 5.0],
        dropped: Vec::new(),
    };
    let inputs = AlignmentInputs {
        n_concepts: 5,
        triplets: vec![[0, 1, 2], [2, 3, 4]],
        embedding: Some(Embedding { dimensions: vec!["d".into()], values: vec![0.5; 5] }),
    };
    let h = Representation {
        step: Some(0),
        ..Representation::text("mid_block", common::spec::Pooling::Flatten)
    };
    let reps = [
        Representation::text("text.0", common::spec::Pooling::Mean),
        h.clone(),
        h.of_replicate(0),
        h.of_replicate(1),
    ];
    let contrasts = common::settings::Contrasts {
        base: 0,
        axes: vec![common::settings::ContrastAxis { name: "g".into(), positive: 1, negative: 2 }],
        queries: vec![3, 4],
        categories: vec!["x".into(), "y".into()],
        references: Vec::new(),
        descriptors: vec![1],
        concepts: vec![3],
    };
    // The LoRA files' fingerprints stand fixed here; their scales come from the spec.
    let loras = spec.model.lora.iter().map(|l| ("lora".to_string(), l.scale)).collect();
    let model = ModelIdentity::new(&spec.model, "config".into(), 1, loras);
    let mut by_class: BTreeMap<Class, BTreeSet<UnitId>> =
        ALL.iter().map(|&c| (c, BTreeSet::new())).collect();
    for (id, unit) in resolve_units(
        spec,
        &model,
        &data,
        &reps,
        AnalysisInputs {
            alignment: Some(&inputs),
            contrasts: Some(&contrasts),
            dense: None,
            semantic: None,
        },
    ) {
        let class = match unit {
            UnitSpec::Capture(_) => Capture,
            UnitSpec::Probe(_) => Probe,
            UnitSpec::Grid(_) => Grid,
            UnitSpec::Alignment(AlignmentUnit { task: AlignmentTask::Evaluate(_), .. }) => Evaluate,
            UnitSpec::Alignment(_) => LinearProbe,
            UnitSpec::Directions(_) => Directions,
            UnitSpec::Clusters(_) => Clusters,
            UnitSpec::Dense(_) | UnitSpec::Semantic(_) => unreachable!("no such inputs"),
        };
        by_class.get_mut(&class).expect("every class").insert(id);
    }
    by_class
}

fn alpha() -> impl Strategy<Value = f64> {
    0.01f64..1e4
}

/// Changes that can alter a result, each with the units it affects.
fn altering() -> impl Strategy<Value = Change> {
    const STAGE1: &[Class] = &[Probe, Grid, Evaluate, LinearProbe];
    Union::new([
        (2usize..20)
            .prop_map(change("folds", &[Probe, Grid], &[], |s, v| {
                s.analysis.attribute_probe.folds = v
            }))
            .boxed(),
        (1usize..500)
            .prop_map(change("components", &[Probe], &[], |s, v| {
                s.analysis.attribute_probe.components = v
            }))
            .boxed(),
        alpha()
            .prop_map(change("alpha", &[Probe], &[], |s, v| s.analysis.attribute_probe.alpha = v))
            .boxed(),
        vec(alpha(), 1..4)
            .prop_map(change("alphas", &[Probe], &[], |s, v| s.analysis.attribute_probe.alphas = v))
            .boxed(),
        (2usize..10)
            .prop_map(change("alpha_inner_folds", &[Probe], &[], |s, v| {
                s.analysis.attribute_probe.alpha_inner_folds = v
            }))
            .boxed(),
        (0usize..5000)
            .prop_map(change("permutations", &[Probe], &[], |s, v| {
                s.analysis.attribute_probe.permutations = v
            }))
            .boxed(),
        any::<u64>()
            .prop_map(change("probe seed", &[Probe, Grid], &[], |s, v| {
                s.analysis.attribute_probe.seed = v
            }))
            .boxed(),
        Just(true)
            .prop_map(change("zscore", &[Probe, Grid], &[], |s, v| {
                s.analysis.attribute_probe.zscore = v
            }))
            .boxed(),
        Just(ProbePrecision::F32)
            .prop_map(change("precision", &[Probe], &[], |s, v| {
                s.analysis.attribute_probe.precision = v
            }))
            .boxed(),
        vec(1usize..50, 1..4)
            .prop_map(change("grid_components", &[Grid], &[], |s, v| {
                s.analysis.attribute_probe.grid_components = v
            }))
            .boxed(),
        vec(alpha(), 1..4)
            .prop_map(change("grid_alphas", &[Grid], &[], |s, v| {
                s.analysis.attribute_probe.grid_alphas = v
            }))
            .boxed(),
        proptest::sample::subsequence(
            vec![AlignmentDistance::Cosine, AlignmentDistance::Euclidean, AlignmentDistance::Dot],
            1..=3,
        )
        .prop_shuffle()
        .prop_map(change("distances", &[Evaluate], &[], |s, v| al(s).distances = v))
        .boxed(),
        any::<u64>()
            .prop_map(change("alignment seed", &[Evaluate, LinearProbe], &[], |s, v| {
                al(s).seed = v
            }))
            .boxed(),
        Just(false)
            .prop_map(change("linear_probe", &[LinearProbe], &[], |s, v| al(s).linear_probe = v))
            .boxed(),
        Just(None)
            .prop_map(change("embedding", &[Evaluate], &[], |s, v| al(s).embedding = v))
            .boxed(),
        (2usize..10)
            .prop_map(change("embedding_folds", &[Evaluate], &[], |s, v| al(s).embedding_folds = v))
            .boxed(),
        vec(alpha(), 1..4)
            .prop_map(change("embedding_alphas", &[Evaluate], &[], |s, v| {
                al(s).embedding_alphas = v
            }))
            .boxed(),
        (2usize..10)
            .prop_map(change("probe_folds", &[LinearProbe], &[], |s, v| al(s).probe_folds = v))
            .boxed(),
        (0.0f64..10.0)
            .prop_map(change("lambda", &[LinearProbe], &[], |s, v| al(s).lambda = v))
            .boxed(),
        (1e-6f64..1.0)
            .prop_map(change("learning_rate", &[LinearProbe], &[], |s, v| al(s).learning_rate = v))
            .boxed(),
        (1usize..1000)
            .prop_map(change("batch_size", &[LinearProbe], &[], |s, v| al(s).batch_size = v))
            .boxed(),
        (1usize..1000)
            .prop_map(change("max_epochs", &[LinearProbe], &[], |s, v| al(s).max_epochs = v))
            .boxed(),
        (1usize..50)
            .prop_map(change("patience", &[LinearProbe], &[], |s, v| al(s).patience = v))
            .boxed(),
        (0.0f64..1.0)
            .prop_map(change("min_delta", &[LinearProbe], &[], |s, v| al(s).min_delta = v))
            .boxed(),
        (0.01f64..100.0)
            .prop_map(change("max_grad_norm", &[LinearProbe], &[], |s, v| al(s).max_grad_norm = v))
            .boxed(),
        (0.01f64..0.99)
            .prop_map(change("early_stopping = validation_loss", &[LinearProbe], &[], |s, v| {
                al(s).early_stopping = EarlyStoppingChoice::ValidationLoss;
                al(s).validation_fraction = v;
            }))
            .boxed(),
        (0usize..5000)
            .prop_map(change("directions bootstrap", &[Directions], &[], |s, v| {
                dirs(s).bootstrap = v
            }))
            .boxed(),
        (1u64..u64::MAX)
            .prop_map(change("directions seed", &[Directions], &[], |s, v| dirs(s).seed = v))
            .boxed(),
        (3usize..10).prop_map(change("clusters k", &[Clusters], &[], |s, v| clu(s).k = v)).boxed(),
        (1usize..100)
            .prop_map(change("clusters pca", &[Clusters], &[], |s, v| clu(s).pca = v))
            .boxed(),
        (11usize..50)
            .prop_map(change("clusters restarts", &[Clusters], &[], |s, v| clu(s).restarts = v))
            .boxed(),
        (1u64..u64::MAX)
            .prop_map(change("clusters seed", &[Clusters], &[], |s, v| clu(s).seed = v))
            .boxed(),
        Just(common::spec::ClusterSpace::Mean)
            .prop_map(change("clusters space", &[Clusters], &[], |s, v| clu(s).space = v))
            .boxed(),
        // Capture settings change every capture unit, and so every unit that reads them.
        Just(true)
            .prop_map(change("keep_replicates", ALL, &[], |s, v| {
                s.capture.generate.keep_replicates = v
            }))
            .boxed(),
        (1usize..1000)
            .prop_map(change("max_tokens", ALL, &[], |s, v| s.capture.max_tokens = v))
            .boxed(),
        (1usize..256)
            .prop_map(change("capture batch_size", ALL, &[], |s, v| s.capture.batch_size = v))
            .boxed(),
        any::<u64>().prop_map(change("capture seed", ALL, &[], |s, v| s.capture.seed = v)).boxed(),
        Just(StorageDtype::F16)
            .prop_map(change("capture dtype", ALL, &[], |s, v| s.capture.dtype = v))
            .boxed(),
        Just(StorageDtype::F16)
            .prop_map(change("model dtype", ALL, &[], |s, v| s.model.dtype = v))
            .boxed(),
        (0.0f64..2.0)
            .prop_map(change("lora scale", ALL, &[], |s, v| {
                s.model.lora = vec![LoraEntry { path: "lora.safetensors".into(), scale: v }]
            }))
            .boxed(),
        Just(SamplerKind::Lcm)
            .prop_map(change("scheduler", ALL, &[], |s, v| s.capture.generate.scheduler = v))
            .boxed(),
        Just(NoiseSeeding::PerReplicate)
            .prop_map(change("noise", ALL, &[], |s, v| s.capture.generate.noise = v))
            .boxed(),
        // Regrouping stimuli into capture units or folds into probe units does not change a
        // result (module docs of `probe`), but the units are not the same units.
        (1usize..8)
            .prop_map(change("stimuli_per_unit", &[], ALL, |s, v| s.sweep.stimuli_per_unit = v))
            .boxed(),
        (1usize..20)
            .prop_map(change("folds_per_unit", &[], &[Probe], |s, v| s.sweep.folds_per_unit = v))
            .boxed(),
        Just(())
            .prop_map(change("any of them", STAGE1, &[], |s, ()| {
                s.analysis.attribute_probe.folds = 3;
                s.analysis.attribute_probe.zscore = true;
                al(s).seed = 1;
            }))
            .boxed(),
    ])
}

/// Changes that cannot alter a result.
fn neutral() -> impl Strategy<Value = Change> {
    let n = |key: &'static str, set: fn(&mut JobSpec, u32)| {
        (0u32..1000).prop_map(change(key, &[], &[], set)).boxed()
    };
    Union::new([
        n("job.name", |s, v| s.job.name = format!("job{v}")),
        n("job.output_dir", |s, v| s.job.output_dir = format!("runs{v}").into()),
        n("job.null_control", |s, v| s.job.null_control = v % 2 == 0),
        n("model.path (same files)", |s, v| s.model.path = format!("models/m{v}").into()),
        n("model.device", |s, v| {
            s.model.device = [DeviceChoice::Cpu, DeviceChoice::Cuda][v as usize % 2]
        }),
        n("stimuli.file (same content)", |s, v| s.stimuli.file = format!("s{v}.csv").into()),
        n("targets.file (same content)", |s, v| s.targets.file = format!("r{v}.csv").into()),
        n("sweep.lease_ttl_s", |s, v| s.sweep.lease_ttl_s = 10.0 + v as f64),
        n("sweep.heartbeat_s", |s, v| s.sweep.heartbeat_s = 1.0 + v as f64 / 1000.0),
        n("sweep.max_attempts", |s, v| s.sweep.max_attempts = 1 + v),
        n("sweep.retry_backoff_s", |s, v| s.sweep.retry_backoff_s = 0.5 + v as f64),
        n("slurm.partition", |s, v| s.slurm.partition = Some(format!("p{v}"))),
        n("slurm.account", |s, v| s.slurm.account = Some(format!("a{v}"))),
        n("slurm.qos", |s, v| s.slurm.qos = Some(format!("q{v}"))),
        n("slurm.time", |s, v| s.slurm.time = format!("{v}")),
        n("slurm.gres", |s, v| s.slurm.gres = Some(format!("gpu:{v}"))),
        n("slurm.cpus_per_task", |s, v| s.slurm.cpus_per_task = 1 + v),
        n("slurm.mem", |s, v| s.slurm.mem = Some(format!("{v}G"))),
        n("slurm.array_parallelism", |s, v| s.slurm.array_parallelism = Some(1 + v)),
        n("slurm.signal", |s, v| s.slurm.signal = format!("B:USR2@{v}")),
        n("slurm.extra", |s, v| s.slurm.extra = vec![format!("--nice={v}")]),
        n("alignment.description", |s, v| al(s).description = Some(format!("d{v}"))),
        n("alignment.triplets (same content)", |s, v| al(s).triplets = format!("t{v}").into()),
        n("alignment.embedding (same content)", |s, v| {
            al(s).embedding = Some(format!("e{v}").into())
        }),
        // Read only with early_stopping = "validation_loss"; the base uses the test loss.
        n("alignment.validation_fraction", |s, v| {
            al(s).validation_fraction = 0.01 + v as f64 / 2000.0
        }),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn unit_ids_change_exactly_with_what_the_units_run(
        neutral in vec(neutral(), 0..4),
        altering in proptest::option::of(altering()),
    ) {
        let base = base_spec();
        let before = ids(&base);
        let mut spec = base.clone();
        for c in &neutral {
            (c.apply)(&mut spec);
        }
        let unaltered = spec.clone();
        let (mut must, mut may): (&[Class], &[Class]) = (&[], &[]);
        if let Some(c) = &altering {
            (c.apply)(&mut spec);
            // A draw equal to the base value alters nothing.
            if spec != unaltered {
                (must, may) = (c.must, c.may);
            }
        }
        let after = ids(&spec);
        for class in ALL {
            let (b, a) = (&before[class], &after[class]);
            if must.contains(class) {
                prop_assert!(b.is_disjoint(a), "{class:?}: some ids did not change");
            } else if !may.contains(class) {
                prop_assert_eq!(b, a, "{:?}: ids changed", class);
            }
        }
    }
}

/// What a stage-1 unit runs with is in the unit, and is the spec's.
#[test]
fn stage1_units_carry_their_settings() {
    let spec = base_spec();
    let model = ModelIdentity::new(&spec.model, "config".into(), 1, Vec::new());
    let names: Vec<String> = ["a", "b"].map(String::from).to_vec();
    let data = Dataset {
        stimuli: names.clone(),
        texts: names,
        attributes: vec!["size".into()],
        groups: vec![None],
        targets: vec![1.0, 2.0],
        dropped: Vec::new(),
    };
    let reps = [Representation::text("text.0", common::spec::Pooling::Mean)];
    let a = &spec.analysis.attribute_probe;
    for (_, unit) in resolve_units(&spec, &model, &data, &reps, AnalysisInputs::default()) {
        match unit {
            UnitSpec::Capture(_) => {}
            UnitSpec::Probe(p) => assert_eq!(p.settings, a.probe_settings()),
            UnitSpec::Grid(g) => assert_eq!(Some(g.settings), a.grid_settings()),
            UnitSpec::Alignment(_)
            | UnitSpec::Directions(_)
            | UnitSpec::Clusters(_)
            | UnitSpec::Dense(_)
            | UnitSpec::Semantic(_) => {
                panic!("no alignment inputs or contrasts, no such units")
            }
        }
    }
}

/// The dense control (`control = "permute_weights"`) adds one capture unit per shard of the
/// permuted twins of the dense representations and one dense unit per twin; every other id
/// stays, so adding it to a run reuses all its captures and results. Its seed moves only the
/// control's units.
#[test]
fn the_dense_control_adds_its_own_units_and_moves_no_other_id() {
    let spec = base_spec();
    let model = ModelIdentity::new(&spec.model, "config".into(), 1, Vec::new());
    let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let data = Dataset {
        stimuli: names.clone(),
        texts: names,
        attributes: vec!["size".into()],
        groups: vec![None],
        targets: vec![1.0, 2.0, 3.0],
        dropped: Vec::new(),
    };
    let none = |tap: &str, noise| Representation {
        noise: Some(noise),
        conditioning: Some(Conditioning::Empty),
        ..Representation::text(tap, common::spec::Pooling::None)
    };
    let reps = [
        Representation::text("text.0", common::spec::Pooling::Mean),
        none("mid", 20),
        none("mid", 80),
        Representation { pooling: common::spec::Pooling::Mean, ..none("mid", 20) },
    ];
    let dense = |control| crate::dense::DenseInputs {
        settings: common::settings::DenseSettings {
            targets: Vec::new(),
            train: vec![0],
            test: vec![1, 2],
            alpha: 1.0,
            l2: 1.0,
            generated: false,
            labels_fingerprint: "labels".into(),
            paper: None,
        },
        channels: [("mid".to_string(), 4)].into_iter().collect(),
        control,
    };
    let plan = |control| {
        let d = dense(control);
        let inputs = AnalysisInputs { dense: Some(&d), ..AnalysisInputs::default() };
        resolve_units(&spec, &model, &data, &reps, inputs).into_iter().collect::<BTreeMap<_, _>>()
    };
    let (without, with, reseeded) = (plan(None), plan(Some(3)), plan(Some(4)));
    assert!(without.keys().all(|id| with.contains_key(id)), "an id moved");
    let added: Vec<&UnitSpec> =
        with.iter().filter(|(id, _)| !without.contains_key(*id)).map(|(_, u)| u).collect();
    let permuted = |r: &Representation| r.permuted == Some(3);
    let captures: Vec<&CaptureUnit> = added
        .iter()
        .filter_map(|u| if let UnitSpec::Capture(c) = u { Some(c) } else { None })
        .collect();
    assert_eq!(captures.len(), without.values().filter(|u| u.kind() == UnitKind::Capture).count());
    for c in &captures {
        let keys: Vec<String> = c.representations.iter().map(Representation::key).collect();
        assert_eq!(keys, ["mid/none/p3/n20/empty", "mid/none/p3/n80/empty"]);
    }
    let dense_reps: Vec<&Representation> = added
        .iter()
        .filter_map(|u| if let UnitSpec::Dense(d) = u { Some(&d.representation) } else { None })
        .collect();
    assert_eq!(dense_reps.len(), 2);
    assert!(dense_reps.iter().all(|r| permuted(r)));
    assert_eq!(added.len(), captures.len() + dense_reps.len());
    let moved = with.keys().filter(|id| !reseeded.contains_key(*id)).count();
    assert_eq!(moved, added.len(), "the seed moves exactly the control's units");
}
