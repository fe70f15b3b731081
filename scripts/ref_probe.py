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
and the used P, alpha, zscore and the predictions (n_test x j, row-major); the Rust test `probe/tests/it/sklearn_ref.rs` requires its own eigen-form
probe to reproduce them to 1e-6. Same scikit-learn/numpy versions => same file.
"""

import json
import sys

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
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
    out = {
        "generator": "scripts/ref_probe.py",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "cases": cases,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
    print(f"wrote {len(cases)} cases to {sys.argv[1]}")


if __name__ == "__main__":
    main()
