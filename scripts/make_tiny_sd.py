#!/usr/bin/env python3
"""Build tiny random Stable Diffusion 1.x / 2.x test fixtures in the diffusers layout.

No SD weights can be downloaded in CI, so diffprobe generates its own: seeded random
models with the same *architecture family and file layout* as a real checkpoint
(model_index.json, unet/, text_encoder/, tokenizer/, vae/, scheduler/), saved with
diffusers/transformers `save_pretrained(..., safe_serialization=True)`.  The loader
under test reads them with exactly the code that reads a real 4 GB checkpoint.

The weights are generated in float32 and stored as **float16** safetensors (small enough
to commit); the fixture model *is* the f16-rounded weights, and every reference (the
sanity check here, scripts/make_sd_golden.py) loads those files and upcasts to f32.
The tokenizer folder holds vocab.json + merges.txt + tokenizer_config.json +
special_tokens_map.json, as real SD repos ship it (no tokenizer.json).

The CLIP tokenizer is rebuilt offline from the BPE vocabulary that the
`open-clip-torch` wheel ships (open_clip/bpe_simple_vocab_16e6.txt.gz): the result
has the same 49,408-entry vocab and 48,894 merges as openai/clip-vit-large-patch14.

Usage:  scripts/make-tiny-sd [OUT_DIR]      (default: tests/fixtures)
        scripts/make-tiny-sd --check-only [OUT_DIR]   (only re-verify existing fixtures)
See docs/tiny-sd.md.
"""
import argparse
import gzip
import importlib.util
import json
import os
import shutil
import sys
import time

SEED = 0
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
BOS_ID, EOS_ID = 49406, 49407
VOCAB_SIZE = 49408
# Same regex as CLIP / open_clip SimpleTokenizer (HF tokenizer.json uses it in a Split pre-tokenizer).
CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

TOKENIZER_FILES = ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")

PROMPTS = [
    "a photo of a cat",
    "an astronaut riding a horse",
    "a photo of an astronaut riding a horse on mars",
    "A Photo of an Astronaut   riding a HORSE on Mars.",
    "don't stop, it's 2024 & we'll see 123 cats!!",
    "a red cube on top of a blue sphere, 4k, trending on artstation",
    "café naïve façade",
    "",
]

# ---------------------------------------------------------------------------------------
# tiny model configs
# ---------------------------------------------------------------------------------------
TEXT_HIDDEN = 16  # keeps the 49408-token embedding at 1.6 MB (f16); also the U-Net cross_attention_dim

SCHED_COMMON = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    trained_betas=None,
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    timestep_spacing="leading",
    rescale_betas_zero_snr=False,
    thresholding=False,
)

