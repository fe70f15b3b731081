#!/usr/bin/env python3
"""Dense-probe benchmark (issue: "Speed and scale"): the closed-form fits of probe::dense against
scikit-learn on the same data, in one run, with equal numbers.

Data (seeded): N training images of H x W tokens x C channels (spatially smooth random features,
float32), a continuous target at token resolution that is a linear map of the features plus
noise, and a mask at twice the token resolution (so each token's foreground fraction is 0, 1/4,
1/2, 3/4 or 1). The fits:
  - ridge: diffprobe's NormalEquations + solve, against
    Ridge(alpha, fit_intercept=False, solver="cholesky") on the (N*H*W) x C token matrix;
  - soft-label logistic: diffprobe's Newton fit, against
    LogisticRegression(C=1/l2, fit_intercept=False, solver="lbfgs") with every token doubled and
    weighted p / 1 - p (the reference of scripts/ref_dense_probe.py).
Each side is timed on its fit alone (data already in memory, float64 for scikit-learn as it
converts anyway, conversion not timed). Prints the seconds, the ratio and the largest weight
differences (ridge relative to the largest weight; logistic absolute).

Usage: scripts/bench-dense [--n N] [--h H] [--w W] [--c C] [--seed S]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-bin", required=True)
    ap.add_argument("--n", type=int, default=246)
    ap.add_argument("--h", type=int, default=16)
    ap.add_argument("--w", type=int, default=16)
    ap.add_argument("--c", type=int, default=320)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    n, h, w, c = a.n, a.h, a.w, a.c
    x = rng.normal(size=(n, h, w, c)).astype(np.float32)
    x[:, 1:] += 0.5 * x[:, :-1]
    x[:, :, 1:] += 0.5 * x[:, :, :-1]
    beta = rng.normal(size=c) / np.sqrt(c)
    z = x.reshape(n, h * w, c).astype(np.float64) @ beta
    y = z + 0.3 * rng.normal(size=z.shape)
    fine = np.repeat(np.repeat(z.reshape(n, h, w), 2, axis=1), 2, axis=2)
    mask = (fine + 0.5 * rng.normal(size=fine.shape)) > 0
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f) for f in ("x.f32", "y.f64", "m.u8")]
        x.astype("<f4").tofile(paths[0])
        y.astype("<f8").tofile(paths[1])
        mask.astype(np.uint8).tofile(paths[2])
        out = subprocess.run(
            [a.bench_bin, *paths, str(n), str(h), str(w), str(c), str(a.alpha), str(a.l2)],
            check=True, capture_output=True, text=True,
        ).stdout.splitlines()
    ridge_s = float(out[0].split()[1])
    logistic_s = float(out[1].split()[1])
    iterations = out[1].split()[3]
    shared_s = float(out[1].split()[5])
    w_ridge = np.array([float(v) for v in out[2].split()])
    w_logistic = np.array([float(v) for v in out[3].split()])

    X = x.reshape(n * h * w, c).astype(np.float64)
    start = time.perf_counter()
    ref = Ridge(alpha=a.alpha, fit_intercept=False, solver="cholesky").fit(X, y.ravel())
    sk_ridge_s = time.perf_counter() - start
    p = mask.reshape(n, h, 2, w, 2).mean(axis=(2, 4)).ravel()
    X2 = np.vstack([X, X])
    labels = np.concatenate([np.ones(len(p)), np.zeros(len(p))])
    weights = np.concatenate([p, 1 - p])
    start = time.perf_counter()
    lr = LogisticRegression(C=1 / a.l2, fit_intercept=False, tol=1e-10, max_iter=10000)
    lr.fit(X2, labels, sample_weight=weights)
    sk_logistic_s = time.perf_counter() - start

    d_ridge = np.abs(w_ridge - ref.coef_).max() / np.abs(ref.coef_).max()
    d_logistic = np.abs(w_logistic - lr.coef_.ravel()).max()
    print(f"dense probes: N = {n} training images, {h} x {w} tokens x {c} channels ({n * h * w} token rows)")
    print(f"  ridge     diffprobe {ridge_s:8.3f} s   scikit-learn {sk_ridge_s:8.3f} s   ratio {sk_ridge_s / ridge_s:6.1f} x   max rel. weight diff {d_ridge:.1e}")
    print(f"  logistic  diffprobe {logistic_s:8.3f} s   scikit-learn {sk_logistic_s:8.3f} s   ratio {sk_logistic_s / logistic_s:6.1f} x   max abs. weight diff {d_logistic:.1e} (iterations {iterations}, scikit-learn's lbfgs {lr.n_iter_[0]})")
    print(f"  logistic, XᵀX shared with the ridge (as the dense unit fits a mask beside a map): diffprobe {shared_s:8.3f} s   ratio {sk_logistic_s / shared_s:6.1f} x")
    if d_ridge > 1e-8 or d_logistic > 1e-4:
        print("bench-dense: the fits differ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
