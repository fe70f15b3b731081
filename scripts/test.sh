#!/usr/bin/env bash
# The test command: ./scripts/test.sh
#
# 1. ./scripts/setup.sh --no-build  (system packages, .venv, data/demo; quick when done)
# 2. the scikit-learn reference for the probe maths (scripts/ref_probe.py, in .venv) and the
#    numpy reference for the odd-one-out alignment analyses (scripts/ref_alignment.py)
# 3. cargo test --release --workspace: unit tests, the probe crate's tests against the
#    reference, the capture batch-invariance table (every model and capture mode at batch sizes
#    1, 2, 3, 64 in two orders: worker/src/capture/batch_invariance.rs) and the batched parity
#    with diffusers (worker/src/capture/sd/batch_parity.rs), and the end-to-end tests (real
#    worker processes, kill -9, resume, MiniLM parity)
# 4. the demo, as a user runs it, into target/demo-check, checked for every report file
#    (and its alignment part on the synthetic triplets: above chance, below the rating space),
#    and its null control (a random-weight tiny SD), checked to be significant at the nominal rate,
#    and the prompt-directions, dense-probe and semantic-lens demos (jobs/demo-directions.toml,
#    jobs/demo-dense.toml, jobs/demo-lens.toml), checked against their snapshots
# 5. the demo's report.html in headless Chromium (scripts/check-report-html.sh): no console
#    errors, every figure present; the screenshot is kept at target/report-screenshot.png
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

echo "test: setup"
./scripts/setup.sh --no-build

echo "test: scikit-learn reference (PCA + Ridge)"
mkdir -p target
.venv/bin/python scripts/ref_probe.py target/sklearn_ref.json
.venv/bin/python scripts/ref_alignment.py target/alignment_ref.json
.venv/bin/python scripts/ref_dense_probe.py target/dense_ref.json
.venv/bin/python scripts/ref_semantic.py target/semantic_ref.json
.venv/bin/python scripts/ref_directions.py target/directions_ref.json

echo "test: cargo test --release --workspace"
export DIFFPROBE_SKLEARN_REF="$ROOT/target/sklearn_ref.json"
export DIFFPROBE_ALIGNMENT_REF="$ROOT/target/alignment_ref.json"
export DIFFPROBE_DENSE_REF="$ROOT/target/dense_ref.json"
export DIFFPROBE_SEMANTIC_REF="$ROOT/target/semantic_ref.json"
export DIFFPROBE_DIRECTIONS_REF="$ROOT/target/directions_ref.json"
export DIFFPROBE_REQUIRE_REFS=1
# --lib --tests --examples: unit and integration tests and the examples' build, no doc-tests
# (there are none; their empty "0 passed" blocks would be the runner's last words) and no test
# harness for the `diffprobe` binary (`test = false`: it has no tests; --all-targets, through
# --bins, would link one anyway).
cargo test --release --workspace --locked --lib --tests --examples 2>&1 | tee target/cargo-test.log
cargo_passed=$(grep -E '^test result: ok\.' target/cargo-test.log | awk '{s += $4} END {print s + 0}')

echo "test: the demo, end to end"
rm -rf target/demo-check
start=$(date +%s)
./target/release/diffprobe run jobs/demo.toml --set job.output_dir=target/demo-check
elapsed=$(( $(date +%s) - start ))
for f in rmse.parquet significance.parquet summary.parquet alignment.parquet report.md report.html; do
    test -s "target/demo-check/demo/report/$f" || { echo "test: demo report lacks $f" >&2; exit 1; }
done
.venv/bin/python - <<'PY'
import pandas as pd
s = pd.read_parquet("target/demo-check/demo/report/summary.parquet")
best = s[s.group == "all"].sort_values("mean_rmse").iloc[0]
assert len(s[s.group == "all"]) == 14, s
assert best.pct_significant == 100.0 and best.mean_relative_reduction > 0.1, best
print(f"test: demo ok: best representation {best.representation}, mean RMSE {best.mean_rmse:.4f}")
# The alignment part (synthetic triplets, docs/demo-data.md): every representation scored, the
# best clearly above chance (1/3; SE 0.003 at 20,000 triplets), below the rating space itself.
a = pd.read_parquet("target/demo-check/demo/report/alignment.parquet")
o = a[(a.analysis == "odd_one_out") & (a.distance == "cosine")]
top = o.sort_values("accuracy", ascending=False).iloc[0]
ceiling = a[(a.analysis == "human_embedding") & (a.distance == "cosine")].accuracy.iloc[0]
assert len(o) == 14 and (o.n_triplets == 20000).all(), o
assert 1 / 3 + 0.02 < top.accuracy < ceiling, (top, ceiling)
print(f"test: demo alignment ok: best {top.representation}, cosine OOOA {top.accuracy:.3f} (rating space {ceiling:.3f})")
PY
echo "test: demo took ${elapsed} s"

