#!/usr/bin/env python3
"""Benchmark of the semantic lens (alignment::semantic) against scipy's cdist and the reference
scores of scripts/ref_semantic.py (scikit-learn silhouette and ROC AUC, numpy LOO k-NN and
mAP@R with same-image exclusion) on the same planted matrix, in one run: per distance the wall
time of each side, their ratio and the largest difference of the six scores.

Run through scripts/bench-semantic, which builds the Rust driver first.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.metrics import silhouette_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_semantic import METRICS, knn, map_at_r, pair_scores  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-bin", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--d", type=int, default=1280)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--per-image", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--block-mib", type=int, default=None,
                    help="diffprobe's distance budget in MiB (below N^2 * 8 bytes: row blocks)")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    n, d = a.n, a.d
    classes = rng.integers(0, a.classes, n)
    mu = rng.normal(size=(a.classes, d))
    f = mu[classes] + 2.0 * rng.normal(size=(n, d))
    images = rng.permutation(n) // a.per_image
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, x) for x in ("f.f64", "c.u32", "i.u32")]
        f.astype("<f8").tofile(paths[0])
        classes.astype("<u4").tofile(paths[1])
        images.astype("<u4").tofile(paths[2])
        budget = [str(a.block_mib)] if a.block_mib else []
        out = subprocess.run([a.bench_bin, *paths, str(n), str(d), *budget], check=True,
                             capture_output=True, text=True).stdout.splitlines()
    ours = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in out}
    print(f"semantic lens: N = {n} objects x D = {d}, {a.classes} classes, {a.per_image} objects per image")
    total_ours = total_ref = 0.0
    worst = 0.0
    for rust, scipy_name in METRICS.items():
        start = time.perf_counter()
        D = cdist(f, f, metric=scipy_name)
        np.fill_diagonal(D, 0.0)
        auc, ratio = pair_scores(D, classes, images)
        ref = [knn(D, classes, images, 1), knn(D, classes, images, 5), map_at_r(D, classes, images),
               auc, ratio, float(silhouette_score(D, classes, metric="precomputed"))]
        ref_s = time.perf_counter() - start
        seconds, values = ours[rust][0], ours[rust][1:]
        diff = max(abs(x - y) for x, y in zip(values, ref))
        worst = max(worst, diff)
        total_ours += seconds
        total_ref += ref_s
        print(f"  {rust:<12} diffprobe {seconds:7.2f} s   scipy + reference {ref_s:7.2f} s   "
              f"ratio {ref_s / seconds:5.1f} x   max score diff {diff:.1e}")
    print(f"  all          diffprobe {total_ours:7.2f} s   scipy + reference {total_ref:7.2f} s   "
          f"ratio {total_ref / total_ours:5.1f} x")
    if worst > 1e-9:
        print("bench-semantic: the scores differ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
