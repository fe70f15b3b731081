#!/usr/bin/env python3
"""Reference numbers of the odd-one-out alignment analyses (science.md B2), in numpy.

Usage:
    .venv/bin/python scripts/ref_alignment.py OUT.json
    DIFFPROBE_ALIGNMENT_REF=OUT.json cargo test --release -p alignment --test it

Everything is generated here from fixed seeds and written to OUT.json with the expected
numbers; the Rust test `tests/alignment_lib.rs` must reproduce them.

"ooo_cases" (odd-one-out accuracy): features F (n x d, row-major) and triplets (m x 3, the
human-chosen odd one out in column 2). For each distance over the pairs (0,1), (0,2), (1,2) --
"cosine" (1 - cos; a zero row has cosine 0 with everything, as sklearn's cosine_distances),
"euclidean" (compared squared: the same order) and "dot" (-F_i . F_j) -- the predicted odd one
out is the element outside the closest pair, or -1 (counted wrong) when the smallest distance is
shared by two or three pairs. Stored: the per-triplet predictions and the accuracy (fraction
predicted == 2). One case has small-integer features, so distances are exact in any summation
order and ties are plentiful and exact; one has float32-valued features (read as f32 in Rust).

"regression_cases" (embedding regression): features X (n x d), a human-like embedding V (n x k)
and explicit test folds (a seeded numpy permutation cut into 5 chunks; Rust takes them as given).
Per fold and dimension: ridge with an unpenalised intercept on the training rows (optionally
after z-scoring with training statistics, constant columns set to 0), alpha chosen per dimension
by exact efficient leave-one-out over the grid (mean of (r_i / (1 - h_ii))^2, first minimum),
computed from the SVD of the centred training X; R^2 on the test fold with SS_tot about the
test-fold mean; the out-of-fold predicted embedding and its cosine odd-one-out predictions and
accuracy on triplets sampled from V by a Luce choice rule. The numpy LOO is cross-checked here
against sklearn's RidgeCV(alpha_per_target=True) when sklearn is importable.
"""

import json
import sys

import numpy as np

ALPHAS = [1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5]


# ---------------------------------------------------------------- odd-one-out


def pair_distances(f, t, kind):
    """Distances of the pairs (0,1), (0,2), (1,2) of each triplet, m x 3."""
    pairs = [(0, 1), (0, 2), (1, 2)]
    if kind == "cosine":
        norms = np.sqrt((f * f).sum(axis=1))

        def dist(i, j):
            a, b = t[:, i], t[:, j]
            dots = (f[a] * f[b]).sum(axis=1)
            den = norms[a] * norms[b]
            with np.errstate(invalid="ignore", divide="ignore"):
                cos = np.where(den == 0.0, 0.0, dots / den)
            return np.where(den == 0.0, 1.0, 1.0 - cos)
    elif kind == "euclidean":
        def dist(i, j):
            diff = f[t[:, i]] - f[t[:, j]]
            return (diff * diff).sum(axis=1)
    elif kind == "dot":
        def dist(i, j):
            return -(f[t[:, i]] * f[t[:, j]]).sum(axis=1)
    else:
        raise ValueError(kind)
    return np.stack([dist(i, j) for i, j in pairs], axis=1)


def predict(dist):
    """Odd one out per triplet (0, 1, 2), or -1 when the smallest distance is shared."""
    smallest = dist.min(axis=1, keepdims=True)
    unique = (dist == smallest).sum(axis=1) == 1
    return np.where(unique, 2 - dist.argmin(axis=1), -1)


def ooo(f, t, kind):
    pred = predict(pair_distances(f, t, kind))
    return pred, float((pred == 2).mean())


