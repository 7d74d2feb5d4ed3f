"""Sessions per device: the streaming engine's whole per-hop path (features, vector field, VAE decode, vocoder,
resample) with the shipped model, for batches of scratch sessions fed noise frames at the stream's frame rate.

This is the engine's own start-up calibration (streaming.engine.Engine.calibrate) run at growing batch sizes,
so a batch here is exactly what N live sessions whose hops fall due together cost. A batch sustains real time
when its p95 wall time per hop stays within the hop (issue 4 asks for p95 <= 0.5x the hop for one session, the
margin the start-up compute budget keeps). No network: transport costs are measured by benchmarks/streaming.py.

    python benchmarks/engine_capacity.py --device cuda                 # a GPU machine
    python benchmarks/engine_capacity.py --device cpu --batches 1 2    # this 2-core CPU
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

from frieren_rt.cli.serve import add_gate_arg

BATCHES = (1, 8, 32, 64, 128, 256)
STAGES = ("features", "vector_field", "vae_decode", "vocoder", "resample")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help=f"sessions per batch {BATCHES}")
    p.add_argument("--hop", type=float, default=0.1, help="hop in seconds (default: the engine's, 0.1)")
    p.add_argument("--hops", type=int, default=12, help="timed hops per batch size (after 3 warm-up hops)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--backend", default="eager", choices=["eager", "compile", "cudagraph", "tensorrt"],
                   help="how the vector field runs (frieren_rt.backends; static ones cover batches up to 16)")
    p.add_argument("--budget-s", type=float, default=240.0, help="skip batch sizes still pending after this")
    add_gate_arg(p)  # --no-event-gate, the CLI's own flag
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from frieren_rt.streaming.builders import EngineOptions, build_engine

    start = time.monotonic()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "CPU"
    # latency_s is fixed so the engine skips its own start-up calibration; max_batch covers the largest batch.
    engine = build_engine(None, EngineOptions(hop_s=args.hop, device=args.device, max_batch=max(args.batches),
                                              latency_s=1.0, precision=args.precision,
                                              backend=args.backend, event_gate=args.event_gate))
    hop_s = engine.generator.geometry.hop_duration_s
    stage_log: list = []
    run_batch = engine.worker._run_batch  # record each batch's per-stage timings as the worker returns them

    def recording(jobs):
        results = run_batch(jobs)
        stage_log.append(results[0].timings)
        return results

    engine.worker._run_batch = recording
    print(f"# engine capacity: {name}; torch {torch.__version__}; hop {hop_s * 1e3:.1f} ms; "
          f"precision {args.precision}; backend {args.backend}; shipped model; "
          f"event gate {'on' if engine.generator.gate is not None else 'off'}\n")
    header = ["sessions", "p50 ms", "p95 ms", "p95 / hop", "real time"] + [f"{s} ms" for s in STAGES]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    best = 0
    try:
        for b in args.batches:
            if time.monotonic() - start > args.budget_s:
                print(f"| {b} | skipped (budget {args.budget_s:.0f} s) |")
                continue
            try:
                stage_log.clear()
                samples = engine.calibrate(hops=args.hops + 3, batch=b, warmup=3)
            except Exception as exc:  # noqa: BLE001 - one failed size must not hide the others
                print(f"| {b} | failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]} |")
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
                continue
            p50, p95 = np.percentile(samples, [50, 95]) * 1e3
            stages = [np.median([getattr(t, s) for t in stage_log[3:]]) * 1e3 for s in STAGES]
            fits = p95 <= hop_s * 1e3
            best = b if fits else best
            print(f"| {b} | {p50:.1f} | {p95:.1f} | {p95 / (hop_s * 1e3):.2f} | {'yes' if fits else 'no'} | "
                  + " | ".join(f"{v:.1f}" for v in stages) + " |", flush=True)
    finally:
        engine.close()
    print(f"\nlargest batch measured in real time (p95 <= hop): {best}; wall {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
