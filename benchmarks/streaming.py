"""Streaming benchmark: the shipped model through the real server and transport on loopback (issue 4).

A thin front over ``frieren_rt.streaming.profile.run_profile`` (the code behind ``frieren-rt profile``): one
in-process server, N clients sending looping world clips for ``--seconds`` per session count; prints the
profile's markdown table (compute per hop p50/p95/p99 and p95 / hop, stages, glass-to-ear, time to first audio,
underruns, frames dropped) and the engine's latency by part. Every number is measured by the profiler.

    python benchmarks/streaming.py --seconds 30 --sessions 1 2 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, nargs="+", default=[1], help="session counts to run (default 1)")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds per session count (default 30)")
    p.add_argument("--transport", choices=["webrtc", "ws"], default="webrtc")
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: shipped)")
    p.add_argument("--hop", type=float, default=0.1, help="hop seconds (default 0.1, as serve)")
    p.add_argument("--window", type=float, default=1.6, help="window seconds (default 1.6)")
    p.add_argument("--backend", default="auto",
                   help="how the networks run (frieren_rt.backends; default auto: script on CPU)")
    p.add_argument("--budget-margin", type=float, default=None,
                   help="compute budget / p95 of the quietest start-up calibration round (default 2.0, EngineConfig)")
    p.add_argument("--lookahead", type=int, default=1, help="latents generated past each hop (default 1, as serve)")
    p.add_argument("--revise-lookahead", action=argparse.BooleanOptionalAction, default=True,
                   help="the next hop generates the look-ahead again (EngineOptions.revise_lookahead; default on, "
                   "as serve)")
    p.add_argument("--seam-in-lookahead", action="store_true",
                   help="the seam crossfade inside the look-ahead (EngineOptions.lookahead_seam; serve's flag)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: see BENCHMARKS.md)")
    p.add_argument("--budget-sessions", type=int, default=1,
                   help="sessions each session's latency budget covers (serve --budget-sessions)")
    p.add_argument("--json", type=Path, default=None, help="write the profile report here")
    args = p.parse_args()

    import torch

    from frieren_rt.streaming.builders import EngineOptions, build_engine
    from frieren_rt.streaming.profile import ProfileConfig, markdown_table, run_profile

    torch.set_num_threads(args.threads)
    cfg = ProfileConfig(sessions=tuple(args.sessions), duration_s=args.seconds, transport=args.transport)
    options = EngineOptions(window_s=args.window, hop_s=args.hop, budget_sessions=args.budget_sessions,
                            backend=args.backend, budget_margin=args.budget_margin, lookahead=args.lookahead,
                            revise_lookahead=args.revise_lookahead, lookahead_seam=args.seam_in_lookahead)
    report, _ = run_profile(cfg, engine=lambda: build_engine(args.weights, options))
    print(markdown_table(report))
    print("engine latency by part (ms):", json.dumps(report.get("engine", {}).get("latency_ms", {})))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
