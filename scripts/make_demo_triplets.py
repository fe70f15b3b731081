#!/usr/bin/env python3
"""Write synthetic odd-one-out triplets for the demo's alignment part.

Usage:
    .venv/bin/python scripts/make_demo_triplets.py data/demo
    .venv/bin/python scripts/make_demo_triplets.py --check data/demo   # exit 0 if up to date

THE TRIPLETS ARE SYNTHETIC. They are not THINGS odd-one-out judgements (those are not on a
package registry); they are sampled by a documented, seeded generative rule from the demo's
own human data, OUTDIR/ratings.csv (written by scripts/make_demo_data.py): the 1,000 nouns'
six Lancaster perceptual strengths and Brysbaert concreteness, taken as a 7-d human space
with the ratings as given (0-5 and 1-5 scales, not rescaled).

Rule (documented in docs/demo-data.md), with numpy.random.default_rng(SEED):
  1. draw N_TRIPLETS triplets of three distinct nouns, each uniformly at random (row by row:
     three integers in [0, 1000), redrawn until distinct);
  2. for each triplet, the Euclidean distances d of its three pairs in the 7-d space give the
     probability that a simulated participant keeps that pair together,
     p(pair) = exp(-d(pair) / TAU) / sum over the three pairs (a Luce choice rule over
     similarities, the generative model of SPoSE / VICE); one pair is drawn from p;
  3. the third noun is the odd one out and is written in the third field.
TAU = 1.0 (in rating units) makes the sampled choice agree with the noise-free rule ("the odd
one out is the noun farthest from the other two") on about 2 of 3 triplets, near the THINGS
noise ceiling (67.7 %), so the human space itself scores about 0.67, not 1.

Writes OUTDIR/triplets.csv (header `kept_1,kept_2,odd_one_out`, noun names), OUTDIR/TRIPLETS.md
(provenance) and, last, OUTDIR/.triplets-complete (a hash of this script and ratings.csv, for
--check). Same inputs => byte-identical outputs.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
from pathlib import Path

SEED = 20240502
N_TRIPLETS = 20_000
TAU = 1.0
HEADER = ["kept_1", "kept_2", "odd_one_out"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(ratings: bytes) -> str:
    return sha256(Path(__file__).read_bytes() + b"\0" + ratings)


def read_space(ratings: bytes) -> tuple[list[str], "np.ndarray", list[str]]:
    import numpy as np

    rows = list(csv.reader(io.StringIO(ratings.decode("utf-8"))))
    header, body = rows[0], rows[1:]
    words = [r[0] for r in body]
    try:
        x = np.array([[float(v) for v in r[1:]] for r in body], dtype=np.float64)
    except ValueError as e:
        sys.exit(f"make_demo_triplets: ratings.csv has a missing or non-numeric rating: {e}")
    return words, x, header[1:]


def sample(x: "np.ndarray") -> tuple["np.ndarray", float]:
    """The triplets (rows of x; the third is the odd one out) and the share of triplets where
    the sampled choice equals the noise-free rule."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    n = x.shape[0]
    t = rng.integers(0, n, size=(N_TRIPLETS, 3))
    while True:
        bad = (t[:, 0] == t[:, 1]) | (t[:, 0] == t[:, 2]) | (t[:, 1] == t[:, 2])
        if not bad.any():
            break
        t[bad] = rng.integers(0, n, size=(int(bad.sum()), 3))
    pairs = [(0, 1), (0, 2), (1, 2)]  # pair k leaves out element 2 - k
    d = np.stack([np.linalg.norm(x[t[:, a]] - x[t[:, b]], axis=1) for a, b in pairs], axis=1)
    logits = -(d - d.min(axis=1, keepdims=True)) / TAU
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(N_TRIPLETS)
    chosen = (u[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, 2)
    agree = float((chosen == d.argmin(axis=1)).mean())
    kept = np.array(pairs)[chosen]
    rows = np.arange(N_TRIPLETS)
    out = np.stack(
        [t[rows, kept[:, 0]], t[rows, kept[:, 1]], t[rows, 3 - kept[:, 0] - kept[:, 1]]], axis=1
    )
    return out, agree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--check", action="store_true",
                    help="exit 0 if OUTDIR's triplets are up to date, else 1")
    args = ap.parse_args()
    out: Path = args.outdir
    ratings_path = out / "ratings.csv"
    if not ratings_path.is_file():
        if args.check:
            sys.exit(1)
        sys.exit(f"make_demo_triplets: {ratings_path} is missing; run scripts/make_demo_data.py first")
    ratings = ratings_path.read_bytes()
    stamp = out / ".triplets-complete"
    want = f"inputs {digest(ratings)}"
    if args.check:
        ok = (stamp.is_file() and (out / "triplets.csv").is_file()
              and stamp.read_text().splitlines()[:1] == [want]
              and f"triplets.csv {sha256((out / 'triplets.csv').read_bytes())}"
              in stamp.read_text().splitlines())
        sys.exit(0 if ok else 1)
    if stamp.exists():
        stamp.unlink()
    words, x, dims = read_space(ratings)
    triplets, agree = sample(x)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for a, b, c in triplets:
        w.writerow([words[a], words[b], words[c]])
    data = buf.getvalue().encode("utf-8")
    (out / "triplets.csv").write_bytes(data)
    (out / "TRIPLETS.md").write_text(f"""# Demo triplets (synthetic)

`triplets.csv` was written by `scripts/make_demo_triplets.py` (see `docs/demo-data.md`).
Do not edit; rerun `./scripts/setup.sh`.

**These are not human odd-one-out judgements** (not THINGS): they are sampled by a seeded
generative rule from the human ratings in `ratings.csv`.

- Space: the {len(words)} nouns' {len(dims)} ratings as given ({", ".join(dims)}).
- {N_TRIPLETS} triplets of three distinct nouns, uniformly at random
  (`numpy.random.default_rng({SEED})`).
- Choice: the pair kept together is drawn with p(pair) = exp(-d / {TAU}) / sum over the three
  pairs, d = Euclidean distance in the space; the third noun (third field) is the odd one out.
- The sampled choice equals the noise-free rule (odd one out = the noun farthest from the
  other two) in {100 * agree:.1f} % of triplets.

Header: `{",".join(HEADER)}`. sha256: `{sha256(data)}`. Input `ratings.csv` sha256:
`{sha256(ratings)}`.
""")
    stamp.write_text(f"{want}\ntriplets.csv {sha256(data)}\n")
    print(f"make_demo_triplets: wrote {out / 'triplets.csv'}: {N_TRIPLETS} triplets over "
          f"{len(words)} nouns; sampled choice = noise-free rule in {100 * agree:.1f} %")


if __name__ == "__main__":
    main()
