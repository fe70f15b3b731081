#!/usr/bin/env python3
"""Reference predictions of the attribute probe (science.md B1) from scikit-learn.

Usage:
    .venv/bin/python scripts/ref_probe.py OUT.json
    DIFFPROBE_SKLEARN_REF=OUT.json cargo test --release -p probe --test it

For a handful of seeded random cases (features D below and above the number of
training stimuli, P below and equal to n_train - 1, several alphas, one z-scored case
with a constant column) it fits, on the training rows only,

    [StandardScaler ->] PCA(n_components=P, svd_solver='full') -> Ridge(alpha)

and predicts the test rows, with P = min(requested, n_train - 1, d). OUT.json holds, per
case, x (n x d) and y (n x j) flattened row-major, the train/test indices, the requested
and the used P, alpha, zscore and the predictions (n_test x j, row-major); the Rust test `tests/probe_lib/sklearn_ref.rs` requires its own eigen-form
probe to reproduce them to 1e-6. Same scikit-learn/numpy versions => same file.

"alpha_cases" (per-attribute alpha by efficient leave-one-out): the same PCA on the
training rows, then RidgeCV(alphas, alpha_per_target=True, fit_intercept=True) (cv=None:
efficient LOO) on the PCA scores; it stores the grid, the chosen alpha per target and the
test predictions. When himalaya is installed it also stores himalaya's
KernelRidgeCV(kernel='linear', fit_intercept=True, cv=KFold(n_train)), i.e. leave-one-out,
on the same scores
(numpy backend, float64): its LOO refits the ridge (and intercept) without each row.

"kfold_cases" (per-attribute alpha by inner K-fold CV; only with himalaya installed): explicit
inner validation folds (sklearn KFold(k, shuffle=True) over the training rows, stored as
stimulus indices), himalaya KernelRidgeCV(alphas, kernel='linear', fit_intercept=True,
cv=those splits) fitted on the raw training features when P is full rank (PCA + ridge is then
centred linear kernel ridge, refitted per inner fold), or on the training PCA scores for a
truncated P; stores its chosen alphas, best mean CV scores and test predictions.

"grid_cases" (the P x alpha report): mean test RMSE over targets of PCA(P) + Ridge(alpha)
for each cell of a small grid.
"""

import json
import sys

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# name, n, d, j, n_test, P ("max" = n_train - 1), alpha, zscore, latent rank of x
CASES = [
    ("primal_small_p", 60, 20, 2, 12, 10, 150.0, False, None),
    ("primal_full_p", 200, 50, 3, 20, 50, 10.0, False, None),
    ("primal_structured", 150, 100, 3, 15, 120, 150.0, False, 15),
    ("kernel_max_p", 80, 200, 2, 16, 'max', 150.0, False, None),
    ("kernel_max_p_small_alpha", 80, 200, 2, 16, 'max', 0.1, False, None),
    ("kernel_p40", 120, 300, 3, 24, 40, 150.0, False, None),
    ("primal_max_p", 70, 90, 2, 10, 'max', 1.0, False, None),
    ("zscore_constant_column", 100, 30, 2, 10, 20, 5.0, True, None),
]

# name, n, d, j, n_test, P, alphas, zscore
ALPHA_CASES = [
    ("loo_primal", 90, 25, 4, 15, 20, [1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4], False),
    ("loo_kernel_max_p", 70, 150, 3, 10, 'max', [0.1, 10.0, 150.0, 1e3, 1e5], False),
    ("loo_zscore", 80, 40, 3, 12, 30, [1.0, 30.0, 150.0, 1e3], True),
]

# Inner K-fold alpha selection vs himalaya KernelRidgeCV with explicit, identical inner splits.
# name, n, d, j, n_test, P ("max" = full rank), alphas, inner folds, himalaya input
#   "x": KernelRidgeCV(kernel="linear") on the raw features (full-rank P only: PCA is then a
#        rotation and PCA + ridge = centred linear kernel ridge, refitted per inner fold)
#   "z": KernelRidgeCV on the training PCA scores (truncated P: the fixed-basis semantics)
KFOLD_CASES = [
    ("kfold_kernel_full_rank", 83, 160, 4, 12, 'max', list(np.logspace(-1, 5, 7)), 5, "x"),
    ("kfold_primal_full_rank", 120, 30, 3, 17, 'max', list(np.logspace(-2, 4, 7)), 5, "x"),
    ("kfold_kernel_p20", 90, 140, 3, 13, 20, [0.1, 10.0, 150.0, 1e3, 1e5], 4, "z"),
]

