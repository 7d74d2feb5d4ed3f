"""Does the vector field carry a sound on, or let it die? (MODEL_CARD.md, "What was tried".)

For every validation event of 0.5 s or longer, two windows end 30 latents (0.7 s) after its onset:
- "continue": the known prefix holds the TRUE latents up to 10 latents (0.23 s) after the onset, as streaming
  would have emitted them; the field generates the next 20 (0.23-0.7 s after the onset, still inside the sound);
- "fresh": nothing is known; the field generates the whole window.
Both are decoded by the run's VAE; the table gives the mean log-mel (natural log) of the generated latents
against the true ones over the same frames, and the cosine of their mean spectral profiles. A field that
continues sounds matches the true level in "continue"; one that ends them early falls below it.

    python benchmarks/tail_energy.py runs/NAME --variant base --steps 25 --cfg 1 4.5
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from frieren_rt.data import FeatureCache
from frieren_rt.flow import euler
from frieren_rt.model.foley import FoleyModel
from frieren_rt.train.data import WindowSampler
from frieren_rt.train.stages import (StageConfig, geometry_of, guided, latents_of, load_vae, silent_latents,
                                     teacher_velocity)

AFTER_ONSET = 30  # latents from the onset to the window's end
KNOWN_AFTER_ONSET = 10  # latents of the sound the "continue" prefix already holds


@torch.no_grad()
def level_and_profile(vae, latents: torch.Tensor, first_frame: int) -> tuple[float, torch.Tensor]:
    """Mean log-mel of the decoded (1, C, W) latents from mel frame ``first_frame`` on, and its band profile."""
    mel = vae.decode(vae.from_flow(latents))[0][:, first_frame:]  # (80, M)
    return float(mel.mean()), mel.mean(1) - mel.mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder (its cache_val, latents_val, vae and model files)")
    ap.add_argument("--variant", default="base", help="model file: base | reflow | distill | single (default base)")
    ap.add_argument("--steps", type=int, default=25, help="Euler steps (default 25)")
    ap.add_argument("--cfg", type=float, nargs="+", default=[1.0, 4.5], help="guidance scales (default 1 4.5)")
    ap.add_argument("--tail-cfg", type=float, default=None, help="guidance scale on sounds' tails (default: none)")
    ap.add_argument("--parallel", type=float, default=1.0,
                    help="share of the guidance update kept along the conditional prediction (1: plain CFG; "
                    "frieren_rt.flow.guidance.projected_guidance)")
    ap.add_argument("--rescale", type=float, default=0.0,
                    help="rescaled guidance's phi (0: plain CFG; frieren_rt.flow.guidance.rescaled_guidance)")
    ap.add_argument("--prefix-cfg", type=float, default=None,
                    help="guidance scale after a known prefix that ends in sound (default: none; "
                    "frieren_rt.flow.guidance.prefix_guidance_scale, as the teacher's teacher_prefix_cfg)")
    ap.add_argument("--clips", type=int, default=30, help="validation clips (default 30)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vae = load_vae(args.run / "vae.safetensors")
    cache = FeatureCache(args.run / "cache_val")
    latents = latents_of(args.run, "val")
    geom = geometry_of(StageConfig())
    sampler = WindowSampler(cache, latents, geom)
    model = FoleyModel.from_pretrained(args.run / f"{args.variant}.safetensors")
    w, rate = geom.window_latents, geom.latent_rate
    rule = StageConfig(tail_cfg_scale=args.tail_cfg, teacher_cfg_rescale=args.rescale,
                       teacher_prefix_cfg=args.prefix_cfg)  # the teacher's guidance rules (train/stages.py)
    silent = silent_latents(vae)
    print(f"| {args.variant}, Euler {args.steps} | guidance | window | events | true level | generated level "
          "| spectral cosine |\n|---|---|---|---|---|---|---|")
    for scale in args.cfg:
        gen = torch.Generator().manual_seed(0)
        rows: dict[str, list] = {"continue": [], "fresh": []}
        for seed in cache.seeds[: args.clips]:
            n = latents[seed][0].shape[1]
            for event in cache[seed].events:
                end = int(event["time"] * rate) + AFTER_ONSET
                if event["duration"] < 0.5 or end > n or end < w:
                    continue
                for mode, gap in (("continue", AFTER_ONSET - KNOWN_AFTER_ONSET), ("fresh", w)):
                    b = sampler.window(seed, end, gap, gen, False)
                    if args.parallel == 1.0:
                        v = teacher_velocity(model, b, replace(rule, cfg_scale=scale), silent)
                    else:
                        v = guided(model, b, scale, args.tail_cfg, args.parallel)
                    x1 = euler(v, torch.randn(b.x1.shape, generator=gen), args.steps)
                    first = 2 * (w - gap)  # first generated mel frame (the VAE halves time)
                    true_level, true_prof = level_and_profile(vae, b.x1, first)
                    gen_level, gen_prof = level_and_profile(vae, x1, first)
                    cos = float(true_prof @ gen_prof / (true_prof.norm() * gen_prof.norm() + 1e-9))
                    rows[mode].append((true_level, gen_level, cos))
        tail = "" if args.tail_cfg is None else f", tail {args.tail_cfg}"
        tail += "" if args.parallel == 1.0 else f", parallel {args.parallel}"
        tail += "" if args.rescale == 0.0 else f", rescale {args.rescale}"
        tail += "" if args.prefix_cfg is None else f", after sound {args.prefix_cfg}"
        for mode, vals in rows.items():
            a = np.array(vals)
            print(f"| | {scale}{tail} | {mode} | {len(a)} | {a[:, 0].mean():.2f} | {a[:, 1].mean():.2f} "
                  f"| {a[:, 2].mean():.2f} |", flush=True)


if __name__ == "__main__":
    main()
