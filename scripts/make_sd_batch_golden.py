#!/usr/bin/env python3
"""Batched golden activations of the tiny SD fixtures, from diffusers (CPU, float32).

The single-stimulus goldens (scripts/make_sd_golden.py) cannot see an error that only hits the
second and later rows of a batch. This script runs 64 stimuli through diffusers *as one batch*
(torch's CPU kernels treat the rows of a batch independently) and stores, per stimulus, what
diffprobe's batched capture must reproduce at any batch size:

    tests/golden/sd/batch/{fixture}-batch.safetensors   float32 tensors
    tests/golden/sd/batch/{fixture}-batch.json          metadata (prompts, seeds, taps, versions)

- real-image mode: `vae_mean` (64 x 4 x 8 x 8), then one U-Net pass per (noise level,
  conditioning): 1 % with the empty prompt, 60 % with the stimulus's prompt; per tap the mean
  over positions (`img.n{level}.{tap}`, 64 x C) and `out` in full;
- generation: DDIM, 3 steps, guidance 7.5, the diffusers pipeline on all 64 prompts at once
  with seeded initial noise; per recorded step k in {0, 2} and tap the mean over positions of
  the cond half (`gen.k{k}.{tap}`), `out` in full; the final latents and their decoded images
  (`decoded`, 64 x 3 x 16 x 16).

Images (tests/fixtures/images-batch/img{00..63}.png, 16 x 16) are written by this script from a
seeded generator. Noise: the SplitMix64 + Box-Muller stream of make_sd_golden.py, seed 1000 + i
(image eps) and 2000 + i (initial latents) for stimulus i.

Usage:  PYTHON=/tmp/venv-golden/bin/python scripts/make-sd-golden --batch
See tests/golden/sd/README.md (venv recipe in docs/tiny-sd.md).
"""
import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_sd_golden import ROOT, first_tensor, noise_tensor, selftest_noise, sha256, unet_taps  # noqa: E402

FIXTURES = ("tiny-sd-1", "tiny-sd-2", "tiny-sd-3")
N = 64
PX = 16
GUIDANCE = 7.5
STEPS = 3
RECORD = (0, 2)
IMAGE_PASSES = ((1, "empty"), (60, "prompt"))
IMAGES = "tests/fixtures/images-batch"
WORDS = ["cat", "small", "red", "house", "river", "old", "glass", "quiet", "tree"]


def prompt(i):
    """Prompts of 1 to 6 words, so a batch pads to different lengths."""
    return " ".join(WORDS[(i * 7 + j * 5) % len(WORDS)] for j in range(i % 6 + 1))


def write_images():
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(2026)
    out = os.path.join(ROOT, IMAGES)
    os.makedirs(out, exist_ok=True)
    names = []
    for i in range(N):
        y, x = np.mgrid[0:PX, 0:PX]
        base = np.stack([(x * (3 + c) + y * (5 + i) + 40 * c + 13 * i) % 256 for c in range(3)], -1)
        pixels = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
        name = f"img{i:02d}"
        Image.fromarray(pixels, "RGB").save(os.path.join(out, name + ".png"))
        names.append(name)
    return names


def load_pixels(names):
    import numpy as np
    import torch
    from PIL import Image

    arrays = [np.asarray(Image.open(os.path.join(ROOT, IMAGES, n + ".png")).convert("RGB")) for n in names]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0


class MeanRecorder:
    """Per tap, the mean over positions (H x W of a map, or the tokens of an attention output)
    of the rows `rows` of every U-Net call in `record`; `out` in full."""

    def __init__(self, unet, taps, record, rows):
        self.record, self.rows, self.calls, self.data, self.current = set(record), rows, 0, {}, None
        mods = dict(unet.named_modules())
        self.handles = [unet.register_forward_pre_hook(self._pre), unet.register_forward_hook(self._post)]
        self.handles += [mods[t].register_forward_hook(self._tap(t)) for t in taps]

    def _pre(self, module, args):
        self.current = {} if self.calls in self.record else None

    def _tap(self, name):
        def hook(module, args, out):
            if self.current is not None:
                t = first_tensor(out)[self.rows]
                self.current[name] = t.mean(dim=(2, 3)) if t.ndim == 4 else t.mean(dim=1)

        return hook

    def _post(self, module, args, out):
        if self.current is not None:
            self.current["out"] = first_tensor(out)[self.rows].contiguous()
            self.data[self.calls] = self.current
        self.calls += 1

    def remove(self):
        for h in self.handles:
            h.remove()


