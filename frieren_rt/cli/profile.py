"""``frieren-rt profile``: N sessions through the real server and transport; per-stage latency, JSON, trace,
plots (issue 6)."""

from __future__ import annotations

import argparse
from pathlib import Path

from frieren_rt.cli.serve import add_engine_args, engine_factory


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "profile",
        help="drive N sessions of world clips through the server and report where the latency goes",
        description="Send looping world clips from N clients through the real server and transport and "
        "report, per stage (decode, features, vector field, VAE decode, vocoder, resample/encode, transport) "
        "and end to end, p50/p95/p99, glass-to-ear, real-time factor, time to first audio, underruns, frames "
        "dropped by latest-wins and queue depths. Writes OUTPUT/profile.json, OUTPUT/trace.json (open in "
        "https://ui.perfetto.dev or chrome://tracing) and PNG plots, and prints a markdown table. Without "
        "--server a server is started in-process on 127.0.0.1 with the shipped model (or --model / "
        "--random-model). World clips need 'frieren-rt assets fetch'.",
    )
    count = p.add_mutually_exclusive_group()
    count.add_argument("--sessions", type=int, default=1, metavar="N", help="sessions at once (default 1)")
    count.add_argument("--sweep", default=None, metavar="sessions=N,N,...",
                       help="run several session counts one after another, e.g. sessions=1,2,4,8")
    p.add_argument("--duration", type=float, default=30.0, metavar="S", help="seconds per point (default 30)")
    p.add_argument("--transport", choices=["webrtc", "ws"], default="webrtc",
                   help="webrtc (POST /offer, default) or ws (the /ws game-capture protocol)")
    p.add_argument("--server", default=None, metavar="URL",
                   help="profile a running server (e.g. http://127.0.0.1:8080); engine stages are then not "
                   "visible, only what GET /stats reports")
    p.add_argument("--warmup-hops", type=int, default=5, metavar="K",
                   help="leave each session's first K hops out of the stage statistics (default 5)")
    p.add_argument("--seed", type=int, default=200_000,
                   help="first world clip seed (session i gets seed + i)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (they need matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", type=Path, default=Path("profile"),
                   help="output folder (default ./profile)")
    add_engine_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from frieren_rt.streaming.profile import (  # noqa: PLC0415
        ProfileConfig,
        markdown_table,
        parse_sweep,
        run_profile,
        write_outputs,
        write_plots,
    )

    sessions = parse_sweep(args.sweep) if args.sweep else (args.sessions,)
    if min(sessions) < 1:
        raise ValueError("--sessions must be >= 1")
    cfg = ProfileConfig(sessions=sessions, duration_s=args.duration, transport=args.transport,
                        server=args.server, warmup_hops=args.warmup_hops, clip_seed=args.seed)
    engine = None
    if args.server is None:
        engine = engine_factory(args)  # applies --threads to the in-process engine
    report, trace = run_profile(cfg, engine=engine, progress=not args.no_progress)
    paths = write_outputs(report, trace, args.output, plots=False)
    if not args.no_plots:
        try:
            paths += write_plots(report, args.output)
        except ImportError as exc:  # matplotlib is optional: the JSON and the trace are already written
            print(f"frieren-rt profile: no PNG plots ({exc}); pip install matplotlib, or pass --no-plots")
    for path in paths:
        print(f"wrote {path}")
    print(markdown_table(report))
    return 0