VARIANTS = {
    "tiny-sd-1": dict(
        desc="SD 1.x-like: epsilon, CLIP ViT-L-style text tower (quick_gelu)",
        text=dict(
            vocab_size=VOCAB_SIZE,
            hidden_size=TEXT_HIDDEN,
            intermediate_size=4 * TEXT_HIDDEN,
            num_hidden_layers=3,
            num_attention_heads=2,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=TEXT_HIDDEN,
            # real SD 1.x text_encoder/config.json carries these legacy ids (eos_token_id=2
            # makes transformers pool at argmax(input_ids), i.e. the first 49407)
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        ),
        unet=dict(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            norm_num_groups=32,
            cross_attention_dim=TEXT_HIDDEN,
            attention_head_dim=2,  # diffusers' (mis)name: number of heads, SD 1.x style scalar (real: 8)
            use_linear_projection=False,
            upcast_attention=False,
        ),
        prediction_type="epsilon",
        pad_token=EOS,
    ),
    "tiny-sd-2": dict(
        desc="SD 2.x-like: v_prediction, OpenCLIP-H-style text tower (gelu) truncated to penultimate layer",
        text=dict(
            vocab_size=VOCAB_SIZE,
            hidden_size=TEXT_HIDDEN,
            intermediate_size=4 * TEXT_HIDDEN,
            # Real SD 2.1 text_encoder/config.json has num_hidden_layers=23: the diffusers
            # conversion dropped the last of OpenCLIP ViT-H's 24 blocks, so running the stored
            # encoder to the end (+ final_layer_norm) *is* the "penultimate layer" output.
            # Tiny: a 3-block tower stored as 2 blocks.
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            hidden_act="gelu",
            projection_dim=TEXT_HIDDEN,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        ),
        unet=dict(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            norm_num_groups=32,
            cross_attention_dim=TEXT_HIDDEN,
            attention_head_dim=[2, 4],  # SD 2.x style per-block list (real: [5, 10, 20, 20])
            use_linear_projection=True,
            upcast_attention=True,  # as in SD 2.1 (768-v)
        ),
        prediction_type="v_prediction",
        pad_token="!",  # SD 2.x tokenizer pads with "!" (id 0)
    ),
    "tiny-sd-3": dict(
        desc="SD 1.x-like, deeper: three U-Net levels (32/64/96), per-block heads, linear projection",
        text=dict(
            vocab_size=VOCAB_SIZE,
            hidden_size=TEXT_HIDDEN,
            intermediate_size=4 * TEXT_HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=TEXT_HIDDEN,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        ),
        unet=dict(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(32, 64, 96),
            layers_per_block=1,
            norm_num_groups=32,
            cross_attention_dim=TEXT_HIDDEN,
            attention_head_dim=[2, 4, 3],  # per-block heads, one per level
            use_linear_projection=True,
            upcast_attention=False,
        ),
        prediction_type="epsilon",
        pad_token=EOS,
    ),
}

VAE_CFG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    block_out_channels=(32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=32,
    scaling_factor=0.18215,
)


# ---------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------
def load_open_clip_tokenizer_module():
    """Import open_clip/tokenizer.py on its own (open_clip/__init__ pulls timm/torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("open-clip-torch is not installed (pip install --no-deps open-clip-torch ftfy wcwidth)")
    pkg = spec.submodule_search_locations[0]
    s = importlib.util.spec_from_file_location("_open_clip_tokenizer", os.path.join(pkg, "tokenizer.py"))
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return mod, os.path.join(pkg, "bpe_simple_vocab_16e6.txt.gz")


def build_vocab_merges(bpe_gz, bytes_to_unicode):
    """Same construction as CLIP's SimpleTokenizer, with HF's special-token spelling."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += [BOS, EOS]
    assert len(vocab) == VOCAB_SIZE and len(set(vocab)) == VOCAB_SIZE, len(vocab)
    assert vocab[BOS_ID] == BOS and vocab[EOS_ID] == EOS
    return {t: i for i, t in enumerate(vocab)}, merges


def build_fast_tokenizer(vocab, merges):
    """A `tokenizers` pipeline equal to CLIP's (used only to cross-check the fixture's files)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    bpe = models.BPE(
        vocab=vocab,
        merges=merges,
        unk_token=EOS,
        continuing_subword_prefix="",
        end_of_word_suffix="</w>",
        fuse_unk=False,
    )
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0 {EOS}:0",
        pair=f"{BOS}:0 $A:0 {EOS}:0 {EOS}:1 $B:1 {EOS}:1",
        special_tokens=[(BOS, BOS_ID), (EOS, EOS_ID)],
    )
    # BPEDecoder first (turns "</w>" into spaces per token), then map byte-level chars back
    tok.decoder = decoders.Sequence([decoders.BPEDecoder(suffix="</w>"), decoders.ByteLevel()])
    tok.add_special_tokens(
        [
            AddedToken(BOS, special=True, normalized=True, lstrip=False, rstrip=False, single_word=False),
            AddedToken(EOS, special=True, normalized=True, lstrip=False, rstrip=False, single_word=False),
        ]
    )
    return tok


def write_tokenizer_dir(d, vocab, merges, pad_token):
    """vocab.json + merges.txt + configs, the slow-tokenizer files real SD repos ship (no tokenizer.json)."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    cfg = {
        "add_prefix_space": False,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
        "tokenizer_class": "CLIPTokenizer",
        **special,
    }
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)


