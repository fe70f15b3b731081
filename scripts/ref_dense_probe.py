#!/usr/bin/env python3
"""Reference fits and metrics of the dense probe (science-2.md section D) from scikit-learn
and scipy.

Usage:
    .venv/bin/python scripts/ref_dense_probe.py OUT.json
    DIFFPROBE_DENSE_REF=$PWD/OUT.json cargo test --release --locked -p coordinator --test e2e dense

For a few seeded cases of N images, each with token features (tokens x C, row-major over an
h x w grid: diffusers' (b, c, h, w) -> (b, h*w, c) order) and full-resolution targets
(H x W = f*h x f*w), it fits on the training images only

  - continuous maps: Ridge(alpha, fit_intercept=False) on the tokens against each target's
    f x f block means;
  - masks: the soft-label no-intercept logistic regression, as
    LogisticRegression(C=1/l2, fit_intercept=False) with every token doubled, labelled 1 with
    sample weight p and 0 with weight 1 - p (p: the block's foreground fraction);

and scores every test image at full resolution: the per-token prediction upsampled with
np.repeat on both axes, then scipy.stats.spearmanr (average ranks) and pearsonr, RMSE, and for
masks Dice (2 sum(m_hat m) + 1e-8) / (sum(m_hat) + sum(m) + 1e-8) of logit > 0 (foreground and
background) and the all-foreground baseline. The Rust test tests/probe_lib/dense.rs requires
ridge weights within 1e-8, logistic weights within 1e-5 and the metrics (recomputed from its
block statistics on these predictions) within 1e-12.
"""

import json
import sys

import numpy as np
import scipy
import sklearn
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import LogisticRegression, Ridge

# name, images, n_test, h, w, f, C, penalty, quantise (levels per unit; 0 = none)
RIDGE_CASES = [
    ("ridge_square", 10, 4, 8, 8, 4, 12, 1.0, 0),
    ("ridge_ties_nonsquare", 9, 3, 4, 6, 3, 7, 0.1, 2),
    ("ridge_wide", 6, 2, 16, 16, 2, 40, 25.0, 0),
]
LOGISTIC_CASES = [
    ("logistic_square", 10, 4, 8, 8, 4, 10, 1.0),
    ("logistic_nonsquare_small_l2", 9, 3, 4, 6, 3, 6, 0.05),
]


def upsample(per_token, h, w, f):
    return np.repeat(np.repeat(per_token.reshape(h, w), f, axis=0), f, axis=1)


def block_means(target, h, w, f):
    return target.reshape(h, f, w, f).mean(axis=(1, 3)).ravel()


def features(rng, n, h, w, c):
    # Spatially smooth-ish features (a random field plus noise), as feature maps are.
    x = rng.normal(size=(n, h, w, c))
    x[:, 1:] += 0.5 * x[:, :-1]
    x[:, :, 1:] += 0.5 * x[:, :, :-1]
    return x.reshape(n, h * w, c)


def continuous_metrics(pred_tokens, target, h, w, f):
    full = upsample(pred_tokens, h, w, f).ravel()
    t = target.ravel()
    rmse = float(np.sqrt(np.mean((full - t) ** 2)))
    if np.all(full == full[0]) or np.all(t == t[0]):
        return {"spearman": None, "pearson": None, "rmse": rmse}
    return {"spearman": float(spearmanr(full, t).statistic),
            "pearson": float(pearsonr(full, t).statistic), "rmse": rmse}


def dice(pred, truth):
    return float((2 * np.sum(pred & truth) + 1e-8) / (np.sum(pred) + np.sum(truth) + 1e-8))


def split(rng, n, n_test):
    perm = rng.permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def ridge_case(seed, name, n, n_test, h, w, f, c, alpha, levels):
    rng = np.random.default_rng(seed)
    x = features(rng, n, h, w, c)
    truth = rng.normal(size=c) / np.sqrt(c)
    targets = []
    for i in range(n):
        t = upsample(x[i] @ truth, h, w, f) + 0.5 * rng.normal(size=(h * f, w * f))
        t = t + 3.0  # an offset: no intercept is fitted, so the fit must cope with it
        if levels:
            t = np.round(t * levels) / levels
        targets.append(t)
    train, test = split(rng, n, n_test)
    xs = np.concatenate([x[i] for i in train])
    ys = np.concatenate([block_means(targets[i], h, w, f) for i in train])
    model = Ridge(alpha=alpha, fit_intercept=False, solver="cholesky").fit(xs, ys)
    preds = [x[i] @ model.coef_ for i in test]
    return {
        "name": name, "h": h, "w": w, "f": f, "c": c, "alpha": alpha,
        "features": [x[i].ravel().tolist() for i in range(n)],
        "targets": [t.ravel().tolist() for t in targets],
        "train": train.tolist(), "test": test.tolist(),
        "weights": model.coef_.tolist(),
        "predictions": [p.tolist() for p in preds],
        "metrics": [continuous_metrics(p, targets[i], h, w, f) for p, i in zip(preds, test)],
    }


def logistic_case(seed, name, n, n_test, h, w, f, c, l2):
    rng = np.random.default_rng(seed)
    x = features(rng, n, h, w, c)
    truth = 2.0 * rng.normal(size=c) / np.sqrt(c)
    masks = []
    for i in range(n):
        prob = 1.0 / (1.0 + np.exp(-upsample(x[i] @ truth, h, w, f)))
        masks.append(rng.uniform(size=prob.shape) < prob)
    train, test = split(rng, n, n_test)
    xs = np.concatenate([x[i] for i in train])
    p = np.concatenate([block_means(masks[i].astype(float), h, w, f) for i in train])
    doubled = np.concatenate([xs, xs])
    labels = np.concatenate([np.ones(len(xs)), np.zeros(len(xs))])
    weights = np.concatenate([p, 1.0 - p])
    model = LogisticRegression(C=1.0 / l2, fit_intercept=False, solver="newton-cholesky",
                               tol=1e-12, max_iter=1000)
    model.fit(doubled, labels, sample_weight=weights)
    coef = model.coef_.ravel()
    logits = [x[i] @ coef for i in test]
    metrics = []
    for z, i in zip(logits, test):
        pred = upsample(z > 0, h, w, f)
        metrics.append({"dice": dice(pred, masks[i]), "dice_background": dice(~pred, ~masks[i]),
                        "all_foreground": dice(np.ones_like(pred), masks[i])})
    return {
        "name": name, "h": h, "w": w, "f": f, "c": c, "l2": l2,
        "features": [x[i].ravel().tolist() for i in range(n)],
        "masks": [m.ravel().astype(int).tolist() for m in masks],
        "train": train.tolist(), "test": test.tolist(),
        "weights": coef.tolist(),
        "logits": [z.tolist() for z in logits],
        "metrics": metrics,
    }


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ridge = [ridge_case(5000 + i, *c) for i, c in enumerate(RIDGE_CASES)]
    logistic = [logistic_case(6000 + i, *c) for i, c in enumerate(LOGISTIC_CASES)]
    out = {
        "generator": "scripts/ref_dense_probe.py",
        "sklearn_version": sklearn.__version__,
        "scipy_version": scipy.__version__,
        "numpy_version": np.__version__,
        "ridge_cases": ridge,
        "logistic_cases": logistic,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
    print(f"wrote {len(ridge)} ridge and {len(logistic)} logistic cases to {sys.argv[1]}")


if __name__ == "__main__":
    main()
