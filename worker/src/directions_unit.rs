//! Direction and cluster units (`[analysis.directions]`, `[analysis.clusters]`, science-2.md
//! §H): gather one representation's per-replicate rows from the capture files
//! ([`gather`], once per replicate), lay them out as prompts × replicates, and call the
//! `alignment::directions` library. The prompts and settings come from the unit (resolved by the
//! plan), the statistics from the library; nothing here is computed twice.

use std::path::Path;

use alignment::directions::{
    adjusted_rand_index, agglomerative_cosine, bias, cosine_silhouette, direction, kmeans,
    l2_normalized, normalized_mutual_info, purity, rank_descriptors, Axis, DirectionsConfig,
    KMeansConfig, Replicates,
};
use alignment::{AlignmentError, Matrix};
use common::settings::ClusterSettings;
use common::spec::ClusterSpace;
use common::stimuli::Dataset;
use common::table::{direction_analysis, ClusterRow, DirectionsRow};
use common::unit::{ClustersUnit, DirectionsUnit, Representation};

use crate::error::UnitError;
use crate::probe_unit::gather;

/// h of every stimulus × replicate, row `p · R + r`, and its width.
fn replicate_rows(
    run_dir: &Path,
    inputs: &[String],
    rep: &Representation,
    replicates: usize,
    n: usize,
) -> Result<(Vec<f32>, usize), UnitError> {
    let mut h = Vec::new();
    let mut width = 0;
    for r in 0..replicates {
        let (x, d) = gather(run_dir, inputs, &rep.of_replicate(r as u32).key(), n)?;
        if h.is_empty() {
            (h, width) = (vec![0.0; n * replicates * d], d);
        }
        for p in 0..n {
            let row = (p * replicates + r) * d;
            h[row..row + d].copy_from_slice(&x[p * d..(p + 1) * d]);
        }
    }
    Ok((h, width))
}

/// The biases of every query along every axis, then every concept's descriptor ranking.
pub(crate) fn run_directions(
    run_dir: &Path,
    data: &Dataset,
    unit: &DirectionsUnit,
) -> Result<Vec<DirectionsRow>, UnitError> {
    let (n, r) = (data.len(), unit.replicates);
    let (values, d) = replicate_rows(run_dir, &unit.inputs, &unit.representation, r, n)?;
    let h = Replicates::new(Matrix::new("h", &values, n * r, d)?, r)?;
    let s = &unit.settings;
    let c = &s.contrasts;
    let config = DirectionsConfig { bootstrap: s.bootstrap, seed: s.seed };
    let row = |analysis: &str, reference: &str, prompt: usize| DirectionsRow {
        representation: unit.representation.key(),
        analysis: analysis.into(),
        reference: reference.into(),
        prompt: data.stimuli[prompt].clone(),
        category: String::new(),
        rank: 0,
        value: f64::NAN,
        ci_low: f64::NAN,
        ci_high: f64::NAN,
        projection: f64::NAN,
        projection_ci_low: f64::NAN,
        projection_ci_high: f64::NAN,
        reference_rate: f64::NAN,
        replicates: r as u32,
    };
    let mut rows = Vec::new();
    for a in &c.axes {
        let axis = Axis { positive: a.positive, negative: a.negative, neutral: c.base };
        let report = bias(&h, axis, &c.queries, c.base, &config)?;
        for (i, (b, category)) in report.biases.iter().zip(&c.categories).enumerate() {
            let rate = c.references.get(i).copied().flatten().unwrap_or(f64::NAN);
            rows.push(DirectionsRow {
                category: category.clone(),
                reference_rate: rate,
                value: b.beta.value,
                ci_low: b.beta.ci_low,
                ci_high: b.beta.ci_high,
                projection: b.projection.value,
                projection_ci_low: b.projection.ci_low,
                projection_ci_high: b.projection.ci_high,
                ..row(direction_analysis::BIAS, &a.name, b.query)
            });
        }
    }
    for &concept in &c.concepts {
        let ranked = rank_descriptors(&h, &c.descriptors, concept, c.base, &config)?;
        for (i, d) in ranked.iter().enumerate() {
            rows.push(DirectionsRow {
                rank: i as u32 + 1,
                value: d.score.value,
                ci_low: d.score.ci_low,
                ci_high: d.score.ci_high,
                ..row(direction_analysis::RANKING, &data.stimuli[concept], d.descriptor)
            });
        }
    }
    Ok(rows)
}