def verify_tokenizer(tok_dir, tok, oc_mod, bpe_gz, log):
    """Compare ids: open_clip SimpleTokenizer vs transformers reading the fixture's files vs an
    in-memory `tokenizers` pipeline built from the same vocab/merges (not written to the fixture;
    it documents the fast-tokenizer construction that reproduces CLIP)."""

    oc = oc_mod.SimpleTokenizer(bpe_gz)
    ref = {p: [BOS_ID] + oc.encode(p) + [EOS_ID] for p in PROMPTS}
    # open_clip's batched __call__ (pads to 77 with 0) must agree with encode()
    batch = oc(PROMPTS).tolist()
    for p, row in zip(PROMPTS, batch):
        assert row[: len(ref[p])] == ref[p] and all(x == 0 for x in row[len(ref[p]) :]), p

    results = {}
    results["tokenizers (in-memory, from vocab+merges)"] = {p: tok.encode(p).ids for p in PROMPTS}

    from transformers import CLIPTokenizer

    try:
        t_fast = CLIPTokenizer.from_pretrained(tok_dir)
        results["transformers CLIPTokenizer.from_pretrained(dir)"] = {p: t_fast(p)["input_ids"] for p in PROMPTS}
    except Exception as e:  # pragma: no cover
        log(f"  transformers from_pretrained(dir) failed: {e!r}")
    try:
        vm_dir = tok_dir + ".vm-only"
        shutil.rmtree(vm_dir, ignore_errors=True)
        os.makedirs(vm_dir)
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(tok_dir, f), vm_dir)
        t_vm = CLIPTokenizer.from_pretrained(vm_dir)
        results["transformers CLIPTokenizer(vocab.json+merges.txt only)"] = {
            p: t_vm(p)["input_ids"] for p in PROMPTS
        }
        shutil.rmtree(vm_dir, ignore_errors=True)
    except Exception as e:  # pragma: no cover
        log(f"  transformers from vocab.json+merges.txt failed: {e!r}")
        shutil.rmtree(tok_dir + ".vm-only", ignore_errors=True)

    from transformers import PreTrainedTokenizerFast

    t_obj = PreTrainedTokenizerFast(tokenizer_object=tok)
    results["transformers PreTrainedTokenizerFast(in-memory tokenizers object)"] = {
        p: t_obj(p)["input_ids"] for p in PROMPTS
    }

    # Known, intended divergence: with pad_token "!" (SD 2.x / OpenCLIP convention), transformers
    # registers "!" (id 0) as a *special* added token, exactly as it does for the real SD 2.x /
    # SDXL tokenizer_2 folders, so "!!" becomes [0, 0] instead of open_clip's single "!!</w>".
    # open_clip (what the model was trained with) keeps "!!" as one token.
    pad = json.load(open(os.path.join(tok_dir, "tokenizer_config.json")))["pad_token"]
    hf_dir_name = "transformers CLIPTokenizer.from_pretrained(dir)"
    ok = True
    for name, got in results.items():
        bad = [p for p in PROMPTS if got[p] != ref[p]]
        log(f"  {name}: {len(PROMPTS) - len(bad)}/{len(PROMPTS)} prompts match open_clip")
        for p in bad:
            expected = name == hf_dir_name and pad == "!" and "!" in p and 0 in got[p]
            ok &= expected
            tag = "expected HF divergence (pad '!' is a special token)" if expected else "MISMATCH"
            log(f"    {tag} {p!r}: open_clip={ref[p]} got={got[p]}")
    for p in PROMPTS[:3]:
        log(f"  {p!r} -> {ref[p]}")
    return ok, ref


