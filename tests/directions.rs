//! `[analysis.directions]` and `[analysis.clusters]` through the coordinator on the demo spec
//! (`jobs/demo-directions.toml`: tiny SD with a merged LoRA, LCM, paired noise, kept
//! replicates): the rows equal the `alignment::directions` library on the committed
//! per-replicate matrices; swapping an axis's poles in a grown run negates every β exactly and
//! reuses the captures; the tables do not depend on the worker count; bad contrasts and a spec
//! without kept replicates are refused at plan time by name.

use std::path::{Path, PathBuf};

use alignment::directions::{bias, Axis, DirectionsConfig, Replicates};
use alignment::Matrix;
use common::table::{
    direction_analysis, read_cluster_rows, read_direction_rows, read_feature_block,
};

use crate::util;

const PROMPTS: usize = 25;
const REPLICATES: usize = 8;

fn demo_spec() -> PathBuf {
    util::repo().join("jobs/demo-directions.toml")
}

fn run(dir: &Path, name: &str, workers: &str, sets: &[String]) -> PathBuf {
    util::run_spec(dir, &demo_spec(), name, workers, sets)
}

/// The prompts × replicates h of `key` (row p·R + r) from the committed capture files.
fn replicate_rows(run: &Path, key: &str) -> (Vec<f32>, usize) {
    let files: Vec<String> = util::query(
        run,
        "SELECT output FROM units WHERE kind = 'capture' AND state = 'committed' ORDER BY seq",
        |r| r.get(0),
    );
    let mut h = Vec::new();
    let mut dim = 0;
    for r in 0..REPLICATES {
        for f in &files {
            let b = read_feature_block(&run.join(f), &format!("{key}/r{r}")).unwrap();
            dim = b.dim;
            h.resize(PROMPTS * REPLICATES * dim, 0.0);
            for (i, &s) in b.stimuli.iter().enumerate() {
                let row = (s as usize * REPLICATES + r) * dim;
                h[row..row + dim].copy_from_slice(&b.values[i * dim..(i + 1) * dim]);
            }
        }
    }
    (h, dim)
}

