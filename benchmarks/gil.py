"""The GIL and the hop: one streaming hop of the shipped model, alone and beside a busy Python thread.

A live server runs its hops on an inference thread while the event loop's thread runs WebRTC in Python (RTP,
SRTP, Opus and VP8 hand-offs). An eager forward pass is a few hundred op calls, and each gives the GIL up and
must win it back; when the other thread holds it, the hop waits. The "script" backend (frieren_rt.backends)
runs every network of the hop as a frozen TorchScript graph, which executes in C++ without the GIL.

This measures that directly, without a transport: hops of one session (features of three new frames, the
vector field, VAE decode, vocoder) with the thread alone, then with a second thread that does pure-Python
work for ``--busy-ms`` and sleeps ``--idle-ms`` in a loop.

    python benchmarks/gil.py --hops 40
"""

from __future__ import annotations

import argparse
import threading
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hops", type=int, default=40, help="timed hops per case (default 40, after 5 warm-up)")
    p.add_argument("--busy-ms", type=float, default=2.0, help="Python work per loop of the busy thread (ms)")
    p.add_argument("--idle-ms", type=float, default=1.0, help="sleep per loop of the busy thread (ms)")
    p.add_argument("--backends", nargs="+", default=["eager", "script"])
    args = p.parse_args()

    import numpy as np
    import torch

    from frieren_rt.data.cache import StreamChunk
    from frieren_rt.pipeline import FoleyPipeline, GenerationOptions

    torch.set_num_threads(1)  # as serve runs on <= 2 cores

    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            end = time.perf_counter() + args.busy_ms / 1000
            while time.perf_counter() < end:
                sum(i * i for i in range(200))
            time.sleep(args.idle_ms / 1000)

    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.integers(0, 255, (3, 120, 160, 3), dtype=np.uint8))  # one hop: 3 frames
    rows = ["| backend | hop alone p50 / p95 | beside the busy thread p50 / p95 | slowdown (p50) |", "|---|---|---|---|"]
    for backend in args.backends:
        pipe = FoleyPipeline.from_dir(None, GenerationOptions(hop_s=0.1, backend=backend))
        gen = pipe.generator()
        state = gen.new_stream(start_time=0.0)
        feats = pipe.frame_features(rng.integers(0, 255, (60, 120, 160, 3), dtype=np.uint8))  # 2 s of context
        times = torch.arange(60, dtype=torch.float64) / 30.0

        def hop() -> float:
            start = time.perf_counter()
            pipe.features.many([StreamChunk(frames, frames[-1], 0, None)])
            gen.step([state], [(times, feats)])
            return (time.perf_counter() - start) * 1000

        def measure() -> tuple[float, float]:
            for _ in range(5):
                hop()
            ms = [hop() for _ in range(args.hops)]
            return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))

        alone = measure()
        stop.clear()
        thread = threading.Thread(target=busy, daemon=True)
        thread.start()
        try:
            beside = measure()
        finally:
            stop.set()
            thread.join()
        rows.append(f"| {backend} | {alone[0]:.1f} / {alone[1]:.1f} ms | {beside[0]:.1f} / {beside[1]:.1f} ms | "
                    f"{beside[0] / alone[0]:.2f}x |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
