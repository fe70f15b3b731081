//! Prompt directions in h-space (science-2.md §H, seed 004): latent directions of the U-Net's
//! bottleneck read from prompts alone, then used to measure a bias, rank descriptors and cluster
//! concepts. No code of the seed is public; §H is this tool's definition. Pure, deterministic
//! functions of matrices and labels; no I/O.
//!
//! - [`Replicates`]: h rows per (prompt, replicate), the noise of a replicate shared by every
//!   prompt; [`direction`] d(p | b) = mean over replicates r of h(p, r) − h(b, r) (paired, so
//!   the large per-replicate term cancels), and [`unpaired_direction`] (independent replicate
//!   sets; only a comparison);
//! - [`bias`]: β(q) = cos(d(q | b), a) and the projection on â for an axis
//!   a = d(x | n) − d(y | n), with bootstrap CIs over replicates and a [`sign_test`] over the
//!   queries;
//! - [`rank_descriptors`]: cos(d(D | b), d(concept | b)) with CIs, best first;
//! - [`kmeans`] (k-means++, seeded restarts), [`kmeans_from`] (Lloyd from given centroids, as
//!   scikit-learn's `KMeans(init=C0, n_init=1)`) and [`agglomerative_cosine`] (average linkage,
//!   as scikit-learn's `AgglomerativeClustering(metric="cosine", linkage="average")`), usually on
//!   [`l2_normalized`] rows;
//! - [`adjusted_rand_index`], [`normalized_mutual_info`], [`purity`] and [`cosine_silhouette`]:
//!   scikit-learn's definitions.
//!
//! **Zero vectors:** the cosine of a zero vector with anything is 0 (as the crate's cosine
//! distance), so a query whose direction is exactly zero has β = 0 and does not count in the sign
//! test; a zero axis or concept direction is refused ([`AlignmentError::NotScorable`]).
//!
//! [`AlignmentError::NotScorable`]: crate::AlignmentError::NotScorable

mod agglomerative;
mod bias;
mod bootstrap;
mod kmeans;
mod metrics;
mod ranking;
mod replicates;
#[cfg(test)]
mod tests;

pub use self::agglomerative::agglomerative_cosine;
pub use self::bias::{bias, sign_test, Axis, Bias, BiasReport, SignTest};
pub use self::bootstrap::{DirectionsConfig, Estimate};
pub use self::kmeans::{kmeans, kmeans_from, Clustering, KMeansConfig};
pub use self::metrics::{adjusted_rand_index, cosine_silhouette, normalized_mutual_info, purity};
pub use self::ranking::{rank_descriptors, Ranked};
pub use self::replicates::{cosine, direction, l2_normalized, unpaired_direction, Replicates};
