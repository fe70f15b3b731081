//! Embedding regression (science.md B2): predict each dimension of a human similarity embedding
//! V (N × K, e.g. VICE's 1,854 × 42) from a representation X by cross-validated ridge, report R²
//! per dimension and the odd-one-out accuracy of the out-of-fold predicted embedding.
//!
//! Per fold (5 seeded folds over concepts, [`probe::kfold`]) and dimension: ridge with an
//! unpenalised intercept on the training concepts, α chosen per dimension by exact efficient
//! leave-one-out over a log grid (1e-2 … 1e5), fitted by the `probe` crate
//! ([`probe::probe_fold`] with full-rank PCA, which is plain ridge, and `alpha_grid`; the same
//! rule as scikit-learn's `RidgeCV(alphas, alpha_per_target=True)`); R² on the test fold with
//! SS_tot about the **test-fold** mean. Each concept's prediction comes from the one fold that
//! held it out, which gives the out-of-fold embedding V̂ scored on the triplets.
//!
//! **R² of a constant test fold:** SS_tot = 0 gives 1 if the prediction is exact and 0
//! otherwise (scikit-learn's `r2_score` with `force_finite=True`), never NaN.

use crate::error::AlignmentError;
use crate::matrix::Matrix;
use crate::odd_one_out::{self, Distance, OddOneOut};
use crate::triplets::Triplets;

/// Settings of the embedding regression; the defaults are science.md's.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRegressionConfig {
    /// Folds over concepts (5).
    pub folds: usize,
    /// Seed of the folds (0).
    pub seed: u64,
    /// Candidate ridge penalties (1e-2, 1e-1, …, 1e5: one per decade); ties go to the first.
    pub alphas: Vec<f64>,
    /// Z-score each feature on the training concepts before the ridge (off, ours).
    pub zscore: bool,
    /// Distance of the odd-one-out evaluation of V̂ and V (cosine).
    pub distance: Distance,
}

impl Default for EmbeddingRegressionConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            seed: 0,
            alphas: (-2..=5).map(|e| 10f64.powi(e)).collect(),
            zscore: false,
            distance: Distance::Cosine,
        }
    }
}

/// The outcome of an embedding regression.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRegression {
    /// `r2[fold][k]`: R² of dimension `k` on the test concepts of `fold`.
    pub r2: Vec<Vec<f64>>,
    /// `alphas[fold][k]`: the α chosen by leave-one-out for dimension `k` in `fold`.
    pub alphas: Vec<Vec<f64>>,
    /// Per dimension, the mean of its R² over folds.
    pub mean_r2: Vec<f64>,
    /// The mean of [`mean_r2`](Self::mean_r2) over dimensions.
    pub overall_r2: f64,
    /// The out-of-fold predicted embedding V̂, `N × K` row-major.
    pub predicted: Vec<f64>,
    /// Odd-one-out accuracy of V̂ on the triplets.
    pub predicted_odd_one_out: OddOneOut,
    /// Odd-one-out accuracy of V itself (the ceiling V̂ is measured against).
    pub embedding_odd_one_out: OddOneOut,
}

/// Embedding regression of `embedding` (V, N × K) on `features` (X, N × D) with seeded folds.
///
/// # Errors
/// Those of [`embedding_regression_with_folds`], and [`AlignmentError::Probe`] for
/// `cfg.folds` outside `2..=N`.
pub fn embedding_regression<T: Copy + Into<f64>>(
    features: &Matrix<'_, T>,
    embedding: &Matrix<'_, f64>,
    triplets: &Triplets,
    cfg: &EmbeddingRegressionConfig,
) -> Result<EmbeddingRegression, AlignmentError> {
    let folds = probe::kfold(features.rows(), cfg.folds, cfg.seed)?;
    embedding_regression_with_folds(features, embedding, triplets, &folds, cfg)
}

