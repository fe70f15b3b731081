//! Input checks shared by the probe's entry points (shapes, finite values, α) and `prepare`,
//! which turns one fold's rows into the centred (optionally z-scored) matrices the fit uses; and
//! the one component cap `min(requested, n_train − 1, d)`.

use faer::Mat;

use crate::ProbeError;

/// Checks that a ridge penalty is finite and non-negative.
pub(crate) fn check_alpha(alpha: f64) -> Result<(), ProbeError> {
    if alpha.is_finite() && alpha >= 0.0 {
        Ok(())
    } else {
        Err(ProbeError::InvalidAlpha { alpha })
    }
}

/// Checks the shape of `y` and that it has columns.
pub(crate) fn check_target_shape(y: &[f64], n: usize, j: usize) -> Result<(), ProbeError> {
    check_len("y", y.len(), n, j)?;
    if j == 0 {
        return Err(ProbeError::NoTargets);
    }
    Ok(())
}

/// Checks that the listed rows (in range: call after [`prepare`]) hold finite targets.
pub(crate) fn check_targets<'a>(
    y: &[f64],
    j: usize,
    rows: impl Iterator<Item = &'a usize>,
) -> Result<(), ProbeError> {
    for &row in rows {
        for (column, &value) in y[row * j..(row + 1) * j].iter().enumerate() {
            if !value.is_finite() {
                return Err(ProbeError::NonFiniteTarget { column, row, value });
            }
        }
    }
    Ok(())
}

pub(crate) fn check_len(
    what: &'static str,
    got: usize,
    rows: usize,
    cols: usize,
) -> Result<(), ProbeError> {
    if rows.checked_mul(cols) == Some(got) {
        Ok(())
    } else {
        Err(ProbeError::Shape { what, got, rows, cols })
    }
}

/// Checks that a split's indices are in range and distinct, with at least 2 training stimuli
/// and (when `need_test`) a test stimulus.
pub(crate) fn check_split(
    n: usize,
    train: &[usize],
    test: &[usize],
    fold: usize,
    need_test: bool,
) -> Result<(), ProbeError> {
    let mut used = vec![false; n];
    for (which, list) in [("train", train), ("test", test)] {
        for &index in list {
            if index >= n {
                return Err(ProbeError::IndexOutOfRange { which, index, n });
            }
            if std::mem::replace(&mut used[index], true) {
                return Err(ProbeError::DuplicateIndex { index, fold });
            }
        }
    }
    if train.len() < 2 {
        return Err(ProbeError::TooFewTraining { fold, n_train: train.len() });
    }
    if need_test && test.is_empty() {
        return Err(ProbeError::EmptyTest { fold });
    }
    Ok(())
}

/// Validates the split and the used rows of `x`, and returns the training and test rows
/// centred (and optionally z-scored) with training statistics. An empty `test` is an error
/// only when `need_test`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare<T: Copy + Into<f64>>(
    x: &[T],
    n: usize,
    d: usize,
    train: &[usize],
    test: &[usize],
    fold: usize,
    zscore: bool,
    need_test: bool,
) -> Result<(Mat<f64>, Mat<f64>), ProbeError> {
    check_len("x", x.len(), n, d)?;
    check_split(n, train, test, fold, need_test)?;
    for &row in train.iter().chain(test) {
        for (column, &v) in x[row * d..(row + 1) * d].iter().enumerate() {
            let value: f64 = v.into();
            if !value.is_finite() {
                return Err(ProbeError::NonFiniteFeature { row, column, value });
            }
        }
    }

    // Row-wise passes (cache-friendly for row-major `x`); each column's sums add the training
    // rows in the order given, as a per-column sum would.
    let row = |r: usize| &x[r * d..(r + 1) * d];
    let first: Vec<f64> = row(train[0]).iter().map(|&v| v.into()).collect();
    let mut constant = vec![true; d];
    let mut sum = vec![-0.0_f64; d];
    for &r in train {
        for (c, &v) in row(r).iter().enumerate() {
            let v: f64 = v.into();
            constant[c] &= v == first[c];
            sum[c] += v;
        }
    }
    let mut shift: Vec<f64> = sum.iter().map(|s| s / train.len() as f64).collect();
    let mut scale = vec![1.0; d];
    if zscore {
        let mut ss = vec![-0.0_f64; d];
        for &r in train {
            for (c, &v) in row(r).iter().enumerate() {
                let v: f64 = v.into();
                ss[c] += (v - shift[c]).powi(2);
            }
        }
        for c in 0..d {
            scale[c] = 1.0 / (ss[c] / train.len() as f64).sqrt();
        }
    }
    for c in 0..d {
        if constant[c] {
            // Exactly constant on the training rows: centre exactly (the mean of equal values
            // can be off by an ulp) and, when z-scoring, zero the column out.
            shift[c] = first[c];
            if zscore {
                scale[c] = 0.0;
            }
        }
    }
    let build = |rows: &[usize]| {
        // Column blocks: contiguous reads of `x`, sequential writes down each column.
        const BLOCK: usize = 64;
        let mut out = Mat::<f64>::zeros(rows.len(), d);
        for c0 in (0..d).step_by(BLOCK) {
            let c1 = (c0 + BLOCK).min(d);
            for (i, &r) in rows.iter().enumerate() {
                for (c, &v) in row(r)[c0..c1].iter().enumerate() {
                    let c = c0 + c;
                    let v: f64 = v.into();
                    out[(i, c)] = (v - shift[c]) * scale[c];
                }
            }
        }
        out
    };
    Ok((build(train), build(test)))
}

/// The PCA size fitted for `requested` components: at most the training size minus one (centring
/// removes one dimension) and the representation's width `d`. The fit may use fewer still, down
/// to the rank of the training matrix.
pub(crate) fn component_cap(requested: usize, n_train: usize, d: usize) -> usize {
    requested.min(n_train - 1).min(d)
}
