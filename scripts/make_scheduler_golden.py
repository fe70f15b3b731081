#!/usr/bin/env python3
"""Writes tests/golden/schedulers.json: known answers from diffusers' DDIM, Euler, LMS and LCM
schedulers, read by the tests in sd/src/scheduler.rs and sd/src/scheduler/lcm.rs.

Usage (a venv with torch, diffusers and scipy):
    /tmp/venv-golden/bin/python scripts/make_scheduler_golden.py [out.json]
    /tmp/venv-golden/bin/python scripts/make_scheduler_golden.py --lcm-only [out.json]

`--lcm-only` rewrites only the `lcm` section of an existing file and keeps every other value
byte for byte: a full rerun on another CPU can move a few Euler/LMS values by an f32 ulp, which
the tests tolerate but a reviewer's diff would show.
"""
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import diffusers
from diffusers import DDIMScheduler, EulerDiscreteScheduler, LCMScheduler, LMSDiscreteScheduler
import diffusers.schedulers.scheduling_lcm as scheduling_lcm

warnings.filterwarnings("ignore")

BASE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
            beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading",
            set_alpha_to_one=False, clip_sample=False)
CONFIGS = {
    # SD 1.5 scheduler_config.json (epsilon).
    "sd15": dict(BASE, prediction_type="epsilon"),
    # SD 2.x (768-v) scheduler_config.json (v-prediction).
    "sd2v": dict(BASE, prediction_type="v_prediction"),
    # Other spacings / schedules, for the timestep and sigma tables only.
    "linear_trailing": dict(BASE, beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
                            timestep_spacing="trailing", steps_offset=0, set_alpha_to_one=True,
                            prediction_type="epsilon"),
    "linspace": dict(BASE, timestep_spacing="linspace", set_alpha_to_one=True,
                     prediction_type="epsilon"),
}
AC_T = [0, 1, 191, 500, 891, 999]
N = 16


