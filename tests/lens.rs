//! `[analysis.semantic]` through the coordinator on the scenes demo (`jobs/demo-lens.toml`:
//! tiny SD, real images, one masked object per scene, seen through four transforms): every row,
//! drift and cross-retrieval included, equals the `alignment::semantic` library on the committed
//! matrices, and a bad objects file or transform is refused at plan time, naming it.

use std::path::{Path, PathBuf};

use alignment::semantic::{
    ablation, cross_retrieval, drift, drift_by_gap, knn_accuracy, mean_inter_class_distance,
    reidentification, scores, DistanceMatrix, Distances, Items, Score, SemanticConfig, Track,
};
use alignment::{Distance, Matrix};
use common::table::{read_feature_block, read_semantic_rows, SemanticRow};

use crate::util;

#[test]
fn semantic_rows_equal_the_library_on_the_same_matrices() {
    let dir = util::scratch("lens");
    let spec = util::repo().join("jobs/demo-lens.toml");
    let run = util::run_spec(&dir, &spec, "demo-lens", "2", &[]);
    let rows = read_semantic_rows(&run.join("report/semantic.parquet")).unwrap();
    assert_eq!(
        rows.len(),
        6 * 5 * 6 + 6 * 4 * 5 * 9 + 2 * 5 * 7,
        "6 representations × 5 distances × 6 scores, their 4 transforms with 3 more scores, and \
         per noise level and distance an ablation of 3 taps (3 alone, 3 steps, the best)"
    );

    let data = common::stimuli::Dataset::open(&run.join("dataset.json")).unwrap();
    let objects =
        std::fs::read_to_string(util::repo().join("data/demo/scenes/objects.csv")).unwrap();
    let (mut items, mut classes) = (Vec::new(), Vec::new());
    for line in objects.lines().skip(1) {
        let (stimulus, class) = line.split_once(',').unwrap();
        items.push(data.stimuli.iter().position(|s| s == stimulus).unwrap());
        classes.push(usize::from(class == "box"));
    }
    let images: Vec<usize> = (0..items.len()).collect();
    let key = "mid_block/mask_mean/n20/empty";
    let x = features(&run, key, data.len());
    let d = x.len() / data.len();
    let picked: Vec<f32> = items.iter().flat_map(|&i| x[i * d..(i + 1) * d].to_vec()).collect();
    let m = Matrix::new("objects", &picked, items.len(), d).unwrap();
    let config = SemanticConfig { bootstrap: 500, permutations: 100, seed: 20240501 };
    for (name, distance) in
        [("cosine", Distance::Cosine), ("l1", Distance::L1), ("correlation", Distance::Correlation)]
    {
        let want = scores(
            &DistanceMatrix::new(&m, distance),
            &Items::new(&classes, &images).unwrap(),
            &config,
        )
        .unwrap();
        let got = |score: &str| {
            rows.iter()
                .find(|r| r.representation == key && r.distance == name && r.score == score)
                .unwrap()
        };
        for (score, w) in want.named() {
            if ["knn1", "map_at_r", "auc", "silhouette"].contains(&score) {
                assert_same_score(got(score), &w, &format!("{name} {score}"));
            }
        }
    }

    // Invariance rows: the library's drift and cross-retrieval of the transformed matrix
    // against the untransformed one.
    let turned = features(&run, &format!("{key}/t:rot90"), data.len());
    let picked_t: Vec<f32> =
        items.iter().flat_map(|&i| turned[i * d..(i + 1) * d].to_vec()).collect();
    assert_ne!(picked_t, picked, "rot90 left the descriptors unchanged");
    let mt = Matrix::new("turned", &picked_t, items.len(), d).unwrap();
    let it = Items::new(&classes, &images).unwrap();
    let inter = mean_inter_class_distance(&DistanceMatrix::new(&m, Distance::Cosine), &it).unwrap();
    let (_, want_drift) = drift(&m, &mt, Distance::Cosine, inter, &config).unwrap();
    let want_cross = cross_retrieval(&m, &mt, &it, Distance::Cosine, &config).unwrap();
    let got = |score: &str| {
        rows.iter()
            .find(|r| {
                r.representation == format!("{key}/t:rot90")
                    && r.distance == "cosine"
                    && r.score == score
            })
            .unwrap()
    };
    for (score, w) in [
        ("drift", want_drift),
        ("cross_class_top1", want_cross.class_top1),
        ("cross_instance_top1", want_cross.instance_top1),
    ] {
        let g = got(score);
        assert_eq!((g.value, g.chance, g.ci_low), (w.value, w.chance, w.ci_low), "{score}");
    }
    assert!(want_drift.value > 0.0);

    // The ablation rows: the library's forward selection on the committed matrices.
    let taps =
        ["down_blocks.0", "mid_block", "up_blocks.1"].map(|t| format!("{t}/mask_mean/n80/empty"));
    let mats: Vec<Vec<f32>> = taps
        .iter()
        .map(|k| {
            let x = features(&run, k, data.len());
            let d = x.len() / data.len();
            items.iter().flat_map(|&i| x[i * d..(i + 1) * d].to_vec()).collect()
        })
        .collect();
    let ms: Vec<Matrix<'_, f32>> = mats
        .iter()
        .map(|v| Matrix::new("tap", v, items.len(), v.len() / items.len()).unwrap())
        .collect();
    let quick = SemanticConfig { bootstrap: 0, permutations: 0, seed: 20240501 };
    let knn1 = |dm: &Distances, it: &Items<'_>| Ok(knn_accuracy(dm, it, 1, &quick)?.value);
    let want = ablation(&ms, &it, Distance::L1, usize::MAX, &knn1).unwrap();
    let got: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| {
            r.distance == "l1" && r.score == "ablation_step" && r.representation.contains("n80")
        })
        .map(|r| (r.representation.clone(), r.value))
        .collect();
    let want: Vec<(String, f64)> = want
        .path
        .iter()
        .map(|s| {
            (s.taps.iter().map(|&t| taps[t].as_str()).collect::<Vec<_>>().join(" + "), s.score)
        })
        .collect();
    assert_eq!(got, want);

    let bad = dir.join("objects.csv");
    std::fs::write(&bad, "stimulus,class\nscene000,box\nscene999,box\n").unwrap();
    let set = format!("analysis.semantic.objects={bad:?}");
    let e = util::plan_error(&dir, &spec, &[&set]);
    assert!(
        e.contains("analysis.semantic.objects")
            && e.contains("objects.csv:3")
            && e.contains("scene999"),
        "{e}"
    );
    let e = util::plan_error(&dir, &spec, &["analysis.semantic.max_matrix_gib=0"]);
    assert!(e.contains("analysis.semantic.max_matrix_gib") && e.contains("positive"), "{e}");
    let small = ["plan", spec.to_str().unwrap(), "--set", "analysis.semantic.max_matrix_gib=1e-5"];
    let out = util::run(&small, &dir);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && said.contains("48 × 48 distances")
            && said.contains("blocks of 27 rows"),
        "{said}"
    );
    let e = util::plan_error(&dir, &spec, &["capture.image.transforms=[\"rot45\"]"]);
    assert!(e.contains("capture.image.transforms") && e.contains("rot45"), "{e}");
    let e = util::plan_error(&dir, &spec, &["capture.image.transforms=[\"flip_h\", \"flip_h\"]"]);
    assert!(e.contains("capture.image.transforms") && e.contains("twice"), "{e}");
}