# ---------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------
def build_pipeline(name, spec, tok_dir):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(CLIPTextConfig(**spec["text"])).eval()
    torch.manual_seed(SEED + 1)
    unet = UNet2DConditionModel(**spec["unet"]).eval()
    torch.manual_seed(SEED + 2)
    vae = AutoencoderKL(**VAE_CFG).eval()
    # Random init leaves norms at (1, 0) and many biases at 0; perturb them so that
    # parity checks against the Rust side are not trivially satisfied.
    g = torch.Generator().manual_seed(SEED + 3)
    with torch.no_grad():
        for m in (text_encoder, unet, vae):
            for n, p in m.named_parameters():
                if p.ndim == 1:
                    base = 1.0 if ("norm" in n and n.endswith("weight")) else 0.0
                    p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
    scheduler = DDIMScheduler(prediction_type=spec["prediction_type"], **SCHED_COMMON)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


WEIGHT_FILES = (
    ("text_encoder", "model.safetensors"),
    ("unet", "diffusion_pytorch_model.safetensors"),
    ("vae", "diffusion_pytorch_model.safetensors"),
)


def rewrite_f16(out):
    """Rewrite the three weight files as float16 (floating tensors only), same file names.

    The models are generated in f32; the f16-rounded weights written here *are* the fixture.
    Also: transformers 5.x saves CLIPTextModel keys without the `text_model.` prefix
    (`embeddings.token_embedding.weight`); real SD checkpoints (and candle's
    `build_clip_transformer`) use `text_model.embeddings.token_embedding.weight`, so the text
    encoder file is rewritten in the real-checkpoint naming."""
    import torch
    from safetensors.torch import load_file, save_file

    for comp, fname in WEIGHT_FILES:
        path = os.path.join(out, comp, fname)
        sd = load_file(path)
        if comp == "text_encoder":
            sd = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in sd.items()}
        sd = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
        save_file(sd, path, metadata={"format": "pt"})
        os.chmod(path, 0o644)  # safetensors creates 0600


def check_weights_loaded(pipe, out, log):
    """Every tensor in the files (f16) must be what the reloaded f32 pipeline holds, upcast
    exactly (no silent random init, no dtype surprise)."""
    import torch
    from safetensors.torch import load_file

    for comp, fname in WEIGHT_FILES:
        file_sd = load_file(os.path.join(out, comp, fname))
        model_sd = getattr(pipe, comp).state_dict()
        strip = lambda k: k[len("text_model.") :] if k.startswith("text_model.") else k
        f = {strip(k): v for k, v in file_sd.items()}
        m = {strip(k): v for k, v in model_sd.items() if not k.endswith("position_ids")}
        assert set(f) == set(m), (comp, sorted(set(f) ^ set(m))[:10])
        for k in f:
            assert f[k].dtype == torch.float16, (comp, k, f[k].dtype)
            assert m[k].dtype == torch.float32, (comp, k, m[k].dtype)
            assert torch.equal(f[k].to(torch.float32), m[k]), (comp, k)
        log(
            f"  {comp}: {len(f)} tensors (f16 in file), {sum(v.numel() for v in f.values()):,} params, "
            "all loaded back exactly as f32"
        )