# name, n, d, j, n_test, P grid, alpha grid
GRID_CASES = [
    ("grid_kernel", 90, 120, 3, 18, [5, 40, 500], [1.0, 150.0, 1e4]),
    ("grid_primal", 100, 30, 2, 20, [3, 30], [0.1, 150.0]),
]


def make_data(rng, n, d, j, zscore=False, latent=None):
    if latent is None:
        x = rng.normal(size=(n, d))
    else:
        x = rng.normal(size=(n, latent)) @ rng.normal(size=(latent, d))
        x += 0.1 * rng.normal(size=(n, d))
    x = x * rng.uniform(0.2, 5.0, size=d) + rng.uniform(-3.0, 3.0, size=d)
    if zscore:
        x[:, 3] = 1.7
    # Targets with signal strengths from strong to none, so the chosen alphas differ.
    w = rng.normal(size=(d, j)) / np.sqrt(d) * np.geomspace(3.0, 0.01, j)
    y = (x - x.mean(axis=0)) @ w + rng.normal(size=(n, j)) + rng.uniform(1.0, 5.0, size=j)
    return x, y


def split(rng, n, n_test):
    perm = rng.permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def pca_scores(x, train, test, n_comp, zscore):
    steps = ([StandardScaler()] if zscore else []) + [PCA(n_components=n_comp, svd_solver='full')]
    pre = make_pipeline(*steps).fit(x[train])
    return pre.transform(x[train]), pre.transform(x[test])


def make_alpha_case(seed, name, n, d, j, n_test, p, alphas, zscore):
    rng = np.random.default_rng(seed)
    x, y = make_data(rng, n, d, j, zscore)
    train, test = split(rng, n, n_test)
    requested = len(train) - 1 if p == 'max' else p
    n_comp = min(requested, len(train) - 1, d)
    z_train, z_test = pca_scores(x, train, test, n_comp, zscore)
    cv = RidgeCV(alphas=alphas, alpha_per_target=True, fit_intercept=True).fit(z_train, y[train])
    case = {
        "name": name, "n": n, "d": d, "j": j,
        "x": x.ravel().tolist(), "y": y.ravel().tolist(),
        "train": train.tolist(), "test": test.tolist(),
        "requested_components": requested, "n_components": n_comp,
        "alphas": list(alphas), "zscore": zscore,
        "chosen_alphas": np.atleast_1d(cv.alpha_).tolist(),
        "predictions": cv.predict(z_test).ravel().tolist(),
    }
    try:
        from himalaya.backend import set_backend
        from himalaya.kernel_ridge import KernelRidgeCV
    except ImportError:
        return case
    set_backend("numpy")
    kr = KernelRidgeCV(alphas=np.asarray(alphas, dtype=np.float64), kernel="linear",
                       fit_intercept=True, cv=KFold(n_splits=len(train)), warn=False)
    kr.fit(z_train.astype(np.float64), y[train].astype(np.float64))
    case["himalaya_chosen_alphas"] = np.asarray(kr.best_alphas_, dtype=np.float64).tolist()
    case["himalaya_predictions"] = np.asarray(kr.predict(z_test), dtype=np.float64).ravel().tolist()
    return case


def make_kfold_case(seed, name, n, d, j, n_test, p, alphas, k, on):
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidgeCV
    set_backend("numpy")
    rng = np.random.default_rng(seed)
    x, y = make_data(rng, n, d, j)
    train, test = split(rng, n, n_test)
    requested = len(train) - 1 if p == 'max' else p
    n_comp = min(requested, len(train) - 1, d)
    # Inner validation folds as positions in train (for himalaya) and stimuli (for diffprobe).
    splits = list(KFold(n_splits=k, shuffle=True, random_state=seed).split(train))
    if on == "x":
        assert n_comp == min(len(train) - 1, d), "the 'x' comparison needs full-rank P"
        a_train, a_test = x[train], x[test]
    else:
        a_train, a_test = pca_scores(x, train, test, n_comp, False)
    kr = KernelRidgeCV(alphas=np.asarray(alphas, dtype=np.float64), kernel="linear",
                       fit_intercept=True, cv=splits, warn=False)
    kr.fit(a_train.astype(np.float64), y[train].astype(np.float64))
    return {
        "name": name, "n": n, "d": d, "j": j,
        "x": x.ravel().tolist(), "y": y.ravel().tolist(),
        "train": train.tolist(), "test": test.tolist(),
        "requested_components": requested, "n_components": n_comp,
        "alphas": [float(a) for a in alphas], "himalaya_input": on,
        "inner_folds": [np.sort(train[val]).tolist() for _, val in splits],
        "himalaya_chosen_alphas": np.asarray(kr.best_alphas_, dtype=np.float64).tolist(),
        "himalaya_cv_scores": np.asarray(kr.cv_scores_, dtype=np.float64).ravel().tolist(),
        "himalaya_predictions": np.asarray(kr.predict(a_test), dtype=np.float64).ravel().tolist(),
    }