/// k-means and agglomerative clusterings of the queries, scored against their categories.
pub(crate) fn run_clusters(
    run_dir: &Path,
    data: &Dataset,
    unit: &ClustersUnit,
) -> Result<Vec<ClusterRow>, UnitError> {
    let (n, r) = (data.len(), unit.replicates);
    let (values, d) = replicate_rows(run_dir, &unit.inputs, &unit.representation, r, n)?;
    let h = Replicates::new(Matrix::new("h", &values, n * r, d)?, r)?;
    let s = &unit.settings;
    let (points, width) = cluster_points(&h, s)?;
    let q = s.queries.len();
    let normalized = l2_normalized(&Matrix::new("query vectors", &points, q, width)?);
    let m = Matrix::new("normalised query vectors", &normalized, q, width)?;
    let (map, k2) = probe::pca_scores(&normalized, q, width, 2)?;
    let axis = |c: usize| -> Vec<f64> {
        (0..q).map(|i| if c < k2 { map[i * k2 + c] } else { 0.0 }).collect()
    };
    let truth = categories(&s.categories);
    let config = KMeansConfig { k: s.k, restarts: s.restarts, max_iter: s.max_iter, seed: s.seed };
    let km = kmeans(&m, &config)?;
    let agglomerative = agglomerative_cosine(&m, s.k)?;
    let mut rows = Vec::new();
    for (method, labels, inertia) in
        [("kmeans", km.labels, km.inertia), ("agglomerative", agglomerative, f64::NAN)]
    {
        let scored = |f: fn(&[usize], &[usize]) -> Result<f64, AlignmentError>| match &truth {
            Some(t) => f(t, &labels).unwrap_or(f64::NAN),
            None => f64::NAN,
        };
        rows.push(ClusterRow {
            representation: unit.representation.key(),
            method: method.into(),
            space: space_name(s.space).into(),
            k: s.k as u32,
            pca: s.pca as u32,
            ari: scored(adjusted_rand_index),
            nmi: scored(normalized_mutual_info),
            purity: scored(purity),
            silhouette: cosine_silhouette(&m, &labels).unwrap_or(f64::NAN),
            inertia,
            prompts: s.queries.iter().map(|&i| data.stimuli[i].clone()).collect(),
            categories: s.categories.clone(),
            labels: labels.iter().map(|&l| l as u32).collect(),
            x: axis(0),
            y: axis(1),
        });
    }
    Ok(rows)
}

/// The vectors clustered, one per query (`queries × width`): d(q | b) or h̄(q), reduced to
/// `pca` principal components when asked.
fn cluster_points(
    h: &Replicates<'_, f32>,
    s: &ClusterSettings,
) -> Result<(Vec<f64>, usize), UnitError> {
    let (d, r) = (h.dim(), h.replicates());
    let mut points = Vec::with_capacity(s.queries.len() * d);
    for &q in &s.queries {
        match s.space {
            ClusterSpace::Direction => points.extend(direction(h, q, s.base)?),
            ClusterSpace::Mean => points.extend(
                (0..d).map(|j| (0..r).map(|i| f64::from(h.row(q, i)[j])).sum::<f64>() / r as f64),
            ),
        }
    }
    if s.pca == 0 {
        return Ok((points, d));
    }
    let (scores, k) = probe::pca_scores(&points, s.queries.len(), d, s.pca)?;
    Ok((scores, k))
}

/// Category indices in order of first appearance, or `None` when some query has none.
fn categories(names: &[String]) -> Option<Vec<usize>> {
    let mut seen: Vec<&String> = Vec::new();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        if name.is_empty() {
            return None;
        }
        let i = seen.iter().position(|s| *s == name).unwrap_or_else(|| {
            seen.push(name);
            seen.len() - 1
        });
        out.push(i);
    }
    Some(out)
}

fn space_name(space: ClusterSpace) -> &'static str {
    match space {
        ClusterSpace::Direction => "direction",
        ClusterSpace::Mean => "mean",
    }
}