def encode(pipe, prompts):
    import torch

    tok = pipe.tokenizer
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return pipe.text_encoder(ids.input_ids)[0]


def image_mode(pipe, names, prompts, tensors):
    import torch
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        mean = pipe.vae.encode(load_pixels(names)).latent_dist.mean
    tensors["vae_mean"] = mean
    latents = mean * pipe.vae.config.scaling_factor
    eps = torch.cat([noise_tensor(1000 + i, (1,) + tuple(latents.shape[1:])) for i in range(N)])
    tensors["img.eps"] = eps
    taps = unet_taps(pipe.unet)
    for level, cond in IMAGE_PASSES:
        t = 10 * level - 9
        noisy = ddim.add_noise(latents, eps, torch.tensor([t]))
        ehs = encode(pipe, [""] * N if cond == "empty" else prompts)
        rec = MeanRecorder(pipe.unet, taps, [0], slice(0, N))
        with torch.no_grad():
            pipe.unet(noisy, torch.tensor(t), encoder_hidden_states=ehs, return_dict=False)
        rec.remove()
        for tap, v in rec.data[0].items():
            tensors[f"img.n{level}.{tap}"] = v


def generation(pipe, prompts, tensors):
    import torch

    noise = torch.cat([noise_tensor(2000 + i, (1, 4, PX // 2, PX // 2)) for i in range(N)])
    tensors["gen.noise"] = noise
    taps = unet_taps(pipe.unet)
    rec = MeanRecorder(pipe.unet, taps, RECORD, slice(N, 2 * N))  # the cond half of [uncond; cond]
    with torch.no_grad():
        latents = pipe(prompts, negative_prompt=None, height=PX, width=PX, num_inference_steps=STEPS,
                       guidance_scale=GUIDANCE, latents=noise.clone(), output_type="latent").images
    rec.remove()
    assert rec.calls == STEPS, rec.calls
    for k, values in rec.data.items():
        for tap, v in values.items():
            tensors[f"gen.k{k}.{tap}"] = v
    tensors["gen.latents_final"] = latents
    with torch.no_grad():
        tensors["decoded"] = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return taps


def make(fixture, names, versions, log):
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from safetensors.torch import save_file

    fixture_dir = os.path.join(ROOT, "tests", "fixtures", fixture)
    pipe = StableDiffusionPipeline.from_pretrained(
        fixture_dir, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    prompts = [prompt(i) for i in range(N)]
    tensors = {}
    image_mode(pipe, names, prompts, tensors)
    taps = generation(pipe, prompts, tensors)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in sorted(tensors.items())}
    assert all(bool(torch.isfinite(v).all()) for v in tensors.values())
    base = os.path.join(ROOT, "tests", "golden", "sd", "batch", f"{fixture}-batch")
    save_file(tensors, base + ".safetensors", metadata={"format": "pt"})
    os.chmod(base + ".safetensors", 0o644)
    meta = dict(
        fixture=fixture,
        stimuli=names,
        prompts=prompts,
        image_folder=IMAGES,
        image_passes=[{"noise_level_percent": n, "conditioning": c} for n, c in IMAGE_PASSES],
        eps_seeds="1000 + i",
        generation=dict(scheduler="DDIMScheduler", steps=STEPS, guidance_scale=GUIDANCE, recorded_steps=list(RECORD),
                        noise_seeds="2000 + i", negative_prompt=""),
        reduction="per tap: mean over positions (H x W, or tokens) of each stimulus's row; `out` in full",
        unet_taps=taps + ["out"],
        fixture_sha256={f"{c}/{f}": sha256(os.path.join(fixture_dir, c, f)) for c, f in (
            ("text_encoder", "model.safetensors"), ("unet", "diffusion_pytorch_model.safetensors"),
            ("vae", "diffusion_pytorch_model.safetensors"))},
        versions=versions,
        generator="scripts/make_sd_batch_golden.py",
    )
    with open(base + ".json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    log(f"  {fixture}-batch: {len(tensors)} tensors, {os.path.getsize(base + '.safetensors'):,} bytes")


def main():
    warnings.filterwarnings("ignore")
    import diffusers
    import torch
    import transformers

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    selftest_noise()
    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "diffusers": diffusers.__version__, "transformers": transformers.__version__}
    log = lambda s: print(s, flush=True)
    names = write_images()
    for fixture in FIXTURES:
        make(fixture, names, versions, log)
    log("all OK")


if __name__ == "__main__":
    main()