/// Embedding regression with explicit test folds (each a list of concept indices; together
/// they must partition `0..N`); `cfg.folds` and `cfg.seed` are ignored.
///
/// # Errors
/// [`AlignmentError::RowMismatch`] unless X, V and the triplets have the same N,
/// [`AlignmentError::InvalidFold`] for folds that do not partition the concepts,
/// [`AlignmentError::Config`] for an empty α grid, and [`AlignmentError::Probe`] for a grid
/// value that is negative or not finite or a fold leaving fewer than 2 training concepts.
pub fn embedding_regression_with_folds<T: Copy + Into<f64>>(
    features: &Matrix<'_, T>,
    embedding: &Matrix<'_, f64>,
    triplets: &Triplets,
    folds: &[Vec<usize>],
    cfg: &EmbeddingRegressionConfig,
) -> Result<EmbeddingRegression, AlignmentError> {
    let (n, k) = (triplets.n_concepts(), embedding.cols());
    features.check_rows(n)?;
    embedding.check_rows(n)?;
    check_folds(folds, n)?;
    if cfg.alphas.is_empty() {
        return Err(AlignmentError::Config { setting: "alphas", problem: "is empty".into() });
    }
    let ridge = probe::ProbeConfig {
        n_components: usize::MAX,
        alpha_grid: cfg.alphas.clone(),
        n_permutations: 0,
        zscore: cfg.zscore,
        ..probe::ProbeConfig::default()
    };
    let mut predicted = vec![0.0; n * k];
    let (mut r2, mut alphas) = (Vec::with_capacity(folds.len()), Vec::with_capacity(folds.len()));
    for (f, test) in folds.iter().enumerate() {
        let train = probe::complement(n, test);
        let x = features.values();
        let results = probe::probe_fold(
            x,
            n,
            features.cols(),
            embedding.values(),
            k,
            &train,
            test,
            f,
            &ridge,
        )?;
        let mut fold_r2 = Vec::with_capacity(k);
        for r in &results {
            let truth: Vec<f64> = test.iter().map(|&i| embedding.row(i)[r.attribute]).collect();
            fold_r2.push(r_squared(&truth, &r.predictions));
            for (&i, &p) in test.iter().zip(&r.predictions) {
                predicted[i * k + r.attribute] = p;
            }
        }
        r2.push(fold_r2);
        alphas.push(results.iter().map(|r| r.alpha).collect());
    }
    let mean_r2: Vec<f64> = (0..k)
        .map(|c| r2.iter().map(|fold: &Vec<f64>| fold[c]).sum::<f64>() / folds.len() as f64)
        .collect();
    let overall_r2 = mean_r2.iter().sum::<f64>() / k as f64;
    let v_hat = Matrix::new("predicted embedding", &predicted, n, k)?;
    let predicted_odd_one_out = odd_one_out::odd_one_out(&v_hat, triplets, cfg.distance)?;
    let embedding_odd_one_out = odd_one_out::odd_one_out(embedding, triplets, cfg.distance)?;
    Ok(EmbeddingRegression {
        r2,
        alphas,
        mean_r2,
        overall_r2,
        predicted,
        predicted_odd_one_out,
        embedding_odd_one_out,
    })
}

/// `1 − SS_res / SS_tot` with SS_tot about the mean of `truth` (module docs for SS_tot = 0).
pub fn r_squared(truth: &[f64], predicted: &[f64]) -> f64 {
    let mean = truth.iter().sum::<f64>() / truth.len() as f64;
    let ss_tot: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    let ss_res: f64 = truth.iter().zip(predicted).map(|(t, p)| (t - p).powi(2)).sum();
    if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    }
}

