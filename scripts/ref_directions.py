#!/usr/bin/env python3
"""Reference numbers of the prompt-direction clusters (science-2.md §H), in scikit-learn and numpy.

Usage:
    .venv/bin/python scripts/ref_directions.py OUT.json
    DIFFPROBE_DIRECTIONS_REF=OUT.json cargo test --release -p coordinator --test e2e directions

Cases are overlapping Gaussian blobs mu_c + sigma * eps (n x d, row-major), L2-normalised as the
Rust pipeline clusters them, with their true classes. Per case:
- "c0": k initial centroids (k distinct points, seeded), and "kmeans": sklearn
  KMeans(n_clusters=k, init=c0, n_init=1, algorithm="lloyd", max_iter=300, tol=0) labels, centers,
  inertia and n_iter;
- "agglomerative": sklearn AgglomerativeClustering(n_clusters=k, metric="cosine",
  linkage="average") labels;
- "metrics": for the pairs (classes, kmeans labels), (classes, agglomerative labels) and a seeded
  random labelling: adjusted_rand_score, normalized_mutual_info_score (arithmetic) and purity
  (numpy); silhouette_score(points, labels, metric="cosine") for the classes and both clusterings.
"""

import json
import sys

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import (adjusted_rand_score, normalized_mutual_info_score,
                             silhouette_score)


def purity(truth, pred):
    return float(sum(np.bincount(truth[pred == c]).max() for c in np.unique(pred)) / len(truth))


def pair(truth, pred):
    return {"truth": truth.tolist(), "predicted": pred.tolist(),
            "ari": float(adjusted_rand_score(truth, pred)),
            "nmi": float(normalized_mutual_info_score(truth, pred)),
            "purity": purity(truth, pred)}


def case(name, rng, k, per, d, sigma):
    mu = rng.normal(size=(k, d)) * 2.0
    classes = np.repeat(np.arange(k), per)
    x = mu[classes] + sigma * rng.normal(size=(len(classes), d))
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    c0 = x[rng.choice(len(x), size=k, replace=False)]
    km = KMeans(n_clusters=k, init=c0, n_init=1, algorithm="lloyd", max_iter=300, tol=0).fit(x)
    agg = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit(x)
    random = rng.integers(0, k, size=len(classes))
    silhouettes = [{"labels": lab.tolist(),
                    "silhouette": float(silhouette_score(x, lab, metric="cosine"))}
                   for lab in (classes, km.labels_, agg.labels_)]
    return {"name": name, "n": len(classes), "d": d, "k": k, "points": x.ravel().tolist(),
            "classes": classes.tolist(), "c0": c0.ravel().tolist(),
            "kmeans": {"labels": km.labels_.tolist(), "centers": km.cluster_centers_.ravel().tolist(),
                       "inertia": float(km.inertia_), "n_iter": int(km.n_iter_)},
            "agglomerative": agg.labels_.tolist(),
            "metrics": [pair(classes, km.labels_), pair(classes, agg.labels_),
                        pair(classes, random)],
            "silhouettes": silhouettes}


def main():
    rng = np.random.default_rng(4)
    cases = [
        case("separated", rng, 4, 15, 8, 0.4),
        case("overlapping", rng, 5, 20, 12, 2.0),
        case("noise", rng, 3, 30, 6, 10.0),
        case("many", rng, 8, 25, 20, 1.5),
    ]
    with open(sys.argv[1], "w") as fh:
        json.dump({"directions_cases": cases}, fh)


if __name__ == "__main__":
    main()