#[test]
fn directions_equal_the_library_and_flip_with_the_axis() {
    let dir = util::scratch("directions");
    let first = run(&dir, "dirs", "2", &[]);
    let report = first.join("report");
    let rows = read_direction_rows(&report.join("directions.parquet")).unwrap();
    let bias_rows: Vec<_> =
        rows.iter().filter(|r| r.analysis == direction_analysis::BIAS).collect();
    let ranking = rows.iter().filter(|r| r.analysis == direction_analysis::RANKING).count();
    assert_eq!(
        (bias_rows.len(), ranking),
        (2 * 2 * 16, 2 * 2 * 6),
        "2 steps × 2 axes × queries, and × concepts × descriptors"
    );
    let clusters = read_cluster_rows(&report.join("clusters.parquet")).unwrap();
    assert_eq!(clusters.len(), 4, "2 steps × (k-means, agglomerative)");
    assert!(clusters.iter().all(|c| c.k == 4 && c.labels.len() == 16), "k = the 4 categories");

    // The same numbers from the library on the committed per-replicate matrices.
    let data = common::stimuli::Dataset::open(&first.join("dataset.json")).unwrap();
    let index = |name: &str| data.stimuli.iter().position(|s| s == name).unwrap();
    let queries: Vec<usize> = [
        "nurse",
        "doctor",
        "dentist",
        "midwife",
        "carpenter",
        "plumber",
        "mechanic",
        "electrician",
        "painter",
        "singer",
        "dancer",
        "actor",
        "lawyer",
        "judge",
        "police officer",
        "detective",
    ]
    .iter()
    .map(|q| index(q))
    .collect();
    for key in ["mid_block/flatten/k0", "mid_block/flatten/k3"] {
        let (h, dim) = replicate_rows(&first, key);
        let m = Matrix::new("h", &h, PROMPTS * REPLICATES, dim).unwrap();
        let reps = Replicates::new(m, REPLICATES).unwrap();
        let axis =
            Axis { positive: index("man"), negative: index("woman"), neutral: index("person") };
        let config = DirectionsConfig { bootstrap: 1000, seed: 20240501 };
        let want = bias(&reps, axis, &queries, index("person"), &config).unwrap();
        let got: Vec<_> = bias_rows
            .iter()
            .filter(|r| r.representation == key && r.reference == "gender")
            .collect();
        assert_eq!(got.len(), want.biases.len());
        for (g, w) in got.iter().zip(&want.biases) {
            assert_eq!(g.prompt, data.stimuli[w.query]);
            assert_eq!(
                (g.value, g.ci_low, g.ci_high),
                (w.beta.value, w.beta.ci_low, w.beta.ci_high),
                "{key} {}",
                g.prompt
            );
            assert_eq!(g.projection, w.projection.value);
        }
    }

    // Swapping the poles in the same run: the captures are reused, every β and projection is
    // negated exactly, and the verdict turns around.
    let swapped = dir.join("swapped.csv");
    let text =
        std::fs::read_to_string(util::repo().join("jobs/data/directions/contrasts.csv")).unwrap();
    let text = text.replace("axis+,man", "axis-,man").replace("axis-,woman", "axis+,woman");
    // And reference rates for the queries (1, 2, …, 16 in file order), in a fourth column.
    let mut rate = 0;
    let text: String = text
        .lines()
        .map(|l| match l.starts_with("query,") {
            true => {
                rate += 1;
                format!("{l},{rate}\n")
            }
            false if l.starts_with("role,") => format!("{l},reference\n"),
            false => format!("{l},\n"),
        })
        .collect();
    std::fs::write(&swapped, text).unwrap();
    let captures_before = std::fs::read_dir(first.join("features")).unwrap().count();
    let set = format!("analysis.directions.contrasts={swapped:?}");
    run(&dir, "dirs", "2", &[set]);
    assert_eq!(
        std::fs::read_dir(first.join("features")).unwrap().count(),
        captures_before,
        "captures were rerun"
    );
    let flipped = read_direction_rows(&report.join("directions.parquet")).unwrap();
    let flipped: Vec<_> =
        flipped.iter().filter(|r| r.analysis == direction_analysis::BIAS).collect();
    assert_eq!(flipped.len(), bias_rows.len());
    for (a, b) in bias_rows.iter().zip(&flipped) {
        assert_eq!(
            (a.prompt.as_str(), a.representation.as_str()),
            (b.prompt.as_str(), b.representation.as_str())
        );
        // The gender axis was swapped; the control axis was not.
        let sign = if a.reference == "gender" { -1.0 } else { 1.0 };
        assert_eq!(b.value, sign * a.value, "β of {} along {}", a.prompt, a.reference);
        assert_eq!(b.projection, sign * a.projection, "projection of {}", a.prompt);
        let want = queries.iter().position(|&q| data.stimuli[q] == b.prompt).unwrap() + 1;
        assert_eq!(b.reference_rate, want as f64, "{}'s reference rate", b.prompt);
    }
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("## Prompt directions in h-space (seed 004)"), "{md}");
    assert!(md.contains("β vs reference: r, ρ (queries)") && md.contains("(16) |"), "{md}");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(
        html.contains("id=\"fig-directions\"")
            && !html.contains("fig-directions\" class=\"omitted\"")
    );

    // One worker gives the same tables as two.
    let one = run(&dir, "dirs1", "1", &[]);
    let two = run(&dir, "dirs2", "2", &[]);
    for table in ["directions.parquet", "clusters.parquet", "rmse.parquet"] {
        let read = |run: &Path| std::fs::read(run.join("report").join(table)).unwrap();
        assert!(read(&one) == read(&two), "{table} depends on the worker count");
    }
}

/// Bad contrasts and a spec that cannot pair replicates are refused before anything runs,
/// naming the key, the file and the line.
#[test]
fn bad_direction_specs_are_refused_by_name() {
    let dir = util::scratch("directions_bad");
    let spec = demo_spec();
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "role,stimulus,label\nbase,person,\nquery,astronaut,\n").unwrap();
    let set = format!("analysis.directions.contrasts={bad:?}");
    let e = util::plan_error(&dir, &spec, &[&set]);
    assert!(
        e.contains("analysis.directions.contrasts")
            && e.contains("bad.csv:3")
            && e.contains("astronaut"),
        "{e}"
    );
    let e = util::plan_error(&dir, &spec, &["capture.generate.keep_replicates=false"]);
    assert!(e.contains("capture.generate.keep_replicates"), "{e}");
    let e = util::plan_error(&dir, &spec, &["capture.generate.noise=\"per_stimulus\""]);
    assert!(e.contains("capture.generate.noise") && e.contains("paired"), "{e}");
}