/// Checks that `folds` are non-empty and partition `0..n`.
fn check_folds(folds: &[Vec<usize>], n: usize) -> Result<(), AlignmentError> {
    let bad = |fold, problem: String| Err(AlignmentError::InvalidFold { fold, problem });
    if folds.len() < 2 {
        return bad(0, format!("is the only one; give at least 2 folds (got {})", folds.len()));
    }
    let mut owner = vec![usize::MAX; n];
    for (f, fold) in folds.iter().enumerate() {
        if fold.is_empty() {
            return bad(f, "is empty".into());
        }
        for &i in fold {
            if i >= n {
                return bad(f, format!("has concept {i}, out of range for {n} concepts"));
            }
            if owner[i] != usize::MAX {
                return bad(f, format!("repeats concept {i} of fold {}", owner[i]));
            }
            owner[i] = f;
        }
    }
    match owner.iter().position(|&o| o == usize::MAX) {
        Some(i) => bad(folds.len() - 1, format!("is the last, and no fold holds concept {i}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_squared_is_about_the_test_mean() {
        assert_eq!(r_squared(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 1.0);
        // Predicting the test mean gives 0; a constant offset is penalised.
        assert_eq!(r_squared(&[1.0, 2.0, 3.0], &[2.0, 2.0, 2.0]), 0.0);
        assert_eq!(r_squared(&[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0]), 1.0 - 3.0 / 2.0);
        assert_eq!(r_squared(&[5.0, 5.0], &[5.0, 5.0]), 1.0);
        assert_eq!(r_squared(&[5.0, 5.0], &[5.0, 6.0]), 0.0);
    }

    #[test]
    fn folds_must_partition_the_concepts() {
        assert!(check_folds(&[vec![0, 2], vec![1, 3]], 4).is_ok());
        let msg = |folds: &[Vec<usize>]| check_folds(folds, 4).unwrap_err().to_string();
        assert_eq!(
            msg(&[vec![0, 1, 2, 3]]),
            "fold 0 is the only one; give at least 2 folds (got 1)"
        );
        assert_eq!(msg(&[vec![0, 1], vec![]]), "fold 1 is empty");
        assert_eq!(msg(&[vec![0, 1], vec![1, 2, 3]]), "fold 1 repeats concept 1 of fold 0");
        assert_eq!(
            msg(&[vec![0, 4], vec![1, 2, 3]]),
            "fold 0 has concept 4, out of range for 4 concepts"
        );
        assert_eq!(msg(&[vec![0, 1], vec![2]]), "fold 1 is the last, and no fold holds concept 3");
    }

    #[test]
    fn planted_linear_embedding_is_recovered() {
        // V = X A exactly (no noise): R² ≈ 1 and V̂ answers like V.
        let (n, d, k) = (40, 3, 2);
        let x: Vec<f64> = (0..n * d).map(|i| ((i * 37 % 101) as f64 / 50.0) - 1.0).collect();
        let v: Vec<f64> = (0..n)
            .flat_map(|i| {
                let r = &x[i * d..(i + 1) * d];
                [r[0] + 2.0 * r[1], r[2] - r[0]]
            })
            .collect();
        let f = Matrix::new("features", &x, n, d).unwrap();
        let e = Matrix::new("embedding", &v, n, k).unwrap();
        let t = Triplets::new((0..n - 2).map(|i| [i, i + 1, i + 2]).collect(), n).unwrap();
        let r = embedding_regression(&f, &e, &t, &EmbeddingRegressionConfig::default()).unwrap();
        assert!(r.overall_r2 > 0.999, "{:?}", r.mean_r2);
        assert!(r.alphas.iter().flatten().all(|&a| a == 0.01), "{:?}", r.alphas);
        assert_eq!(r.r2.len(), 5);
        let (got, ceiling) = (r.predicted_odd_one_out.accuracy, r.embedding_odd_one_out.accuracy);
        assert!((got - ceiling).abs() <= 1.0 / 38.0, "{got} vs {ceiling}");
        let nan = [f64::NAN; 80];
        let e = Matrix::new("embedding", &nan, n, k).unwrap_err();
        assert_eq!(e.to_string(), "embedding has a NaN at row 0, column 0");
    }
}