def sample_triplets(rng, v, m, temperature=1.0):
    """Random concept triples, ordered so that column 2 is the odd one out chosen by a Luce
    rule over the dot-product similarities of the embedding v."""
    n = v.shape[0]
    t = np.array([rng.choice(n, 3, replace=False) for _ in range(m)])
    sims = np.stack([
        (v[t[:, 0]] * v[t[:, 1]]).sum(1),
        (v[t[:, 0]] * v[t[:, 2]]).sum(1),
        (v[t[:, 1]] * v[t[:, 2]]).sum(1),
    ], axis=1) / temperature
    p = np.exp(sims - sims.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    kept = np.array([rng.choice(3, p=row) for row in p])
    # kept pair (0,1) -> order (a, b, c); (0,2) -> (a, c, b); (1,2) -> (b, c, a)
    orders = np.array([[0, 1, 2], [0, 2, 1], [1, 2, 0]])
    return np.take_along_axis(t, orders[kept], axis=1)


def make_ooo_case(seed, name, n, d, m, kind):
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        f = rng.normal(size=(n, d)) * rng.uniform(0.3, 3.0, size=d) + rng.uniform(-1, 1, size=d)
        hidden = f @ rng.normal(size=(d, 4)) / np.sqrt(d) + 0.5 * rng.normal(size=(n, 4))
        t = sample_triplets(rng, hidden, m)
    elif kind == "integer":
        f = rng.integers(-1, 2, size=(n, d)).astype(float)
        f[:3] = 0.0  # zero rows: cosine 0 with everything
        f[10:14] = f[14:18]  # duplicated rows: exact zero distances
        t = np.array([rng.choice(n, 3, replace=False) for _ in range(m)])
    elif kind == "float32":
        f = (rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)).astype(np.float32)
        f = f.astype(np.float64)
        t = sample_triplets(rng, f[:, :5], m)
    else:
        raise ValueError(kind)
    case = {"name": name, "n": n, "d": d, "f32": kind == "float32",
            "features": f.ravel().tolist(), "triplets": t.ravel().tolist()}
    for dist in ["cosine", "euclidean", "dot"]:
        pred, acc = ooo(f, t, dist)
        case[dist] = {"predictions": pred.tolist(), "accuracy": acc,
                      "ties": int((pred == -1).sum())}
    return case


OOO_CASES = [
    ("gaussian", 80, 12, 3000, "gaussian"),
    ("integer_ties", 40, 3, 2000, "integer"),
    ("float32_wide", 100, 300, 2000, "float32"),
]


# ---------------------------------------------------------------- embedding regression


def ridge_loo(xtr, ytr, xte, alphas, zscore):
    """Per-target alpha by efficient LOO and test predictions of ridge with intercept."""
    mu = xtr.mean(axis=0)
    constant = np.all(xtr == xtr[0], axis=0)
    mu[constant] = xtr[0, constant]
    scale = np.ones(xtr.shape[1])
    if zscore:
        with np.errstate(divide="ignore"):
            scale = 1.0 / np.sqrt(((xtr - mu) ** 2).mean(axis=0))
        scale[constant] = 0.0
    xc, xt = (xtr - mu) * scale, (xte - mu) * scale
    ym = ytr.mean(axis=0)
    yc = ytr - ym
    n, d = xc.shape
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    lam = s ** 2
    keep = lam > lam.max() * max(n, d) * np.finfo(float).eps
    u, s, vt, lam = u[:, keep], s[keep], vt[keep], lam[keep]
    uty = u.T @ yc
    loo = np.empty((len(alphas), yc.shape[1]))
    for a, alpha in enumerate(alphas):
        shrink = lam / (lam + alpha)
        h = (u ** 2) @ shrink + 1.0 / n
        fitted = u @ (shrink[:, None] * uty)
        loo[a] = (((yc - fitted) / (1.0 - h)[:, None]) ** 2).mean(axis=0)
    chosen = np.argmin(loo, axis=0)
    best = np.array([alphas[c] for c in chosen])
    pred = np.empty((xt.shape[0], yc.shape[1]))
    for c, alpha in enumerate(best):
        w = vt.T @ ((s / (lam + alpha)) * uty[:, c])
        pred[:, c] = ym[c] + xt @ w
    return best, pred, xc, xt


def cross_check_sklearn(xc, xt, ytr, alphas, best, pred):
    """sklearn's RidgeCV (efficient LOO, alpha per target) on the same prepared inputs."""
    try:
        from sklearn.linear_model import RidgeCV
    except ImportError:
        return False
    model = RidgeCV(alphas=alphas, alpha_per_target=True, fit_intercept=True).fit(xc, ytr)
    assert np.array_equal(np.atleast_1d(model.alpha_), best), (model.alpha_, best)
    assert np.allclose(model.predict(xt), pred, rtol=0, atol=1e-7), "sklearn predictions differ"
    return True


