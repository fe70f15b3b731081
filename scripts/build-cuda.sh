#!/usr/bin/env bash
# Build the `diffprobe` binary with candle's CUDA backend on a machine with no GPU and
# no CUDA install, for carrying to a GPU node. See docs/cuda.md.
#
#   ./scripts/build-cuda.sh [OUT_BINARY]      # default: target/cuda/diffprobe
#
# What it does (all state lives in the cache dir; the checkout is only read):
#   1. installs nvcc + headers + static cudart for CUDA 13.0 from NVIDIA's PyPI wheels
#      (pip --no-deps --target) into the cache;
#   2. makes a copy of candle-core (the version in Cargo.lock) whose only change is
#      cudarc's `dynamic-linking` -> `dynamic-loading`, so the binary dlopen()s libcuda,
#      cuBLAS and cuRAND at run time instead of needing them to start;
#   3. copies the workspace sources (git ls-files + untracked, non-ignored files) to the
#      cache and builds `-p coordinator --features cuda` there, with the patch applied by
#      `cargo --config` and a `libcudart.a` (a copy of libcudart_static.a) on the link
#      path (candle-kernels always asks for -lcudart), plus an RPATH for /usr/local/cuda;
#   4. copies the binary to OUT_BINARY and prints its size, NEEDED libraries and RUNPATH,
#      and runs `OUT_BINARY --version` here.
#
# Environment:
#   DIFFPROBE_CUDA_CACHE  cache dir (default ~/.cache/diffprobe-cuda; ~0.3 GB toolkit + ~3 GB cargo target)
#   CUDA_COMPUTE_CAP      GPU architecture for the kernels (default 90 = H100/H200, sm_90a;
#                         80 gives PTX that runs on any GPU >= sm_80)
#   CUDARC_CUDA_VERSION   driver API version cudarc binds (default 13000 = CUDA 13.0, driver >= 580)
#   DIFFPROBE_CUDA_KEEP_DEBUG=1  keep the debug info in OUT_BINARY (default: strip --strip-debug,
#                         ~260 MiB -> ~80 MiB; symbols stay, so backtraces still name functions)
#   PYTHON                interpreter whose pip installs the wheels (default python3)
# Network: PyPI (wheels) and crates.io (cargo); nothing else.
set -euo pipefail

case "${1:-}" in
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
[ $# -le 1 ] || { echo "build-cuda: usage: $0 [OUT_BINARY]" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -eq 1 ]; then OUTBIN="$(realpath -m "$1")"; else OUTBIN="$ROOT/target/cuda/diffprobe"; fi
CACHE="$(realpath -m "${DIFFPROBE_CUDA_CACHE:-$HOME/.cache/diffprobe-cuda}")"
PYTHON="${PYTHON:-python3}"
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"

say() { echo "build-cuda: $*"; }
die() { echo "build-cuda: error: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not on PATH"
command -v readelf >/dev/null && command -v strip >/dev/null || die "readelf/strip not found (Debian: binutils)"
mkdir -p "$CACHE"
# One build at a time per cache dir.
if command -v flock >/dev/null; then
    exec 9>"$CACHE/.lock"
    flock -n 9 || { say "waiting for another build-cuda.sh using $CACHE"; flock 9; }
fi
T0=$(date +%s)

# ------------------------------------------------------------ 1. CUDA 13.0 toolkit (PyPI)
# nvcc 13.0 emits PTX ISA 9.0, which a CUDA 13.0 (580) driver can JIT; newer nvcc output
# would need a newer driver. cudarc 0.19 knows CUDA 11.4..13.4.
CUDA_PKGS="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85"
TK="$CACHE/cuda-13.0"
if [ ! -x "$TK/nvidia/cu13/bin/nvcc" ] || [ "$(cat "$TK/.pins" 2>/dev/null)" != "$CUDA_PKGS" ]; then
    say "toolkit: pip install --no-deps --target $TK ($CUDA_PKGS)"
    "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON -m pip not available"
    rm -rf "$TK.tmp"
    # shellcheck disable=SC2086
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --no-cache-dir \
        --target "$TK.tmp" $CUDA_PKGS
    echo "$CUDA_PKGS" > "$TK.tmp/.pins"
    rm -rf "$TK"; mv "$TK.tmp" "$TK"
else
    say "toolkit: $TK (cached)"
fi
export CUDA_ROOT="$TK/nvidia/cu13"
export PATH="$CUDA_ROOT/bin:$PATH"      # cudarc's build.rs would run plain `nvcc --version`
export NVCC="$CUDA_ROOT/bin/nvcc"       # cudaforge (candle-kernels' build dependency)
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
unset NVCC_CCBIN CUDA_HOME CUDA_PATH 2>/dev/null || true
say "toolkit: $("$NVCC" --version | grep -o 'release [0-9.]*, V[0-9.]*'), CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION"

# candle-kernels emits `-lcudart`; the wheel has only libcudart.so.13 (no unversioned .so),
# so give the linker the static archive under the name it looks for. Nothing of it ends up
# in the binary unless candle's MoE/GGUF kernels are used.
LINKDIR="$CACHE/link"
mkdir -p "$LINKDIR"
cmp -s "$CUDA_ROOT/lib/libcudart_static.a" "$LINKDIR/libcudart.a" \
    || cp "$CUDA_ROOT/lib/libcudart_static.a" "$LINKDIR/libcudart.a"

# ------------------------------------------------------------ 2. workspace copy
# Built from a copy so that the checkout's Cargo.toml, Cargo.lock and target/ are untouched.
SRC="$CACHE/src"
rm -rf "$SRC.new"; mkdir -p "$SRC.new"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z -co --exclude-standard \
        | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -C "$SRC.new" -xf -
    REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    [ -z "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -1)" ] || REV="$REV+dirty"
else
    (cd "$ROOT" && tar --exclude='./target' --exclude='./target-*' --exclude='./data' \
        --exclude='./runs' --exclude='./.venv' --exclude='./.git' -cf - .) | tar -C "$SRC.new" -xf -
    REV="no-git"
fi
rm -rf "$SRC"; mv "$SRC.new" "$SRC"      # same path every time: cargo's cache stays valid
say "sources: copied to $SRC ($REV)"

# ------------------------------------------------------------ 3. patched candle-core
CANDLE_VER="$(awk '/^name = "candle-core"$/ {getline; gsub(/version = |"/, ""); print; exit}' "$SRC/Cargo.lock")"
[ -n "$CANDLE_VER" ] || die "candle-core not found in Cargo.lock"
PATCH="$CACHE/patched/candle-core-$CANDLE_VER"
if ! grep -q '^    "dynamic-loading",$' "$PATCH/Cargo.toml" 2>/dev/null; then
    REG="$(ls -d "$CARGO_HOME"/registry/src/*/"candle-core-$CANDLE_VER" 2>/dev/null | head -1 || true)"
    if [ -z "$REG" ]; then
        say "candle-core $CANDLE_VER: cargo fetch"
        (cd "$SRC" && cargo fetch --locked --quiet)
        REG="$(ls -d "$CARGO_HOME"/registry/src/*/"candle-core-$CANDLE_VER" 2>/dev/null | head -1 || true)"
        [ -n "$REG" ] || die "candle-core-$CANDLE_VER not in $CARGO_HOME/registry/src after cargo fetch"
    fi
    rm -rf "$PATCH.tmp"; mkdir -p "$(dirname "$PATCH")"
    cp -r "$REG" "$PATCH.tmp"
    rm -f "$PATCH.tmp/.cargo-ok"
    # the only change: cudarc feature `dynamic-linking` -> `dynamic-loading`
    sed -i 's/^    "dynamic-linking",$/    "dynamic-loading",/' "$PATCH.tmp/Cargo.toml"
    grep -q '^    "dynamic-loading",$' "$PATCH.tmp/Cargo.toml" \
        || die "could not patch $PATCH.tmp/Cargo.toml (cudarc feature list changed?)"
    [ "$(diff "$REG/Cargo.toml" "$PATCH.tmp/Cargo.toml" | grep -c '^[<>]')" = 2 ] \
        || die "patch of candle-core changed more than one line"
    rm -rf "$PATCH"; mv "$PATCH.tmp" "$PATCH"
    say "candle-core $CANDLE_VER: patched copy at $PATCH"
