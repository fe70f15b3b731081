#!/usr/bin/env python3
"""A tiny LoRA for the tiny SD 1 fixture, in diffusers/PEFT and in kohya key layout, and the U-Net
output of diffusers with that LoRA fused (`load_lora_weights` + `fuse_lora(lora_scale=s)`), read
by the tests in sd/src/lora.rs.

Writes
    tests/fixtures/tiny-sd-1-lora-peft.safetensors   `unet.<module>.lora_A.weight` / `lora_B.weight`
                                                     (no alpha: diffusers then takes alpha = rank)
    tests/fixtures/tiny-sd-1-lora-peft-meta.safetensors  the same keys, with diffusers'
                                                     `lora_adapter_metadata` header (lora_alpha = 2r)
    tests/fixtures/tiny-sd-1-lora-kohya.safetensors  `lora_unet_<module_>.lora_down.weight` /
                                                     `lora_up.weight` / `.alpha` (alpha != rank)
    tests/golden/sd/lora/tiny-sd-1-lora.safetensors  inputs (sample, timestep, context) and, for
                                                     the base model and each layout, the U-Net
                                                     output `out` and the `mid_block` output
The LoRA targets linear layers (attention q/k/out, GEGLU, time_emb_proj), 1x1 convolutions
(proj_in, conv_shortcut) and a 3x3 convolution (resnet conv1), with the rank-r down matrix as a
3x3 kernel there, as PEFT and kohya do. The pipeline is loaded from the committed f16 fixture and
upcast to f32 (as scripts/make_sd_golden.py does), so the LoRA is fused in f32.

Usage (torch + diffusers 0.42.1 + peft; peft may live in an extra path):
    PYTHONPATH=/tmp/peft-lib /tmp/venv-golden/bin/python scripts/make_lora_golden.py
"""
import json
import os
import warnings

import numpy as np
import torch
import diffusers
import peft
from diffusers import StableDiffusionPipeline
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FIXTURE = os.path.join(ROOT, "tests/fixtures/tiny-sd-1")
RANK = 4
KOHYA_ALPHA = 2.0
SCALE = 0.7
TARGETS = [
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
    "down_blocks.1.resnets.0.time_emb_proj",
    "mid_block.attentions.0.proj_in",
    "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0",
    "mid_block.resnets.0.conv1",
    "up_blocks.0.resnets.0.conv_shortcut",
    "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj",
]


def pipeline():
    pipe = StableDiffusionPipeline.from_pretrained(FIXTURE, torch_dtype=torch.float16)
    return pipe.to(torch.float32)


def make_lora(unet, rng):
    """(A, B) per target: A is r x in (x k x k for a conv), B is out x r (x 1 x 1)."""
    modules = dict(unet.named_modules())
    lora = {}
    for name in TARGETS:
        w = modules[name].weight
        out_f, in_f = w.shape[0], w.shape[1]
        kernel = tuple(w.shape[2:])
        # Sized so that the merged delta is about 30 % of the weight's scale.
        a = rng.standard_normal((RANK, in_f) + kernel).astype(np.float32) / np.sqrt(in_f * max(1, np.prod(kernel)))
        b = rng.standard_normal((out_f, RANK) + (1,) * len(kernel)).astype(np.float32)
        b *= 0.3 * float(w.abs().mean()) * np.sqrt(in_f * max(1, np.prod(kernel))) / np.sqrt(RANK)
        lora[name] = (torch.from_numpy(a), torch.from_numpy(b))
    return lora


def run(pipe, sample, t, context):
    taps = {}
    h = pipe.unet.mid_block.register_forward_hook(lambda m, i, o: taps.__setitem__("mid_block", o))
    with torch.no_grad():
        out = pipe.unet(sample, t, encoder_hidden_states=context).sample
    h.remove()
    return out, taps["mid_block"]


