"""``frieren-rt demo``: a world clip through the real WebRTC path on loopback, recorded to an mp4."""

from __future__ import annotations

import argparse
from pathlib import Path

from frieren_rt.cli.serve import add_engine_args, engine_factory


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="send a world clip through the WebRTC server on loopback, record the audio, write an mp4",
        description="Render a world clip, start the server on 127.0.0.1, send the clip over WebRTC from an "
        "in-process client, record the generated audio it receives, mux it with the video to OUTPUT and print "
        "the latency (glass-to-ear: a frame's capture to its audio at the client). Needs 'frieren-rt assets "
        "fetch' for the world's sounds.",
    )
    p.add_argument("--seed", type=int, default=200_000, help="world clip seed (default: the first test clip)")
    p.add_argument("--duration", type=float, default=5.0, metavar="S", help="clip seconds")
    p.add_argument("-o", "--output", type=Path, default=Path("demo.mp4"), help="output .mp4")
    add_engine_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.output.suffix.lower() != ".mp4":
        raise ValueError(f"output must end in .mp4, got {args.output}")
    if not 0 < args.duration <= 120:
        raise ValueError("--duration must be in (0, 120] seconds")
    from frieren_rt.streaming.demo import run_demo  # noqa: PLC0415

    r = run_demo(seed=args.seed, duration=args.duration, output=args.output, engine=engine_factory(args))
    ms = lambda s: "n/a" if s is None else f"{1000 * s:.0f} ms"  # noqa: E731
    print(f"{r.output}: {r.frames_sent} frames sent, {r.audio_s:.2f} s of audio received, {r.underruns} underruns")
    print(f"latency: engine {ms(r.engine_latency_s)}, glass-to-ear {ms(r.glass_to_ear_s)} "
          "(capture -> its audio at the client, on the stream timeline)")
    if r.onset_error:
        e = r.onset_error
        print(f"event onset error vs glass-to-ear ({int(e['n'])} events): p50 {ms(e['p50'])}, p95 {ms(e['p95'])}, "
              f"max {ms(e['max'])}")
    return 0
