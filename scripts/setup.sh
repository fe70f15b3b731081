#!/usr/bin/env bash
# Set up diffprobe on a Debian machine: system packages, the Python venv that builds
# the demo data, the demo data itself (data/demo), and the release build.
#
#   ./scripts/setup.sh              # everything
#   ./scripts/setup.sh --no-build   # everything but `cargo build --release`
#
# Run it as root, or as a user with sudo (only apt-get runs through sudo). It is
# idempotent: each step prints one line and skips work that is already done.
# Network: only the Debian and PyPI package registries are used (and crates.io by
# cargo). Environment: PYTHON (interpreter for the venv, default python3),
# WNSEARCHDIR (WordNet directory, default /usr/share/wordnet).
set -euo pipefail

BUILD=1
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MIN_RUST="1.88"
MIN_PYTHON="3.11"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
REQS="scripts/requirements.txt"
DEMO="data/demo"
export WNSEARCHDIR="${WNSEARCHDIR:-/usr/share/wordnet}"

say() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- 1. system packages
# Each Debian package, with a test that passes when what we need from it is already
# there some other way (e.g. a pyenv python3, a compiler outside dpkg).
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
have_alt() {
    case "$1" in
        python3) command -v "$PYTHON" >/dev/null 2>&1 ;;
        python3-venv) "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 ;;
        python3-pip) "$PYTHON" -m pip --version >/dev/null 2>&1 ;;
        gcc) command -v gcc >/dev/null 2>&1 ;;
        g++) command -v g++ >/dev/null 2>&1 ;;
        pkg-config) command -v pkg-config >/dev/null 2>&1 ;;
        curl) command -v curl >/dev/null 2>&1 ;;
        ca-certificates) [ -s /etc/ssl/certs/ca-certificates.crt ] ;;
        wordnet-base) [ -f "$WNSEARCHDIR/index.noun" ] ;;
        *) return 1 ;;
    esac
}
PKGS=(python3 python3-venv python3-pip gcc g++ pkg-config curl ca-certificates wordnet-base)
missing=()
for p in "${PKGS[@]}"; do
    if ! have_alt "$p" && ! have_pkg "$p"; then missing+=("$p"); fi
done
if [ ${#missing[@]} -eq 0 ]; then
    say "system packages: all present, skipping apt-get"
else
    say "system packages: installing ${missing[*]} (apt-get update + install)"
    command -v apt-get >/dev/null 2>&1 \
        || die "apt-get not found (not Debian?); install these yourself: ${missing[*]}"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo; as root run: apt-get install ${missing[*]}"
        SUDO=(sudo)
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -f "$WNSEARCHDIR/index.noun" ] || die "WordNet not found in $WNSEARCHDIR (Debian package wordnet-base)"
"$PYTHON" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$MIN_PYTHON'.split('.'))))" \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); the pinned wheels need Python >= $MIN_PYTHON (set PYTHON=...)"

# ---------------------------------------------------------------- 2. Rust toolchain
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
rust_help="Install Rust >= $MIN_RUST with rustup (https://rustup.rs) where its download
site is reachable, or copy a toolchain in, and put cargo on PATH. It cannot be installed
from the package registries alone: rustup fetches toolchains from static.rust-lang.org,
and Debian's own cargo/rustc packages are too old for this project."
command -v cargo >/dev/null 2>&1 || die "cargo not found. $rust_help"
cargo_v="$(cargo --version | awk '{print $2}')"
if ! printf '%s\n%s\n' "$MIN_RUST" "${cargo_v%%-*}" | sort -V -C; then
    die "cargo $cargo_v is older than $MIN_RUST. $rust_help"
fi
say "rust toolchain: cargo $cargo_v (>= $MIN_RUST), ok"

# ---------------------------------------------------------------- 3. Python venv
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "python venv: $VENV exists ($("$VENV/bin/python" -V 2>&1)), keeping it"
else
    say "python venv: creating $VENV with $("$PYTHON" -V 2>&1) ($(command -v "$PYTHON"))"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

# ---------------------------------------------------------------- 4. Python packages
reqs_sha="$(sha256sum "$REQS" | awk '{print $1}')"
stamp="$VENV/.requirements.sha256"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs_sha" ]; then
    say "python packages: $REQS already installed, skipping pip"
else
    say "python packages: pip install --no-deps -r $REQS (no torch; ~150 MB download)"
    # --no-deps: the file is a complete pinned closure (see its header).
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --no-deps -r "$REQS"
    echo "$reqs_sha" > "$stamp"
fi

# ---------------------------------------------------------------- 5. demo data
if "$VENV/bin/python" scripts/make_demo_data.py --check "$DEMO" >/dev/null 2>&1; then
    say "demo data: $DEMO is up to date (.complete matches the inputs), skipping"
else
    say "demo data: building $DEMO (model files + ratings.csv) with scripts/make_demo_data.py"
    "$VENV/bin/python" scripts/make_demo_data.py "$DEMO" | sed 's/^/    /'
fi
# Synthetic odd-one-out triplets over the demo nouns, from their ratings (the demo's alignment
# part; not human judgements, see docs/demo-data.md).
if "$VENV/bin/python" scripts/make_demo_triplets.py --check "$DEMO" >/dev/null 2>&1; then
    say "demo triplets: $DEMO/triplets.csv is up to date, skipping"
else
    say "demo triplets: sampling $DEMO/triplets.csv with scripts/make_demo_triplets.py"
    "$VENV/bin/python" scripts/make_demo_triplets.py "$DEMO" | sed 's/^/    /'
fi
# Synthetic scenes with exact depth, masks and shading (the dense-probe demo, seeded: the same
# files on every machine). Rebuilt when the generator changes.
scenes_sha="$(sha256sum scripts/make_scenes.py | cut -d' ' -f1)"
if [ "$(cat "$DEMO/scenes/.complete" 2>/dev/null)" = "$scenes_sha" ]; then
    say "demo scenes: $DEMO/scenes is up to date, skipping"
else
    say "demo scenes: rendering $DEMO/scenes with scripts/make_scenes.py"
    rm -rf "$DEMO/scenes"
    "$VENV/bin/python" scripts/make_scenes.py "$DEMO/scenes" | sed 's/^/    /'
    echo "$scenes_sha" > "$DEMO/scenes/.complete"
fi

# ---------------------------------------------------------------- 6. build
if [ "$BUILD" -eq 0 ]; then
    say "build: skipped (--no-build)"
elif [ -f Cargo.lock ]; then
    say "build: cargo build --release --locked (incremental; quick when up to date)"
    cargo build --release --locked
else
    say "build: cargo build --release (no Cargo.lock)"
    cargo build --release
fi
say "done. Try: ./target/release/diffprobe run jobs/demo.toml"