def make_grid_case(seed, name, n, d, j, n_test, components, alphas):
    rng = np.random.default_rng(seed)
    x, y = make_data(rng, n, d, j, latent=10)
    train, test = split(rng, n, n_test)
    cells = []
    for p in components:
        n_comp = min(p, len(train) - 1, d)
        for alpha in alphas:
            model = make_pipeline(PCA(n_components=n_comp, svd_solver='full'), Ridge(alpha=alpha))
            pred = model.fit(x[train], y[train]).predict(x[test])
            rmse = np.sqrt(((pred - y[test]) ** 2).mean(axis=0))
            cells.append({"components": p, "n_components": n_comp, "alpha": alpha,
                          "mean_rmse": float(rmse.mean())})
    return {
        "name": name, "n": n, "d": d, "j": j,
        "x": x.ravel().tolist(), "y": y.ravel().tolist(),
        "train": train.tolist(), "test": test.tolist(),
        "components": list(components), "alphas": list(alphas), "cells": cells,
    }


def make_case(seed, name, n, d, j, n_test, p, alpha, zscore, latent):
    rng = np.random.default_rng(seed)
    if latent is None:
        x = rng.normal(size=(n, d))
    else:
        x = rng.normal(size=(n, latent)) @ rng.normal(size=(latent, d))
        x += 0.1 * rng.normal(size=(n, d))
    # Uneven column scales and offsets, so centring and scaling matter.
    x = x * rng.uniform(0.2, 5.0, size=d) + rng.uniform(-3.0, 3.0, size=d)
    if zscore:
        x[:, 3] = 1.7  # constant: StandardScaler leaves it at 0 after centring
    w = rng.normal(size=(d, j)) / np.sqrt(d)
    y = (x - x.mean(axis=0)) @ w + rng.normal(size=(n, j)) + rng.uniform(1.0, 5.0, size=j)
    perm = rng.permutation(n)
    test = np.sort(perm[:n_test])
    train = np.sort(perm[n_test:])
    requested = len(train) - 1 if p == 'max' else p
    n_comp = min(requested, len(train) - 1, d)  # what the probe uses (full rank here)
    steps = ([StandardScaler()] if zscore else []) + [
        PCA(n_components=n_comp, svd_solver='full'),
        Ridge(alpha=alpha),
    ]
    model = make_pipeline(*steps).fit(x[train], y[train])
    pred = model.predict(x[test])
    return {
        "name": name,
        "n": n,
        "d": d,
        "j": j,
        "x": x.ravel().tolist(),
        "y": y.ravel().tolist(),
        "train": train.tolist(),
        "test": test.tolist(),
        "requested_components": requested,
        "n_components": n_comp,
        "alpha": alpha,
        "zscore": zscore,
        "predictions": pred.reshape(len(test), j).ravel().tolist(),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    cases = [make_case(1000 + i, *c) for i, c in enumerate(CASES)]
    alpha_cases = [make_alpha_case(2000 + i, *c) for i, c in enumerate(ALPHA_CASES)]
    grid_cases = [make_grid_case(3000 + i, *c) for i, c in enumerate(GRID_CASES)]
    try:
        import himalaya
        himalaya_version = himalaya.__version__
    except ImportError:
        himalaya_version = None
    kfold_cases = ([make_kfold_case(4000 + i, *c) for i, c in enumerate(KFOLD_CASES)]
                   if himalaya_version else [])
    out = {
        "generator": "scripts/ref_probe.py",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "himalaya_version": himalaya_version,
        "cases": cases,
        "alpha_cases": alpha_cases,
        "grid_cases": grid_cases,
        "kfold_cases": kfold_cases,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
    print(f"wrote {len(cases)} cases, {len(alpha_cases)} alpha cases "
          f"(himalaya: {himalaya_version}), {len(grid_cases)} grid cases, "
          f"{len(kfold_cases)} inner K-fold cases to {sys.argv[1]}")


if __name__ == "__main__":
    main()