echo "test: the null control (random-weight tiny SD, jobs/demo-sd-null.toml)"
start=$(date +%s)
./target/release/diffprobe run jobs/demo-sd-null.toml --set job.output_dir=target/demo-check
./target/release/diffprobe report target/demo-check/demo-sd-null --json > target/demo-sd-null.json
grep -q "Verdict: consistent with no knowledge" target/demo-check/demo-sd-null/report/report.md \
    || { echo "test: the null control is not at the nominal rate" >&2; exit 1; }
.venv/bin/python - <<'PY'
import json
r = json.load(open("target/demo-sd-null.json"))
rate = r["per_fold_significant"] / r["per_fold_tests"]
significant = [s for s in r["summary"] if s["group"] == "all" and s["pct_significant"] > 0]
assert r["null_control"] and 0.02 <= rate <= 0.08 and not significant, (rate, significant)
print(f"test: null control ok: per-fold p < 0.05 in {100 * rate:.1f} % of {r['per_fold_tests']} tests")
PY
echo "test: null control took $(( $(date +%s) - start )) s"

echo "test: prompt directions (tiny SD + LoRA, LCM, paired noise: jobs/demo-directions.toml)"
start=$(date +%s)
./target/release/diffprobe run jobs/demo-directions.toml --set job.output_dir=target/demo-check
for f in directions.parquet clusters.parquet report.md report.html; do
    test -s "target/demo-check/demo-directions/report/$f" || { echo "test: demo-directions has no $f" >&2; exit 1; }
done
echo "test: directions demo took $(( $(date +%s) - start )) s"

echo "test: dense probes (tiny SD over synthetic scenes, real-image mode: jobs/demo-dense.toml)"
start=$(date +%s)
./target/release/diffprobe run jobs/demo-dense.toml --set job.output_dir=target/demo-check
test -s target/demo-check/demo-dense/report/dense.parquet || { echo "test: demo-dense has no dense.parquet" >&2; exit 1; }
echo "test: dense demo took $(( $(date +%s) - start )) s"

echo "test: the semantic lens (tiny SD over the scenes' objects: jobs/demo-lens.toml)"
start=$(date +%s)
./target/release/diffprobe run jobs/demo-lens.toml --set job.output_dir=target/demo-check
test -s target/demo-check/demo-lens/report/semantic.parquet || { echo "test: demo-lens has no semantic.parquet" >&2; exit 1; }
echo "test: lens demo took $(( $(date +%s) - start )) s"

echo "test: the demos' report.md against their snapshots (coordinator/src/report/snapshots)"
# After an intended change to the report, copy the new report.md over its snapshot and review
# the diff.
for run in demo demo-sd-null demo-directions demo-dense demo-lens; do
    diff -u "coordinator/src/report/snapshots/${run}_report.md" "target/demo-check/$run/report/report.md" \
        || { echo "test: $run's report.md differs from its snapshot" >&2; exit 1; }
done

echo "test: report.html in headless Chromium"
./scripts/check-report-html.sh target/demo-check/demo/report/report.html target/report-screenshot.png
# The null control's report: the U-Net panels (tap × denoising step) of an SD run.
./scripts/check-report-html.sh target/demo-check/demo-sd-null/report/report.html target/report-screenshot-sd.png
# The directions demo's report: β bars and the query map (Figure 8).
./scripts/check-report-html.sh target/demo-check/demo-directions/report/report.html target/report-screenshot-directions.png
# The dense demo's report: the tap × noise-level heat-maps (Figure 9).
./scripts/check-report-html.sh target/demo-check/demo-dense/report/report.html target/report-screenshot-dense.png
./scripts/check-report-html.sh target/demo-check/demo-lens/report/report.html target/report-screenshot-lens.png

echo "tests: $((cargo_passed + 6)) passed, 0 failed"