/// A unit's row carries the library's score: value, chance and CI, bit for bit.
fn assert_same_score(row: &SemanticRow, want: &Score, what: &str) {
    assert_eq!(
        (row.value, row.chance, row.ci_low, row.ci_high),
        (want.value, want.chance, want.ci_low, want.ci_high),
        "{what}"
    );
}

/// The N × D matrix of `key` from the run's committed capture files.
fn features(run: &Path, key: &str, n: usize) -> Vec<f32> {
    let files: Vec<String> = util::query(
        run,
        "SELECT output FROM units WHERE kind = 'capture' AND state = 'committed' ORDER BY seq",
        |r| r.get(0),
    );
    let mut x = Vec::new();
    for f in files {
        let b = read_feature_block(&run.join(f), key).unwrap();
        x.resize(n * b.dim, 0.0);
        for (r, &s) in b.stimuli.iter().enumerate() {
            let s = s as usize;
            x[s * b.dim..(s + 1) * b.dim].copy_from_slice(&b.values[r * b.dim..(r + 1) * b.dim]);
        }
    }
    x
}

/// Several objects per image (`capture.image.objects`, the scenes' instance maps): each image
/// is denoised once per batch and each object pooled by its own mask. Objects given by a value
/// in the instance map and by their own mask files give the same rows bit for bit, and so does
/// one object per stimulus without a table, pass for pass; grouped batches equal one object per
/// pass within the U-Net's batch tolerance (its products are
/// blocked by the batch size: `worker/src/capture/batch_invariance.rs`); two objects of one image
/// have different rows.
#[test]
fn grouped_objects_equal_one_object_per_pass() {
    let dir = util::scratch("lens_objects");
    let scenes = util::repo().join("data/demo/scenes");
    let table = scenes.join("all_objects.csv");
    let text = std::fs::read_to_string(&table).unwrap();
    // The same objects with a mask file each, cut from the instance maps.
    let files = dir.join("masks");
    std::fs::create_dir_all(&files).unwrap();
    let mut with_files = String::from("stimulus,image,mask,class\n");
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (stimulus, image, value) = (f[0], f[1], f[2].parse::<u8>().unwrap());
        let map = image::open(scenes.join(format!("instances/{image}.png"))).unwrap().to_luma8();
        let mut mask = map.clone();
        mask.pixels_mut().for_each(|p| p.0[0] = if p.0[0] == value { 255 } else { 0 });
        mask.save(files.join(format!("{stimulus}.png"))).unwrap();
        with_files.push_str(&format!("{stimulus},{image},{stimulus}.png,{}\n", f[3]));
    }
    let file_table = dir.join("objects_files.csv");
    std::fs::write(&file_table, with_files).unwrap();
    let semantic = format!(
        "[analysis.semantic]\nobjects = {table:?}\ndistances = [\"cosine\"]\nbootstrap = 20\n\
         permutations = 5\n"
    );
    let spec = |objects: &Path, masks: &Path, batch: usize| {
        let file = format!("objects-{batch}-{}.toml", masks.file_name().unwrap().to_string_lossy());
        let taps = r#"["mid_block", "up_blocks.1"]"#;
        let extra = format!("[sweep]\nstimuli_per_unit = 100\n{semantic}");
        let at = ObjectsAt { table: &table, objects, images: &scenes.join("images"), masks };
        objects_spec(&dir.join(file), &at, taps, batch, &extra)
    };
    let key = "up_blocks.1/mask_mean/n20/empty";
    let rows = |name: &str, spec: PathBuf| {
        let run = util::run_spec(&dir, &spec, name, "1", &[]);
        let data = common::stimuli::Dataset::open(&run.join("dataset.json")).unwrap();
        (features(&run, key, data.len()), data)
    };
    let (by_value, data) = rows("by_value", spec(&table, &scenes.join("instances"), 16));
    objects_under_one_token_are_dropped(&dir.join("runs/by_value"), &text, &by_value, &data);
    let (by_file, _) = rows("by_file", spec(&file_table, &files, 16));
    assert_eq!(by_value, by_file, "instance-map values and mask files differ");
    let (alone, _) = rows("alone", spec(&table, &scenes.join("instances"), 1));
    // One object per stimulus without a table: each image's first object, the stimulus named
    // as its image (so it gets the image's noise) with that object's mask file, one per pass:
    // the grouped capture's rows of those objects at batch 1, bit for bit.
    let (single_masks, single_table) = (dir.join("single_masks"), dir.join("single.csv"));
    std::fs::create_dir_all(&single_masks).unwrap();
    let mut firsts: Vec<(String, String)> = Vec::new();
    let mut csv = String::from("stimulus,area\n");
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if firsts.iter().all(|(_, image)| image != f[1]) {
            let mask = files.join(format!("{}.png", f[0]));
            std::fs::copy(mask, single_masks.join(format!("{}.png", f[1]))).unwrap();
            firsts.push((f[0].to_string(), f[1].to_string()));
            csv.push_str(&format!("{},{}\n", f[1], f[4]));
        }
    }
    std::fs::write(&single_table, csv).unwrap();
    let at = ObjectsAt {
        table: &single_table,
        objects: &table,
        images: &scenes.join("images"),
        masks: &single_masks,
    };
    let single_spec = dir.join("single.toml");
    let sweep = "[sweep]\nstimuli_per_unit = 100\n";
    objects_spec(&single_spec, &at, r#"["mid_block", "up_blocks.1"]"#, 1, sweep);
    let without = std::fs::read_to_string(&single_spec).unwrap().replacen(
        &format!("objects = {table:?}\n"),
        "",
        1,
    );
    std::fs::write(&single_spec, without).unwrap();
    let (single, single_data) = rows("single", single_spec);
    let d1 = single.len() / single_data.len();
    for (object, image) in &firsts {
        let (i, j) = (
            data.stimuli.iter().position(|s| s == object).unwrap(),
            single_data.stimuli.iter().position(|s| s == image).unwrap(),
        );
        assert!(
            single[j * d1..(j + 1) * d1] == alone[i * d1..(i + 1) * d1],
            "{object}: one object per stimulus differs from the grouped capture"
        );
    }
    let d = by_value.len() / data.len();
    for i in 0..data.len() {
        let (a, b) = (&by_value[i * d..(i + 1) * d], &alone[i * d..(i + 1) * d]);
        let scale = b.iter().fold(0.0_f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(b).fold(0.0_f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "{}: grouped vs alone {worst} (scale {scale})",
            data.stimuli[i]
        );
    }
    let of = |s: &str| data.stimuli.iter().position(|x| x == s).unwrap();
    let (a, b) = (of("scene000_0"), of("scene000_1"));
    assert_ne!(by_value[a * d..(a + 1) * d], by_value[b * d..(b + 1) * d]);

    // A stimulus missing from the table, and a missing mask file, are named at plan time.
    let short = dir.join("short.csv");
    std::fs::write(&short, text.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    let e = util::plan_error(
        &dir,
        &spec(&table, &scenes.join("instances"), 16),
        &[&format!("capture.image.objects={short:?}")],
    );
    assert!(e.contains("capture.image.objects") && e.contains("no row for stimulus"), "{e}");
}

/// The scenes' objects (`all_objects.csv`, with each mask's `area` in pixels of the 32 × 32
/// frame): at a tap of P positions those with area · P < 32 · 32 are under one token, dropped
/// from its units and counted (the tiny SD at 32 px: mid_block 8 × 8, up_blocks.1 16 × 16);
/// the kept objects' scores equal the library's on them.
fn objects_under_one_token_are_dropped(
    run: &Path,
    table: &str,
    x: &[f32],
    data: &common::stimuli::Dataset,
) {
    let rows = read_semantic_rows(&run.join("report/semantic.parquet")).unwrap();
    let lines: Vec<Vec<&str>> = table.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let area = |f: &[&str]| f[4].parse::<f64>().unwrap();
    for (tap, positions) in [("mid_block", 64.0), ("up_blocks.1", 256.0)] {
        let under = lines.iter().filter(|f| area(f) * positions < 1024.0).count();
        let got = rows.iter().find(|r| {
            r.representation == format!("{tap}/mask_mean/n20/empty")
                && r.score == "dropped_under_one_token"
        });
        assert_eq!(got.map(|r| (r.value, r.n)), Some((under as f64, lines.len() as u32)), "{tap}");
    }
    let kept: Vec<&Vec<&str>> = lines.iter().filter(|f| area(f) * 256.0 >= 1024.0).collect();
    let d = x.len() / data.len();
    let of = |s: &str| data.stimuli.iter().position(|x| x == s).unwrap();
    let picked: Vec<f32> =
        kept.iter().flat_map(|f| x[of(f[0]) * d..(of(f[0]) + 1) * d].to_vec()).collect();
    let (mut cn, mut im) = (Vec::<&str>::new(), Vec::<&str>::new());
    let classes: Vec<usize> = kept.iter().map(|f| position_or_push(&mut cn, f[3])).collect();
    let images: Vec<usize> = kept.iter().map(|f| position_or_push(&mut im, f[1])).collect();
    let m = Matrix::new("kept", &picked, kept.len(), d).unwrap();
    let config = SemanticConfig { bootstrap: 20, permutations: 5, seed: 0 };
    let want = scores(
        &DistanceMatrix::new(&m, Distance::Cosine),
        &Items::new(&classes, &images).unwrap(),
        &config,
    )
    .unwrap();
    let knn1 = rows
        .iter()
        .find(|r| r.representation == "up_blocks.1/mask_mean/n20/empty" && r.score == "knn1")
        .unwrap();
    assert_eq!(
        (knn1.value, knn1.chance, knn1.n as usize),
        (want.knn1.value, want.knn1.chance, want.knn1.n)
    );
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(md.contains("less than one token"), "the report counts the dropped objects");
}

fn position_or_push<'a>(names: &mut Vec<&'a str>, name: &'a str) -> usize {
    names.iter().position(|n| *n == name).unwrap_or_else(|| {
        names.push(name);
        names.len() - 1
    })
}

/// Steps as a sweep axis (`capture.image.denoise_steps`, img2img with DDIM): the rows after 0
/// steps are the noised image's own pass, bit for bit the rows of a run without the axis; later
/// steps move the descriptors; each step is scored like any representation.
#[test]
fn denoising_steps_start_from_the_noised_pass() {
    let dir = util::scratch("lens_steps");
    let spec = util::repo().join("jobs/demo-lens.toml");
    let plain: Vec<String> =
        ["capture.image.transforms=[]", "analysis.semantic.bootstrap=0"].map(String::from).to_vec();
    let mut stepped = plain.clone();
    stepped.push("capture.image.denoise_steps=[0, 2]".into());
    stepped.push("capture.image.denoise_schedule=25".into());
    let a = util::run_spec(&dir, &spec, "plain", "1", &plain);
    let b = util::run_spec(&dir, &spec, "stepped", "1", &stepped);
    let data = common::stimuli::Dataset::open(&a.join("dataset.json")).unwrap();
    let key = "mid_block/mask_mean/n20/empty";
    let own = features(&a, key, data.len());
    assert_eq!(features(&b, &format!("{key}/d0"), data.len()), own, "0 steps is the noised pass");
    assert_ne!(features(&b, &format!("{key}/d2"), data.len()), own, "2 steps changed nothing");
    let rows = read_semantic_rows(&b.join("report/semantic.parquet")).unwrap();
    assert!(rows.iter().any(|r| r.representation == format!("{key}/d2") && r.score == "knn1"));
    let md = std::fs::read_to_string(b.join("report/report.md")).unwrap();
    assert!(md.contains("| representation | 0 steps | 2 steps |"), "{md}");
    let html = std::fs::read_to_string(b.join("report/report.html")).unwrap();
    assert!(html.contains("against denoising steps") && html.contains(r#"class="line""#));
    // More steps than the schedule leaves room for below a noise level are refused by name.
    let e = util::plan_error(&dir, &spec, &["capture.image.denoise_steps=[0, 20]"]);
    assert!(e.contains("capture.image.denoise_steps") && e.contains("below t = 0"), "{e}");
}

/// Video (the scenes' short sequences of sliding objects, `data/demo/scenes/videos`): the
/// objects file's `instance`, `video` and `frame` add drift per frame gap and instance
/// re-identification across frames, equal to the library on the committed matrix.
#[test]
fn video_objects_are_tracked_across_frames() {
    let dir = util::scratch("lens_video");
    let videos = util::repo().join("data/demo/scenes/videos");
    let table = videos.join("objects.csv");
    let semantic = format!(
        "[analysis.semantic]\nobjects = {table:?}\ndistances = [\"cosine\"]\nbootstrap = 50\n\
         permutations = 10\nframe_gaps = [1, 2, 5]\nmax_matrix_gib = 1e-5\n"
    );
    let at = ObjectsAt {
        table: &table,
        objects: &table,
        images: &videos.join("images"),
        masks: &videos.join("instances"),
    };
    let spec = objects_spec(&dir.join("video.toml"), &at, r#"["up_blocks.1"]"#, 16, &semantic);
    let run = util::run_spec(&dir, &spec, "video", "1", &[]);
    let rows = read_semantic_rows(&run.join("report/semantic.parquet")).unwrap();
    let data = common::stimuli::Dataset::open(&run.join("dataset.json")).unwrap();
    let key = "up_blocks.1/mask_mean/n20/empty";
    let x = features(&run, key, data.len());
    let d = x.len() / data.len();
    // The objects file in order: classes, images, tracks.
    let lines: Vec<Vec<String>> = std::fs::read_to_string(&table)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    let index = |names: &mut Vec<String>, name: &str| match names.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            names.push(name.to_string());
            names.len() - 1
        }
    };
    let (mut cn, mut im, mut ins, mut vi) = (vec![], vec![], vec![], vec![]);
    let (mut classes, mut images, mut tracks, mut items) = (vec![], vec![], vec![], vec![]);
    for f in &lines {
        items.push(data.stimuli.iter().position(|s| *s == f[0]).unwrap());
        classes.push(index(&mut cn, &f[3]));
        images.push(index(&mut im, &f[1]));
        tracks.push(Some(Track {
            instance: index(&mut ins, &format!("{}\u{0}{}", f[6], f[5])),
            video: index(&mut vi, &f[6]),
            frame: f[7].parse().unwrap(),
        }));
    }
    let picked: Vec<f32> = items.iter().flat_map(|&i| x[i * d..(i + 1) * d].to_vec()).collect();
    let m = Matrix::new("objects", &picked, items.len(), d).unwrap();
    let dm = DistanceMatrix::new(&m, Distance::Cosine);
    let it = Items::new(&classes, &images).unwrap();
    let inter = mean_inter_class_distance(&dm, &it).unwrap();
    let config = SemanticConfig { bootstrap: 50, permutations: 10, seed: 0 };
    let got =
        |score: &str| rows.iter().find(|r| r.representation == key && r.score == score).unwrap();
    for g in drift_by_gap(&dm, &tracks, &[1, 2, 5], inter).unwrap() {
        let r = got(&format!("video_drift_gap{}", g.gap));
        assert_eq!((r.value, r.n as usize), (g.value, g.pairs), "gap {}", g.gap);
    }
    let want = reidentification(&dm, &tracks, &config).unwrap();
    let r = got("video_reid_top1");
    assert_eq!((r.value, r.chance, r.ci_low), (want.value, want.chance, want.ci_low));
    // The unit computed its distances in blocks (a 60 × 60 matrix over a 10.7 kB budget): every
    // score still equals the library's on the whole matrix.
    let whole = scores(&dm, &it, &config).unwrap();
    for (score, w) in whole.named() {
        assert_same_score(got(score), &w, score);
    }
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(md.contains("Video under cosine"), "{md}");
    let html = std::fs::read_to_string(run.join("report/report.html")).unwrap();
    assert!(html.contains("against the frame gap") && html.contains(r#"class="line""#));
}

/// Where an objects spec's files are: the table of stimuli and targets, the capture's objects
/// table, the images and the masks.
struct ObjectsAt<'a> {
    table: &'a Path,
    objects: &'a Path,
    images: &'a Path,
    masks: &'a Path,
}

/// Writes a spec over the tiny SD with one stimulus per object (`capture.image.objects`), the
/// objects' `area` as target, and `extra` appended; returns its path.
fn objects_spec(path: &Path, at: &ObjectsAt<'_>, taps: &str, batch: usize, extra: &str) -> PathBuf {
    let text = format!(
        r#"[job]
name = "objects"
[model]
kind = "sd"
path = {model:?}
device = "cpu"
[stimuli]
file = {table:?}
column = "stimulus"
[targets]
file = {table:?}
key = "stimulus"
columns = {{ area = "area" }}
[capture]
mode = "image"
taps = {taps}
unet_pooling = ["mask_mean"]
batch_size = {batch}
seed = 7
[capture.image]
folder = {images:?}
masks = {masks:?}
objects = {objects:?}
noise_levels = [20]
height = 32
width = 32
[analysis.attribute_probe]
folds = 2
components = 4
permutations = 10
{extra}"#,
        model = util::repo().join("tests/fixtures/tiny-sd-1"),
        table = at.table,
        images = at.images,
        masks = at.masks,
        objects = at.objects,
    );
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}