else
    say "candle-core $CANDLE_VER: patched copy at $PATCH (cached)"
fi

# ------------------------------------------------------------ 4. build
export CARGO_TARGET_DIR="$CACHE/target"
RPATH='$ORIGIN:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:/usr/local/cuda-13/lib64:/usr/local/cuda-13.0/lib64'
say "build: nice -n 19 cargo rustc --release -p coordinator --bin diffprobe --features cuda (target dir $CARGO_TARGET_DIR; from scratch 12-20 min on 2 idle cores, an hour on a busy machine)"
TB=$(date +%s)
# `cargo rustc` passes the link flags to the final binary only, so dependencies' cached
# builds do not depend on them. Not --locked: the [patch] rewrites candle-core's lock entry
# in the copy (every other version stays as locked).
(cd "$SRC" && nice -n 19 cargo rustc --release -p coordinator --bin diffprobe --features cuda \
    --config "patch.crates-io.candle-core.path=\"$PATCH\"" \
    -- -L "native=$LINKDIR" -C link-arg=-Wl,--enable-new-dtags -C "link-arg=-Wl,-rpath,$RPATH")
BUILD_S=$(( $(date +%s) - TB ))
# a path-patched package has no `source` in the lock file; the registry one would
if grep -A2 '^name = "candle-core"$' "$SRC/Cargo.lock" | grep -q '^source = "registry'; then
    die "the patched candle-core was not used (see $SRC/Cargo.lock)"
fi

# ------------------------------------------------------------ 5. install + checks
mkdir -p "$(dirname "$OUTBIN")"
install -m 755 "$CARGO_TARGET_DIR/release/diffprobe" "$OUTBIN.tmp"
[ "${DIFFPROBE_CUDA_KEEP_DEBUG:-0}" = 1 ] || strip --strip-debug "$OUTBIN.tmp"
mv "$OUTBIN.tmp" "$OUTBIN"
NEEDED="$(readelf -d "$OUTBIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
RUNPATH="$(readelf -d "$OUTBIN" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')"
SIZE=$(stat -c %s "$OUTBIN")
say "binary: $OUTBIN"
say "size: $SIZE bytes ($(( SIZE / 1048576 )) MiB), sha256 $(sha256sum "$OUTBIN" | cut -c1-64)"
say "NEEDED: $NEEDED"
say "RUNPATH: ${RUNPATH:-none}"
case " $NEEDED" in
    *" libcuda"*|*" libcublas"*|*" libcurand"*|*" libnvrtc"*)
        die "a CUDA library is NEEDED: the binary would not start without CUDA" ;;
esac
[ -n "$RUNPATH" ] || die "no RUNPATH in the binary"
if VERSION="$("$OUTBIN" --version 2>&1)"; then
    say "check: '$OUTBIN --version' -> $VERSION (runs here, with no GPU and no libcuda)"
else
    die "'$OUTBIN --version' failed: $VERSION"
fi
say "done in $(( $(date +%s) - T0 )) s (cargo $BUILD_S s); carry $OUTBIN to the GPU node, see docs/cuda.md"
