"""Time one forward of the default FoleyModel on the CPU per backend and precision (issue 5, "The CPU path").

    python benchmarks/cpu_backends.py --threads 1 2 --batch 1 2

Inputs are one streaming window: 69 latents (1.6 s at 22050 / 512 latents/s), 50 condition slots of the
1297-wide [MobileNetV2 | motion] features, per-sample cond_index, known latents and mask. Batch 2 is what one
session with classifier-free guidance runs. Settings (frieren_rt.backends.apply_backend): eager fp32 (the
reference), eager under bf16 autocast (AMX), torch.compile with freezing in fp32 and in bf16. Each row gives
the minimum and median of --repeats calls after the first (which for compile includes the cold compile,
reported apart), and the max abs difference of the output against eager fp32 on the same inputs.

Each thread count runs in its own process: inductor bakes the OpenMP thread count into the code it
generates, so a graph compiled under one setting would misreport another. The model is randomly
initialised with zero_init off (the trained-from-zero output conv would make every output 0 and every
difference trivially 0); the compute is that of the shipped model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import torch

from frieren_rt.backends import apply_backend
from frieren_rt.model.foley import FoleyConfig, FoleyModel

SETTINGS = {"eager-fp32": ("eager", "fp32"), "eager-bf16": ("eager", "bf16"),
            "compile-fp32": ("compile", "fp32"), "compile-bf16": ("compile", "bf16")}


def window_inputs(model: FoleyModel, batch: int, latents: int, slots: int, seed: int = 0):
    """((x (B, C, T), t (B,), cond (B, S, D)), {cond_index (B, T), known (B, C, T), mask (B, 1, T)})."""
    g = torch.Generator().manual_seed(seed)
    c, d = model.latent_channels, model.cfg.feature_dim
    x, known = torch.randn(batch, c, latents, generator=g), torch.randn(batch, c, latents, generator=g)
    cond = torch.rand(batch, slots, d, generator=g)
    index = (torch.arange(latents) * slots // latents).expand(batch, latents)  # latents read slots in order
    mask = (torch.arange(latents) < latents - 9).float().expand(batch, 1, latents)  # all but the last hop
    return (x, torch.rand(batch, generator=g), cond), {"cond_index": index, "known": known, "mask": mask}


def measure(threads: int, batches: list[int], settings: list[str], repeats: int, latents: int,
            slots: int) -> list[dict]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    base = FoleyConfig()
    model = FoleyModel(replace(base, field=replace(base.field, zero_init=False))).eval()
    rows = []
    for batch in batches:
        args, kw = window_inputs(model, batch, latents, slots)
        with torch.inference_mode():
            ref = model(*args, **kw)
        for name in settings:
            backend, precision = SETTINGS[name]
            run = apply_backend(model, backend, device="cpu", precision=precision, buckets=(batch,))
            with torch.inference_mode():
                start = time.perf_counter()
                out = run(*args, **kw)  # warm-up: oneDNN primitives, or the cold compile
                first = time.perf_counter() - start
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    run(*args, **kw)
                    times.append(1000.0 * (time.perf_counter() - start))
            rows.append({"threads": threads, "batch": batch, "setting": name, "min_ms": min(times),
                         "median_ms": statistics.median(times), "first_s": first,
                         "max_abs_diff": (out.float() - ref).abs().max().item(),
                         "ref_max_abs": ref.abs().max().item()})
    return rows


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], 
                   help="intra-op thread counts, one process each")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--latents", type=int, default=69, help="window latents (1.6 s)")
    p.add_argument("--slots", type=int, default=50, help="condition slots per window")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one thread count, JSON out
    return p.parse_args()


def main() -> None:
    a = parse_args()
    if a.child:
        print(json.dumps(measure(a.threads[0], a.batch, a.settings, a.repeats, a.latents, a.slots)))
        return
    rows = []
    for threads in a.threads:
        cmd = [sys.executable, __file__, "--child", "--threads", str(threads), "--batch", *map(str, a.batch),
               "--settings", *a.settings, "--repeats", str(a.repeats), "--latents", str(a.latents),
               "--slots", str(a.slots)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows += json.loads(out.strip().splitlines()[-1])
    print(f"{'threads':>7} {'batch':>5} {'setting':<13} {'min ms':>8} {'median ms':>9} {'first s':>8} "
          f"{'max|diff|':>10} {'max|ref|':>9}")
    for r in rows:
        print(f"{r['threads']:>7} {r['batch']:>5} {r['setting']:<13} {r['min_ms']:>8.2f} "
              f"{r['median_ms']:>9.2f} {r['first_s']:>8.2f} {r['max_abs_diff']:>10.2e} "
              f"{r['ref_max_abs']:>9.3f}")


if __name__ == "__main__":
    main()
