#!/usr/bin/env python3
"""Benchmark of the attribute probe (science.md B1, issue case (a)); run by scripts/bench-probes.

For each D it writes one seeded data set (X: N x D float32, Y: N x J float64) to a temporary
folder, runs diffprobe's `bench` example on it (probe_folds over K folds, B permutations, P = 120,
alpha = 150, single-threaded: faer Par::Seq), then a scikit-learn pipeline doing the same work on
the same data and the same folds (X widened to float64, as diffprobe does):

  naive  per fold: make_pipeline(PCA(120, svd_solver='full'), Ridge(150)) fitted for the
         observed targets (all J at once) and refitted for each of the B permutations of the
         training targets, then predicting the test fold. Timed on --sk-perms permutations of
         --sk-folds folds and extrapolated linearly to B permutations and K folds.
  shared per fold: PCA fitted once, then one multi-target Ridge on the J * (B + 1) observed and
         permuted target columns (what a careful scikit-learn user would write). Timed on
         --sk-folds folds, extrapolated to K.

Prints both times and the ratios sklearn / diffprobe, and the summed observed RMSE of both as a
check that they computed the same probes. BLAS threads are set by the launcher (default 1).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline


def make_data(n, d, j, seed):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 32))
    x = (latent @ rng.normal(size=(32, d)) + rng.normal(size=(n, d))).astype(np.float32)
    w = rng.normal(size=(32, j)) * np.linspace(1.0, 0.0, j)
    y = latent @ w + rng.normal(size=(n, j)) * 3.0
    return x, y


def rmse_sum(pred, truth):
    return float(np.sqrt(((pred - truth) ** 2).mean(axis=0)).sum())


def run_sklearn(x, y, folds, b, sk_perms, sk_folds, p, alpha, seed):
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    naive_fold_times, shared_fold_times, obs_sum = [], [], 0.0
    for f, test in enumerate(folds[:sk_folds]):
        train = np.setdiff1d(np.arange(n), test)
        xtr, xte, ytr, yte = x[train], x[test], y[train], y[test]
        # naive: observed fit, then sk_perms permuted refits, each the full pipeline
        t0 = time.perf_counter()
        model = make_pipeline(PCA(n_components=p, svd_solver='full'), Ridge(alpha=alpha))
        pred = model.fit(xtr, ytr).predict(xte)
        t_obs = time.perf_counter() - t0
        obs_sum += rmse_sum(pred, yte)
        t0 = time.perf_counter()
        for _ in range(sk_perms):
            yp = ytr[rng.permutation(len(train))]
            model = make_pipeline(PCA(n_components=p, svd_solver='full'), Ridge(alpha=alpha))
            perm_pred = model.fit(xtr, yp).predict(xte)
            np.sqrt(((perm_pred - yte) ** 2).mean(axis=0))
        t_perm = (time.perf_counter() - t0) / max(sk_perms, 1)
        naive_fold_times.append(t_obs + b * t_perm)
        # shared: one PCA, one multi-target ridge over all permutations
        t0 = time.perf_counter()
        pca = PCA(n_components=p, svd_solver='full').fit(xtr)
        ztr, zte = pca.transform(xtr), pca.transform(xte)
        cols = [ytr] + [ytr[rng.permutation(len(train))] for _ in range(b)]
        big = np.concatenate(cols, axis=1)
        pred_all = Ridge(alpha=alpha).fit(ztr, big).predict(zte)
        np.sqrt(((pred_all - np.tile(yte, b + 1)) ** 2).mean(axis=0))
        shared_fold_times.append(time.perf_counter() - t0)
    scale = len(folds) / len(naive_fold_times)
    return sum(naive_fold_times) * scale, sum(shared_fold_times) * scale, obs_sum


def run_himalaya_bench(args):
    """Issue case (b): inner 5-fold per-target alpha selection + refit + predict per outer fold,
    diffprobe (probe_fold, alpha_inner_folds = 5, full-rank P, no permutations) against himalaya
    KernelRidgeCV(kernel='linear', fit_intercept=True, cv=<the same inner splits>) on the same
    data and folds. Full-rank P makes PCA + ridge equal to centred linear kernel ridge."""
    import himalaya
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidgeCV
    set_backend("numpy")
    n, j, k, inner = args.n, args.j, args.k, args.inner_folds
    alphas = np.logspace(args.alpha_lo, args.alpha_hi, args.n_alphas)
    grid = ",".join(repr(float(a)) for a in alphas)
    full_rank = str(n)  # P cap >= n_train: full rank
    print(f"bench-probes --himalaya: N={n} J={j} outer K={k} x inner {inner} folds, "
          f"{len(alphas)} alphas logspace({args.alpha_lo}, {args.alpha_hi}), full-rank P, no "
          f"permutations; numpy {np.__version__}, himalaya {himalaya.__version__} (numpy "
          f"backend, float64); BLAS threads OMP={os.environ.get('OMP_NUM_THREADS', 'unset')} "
          f"OPENBLAS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; diffprobe "
          f"single-threaded (Par::Seq)")
    with tempfile.TemporaryDirectory(prefix="bench-probes-", dir=args.tmpdir) as tmp:
        for d in args.d:
            x32, y = make_data(n, d, j, args.seed + d)
            xpath, ypath = os.path.join(tmp, f"x{d}.f32"), os.path.join(tmp, f"y{d}.f64")
            x32.astype("<f4").tofile(xpath)
            y.astype("<f8").tofile(ypath)
            timed = args.timed_folds or k
            out = subprocess.run(
                [args.bench_bin, xpath, ypath, str(n), str(d), str(j), str(k), "0", grid,
                 str(inner), full_rank, str(timed)],
                check=True, capture_output=True, text=True).stdout
            fields = dict(line.split(maxsplit=1) for line in out.strip().splitlines())
            t_rust = float(fields["diffprobe_seconds"])
            with open(xpath + ".folds") as f:
                folds = [np.array([int(v) for v in line.split()]) for line in f if line.strip()]
            with open(xpath + ".inner") as f:
                inner_all = [np.array([int(v) for v in line.split()]) for line in f if line.strip()]
            pred0 = np.fromfile(xpath + ".pred0", dtype="<f8").reshape(len(folds[0]), j)
            alpha0 = np.loadtxt(xpath + ".alpha0")
            x = x32.astype(np.float64)
            del x32
            hima_fold_t, max_diff, alpha_agree = [], None, None
            for f in range(timed):
                test = folds[f]
                train = np.setdiff1d(np.arange(n), test)
                pos = {s: q for q, s in enumerate(train)}
                splits = []
                for v in inner_all[f * inner:(f + 1) * inner]:
                    val = np.array([pos[s] for s in v])
                    splits.append((np.setdiff1d(np.arange(len(train)), val), val))
                t0 = time.perf_counter()
                model = KernelRidgeCV(alphas=alphas, kernel="linear", fit_intercept=True,
                                      cv=splits, warn=False)
                pred = model.fit(x[train], y[train]).predict(x[test])
                hima_fold_t.append(time.perf_counter() - t0)
                if f == 0:
                    max_diff = float(np.abs(pred - pred0).max())
                    alpha_agree = int(np.isclose(model.best_alphas_, alpha0, rtol=1e-9).sum())
                del model, pred
                print(f"  D={d} fold {f}: himalaya {hima_fold_t[-1]:.2f} s", flush=True)
            t_hima = sum(hima_fold_t)
            part = f" ({timed} of {k} outer folds timed)" if timed < k else ""
            print(f"\nD={d}{part}: diffprobe {t_rust:.2f} s, himalaya KernelRidgeCV "
                  f"{t_hima:.2f} s -> ratio himalaya/diffprobe {t_hima / t_rust:.2f}x")
            print(f"  fold 0 check: chosen alpha equal for {alpha_agree}/{j} targets, max |pred "
                  f"diff| = {max_diff:.3e}")
            sys.stdout.flush()
            del x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-bin", required=True, help="path of diffprobe's bench example")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--d", type=int, nargs="+", default=[384])
    ap.add_argument("--j", type=int, default=7)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--b", type=int, default=1000)
    ap.add_argument("--sk-perms", type=int, default=5,
                    help="permuted pipeline refits timed per fold (naive variant)")
    ap.add_argument("--sk-folds", type=int, default=None,
                    help="folds timed on the sklearn side (default: all for D <= 4096, else 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--himalaya", action="store_true",
                    help="issue case (b): inner K-fold alpha selection vs himalaya KernelRidgeCV")
    ap.add_argument("--inner-folds", type=int, default=5)
    ap.add_argument("--n-alphas", type=int, default=10)
    ap.add_argument("--alpha-lo", type=float, default=0.0, help="log10 of the smallest alpha")
    ap.add_argument("--alpha-hi", type=float, default=9.0, help="log10 of the largest alpha")
    ap.add_argument("--timed-folds", type=int, default=None,
                    help="(--himalaya) time only the first outer folds (default all K)")
    ap.add_argument("--tmpdir", default=None)
    args = ap.parse_args()
    if args.himalaya:
        return run_himalaya_bench(args)
    p, alpha = 120, 150.0
    print(f"bench-probes: N={args.n} J={args.j} K={args.k} B={args.b} P={p} alpha={alpha}; "
          f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
          f"BLAS threads OMP={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"diffprobe single-threaded (Par::Seq)")
    with tempfile.TemporaryDirectory(prefix="bench-probes-") as tmp:
        for d in args.d:
            x32, y = make_data(args.n, d, args.j, args.seed + d)
            xpath, ypath = os.path.join(tmp, f"x{d}.f32"), os.path.join(tmp, f"y{d}.f64")
            x32.astype("<f4").tofile(xpath)
            y.astype("<f8").tofile(ypath)
            def run_bench(precision):
                env = dict(os.environ, BENCH_PRECISION=precision)
                out = subprocess.run(
                    [args.bench_bin, xpath, ypath, str(args.n), str(d), str(args.j),
                     str(args.k), str(args.b)],
                    check=True, capture_output=True, text=True, env=env).stdout
                fields = dict(line.split(maxsplit=1) for line in out.strip().splitlines())
                return (float(fields["diffprobe_seconds"]),
                        [float(v) for v in fields["diffprobe_fold_sum_rmse"].split()],
                        int(fields["diffprobe_significant_attribute_folds"]))
            t_rust, rust_folds, sig64 = run_bench("f64")
            t_rust32, rust_folds32, sig32 = run_bench("f32")
            with open(xpath + ".folds") as f:
                folds = [np.array([int(v) for v in line.split()]) for line in f if line.strip()]
            sk_folds = args.sk_folds or (len(folds) if d <= 4096 else 1)
            sk_folds = min(sk_folds, len(folds))
            x = x32.astype(np.float64)
            del x32
            t_naive, t_shared, sk_sum = run_sklearn(
                x, y, folds, args.b, args.sk_perms, sk_folds, p, alpha, args.seed)
            part = " (on the folds timed)" if sk_folds < len(folds) else ""
            print(f"\nD={d}: diffprobe probe_folds, {args.k} folds, B={args.b}: {t_rust:.2f} s "
                  f"(f64); {t_rust32:.2f} s with precision f32 (observed RMSE sum differs by "
                  f"{abs(sum(rust_folds) - sum(rust_folds32)):.1e}; significant (attribute, "
                  f"fold) pairs {sig64} in f64, {sig32} in f32)")
            if d <= 4096:
                grid = ",".join(str(a) for a in np.geomspace(1e-2, 1e5, 8))
                out = subprocess.run(
                    [args.bench_bin, xpath, ypath, str(args.n), str(d), str(args.j),
                     str(args.k), str(args.b), grid],
                    check=True, capture_output=True, text=True).stdout
                t_grid = float(out.split()[1])
                print(f"  diffprobe with a per-attribute alpha chosen by LOO over 8 values "
                      f"(1e-2..1e5): {t_grid:.2f} s (not compared)")
            print(f"  scikit-learn naive (pipeline refit per permutation; timed on "
                  f"{args.sk_perms} permutations x {sk_folds} fold(s), extrapolated linearly to "
                  f"{args.b} x {args.k}): {t_naive:.1f} s  -> ratio sklearn/diffprobe "
                  f"{t_naive / t_rust:.1f}x")
            print(f"  scikit-learn shared (PCA once per fold + one multi-target Ridge over "
                  f"{args.b + 1} x J columns; timed on {sk_folds} fold(s), extrapolated to "
                  f"{args.k}): {t_shared:.2f} s  -> ratio {t_shared / t_rust:.1f}x (f64), "
                  f"{t_shared / t_rust32:.1f}x (f32)")
            rust_sum = sum(rust_folds[:sk_folds])
            print(f"  check: sum of observed RMSE over attributes and folds{part}: diffprobe "
                  f"{rust_sum:.10f}, scikit-learn {sk_sum:.10f}, |diff| {abs(rust_sum - sk_sum):.2e}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
