//! Odd-one-out alignment analyses (science.md B2, paper 001): how well a representation agrees
//! with human triplet judgements.
//!
//! - [`triplets`](Triplets): the human judgements, M × 3 indices into N concepts with the
//!   odd one out in field 2, read from CSV files of indices or names ([`Triplets::from_csv`]);
//! - [`odd_one_out`]: the accuracy of a feature matrix on them (cosine, euclidean or dot; ties
//!   wrong; chance 1/3);
//! - [`linear_probe`]: the paper's linear-probe alignment, trained with candle on the CPU or a
//!   GPU;
//! - [`embedding_regression`]: ridge from the features to a human embedding (VICE), R² per
//!   dimension and the accuracy of the predicted embedding;
//! - [`directions`]: prompt directions in h-space (science-2.md §H, seed 004): paired directions,
//!   bias along a contrast axis, descriptor rankings with bootstrap CIs over replicates, k-means and
//!   agglomerative clusters and their agreement with given categories;
//! - [`semantic`]: the semantic lens (science-2.md §L): class-semantics scores of object
//!   descriptors under five distances, invariance to transforms, the layer ablation.
//!
//! **Input policy:** features and embeddings enter as [`Matrix`] values, which refuse NaN and
//! infinite entries; every analysis checks that they have one row per concept of the triplets.
//! **Determinism:** every random choice (folds, weights, batch order) comes from the seed in the
//! config, through our own generators (module `rng`, and [`probe::kfold`]); the linear probe's
//! `f32` sums on a GPU may still differ in the last bits between devices.
#![deny(missing_docs)]

pub mod directions;
mod embedding_regression;
mod error;
mod linear_probe;
mod matrix;
mod odd_one_out;
mod rng;
pub mod semantic;
mod train;
mod triplets;

pub use candle_core::Device;

pub use crate::embedding_regression::{
    embedding_regression, embedding_regression_with_folds, r_squared, EmbeddingRegression,
    EmbeddingRegressionConfig,
};
pub use crate::error::{AlignmentError, TripletProblem};
pub use crate::linear_probe::{
    linear_probe, linear_probe_fold, partition, EarlyStopping, LinearProbeConfig,
    LinearProbeResult, Partition, ProbeFold,
};
pub use crate::matrix::Matrix;
pub use crate::odd_one_out::{odd_one_out, predict, Distance, OddOneOut, CHANCE};
pub use crate::triplets::{Concepts, CsvOptions, Entries, Triplets};
