//! `[analysis.directions]` and `[analysis.clusters]`: prompt directions in h-space (science-2.md
//! §H, seed 004). No code of the seed is public; §H is this tool's definition.
//!
//! Both read per-replicate U-Net rows (`capture.generate.keep_replicates = true`) under paired
//! noise (`capture.generate.noise = "per_replicate"`), and a **contrasts file**: a CSV with the
//! header `role,stimulus,label`, one row per prompt that plays a part:
//!
//! | role | stimulus | label |
//! |---|---|---|
//! | `base` | the neutral prompt b (exactly one) | — |
//! | `axis+` / `axis-` | the two poles x, y of an axis (one each per axis) | the axis name |
//! | `query` | a prompt q whose bias β(q) is measured and which is clustered | its category (optional) |
//! | `descriptor` | a descriptor D ranked against each concept | — |
//! | `concept` | a concept the descriptors are ranked against | — |
//!
//! An optional `reference` column gives a query's reference rate (e.g. a labour statistic); the
//! report correlates β with it. Stimuli are named as in `stimuli.file`; the plan resolves them (`coordinator/src/directions.rs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// `[analysis.directions]`: biases along axes and descriptor rankings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirectionsSection {
    /// The contrasts file (relative to the spec; module doc).
    pub contrasts: PathBuf,
    /// Bootstrap resamples over replicates of each CI (0 = no CI).
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Seed of the resamples.
    #[serde(default)]
    pub seed: u64,
}

/// `[analysis.clusters]`: clustering the query prompts (needs `[analysis.directions]` for its
/// contrasts file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClustersSection {
    /// What is clustered per query: `direction` d(q | b) (default) or `mean` h̄(q), each
    /// L2-normalised.
    pub space: ClusterSpace,
    /// Clusters k; 0 = the number of query categories.
    pub k: usize,
    /// PCA components kept before clustering (0 = none).
    pub pca: usize,
    /// k-means++ restarts.
    pub restarts: usize,
    /// Lloyd iterations per restart, at most.
    pub max_iter: usize,
    /// Seed of the k-means++ restarts.
    pub seed: u64,
}

/// `analysis.clusters.space`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClusterSpace {
    /// d(q | b), the mean over replicates of the paired differences.
    #[default]
    Direction,
    /// h̄(q), the mean over replicates.
    Mean,
}

fn default_bootstrap() -> usize {
    1000
}

impl Default for ClustersSection {
    fn default() -> Self {
        ClustersSection {
            space: ClusterSpace::Direction,
            k: 0,
            pca: 0,
            restarts: 10,
            max_iter: 300,
            seed: 0,
        }
    }
}

impl DirectionsSection {
    pub(super) fn resolve_paths(&mut self, join: &dyn Fn(&mut PathBuf)) {
        join(&mut self.contrasts);
    }

    pub(super) fn validate(&self, file: &str) -> Result<(), SpecError> {
        if !self.contrasts.is_file() {
            let msg = format!("{} is not a file", self.contrasts.display());
            return Err(SpecError::new(file, "analysis.directions.contrasts", msg));
        }
        Ok(())
    }
}

impl ClustersSection {
    pub(super) fn validate(&self, file: &str) -> Result<(), SpecError> {
        super::positive(file, "analysis.clusters.restarts", self.restarts)?;
        super::positive(file, "analysis.clusters.max_iter", self.max_iter)
    }
}