def r_squared(truth, pred):
    ss_tot = ((truth - truth.mean()) ** 2).sum()
    ss_res = ((truth - pred) ** 2).sum()
    if ss_tot > 0:
        return 1.0 - ss_res / ss_tot
    return 1.0 if ss_res == 0 else 0.0


def make_regression_case(seed, name, n, d, k, m, zscore, latent, n_folds=5):
    rng = np.random.default_rng(seed)
    if latent is None:
        x = rng.normal(size=(n, d))
    else:  # low-rank structure plus noise, so a wide X (d > n) is still learnable
        x = rng.normal(size=(n, latent)) @ rng.normal(size=(latent, d)) + 0.3 * rng.normal(size=(n, d))
    x = x * rng.uniform(0.2, 5.0, size=d) + rng.uniform(-3, 3, size=d)
    if zscore:
        x[:, 2] = 1.7
    # Dimensions from strongly predictable to pure noise; non-negative-ish like VICE.
    if latent is None:
        w = rng.normal(size=(d, k)) / np.sqrt(d) / x.std(axis=0)[:, None]
    else:
        # weights in the span of the leading directions of x
        top = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)[2][:latent]
        w = top.T @ rng.normal(size=(latent, k))
        w /= ((x - x.mean(axis=0)) @ w).std(axis=0)
    strength = np.linspace(3.0, 0.0, k)
    v = (x - x.mean(axis=0)) @ w * strength + rng.normal(size=(n, k)) + 2.0
    t = sample_triplets(rng, v, m)
    folds = [np.sort(f) for f in np.array_split(rng.permutation(n), n_folds)]
    predicted = np.empty_like(v)
    r2, chosen, sklearn_checked = [], [], True
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        best, pred, xc, xt = ridge_loo(x[train], v[train], x[test], ALPHAS, zscore)
        sklearn_checked &= cross_check_sklearn(xc, xt, v[train], ALPHAS, best, pred)
        predicted[test] = pred
        r2.append([r_squared(v[test, c], pred[:, c]) for c in range(k)])
        chosen.append(best.tolist())
    pred_ooo, acc = ooo(predicted, t, "cosine")
    _, ceiling = ooo(v, t, "cosine")
    return {
        "name": name, "n": n, "d": d, "k": k, "zscore": zscore, "alphas": ALPHAS,
        "x": x.ravel().tolist(), "v": v.ravel().tolist(), "triplets": t.ravel().tolist(),
        "folds": [f.tolist() for f in folds],
        "chosen_alphas": chosen, "r2": r2, "predicted": predicted.ravel().tolist(),
        "ooo_predictions": pred_ooo.tolist(), "ooo_accuracy": acc, "embedding_accuracy": ceiling,
        "sklearn_checked": bool(sklearn_checked),
    }


REGRESSION_CASES = [
    ("primal", 150, 20, 6, 3000, False, None),
    ("kernel", 100, 250, 4, 2000, False, 8),
    ("zscore_constant_column", 120, 15, 3, 2000, True, None),
]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ooo_cases = [make_ooo_case(5000 + i, *c) for i, c in enumerate(OOO_CASES)]
    regression_cases = [make_regression_case(6000 + i, *c) for i, c in enumerate(REGRESSION_CASES)]
    out = {
        "generator": "scripts/ref_alignment.py",
        "numpy_version": np.__version__,
        "ooo_cases": ooo_cases,
        "regression_cases": regression_cases,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
    for c in ooo_cases:
        accs = ", ".join(f"{k} {c[k]['accuracy']:.4f} ({c[k]['ties']} ties)"
                         for k in ["cosine", "euclidean", "dot"])
        print(f"ooo case {c['name']}: {accs}")
    for c in regression_cases:
        mean_r2 = np.mean(c["r2"], axis=0)
        print(f"regression case {c['name']}: mean R2 per dim {np.round(mean_r2, 3).tolist()}, "
              f"OOOA predicted {c['ooo_accuracy']:.4f} vs embedding {c['embedding_accuracy']:.4f}, "
              f"sklearn cross-check {c['sklearn_checked']}")
    print(f"wrote {len(ooo_cases)} odd-one-out cases and {len(regression_cases)} regression "
          f"cases to {sys.argv[1]}")


if __name__ == "__main__":
    main()
