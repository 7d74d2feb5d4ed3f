"""Training speed of the vector-field stages on a device: flow steps per second and reflow teacher pairs per
second, for the shipped field size and larger ones, on a feature cache of the real shapes.

The cache holds random features at the shapes `frieren-rt train cache` writes (10 s clips at 30 fps: image
1280 float16, motion 17 + the detector's 76, 80-band mel), so the host's window assembly costs what it costs
in a real run; the shipped VAE and detector size the model as the recipe does. What it times is exactly
`frieren_rt.train.stages.stage_flow` and `make_pairs` with the config's batch sizes.

    python benchmarks/train_speed.py --device cuda                      # a GPU machine
    python benchmarks/train_speed.py --device cpu --steps 60 --pairs 64  # this 2-core CPU
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

SIZES = {"small (shipped: 128 x 4, 2 heads)": (128, 2, 4), "large (192 x 6, 3 heads)": (192, 3, 6),
         "official width (512 x 8, 8 heads)": (512, 8, 8)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=300, help="timed flow steps per size (after 20 warm-up steps)")
    p.add_argument("--pairs", type=int, default=256, help="reflow teacher pairs per size (25 CFG Euler steps each)")
    p.add_argument("--clips", type=int, default=24, help="clips in the synthetic cache")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES), metavar="SIZE",
                   help=f"field sizes to time (default: all of {list(SIZES)})")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def fake_run(folder: Path, clips: int) -> None:
    """A run folder with a synthetic cache of the real shapes and the shipped VAE and detector."""
    from frieren_rt.data import ClipRecord, write_cache
    from frieren_rt.pipeline import default_weights_dir

    gen = torch.Generator().manual_seed(0)
    events = [{"time": t, "class": "coin"} for t in (1.0, 3.5, 6.0, 8.5)]
    for split, seeds in (("train", range(clips)), ("val", range(clips, clips + 1))):
        write_cache(folder / f"cache_{split}", [
            ClipRecord(seed=s, mel=torch.randn(80, 861, generator=gen) - 4.0,
                       image=torch.rand(300, 1280, generator=gen).half(), motion=torch.rand(300, 17 + 76, generator=gen),
                       frame_ts=torch.arange(300, dtype=torch.float64) / 30.0, events=events, silent_spans=[])
            for s in seeds])
    for name in ("vae", "detector"):
        shutil.copy(default_weights_dir() / f"{name}.safetensors", folder / f"{name}.safetensors")


def time_size(folder: Path, size: tuple[int, int, int], args: argparse.Namespace) -> dict[str, float]:
    from frieren_rt.data import FeatureCache
    from frieren_rt.model.foley import FoleyModel
    from frieren_rt.train.data import WindowSampler
    from frieren_rt.train.loop import LossLog
    from frieren_rt.train.stages import (
        geometry_of,
        latents_of,
        load_stage_config,
        make_pairs,
        run_stage,
        sampler_options,
    )

    hidden, heads, depth = size
    config = Path(__file__).resolve().parents[1] / "frieren_rt" / "configs" / "small.json"
    cfg = load_stage_config("flow", config, steps=20 + args.steps, device=args.device, field_hidden=hidden,
                            field_heads=heads, field_depth=depth, threads=args.threads)
    shutil.rmtree(folder / "flow", ignore_errors=True)  # the previous size's checkpoint would resume
    run_stage("flow", folder, cfg)
    log = LossLog(folder / "flow").read()  # a row every 20 steps with the loop's elapsed seconds
    steps_s = (log[-1]["step"] - log[0]["step"]) / (log[-1]["elapsed_s"] - log[0]["elapsed_s"])
    params = sum(p.numel() for p in FoleyModel.from_pretrained(folder / "base.safetensors").parameters())

    rcfg = load_stage_config("reflow", config, reflow_pairs=args.pairs, device=args.device)
    geom = geometry_of(rcfg)
    sampler = WindowSampler(FeatureCache(folder / "cache_train"), latents_of(folder, "train"), geom,
                            **sampler_options(rcfg, geom))
    teacher = FoleyModel.from_pretrained(folder / "base.safetensors").to(args.device)
    make_pairs(teacher, sampler, load_stage_config("reflow", config, reflow_pairs=64), torch.Generator())  # warm
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    make_pairs(teacher, sampler, rcfg, torch.Generator().manual_seed(1))
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    pairs_s = args.pairs / (time.perf_counter() - start)
    return {"params": params, "flow_steps_s": steps_s, "batch": cfg.batch_size, "pairs_s": pairs_s}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = args.device
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or "cpu"
    print(f"# training speed on {device} ({name}), torch {torch.__version__}, {args.threads} host threads")
    print(f"flow: {args.steps} timed steps per size; reflow pairs: {args.pairs} per size (25 Euler steps, CFG)\n")
    print("| field | parameters | flow steps/s (batch) | 7000 flow steps | reflow pairs/s | 2048 pairs |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fake_run(folder, args.clips)
        for label in args.sizes:
            r = time_size(folder, SIZES[label], args)
            print(f"| {label} | {r['params'] / 1e6:.2f} M | {r['flow_steps_s']:.1f} ({r['batch']}) | "
                  f"{7000 / r['flow_steps_s'] / 60:.1f} min | {r['pairs_s']:.1f} | {2048 / r['pairs_s'] / 60:.1f} min |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
