"""Streaming benchmark: the shipped model through the real WebRTC path on loopback (issue 4, "Benchmark").

Per run: N aiortc clients publish looping world clips to one server (one engine, one model instance, hops of
sessions that fall due together batched) for ``--seconds``; reported per session count: compute per hop
(p50 / p95, and p95 / hop: real time needs <= 1, the budget is <= 0.5), glass-to-ear (the first frame's
capture -> the play time of the audio that stands for it, on the shared monotonic clock), time to first
audio (offer sent -> first audio frame at the client), underruns and frames dropped by latest-wins.

    python benchmarks/streaming.py --seconds 60 --sessions 1 2 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


async def run(sessions: int, seconds: float, weights: Path | None, hop: float, window: float, threads: int) -> dict:
    import torch

    from frieren_rt.streaming import client
    from frieren_rt.streaming.builders import EngineOptions, build_engine
    from frieren_rt.streaming.latency import first_audio_latency
    from frieren_rt.streaming.server import SESSIONS, ServerConfig, bound_port, create_app, start
    from frieren_rt.world import render_clip

    torch.set_num_threads(threads)
    engine = build_engine(weights, EngineOptions(window_s=window, hop_s=hop))
    app = create_app(ServerConfig(port=0, max_sessions=max(4, sessions)), engine=engine)
    runner = await start(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{bound_port(runner)}"
    clips = [render_clip(200_000 + i) for i in range(sessions)]
    try:
        t_offer = time.monotonic()
        pubs = await asyncio.gather(*(client.publish_offer(base, c.frames, c.fps) for c in clips))
        await asyncio.sleep(seconds)
        out = []
        for pub in pubs:
            sess = app[SESSIONS].sessions[pub.session]
            stats = sess.engine_session.stats()
            timings = list(sess.engine_session.timings)
            audio = pub.recorder.received()
            g2e = first_audio_latency(audio, pub.video.capture_times[0], pub.info["stream_delay_s"])
            out.append({"stats": stats, "timings": timings, "g2e": g2e,
                        "ttfa": (float(audio.arrivals[0]) - t_offer) if len(audio.arrivals) else None,
                        "received_s": len(audio.samples) / audio.rate})
        await asyncio.gather(*(p.close() for p in pubs))
    finally:
        await runner.cleanup()
    hop_s = engine.generator.geometry.hop_duration_s
    totals = [t.total for r in out for t in r["timings"][5:]]  # first hops include warm-up
    stage = {k: pct([getattr(t, k) for r in out for t in r["timings"][5:]], 95)
             for k in ("features", "vector_field", "vae_decode", "vocoder", "resample")}
    batch = [t.batch_size for r in out for t in r["timings"]]
    return {"sessions": sessions, "seconds": seconds, "hop_s": hop_s, "engine_latency_s": engine.latency_s,
            "compute_p50_ms": 1000 * pct(totals, 50), "compute_p95_ms": 1000 * pct(totals, 95),
            "p95_over_hop": pct(totals, 95) / hop_s, "stage_p95_ms": {k: 1000 * v for k, v in stage.items()},
            "mean_batch": float(np.mean(batch)) if batch else float("nan"),
            "glass_to_ear_ms": [None if r["g2e"] is None else 1000 * r["g2e"] for r in out],
            "ttfa_s": [r["ttfa"] for r in out], "underruns": [r["stats"].underruns for r in out],
            "frames_dropped": [r["stats"].frames_dropped for r in out],
            "received_s": [r["received_s"] for r in out]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, nargs="+", default=[1], help="session counts to run (default 1)")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds per run (default 60)")
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: shipped)")
    p.add_argument("--hop", type=float, default=0.2, help="hop seconds (default 0.2)")
    p.add_argument("--window", type=float, default=1.6, help="window seconds (default 1.6)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args()
    results = []
    for n in args.sessions:
        r = asyncio.run(run(n, args.seconds, args.weights, args.hop, args.window, args.threads))
        results.append(r)
        print(json.dumps(r, default=str))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