def main():
    rng = np.random.default_rng(20261202)
    pipe = pipeline()
    lora = make_lora(pipe.unet, rng)
    peft_path = os.path.join(ROOT, "tests/fixtures/tiny-sd-1-lora-peft.safetensors")
    kohya_path = os.path.join(ROOT, "tests/fixtures/tiny-sd-1-lora-kohya.safetensors")
    save_file({f"unet.{n}.lora_A.weight": a.contiguous() for n, (a, b) in lora.items()}
              | {f"unet.{n}.lora_B.weight": b.contiguous() for n, (a, b) in lora.items()}, peft_path)
    meta_path = os.path.join(ROOT, "tests/fixtures/tiny-sd-1-lora-peft-meta.safetensors")
    adapter_meta = {"unet.r": RANK, "unet.lora_alpha": 2 * RANK, "unet.target_modules": TARGETS}
    save_file({f"unet.{n}.lora_A.weight": a.contiguous() for n, (a, b) in lora.items()}
              | {f"unet.{n}.lora_B.weight": b.contiguous() for n, (a, b) in lora.items()}, meta_path,
              metadata={"format": "pt", "lora_adapter_metadata": json.dumps(adapter_meta, indent=2, sort_keys=True)})
    kohya = {}
    for n, (a, b) in lora.items():
        k = "lora_unet_" + n.replace(".", "_")
        kohya[f"{k}.lora_down.weight"] = a.contiguous()
        kohya[f"{k}.lora_up.weight"] = b.contiguous()
        kohya[f"{k}.alpha"] = torch.tensor(KOHYA_ALPHA)
    save_file(kohya, kohya_path)

    g = torch.Generator().manual_seed(20261202)
    cfg = pipe.unet.config
    sample = torch.randn(2, cfg.in_channels, 8, 8, generator=g)
    context = torch.randn(2, 5, cfg.cross_attention_dim, generator=g)
    t = torch.tensor(759)
    golden = {"sample": sample, "timestep": t.reshape(1).to(torch.float32), "context": context}
    out, mid = run(pipe, sample, t, context)
    golden["base.out"], golden["base.mid_block"] = out, mid
    deltas = {}
    for layout, path in (("peft", peft_path), ("peft-meta", meta_path), ("kohya", kohya_path)):
        p = pipeline()
        before = {n: m.weight.detach().clone() for n, m in p.unet.named_modules() if n in lora}
        p.load_lora_weights(path)
        p.fuse_lora(lora_scale=SCALE)
        # fuse_lora must have touched exactly the targets (a silent no-op would pass otherwise).
        merged = {n: m for n, m in p.unet.named_modules() if n in lora}
        changed = [n for n in lora if not torch.equal(merged[n].base_layer.weight if hasattr(merged[n], "base_layer") else merged[n].weight, before[n])]
        assert sorted(changed) == sorted(lora), (layout, changed)
        out, mid = run(p, sample, t, context)
        golden[f"{layout}.out"], golden[f"{layout}.mid_block"] = out, mid
        deltas[layout] = float((out - golden["base.out"]).abs().max() / golden["base.out"].abs().max())
    golden = {k: v.detach().contiguous() for k, v in golden.items()}
    out_path = os.path.join(ROOT, "tests/golden/sd/lora/tiny-sd-1-lora.safetensors")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    meta = {"generator": "scripts/make_lora_golden.py", "diffusers": diffusers.__version__,
            "peft": peft.__version__, "torch": torch.__version__, "rank": str(RANK),
            "kohya_alpha": str(KOHYA_ALPHA), "scale": str(SCALE), "targets": json.dumps(TARGETS),
            "relative_change_of_out": json.dumps(deltas)}
    save_file(golden, out_path, metadata=meta)
    print(json.dumps(meta, indent=1))
    for p in (peft_path, meta_path, kohya_path, out_path):
        print(p, os.path.getsize(p), "bytes")


if __name__ == "__main__":
    main()
