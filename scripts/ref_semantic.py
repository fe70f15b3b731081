#!/usr/bin/env python3
"""Reference numbers of the semantic lens (science-2.md §L), in scipy, scikit-learn and numpy.

Usage:
    .venv/bin/python scripts/ref_semantic.py OUT.json
    DIFFPROBE_SEMANTIC_REF=OUT.json cargo test --release -p coordinator --test e2e semantic

Cases are planted classes f = mu_c + sigma * eps (n x d, row-major), with class labels and image
ids (several objects per image). Per case and distance (cosine, euclidean, cityblock, chebyshev,
correlation -- the Rust names cosine, euclidean, l1, linf, correlation): the scipy `cdist` matrix
(diagonal set to 0), and on it
- "silhouette": sklearn silhouette_score(D, classes, metric="precomputed");
- "auc": sklearn roc_auc_score(same class, -D) over the pairs i < j from different images;
- "ratio": mean D of different-class over same-class pairs from different images;
- "knn1", "knn5": plain numpy leave-one-out k-NN: neighbours are the items from other images,
  stable-sorted by distance (ties by index); majority vote, a tied vote to the tied class whose
  member ranks first; items without neighbours not scored;
- "map_at_r": numpy mAP@R with the same neighbours, R = same-class neighbours, R = 0 not scored.
"""

import json
import sys

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score, silhouette_score

METRICS = {"cosine": "cosine", "euclidean": "euclidean", "l1": "cityblock",
           "linf": "chebyshev", "correlation": "correlation"}


def neighbours(D, images, i):
    cand = np.flatnonzero(images != images[i])
    return cand[np.argsort(D[i, cand], kind="stable")]


def knn(D, classes, images, k):
    hits = []
    for i in range(len(classes)):
        nb = neighbours(D, images, i)[:k]
        if len(nb) == 0:
            continue
        labels = classes[nb]
        counts = {c: int((labels == c).sum()) for c in labels}
        best = max(counts.values())
        winner = next(c for c in labels if counts[c] == best)
        hits.append(winner == classes[i])
    return float(np.mean(hits))


def map_at_r(D, classes, images):
    aps = []
    for i in range(len(classes)):
        nb = neighbours(D, images, i)
        rel = classes[nb] == classes[i]
        r = int(rel.sum())
        if r == 0:
            continue
        top = rel[:r]
        prec = np.cumsum(top) / np.arange(1, r + 1)
        aps.append(float((prec * top).sum() / r))
    return float(np.mean(aps))


def pair_scores(D, classes, images):
    i, j = np.triu_indices(len(classes), 1)
    keep = images[i] != images[j]
    i, j = i[keep], j[keep]
    same = classes[i] == classes[j]
    d = D[i, j]
    return float(roc_auc_score(same, -d)), float(d[~same].mean() / d[same].mean())


def case(name, rng, n_classes, per, d, sigma, per_image):
    mu = rng.normal(size=(n_classes, d)) * 2.0
    classes = np.repeat(np.arange(n_classes), per)
    f = mu[classes] + sigma * rng.normal(size=(len(classes), d))
    images = rng.permutation(len(classes)) // per_image
    out = {"name": name, "n": len(classes), "d": d, "features": f.ravel().tolist(),
           "classes": classes.tolist(), "images": images.tolist()}
    for rust, scipy_name in METRICS.items():
        D = cdist(f, f, metric=scipy_name)
        np.fill_diagonal(D, 0.0)
        auc, ratio = pair_scores(D, classes, images)
        out[rust] = {
            "matrix": D.ravel().tolist(),
            "silhouette": float(silhouette_score(D, classes, metric="precomputed")),
            "auc": auc,
            "ratio": ratio,
            "knn1": knn(D, classes, images, 1),
            "knn5": knn(D, classes, images, 5),
            "map_at_r": map_at_r(D, classes, images),
        }
    return out


def main():
    rng = np.random.default_rng(3)
    cases = [
        case("separated", rng, 4, 12, 6, 0.5, 2),
        case("overlapping", rng, 5, 14, 10, 3.0, 3),
        case("noise", rng, 3, 20, 8, 50.0, 4),
    ]
    with open(sys.argv[1], "w") as fh:
        json.dump({"semantic_cases": cases}, fh)


if __name__ == "__main__":
    main()
