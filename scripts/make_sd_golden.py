#!/usr/bin/env python3
"""Golden reference activations of the tiny SD fixtures, from diffusers (CPU, float32).

For each (fixture, case) it writes
    tests/golden/sd/{fixture}-{case}.safetensors   float32 tensors (int64 for token ids)
    tests/golden/sd/{fixture}-{case}.json          metadata: prompts, seeds, scheduler, calls,
                                                   taps, tensor shapes, f32-vs-f64 self-check,
                                                   versions, sha256 of the fixture weights
The pipeline is loaded from the committed f16 fixture files and upcast to f32, so the goldens
are computed from exactly the committed weights.  Noise comes from a SplitMix64 + Box-Muller
generator defined here (bit-identical to the Rust side), not from torch's RNG.

Usage:  scripts/make-sd-golden [--fixtures DIR] [--out DIR] [--only FIXTURE-CASE ...]
See tests/golden/sd/README.md.
"""
import argparse
import copy
import hashlib
import json
import math
import os
import re
import sys
import warnings

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PROMPT = "a photo of a cat"
GUIDANCE = 7.5
GEN_SEED = 42
IMG_SEED = 7
IMG_PATH = "tests/fixtures/images/cat.png"
NOISE_PERCENT = 20
PX = 16  # image side in pixels; the tiny VAE downsamples by 2 -> latent 8x8

CASES = [
    # name, fixtures, kind, scheduler class, steps, recorded U-Net calls (0-based)
    dict(name="gen-ddim", fixtures=("tiny-sd-1", "tiny-sd-2"), kind="gen", scheduler="DDIMScheduler", steps=3, calls=(0, 2)),
    dict(name="gen-euler", fixtures=("tiny-sd-1",), kind="gen", scheduler="EulerDiscreteScheduler", steps=2, calls=(1,)),
    dict(name="gen-lms", fixtures=("tiny-sd-1",), kind="gen", scheduler="LMSDiscreteScheduler", steps=3, calls=(2,)),
    dict(name="img-empty", fixtures=("tiny-sd-1", "tiny-sd-2"), kind="img", guidance=False),
    dict(name="img-prompt", fixtures=("tiny-sd-1", "tiny-sd-2"), kind="img", guidance=True),
]

# U-Net taps, matched against diffusers' module names (enumerated from the model).
TAP_RE = re.compile(
    r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)"
    r"(\.(resnets|attentions)\.\d+(\.transformer_blocks\.0\.attn1\.to_out\.0)?"
    r"|\.(downsamplers|upsamplers)\.0)?$"
)

# ---------------------------------------------------------------------------------------
# noise: SplitMix64 + Box-Muller, float64 math, cast to float32 (bit-identical to Rust)
# ---------------------------------------------------------------------------------------
M64 = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & M64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def uniform(self):
        """float64 in (0, 1): ((next >> 11) + 0.5) * 2^-53 (exact)."""
        return ((self.next() >> 11) + 0.5) * 2.0**-53


def normals(seed, n):
    """First n values of the Box-Muller stream: per pair (u1, u2): r cos(2 pi u2), r sin(2 pi u2)."""
    rng = SplitMix64(seed)
    out = []
    while len(out) < n:
        u1 = rng.uniform()
        u2 = rng.uniform()
        r = math.sqrt(-2.0 * math.log(u1))
        out.append(r * math.cos(2.0 * math.pi * u2))
        out.append(r * math.sin(2.0 * math.pi * u2))
    return out[:n]


def noise_tensor(seed, shape):
    import numpy as np
    import torch

    n = math.prod(shape)
    return torch.from_numpy(np.asarray(normals(seed, n), dtype=np.float64).astype(np.float32).reshape(shape))