def fl(x):
    return [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


def make(name, cfg, rng):
    out = {"config": cfg}
    ddim = DDIMScheduler(**cfg)
    out["alphas_cumprod"] = {str(t): float(ddim.alphas_cumprod[t]) for t in AC_T}
    out["betas"] = {str(t): float(ddim.betas[t]) for t in AC_T}
    out["ddim_timesteps"] = {}
    for steps in (15, 50, 100):
        ddim.set_timesteps(steps)
        out["ddim_timesteps"][str(steps)] = [int(t) for t in ddim.timesteps]
    out["euler"] = {}
    out["lms"] = {}
    for steps in (15, 50):
        e = EulerDiscreteScheduler.from_config(cfg)
        e.set_timesteps(steps)
        out["euler"][str(steps)] = {"timesteps": fl(e.timesteps), "sigmas": fl(e.sigmas),
                                    "init_noise_sigma": float(e.init_noise_sigma)}
        l = LMSDiscreteScheduler.from_config(cfg)
        l.set_timesteps(steps)
        out["lms"][str(steps)] = {"timesteps": fl(l.timesteps), "sigmas": fl(l.sigmas),
                                  "init_noise_sigma": float(l.init_noise_sigma)}
    if name not in ("sd15", "sd2v"):
        return out

    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    # DDIM: one step at the first and at the last of 50 timesteps (prev < 0 -> final_alpha_cumprod).
    ddim.set_timesteps(50)
    steps = []
    for t in (int(ddim.timesteps[0]), int(ddim.timesteps[25]), int(ddim.timesteps[-1])):
        x = rng.standard_normal(N).astype(np.float32)
        m = rng.standard_normal(N).astype(np.float32)
        r = ddim.step(f(m), t, f(x), eta=0.0)
        steps.append({"num_inference_steps": 50, "timestep": t, "sample": fl(x), "model_output": fl(m),
                      "prev_sample": fl(r.prev_sample), "pred_original_sample": fl(r.pred_original_sample)})
    out["ddim_step"] = steps

    # Euler: 3 consecutive steps of a 15-step schedule, with scale_model_input.
    e = EulerDiscreteScheduler.from_config(cfg)
    e.set_timesteps(15)
    x = (rng.standard_normal(N) * float(e.init_noise_sigma)).astype(np.float32)
    seq = {"num_inference_steps": 15, "sample0": fl(x), "steps": []}
    xt = f(x)
    for k in range(3):
        t = e.timesteps[k]
        scaled = e.scale_model_input(xt, t)
        m = rng.standard_normal(N).astype(np.float32)
        r = e.step(f(m), t, xt)
        seq["steps"].append({"timestep": float(t), "scaled_input": fl(scaled), "model_output": fl(m),
                             "prev_sample": fl(r.prev_sample), "pred_original_sample": fl(r.pred_original_sample)})
        xt = r.prev_sample
    out["euler_seq"] = seq

    # LMS (order 4): 5 consecutive steps of a 15-step schedule (orders 1, 2, 3, 4, 4).
    l = LMSDiscreteScheduler.from_config(cfg)
    l.set_timesteps(15)
    x = (rng.standard_normal(N) * float(l.init_noise_sigma)).astype(np.float32)
    seq = {"num_inference_steps": 15, "sample0": fl(x), "steps": []}
    xt = f(x)
    for k in range(5):
        t = l.timesteps[k]
        scaled = l.scale_model_input(xt, t)
        m = rng.standard_normal(N).astype(np.float32)
        order = min(k + 1, 4)
        coeffs = [l.get_lms_coefficient(order, k, c) for c in range(order)]
        r = l.step(f(m), t, xt)
        seq["steps"].append({"timestep": float(t), "scaled_input": fl(scaled), "model_output": fl(m),
                             "lms_coeffs": [float(c) for c in coeffs],
                             "prev_sample": fl(r.prev_sample), "pred_original_sample": fl(r.pred_original_sample)})
        xt = r.prev_sample
    out["lms_seq"] = seq

    # Real-image mode: x_t = sqrt(ac_t) z0 + sqrt(1 - ac_t) eps (DDIM's add_noise).
    z0 = rng.standard_normal(N).astype(np.float32)
    eps = rng.standard_normal(N).astype(np.float32)
    an = []
    for t in (1, 191, 891):
        r = ddim.add_noise(f(z0), f(eps), torch.tensor([t]))
        an.append({"timestep": t, "z0": fl(z0), "eps": fl(eps), "noisy": fl(r)})
    out["add_noise"] = an
    return out


# LCM-LoRA on SD 1.5: `LCMScheduler.from_config(pipe.scheduler.config)`, i.e. SD 1.5's
# scheduler_config.json read by LCMScheduler (its own defaults for original_inference_steps = 50
# and timestep_scaling = 10).
LCM_CONFIG = dict(BASE, prediction_type="epsilon")


def make_lcm(rng):
    """LCM timesteps for 1..8 (and 15, 50) steps, the boundary scalings, and whole 1- and 4-step
    trajectories with given model outputs and re-noising noise, stepped as the pipeline does
    (the timestep a 0-d int64 tensor, so c_skip / c_out are float32)."""
    out = {"config": dict(LCM_CONFIG, _class_name="LCMScheduler")}
    s = LCMScheduler(**LCM_CONFIG)
    out["timesteps"] = {}
    for steps in list(range(1, 9)) + [15, 50]:
        s.set_timesteps(steps)
        out["timesteps"][str(steps)] = [int(t) for t in s.timesteps]
    out["scalings"] = {}
    for t in (999, 759, 499, 259, 19, 0):
        c_skip, c_out = s.get_scalings_for_boundary_condition_discrete(torch.tensor(t))
        out["scalings"][str(t)] = [float(c_skip), float(c_out)]
    f = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    real_randn = scheduling_lcm.randn_tensor
    seqs = []
    for steps in (1, 4):
        s.set_timesteps(steps)
        x = rng.standard_normal(N).astype(np.float32)
        seq = {"num_inference_steps": steps, "sample0": fl(x), "steps": []}
        xt = f(x)
        for k, t in enumerate(s.timesteps):
            m = rng.standard_normal(N).astype(np.float32)
            z = rng.standard_normal(N).astype(np.float32)
            scheduling_lcm.randn_tensor = lambda *a, **kw: f(z)
            try:
                prev, denoised = s.step(f(m), t, xt, return_dict=False)
            finally:
                scheduling_lcm.randn_tensor = real_randn
            seq["steps"].append({"timestep": int(t), "model_output": fl(m), "noise": fl(z),
                                 "denoised": fl(denoised), "prev_sample": fl(prev)})
            xt = prev
        seqs.append(seq)
    out["seqs"] = seqs
    return out


def main():
    args = [a for a in sys.argv[1:] if a != "--lcm-only"]
    path = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "tests/golden/schedulers.json"
    lcm = make_lcm(np.random.default_rng(20261202))
    if "--lcm-only" in sys.argv:
        doc = json.loads(path.read_text())
    else:
        rng = np.random.default_rng(20261123)
        doc = {"generator": "scripts/make_scheduler_golden.py",
               "diffusers": diffusers.__version__, "torch": torch.__version__,
               "configs": {name: make(name, cfg, rng) for name, cfg in CONFIGS.items()}}
    doc["lcm"] = lcm
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