def sanity(out, spec, log):
    import torch
    from diffusers import StableDiffusionPipeline

    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(
        out, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    t_load = time.perf_counter() - t0
    check_weights_loaded(pipe, out, log)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler", type(pipe.scheduler)
    assert pipe.scheduler.config.prediction_type == spec["prediction_type"]
    lat = pipe.unet.config.sample_size
    px = lat * pipe.vae_scale_factor
    t0 = time.perf_counter()
    with torch.no_grad():
        res = pipe(
            "an astronaut riding a horse",
            height=px,
            width=px,
            num_inference_steps=2,
            guidance_scale=7.5,
            generator=torch.Generator("cpu").manual_seed(SEED),
            output_type="np",
        )
    t_run = time.perf_counter() - t0
    img = res.images
    assert img.shape == (1, px, px, 3), img.shape
    import numpy as np

    assert np.isfinite(img).all(), "NaN/inf in output image"
    # also check the raw latent path (no VAE decode) is finite
    with torch.no_grad():
        latents = pipe(
            "a photo of a cat",
            height=px,
            width=px,
            num_inference_steps=2,
            generator=torch.Generator("cpu").manual_seed(SEED),
            output_type="latent",
        ).images
    assert tuple(latents.shape) == (1, 4, lat, lat), latents.shape
    assert torch.isfinite(latents).all()
    log(
        f"  reload+2 DDIM steps OK: image {img.shape}, latents {tuple(latents.shape)}, "
        f"timesteps {pipe.scheduler.timesteps.tolist()}, load {t_load:.2f}s, run {t_run:.2f}s, "
        f"img mean {img.mean():.4f} std {img.std():.4f}"
    )
    return dict(load_s=t_load, run_s=t_run, image_shape=list(img.shape), latent_shape=list(latents.shape))


def make_test_images(out_dir, log):
    """tests/fixtures/images/: three 16x16 RGB PNGs (cat, dog, car: simple shapes on gradients,
    drawn with integer numpy arithmetic, so deterministic) and wrong_size.png (20 wide x 16 high)
    for a bad-input test. Latent 8x8 with the tiny VAE (downsampling factor 2)."""
    import numpy as np
    from PIL import Image

    d = os.path.join(out_dir, "images")
    os.makedirs(d, exist_ok=True)
    yy, xx = np.mgrid[0:16, 0:16].astype(np.int64)

    def canvas(top, bottom, h=16, w=16):
        y = np.arange(h, dtype=np.int64)[:, None, None]
        top, bottom = np.array(top, np.int64), np.array(bottom, np.int64)
        img = (top * (h - 1 - y) + bottom * y) // (h - 1)
        return np.broadcast_to(img, (h, w, 3)).copy()

    # cat: orange disc (head) with two triangular ears, on a blue-grey vertical gradient
    cat = canvas((90, 110, 150), (40, 50, 80))
    head = (yy - 9) ** 2 + (xx - 8) ** 2 <= 20
    ears = ((yy >= 2) & (yy <= 5) & (np.abs(xx - 5) <= (yy - 2))) | ((yy >= 2) & (yy <= 5) & (np.abs(xx - 11) <= (yy - 2)))
    cat[head | ears] = (230, 140, 40)
    cat[(yy == 8) & ((xx == 6) | (xx == 10))] = (20, 160, 40)  # eyes
    # dog: brown body rectangle + head square + dark legs, on a green gradient
    dog = canvas((120, 200, 120), (30, 100, 30))
    dog[(yy >= 6) & (yy <= 10) & (xx >= 3) & (xx <= 11)] = (140, 90, 50)
    dog[(yy >= 3) & (yy <= 7) & (xx >= 10) & (xx <= 14)] = (160, 105, 60)
    dog[(yy >= 11) & (yy <= 13) & ((xx == 4) | (xx == 10))] = (60, 40, 20)
    # car: red body, lighter cabin, two black wheels, on a grey horizontal-ish gradient
    car = canvas((200, 200, 210), (90, 90, 90))
    car[(yy >= 7) & (yy <= 10) & (xx >= 1) & (xx <= 14)] = (200, 30, 30)
    car[(yy >= 4) & (yy <= 6) & (xx >= 4) & (xx <= 10)] = (230, 120, 120)
    car[(yy - 11) ** 2 + (xx - 4) ** 2 <= 3] = (15, 15, 15)
    car[(yy - 11) ** 2 + (xx - 11) ** 2 <= 3] = (15, 15, 15)
    # wrong size: 20 wide x 16 high diagonal gradient
    wy, wx = np.mgrid[0:16, 0:20].astype(np.int64)
    wrong = np.stack([wx * 12, wy * 15, (wx + wy) * 7], axis=-1)

    for name, arr in (("cat", cat), ("dog", dog), ("car", car), ("wrong_size", wrong)):
        arr = np.ascontiguousarray(arr.clip(0, 255).astype(np.uint8))
        path = os.path.join(d, name + ".png")
        Image.fromarray(arr, "RGB").save(path, format="PNG", optimize=False, compress_level=9)
        log(f"  wrote {os.path.relpath(path, out_dir)}: {arr.shape[1]}x{arr.shape[0]} RGB, {os.path.getsize(path)} bytes")


def dir_listing(out):
    rows = []
    for root, _, files in os.walk(out):
        for f in sorted(files):
            p = os.path.join(root, f)
            rows.append((os.path.relpath(p, out), os.path.getsize(p)))
    return sorted(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "out_dir", nargs="?", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
    )
    ap.add_argument("--check-only", action="store_true", help="only verify existing fixtures")
    ap.add_argument("--only", choices=sorted(VARIANTS), action="append", help="build only these variants")
    args = ap.parse_args()
    log = lambda s: print(s, flush=True)

    import diffusers
    import tokenizers
    import torch
    import transformers

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    oc_mod, bpe_gz = load_open_clip_tokenizer_module()
    try:
        from importlib.metadata import version

        oc_ver = version("open-clip-torch")
    except Exception:
        oc_ver = "?"
    log(
        f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}, "
        f"tokenizers {tokenizers.__version__}, open-clip-torch {oc_ver}"
    )
    vocab, merges = build_vocab_merges(bpe_gz, oc_mod.bytes_to_unicode)
    tok = build_fast_tokenizer(vocab, merges)
    log(f"vocab {len(vocab)} entries, {len(merges)} merges (from {bpe_gz})")

    all_ok = True
    for name in args.only or sorted(VARIANTS):
        spec = VARIANTS[name]
        out = os.path.abspath(os.path.join(args.out_dir, name))
        log(f"== {name}: {spec['desc']}\n   -> {out}")
        if not args.check_only:
            shutil.rmtree(out, ignore_errors=True)
            tmp_tok = out + ".tok"
            write_tokenizer_dir(tmp_tok, vocab, merges, spec["pad_token"])
            t0 = time.perf_counter()
            pipe = build_pipeline(name, spec, tmp_tok)
            pipe.save_pretrained(out, safe_serialization=True)
            rewrite_f16(out)
            # replace whatever transformers wrote with our canonical tokenizer files
            shutil.rmtree(os.path.join(out, "tokenizer"), ignore_errors=True)
            write_tokenizer_dir(os.path.join(out, "tokenizer"), vocab, merges, spec["pad_token"])
            shutil.rmtree(tmp_tok, ignore_errors=True)
            log(f"  built+saved in {time.perf_counter() - t0:.2f}s")
        tok_files = sorted(os.listdir(os.path.join(out, "tokenizer")))
        assert tok_files == sorted(TOKENIZER_FILES), tok_files
        ok, _ = verify_tokenizer(os.path.join(out, "tokenizer"), tok, oc_mod, bpe_gz, log)
        all_ok &= ok
        sanity(out, spec, log)
        total = 0
        for rel, sz in dir_listing(out):
            total += sz
            log(f"  {sz:>10,d}  {rel}")
        log(f"  {total:>10,d}  total")
    if not args.check_only:
        gold = os.path.abspath(os.path.join(args.out_dir, "tiny-sd-tokens.json"))
        oc = oc_mod.SimpleTokenizer(bpe_gz)
        src = f"open_clip SimpleTokenizer (open-clip-torch {oc_ver}), with <|startoftext|>/<|endoftext|>, no padding"
        rows = [f"  {json.dumps(p, ensure_ascii=False)}: {json.dumps([BOS_ID] + oc.encode(p) + [EOS_ID])}" for p in PROMPTS]
        with open(gold, "w", encoding="utf-8") as f:
            f.write('{\n "source": ' + json.dumps(src) + ',\n "ids": {\n' + ",\n".join(rows) + "\n }\n}\n")
        log(f"wrote {gold}")
        make_test_images(os.path.abspath(args.out_dir), log)
    else:
        import filecmp
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            make_test_images(tmp, lambda _s: None)
            names = sorted(os.listdir(os.path.join(tmp, "images")))
            _, bad, err = filecmp.cmpfiles(os.path.join(tmp, "images"), os.path.join(args.out_dir, "images"), names, shallow=False)
            if bad or err:
                all_ok = False
                log(f"test images differ from a fresh build: {bad + err}")
            else:
                log(f"test images {names}: identical to a fresh build")
    if not all_ok:
        sys.exit("verification FAILED")
    log("all OK")


if __name__ == "__main__":
    main()