def selftest_noise():
    # SplitMix64 reference values for seed 0 (Vigna's splitmix64.c, also in many test suites).
    r = SplitMix64(0)
    assert [r.next() for _ in range(3)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


# ---------------------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------------------
def first_tensor(out):
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return first_tensor(out[0])
    if hasattr(out, "sample"):
        return out.sample
    raise TypeError(f"unexpected module output {type(out)}")


class Recorder:
    """Hooks the U-Net: counts calls, and for the calls in `record` keeps the exact inputs
    (sample after scale_model_input, timestep, encoder_hidden_states), every tap's output for
    the full batch, and `out` (the U-Net's prediction before guidance)."""

    def __init__(self, unet, taps, record):
        self.taps = list(taps)
        self.record = set(record)
        self.calls = 0
        self.current = None
        self.data = {}  # call -> {name: tensor}
        self.inputs = {}  # call -> (sample, timestep, ehs)
        self.order = None  # tap completion order of the first recorded call
        self.handles = [
            unet.register_forward_pre_hook(self._pre, with_kwargs=True),
            unet.register_forward_hook(self._post, with_kwargs=True),
        ]
        mods = dict(unet.named_modules())
        for name in self.taps:
            self.handles.append(mods[name].register_forward_hook(self._tap(name)))

    def _pre(self, module, args, kwargs):
        sample = args[0] if len(args) > 0 else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        ehs = args[2] if len(args) > 2 else kwargs["encoder_hidden_states"]
        for k in ("class_labels", "timestep_cond", "attention_mask", "cross_attention_kwargs",
                  "added_cond_kwargs", "down_block_additional_residuals", "mid_block_additional_residual",
                  "down_intrablock_additional_residuals", "encoder_attention_mask"):
            assert kwargs.get(k) is None or kwargs.get(k) == {}, f"unexpected U-Net kwarg {k}={kwargs.get(k)!r}"
        if self.calls in self.record:
            self.current = {"__order": []}
            self.inputs[self.calls] = (sample.detach().clone(), timestep.detach().clone(), ehs.detach().clone())

    def _tap(self, name):
        def hook(module, args, out):
            if self.current is not None:
                assert name not in self.current, f"{name} ran twice in one U-Net call"
                self.current[name] = first_tensor(out).detach().clone()
                self.current["__order"].append(name)

        return hook

    def _post(self, module, args, kwargs, out):
        if self.current is not None:
            self.current["out"] = first_tensor(out).detach().clone()
            order = self.current.pop("__order")
            missing = [t for t in self.taps if t not in self.current]
            assert not missing, f"taps that did not run: {missing}"
            if self.order is None:
                self.order = order
            self.data[self.calls] = self.current
            self.current = None
        self.calls += 1

    def remove(self):
        for h in self.handles:
            h.remove()


def unet_taps(unet):
    return [n for n, _ in unet.named_modules() if TAP_RE.match(n)]


# ---------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------
def tokenize(pipe, prompt):
    """Exactly what StableDiffusionPipeline.encode_prompt does (padding to 77 with the pad token)."""
    tok = pipe.tokenizer
    return tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


def text_taps(pipe, ids):
    import torch

    with torch.no_grad():
        o = pipe.text_encoder(ids, output_hidden_states=True)
    t = {f"text.{l}": h for l, h in enumerate(o.hidden_states)}
    t["text.final"] = o.last_hidden_state
    return t


def rel_err(a32, a64):
    den = a64.abs().max().item()
    num = (a32.double() - a64).abs().max().item()
    return num / den if den > 0 else num


def f64_check(unet, taps, inputs, ref):
    """Re-run one U-Net call in float64 on the same (f32-valued) inputs; per tap
    max|f32 - f64| / max|f64|.  Also re-runs it in f32 directly and requires bit-identical
    taps (so the stored inputs are the complete U-Net input)."""
    import torch

    sample, timestep, ehs = inputs
    rec32 = Recorder(unet, taps, [0])
    with torch.no_grad():
        unet(sample, timestep, encoder_hidden_states=ehs, return_dict=False)
    rec32.remove()
    for k, v in rec32.data[0].items():
        assert torch.equal(v, ref[k]), f"direct f32 U-Net re-run differs from the pipeline's call at {k}"
    u64 = copy.deepcopy(unet).double()
    rec = Recorder(u64, taps, [0])
    with torch.no_grad():
        u64(sample.double(), timestep, encoder_hidden_states=ehs.double(), return_dict=False)
    rec.remove()
    return {k: float(f"{rel_err(ref[k], v):.3e}") for k, v in rec.data[0].items()}


def sched_info(s):
    info = {"class": type(s).__name__, "timesteps": [float(t) for t in s.timesteps]}
    info["init_noise_sigma"] = float(s.init_noise_sigma)
    if hasattr(s, "sigmas"):
        info["sigmas"] = [float(x) for x in s.sigmas]
    return info


def run_gen(pipe, case, meta, tensors):
    import torch
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, LMSDiscreteScheduler

    cls = {c.__name__: c for c in (DDIMScheduler, EulerDiscreteScheduler, LMSDiscreteScheduler)}[case["scheduler"]]
    base_cfg = dict(pipe.scheduler.config)
    pipe.scheduler = cls.from_config(base_cfg)
    taps = unet_taps(pipe.unet)
    noise = noise_tensor(GEN_SEED, (1, 4, PX // 2, PX // 2))
    rec = Recorder(pipe.unet, taps, case["calls"])
    with torch.no_grad():
        res = pipe(
            PROMPT,
            negative_prompt=None,  # diffusers then uses "" as the unconditional prompt
            height=PX,
            width=PX,
            num_inference_steps=case["steps"],
            guidance_scale=GUIDANCE,
            latents=noise.clone(),
            output_type="latent",
        )
    rec.remove()
    assert rec.calls == case["steps"], (rec.calls, case["steps"])
    latents_final = res.images
    assert latents_final.shape == noise.shape and latents_final.dtype == torch.float32
    tensors["noise"] = noise
    tensors["latents_final"] = latents_final
    # What the pipeline's default output_type="pil" does next: decode, then (x / 2 + 0.5).clamp(0, 1).
    with torch.no_grad():
        decoded = pipe.vae.decode(latents_final / pipe.vae.config.scaling_factor, return_dict=False)[0]
    tensors["decoded"] = decoded.contiguous()
    meta.update(
        kind="generation",
        prompt=PROMPT,
        negative_prompt="",
        guidance_scale=GUIDANCE,
        seed=GEN_SEED,
        height=PX,
        width=PX,
        latent_shape=list(noise.shape),
        num_inference_steps=case["steps"],
        scheduler=dict(sched_info(pipe.scheduler), config={k: v for k, v in base_cfg.items() if not k.startswith("_")}),
        eta=0.0,
    )
    meta["scheduler"]["class"] = case["scheduler"]
    return rec, taps, PROMPT


def run_img(pipe, case, meta, tensors):
    import numpy as np
    import torch
    from PIL import Image

    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(pipe.scheduler.config)
    taps = unet_taps(pipe.unet)
    img = np.asarray(Image.open(os.path.join(ROOT, IMG_PATH)).convert("RGB"))
    assert img.shape == (PX, PX, 3) and img.dtype == np.uint8, img.shape
    image = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].to(torch.float32) / 127.5 - 1.0
    with torch.no_grad():
        mean = pipe.vae.encode(image).latent_dist.mean
    sf = pipe.vae.config.scaling_factor
    latents = mean * sf
    eps = noise_tensor(IMG_SEED, tuple(latents.shape))
    t = 10 * NOISE_PERCENT - 9
    noisy = ddim.add_noise(latents, eps, torch.tensor([t]))
    # check the formula x_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, in f32 as diffusers does it
    ac = ddim.alphas_cumprod.to(torch.float32)[t]
    assert torch.equal(noisy, ac**0.5 * latents + (1 - ac) ** 0.5 * eps)

    prompt = PROMPT if case["guidance"] else ""
    cond_ids = tokenize(pipe, prompt)
    with torch.no_grad():
        cond = pipe.text_encoder(cond_ids)[0]
        if case["guidance"]:
            uncond = pipe.text_encoder(tokenize(pipe, ""))[0]
            ehs = torch.cat([uncond, cond])
            sample = torch.cat([noisy, noisy])
        else:
            ehs, sample = cond, noisy
    timestep = torch.tensor(t)  # 0-d int64, as the DDIM pipeline passes its timesteps
    rec = Recorder(pipe.unet, taps, [0])
    with torch.no_grad():
        pipe.unet(sample, timestep, encoder_hidden_states=ehs, return_dict=False)
    rec.remove()
    tensors.update(image=image, vae_mean=mean, eps=eps, noisy=noisy)
    meta.update(
        kind="real-image",
        image=IMG_PATH,
        image_preprocess="float32(pixel) / 127.5 - 1, NCHW (1,3,16,16); equals diffusers' 2*(x/255)-1 bit for bit",
        prompt=prompt,
        negative_prompt="" if case["guidance"] else None,
        guidance=bool(case["guidance"]),
        unet_batch='["" (uncond), prompt (cond)]' if case["guidance"] else '[""]',
        eps_seed=IMG_SEED,
        noise_level_percent=NOISE_PERCENT,
        timestep=t,
        vae_scaling_factor=sf,
        alphas_cumprod_t=float(ac),
        sqrt_alphas_cumprod_t=float(ac**0.5),
        sqrt_one_minus_alphas_cumprod_t=float((1 - ac) ** 0.5),
        latent_shape=list(latents.shape),
        add_noise="DDIMScheduler.add_noise: alphas_cumprod (f32) indexed by the timestep value t itself",
    )
    return rec, taps, prompt


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def make_case(fixture_dir, fixture, case, out_dir, versions, log):
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    pipe = StableDiffusionPipeline.from_pretrained(
        fixture_dir, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    for comp in (pipe.unet, pipe.vae, pipe.text_encoder):
        assert all(p.dtype == torch.float32 for p in comp.parameters())
    tensors = {}
    meta = {"fixture": fixture, "case": case["name"]}
    run = run_gen if case["kind"] == "gen" else run_img
    rec, taps, prompt = run(pipe, case, meta, tensors)

    text_ids = tokenize(pipe, prompt)
    uncond_ids = tokenize(pipe, "")
    tensors["text_ids"] = text_ids.to(torch.int64)
    tensors["uncond_ids"] = uncond_ids.to(torch.int64)
    tt = text_taps(pipe, text_ids)
    tensors.update(tt)
    f64 = {}
    for c in sorted(rec.data):
        sample, timestep, ehs = rec.inputs[c]
        # the conditional half of the U-Net's text input is text.final of the prompt
        assert torch.equal(ehs[-1:], tt["text.final"]), "encoder_hidden_states (cond) != text.final"
        tensors[f"call{c}.sample"] = sample
        tensors[f"call{c}.timestep"] = timestep.reshape(1).to(torch.float32)
        assert float(tensors[f"call{c}.timestep"][0]) == float(timestep), "timestep not exact in f32"
        tensors[f"call{c}.encoder_hidden_states"] = ehs
        for k, v in rec.data[c].items():
            tensors[f"call{c}.{k}"] = v
        f64[f"call{c}"] = f64_check(pipe.unet, taps, rec.inputs[c], rec.data[c])

    tok = pipe.tokenizer
    for k, v in list(tensors.items()):
        assert v.dtype in (torch.float32, torch.int64), (k, v.dtype)
        assert bool(torch.isfinite(v.to(torch.float64)).all()), k
        tensors[k] = v.detach().contiguous()
    calls = []
    for c in sorted(rec.data):
        calls.append({"call": c, "step_index": c, "timestep": float(tensors[f"call{c}.timestep"][0]),
                      "batch": int(rec.inputs[c][0].shape[0]), "timestep_dtype_passed": str(rec.inputs[c][1].dtype)})
    meta.update(
        text_ids_prompt=prompt,
        text_ids_nonpad=[int(x) for x in text_ids[0]][: int((text_ids[0] == tok.eos_token_id).nonzero()[0]) + 1],
        uncond_ids_nonpad=[int(x) for x in uncond_ids[0]][: int((uncond_ids[0] == tok.eos_token_id).nonzero()[0]) + 1],
        tokenizer=dict(
            cls=type(tok).__name__,
            model_max_length=tok.model_max_length,
            pad_token=tok.pad_token,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
        ),
        text_layers=len(tt) - 2,
        recorded_calls=calls,
        unet_taps=rec.order + ["out"],
        text_taps=list(tt),
        tensors={k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in tensors.items()},
        f64_check=dict(
            what="per tap max|f32 - f64| / max|f64|: the same U-Net call re-run after model.double() "
            "(inputs upcast; diffusers computes the sinusoidal timestep embedding in f32 either way)",
            calls=f64,
        ),
        fixture_sha256={
            f"{comp}/{fn}": sha256(os.path.join(fixture_dir, comp, fn))
            for comp, fn in (("text_encoder", "model.safetensors"), ("unet", "diffusion_pytorch_model.safetensors"),
                             ("vae", "diffusion_pytorch_model.safetensors"))
        },
        device="cpu",
        dtype="float32",
        torch_threads=torch.get_num_threads(),
        versions=versions,
        generator="scripts/make_sd_golden.py",
    )
    base = os.path.join(out_dir, f"{fixture}-{case['name']}")
    # one metadata key only: safetensors writes __metadata__ from a hash map, so several keys
    # would come out in a random order and the file would not be byte-identical between runs
    save_file(dict(sorted(tensors.items())), base + ".safetensors", metadata={"format": "pt"})
    os.chmod(base + ".safetensors", 0o644)  # safetensors creates 0600
    with open(base + ".json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")
    worst = max(max(d.values()) for d in f64.values())
    log(f"  {fixture}-{case['name']}: {len(tensors)} tensors, {os.path.getsize(base + '.safetensors'):,} bytes, "
        f"calls {[c['timestep'] for c in calls]}, worst f32/f64 rel err {worst:.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "tests", "fixtures"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "sd"))
    ap.add_argument("--only", action="append", help="FIXTURE-CASE, e.g. tiny-sd-1-gen-ddim")
    args = ap.parse_args()
    log = lambda s: print(s, flush=True)
    warnings.filterwarnings("ignore")

    import diffusers
    import numpy
    import safetensors
    import torch
    import transformers

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    selftest_noise()
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import scipy

        versions["scipy"] = scipy.__version__
    except ImportError:
        pass
    log(" ".join(f"{k} {v}" for k, v in versions.items()))
    os.makedirs(args.out, exist_ok=True)
    for case in CASES:
        for fixture in case["fixtures"]:
            if args.only and f"{fixture}-{case['name']}" not in args.only:
                continue
            make_case(os.path.join(args.fixtures, fixture), fixture, case, args.out, versions, log)
    log("all OK")


if __name__ == "__main__":
    main()
