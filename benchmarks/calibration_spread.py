"""How steady is the engine's start-up compute budget? (issue 4: glass-to-ear p50 <= 250 ms.)

The engine's latency includes a compute budget measured at start-up (``Engine.calibrate``: warm hops of one
scratch session). On the 2-core machine two runs of the same server set it at 45 and at 67 ms, which alone moved
glass-to-ear from 237 to 258 ms. This builds the shipped engine once (as ``serve`` does), then runs ``--rounds``
more calibration rounds of ``--hops`` hops each and prints, per round, the statistics a budget could be made of,
how far each one moves from round to round, and the budgets that one round alone and the quietest of three
(the engine's policy) would set from them. The rounds run back to back in one process on a quiet machine,
so the spread seen is the measurement's own, not the load's.

    python benchmarks/calibration_spread.py --rounds 30
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=12, help="calibration rounds after the engine's own (default 12)")
    p.add_argument("--hops", type=int, default=24, help="timed hops per round (default 24, EngineConfig's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as benchmarks/streaming.py)")
    p.add_argument("--json", default=None, help="write every round's samples (seconds) here")
    args = p.parse_args()

    import torch

    from frieren_rt.streaming.builders import EngineOptions, build_engine
    from frieren_rt.streaming.engine import budget_from_samples, quietest_round

    torch.set_num_threads(args.threads)
    engine = build_engine(None, EngineOptions())
    cfg = engine.config
    print(f"engine's own calibration: budget {1e3 * engine.compute_budget_s:.1f} ms "
          f"(margin {cfg.budget_margin}), samples p50 / p95 "
          f"{1e3 * np.percentile(engine.calibration_s, 50):.1f} / {1e3 * np.percentile(engine.calibration_s, 95):.1f} ms")
    rounds = [engine.calibration_s]
    for _ in range(args.rounds):
        rounds.append(engine.calibrate(hops=args.hops + cfg.calibration_warmup, batch=1, warmup=cfg.calibration_warmup))
    qs = (50, 75, 90, 95, 100)
    table = np.array([[1e3 * np.percentile(r, q) for q in qs] for r in rounds])  # (R, Q) ms
    print("| round | " + " | ".join(f"p{q}" for q in qs) + " |")
    print("|---" * (len(qs) + 1) + "|")
    for i, row in enumerate(table):
        print(f"| {'engine' if i == 0 else i} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    print("| spread (max / min) | " + " | ".join(f"{table[:, j].max() / table[:, j].min():.2f}"
                                                for j in range(len(qs))) + " |")
    # The budget each policy would set from these rounds, replayed on consecutive groups of rounds: the first
    # round alone (as the engine often stopped before: its p95 within 1.5x its median), and the quietest of
    # ``calibration_rounds`` (streaming.engine.quietest_round, the engine's policy now).
    k = cfg.calibration_rounds
    first = [budget_from_samples(r, margin=cfg.budget_margin, floor_s=cfg.budget_floor_s) for r in rounds]
    quiet = [budget_from_samples(quietest_round(rounds[i: i + k]), margin=cfg.budget_margin, floor_s=cfg.budget_floor_s)
             for i in range(0, len(rounds) - k + 1, k)]
    for name, b in (("one round", first), (f"quietest of {k}", quiet)):
        print(f"budget from {name}: {len(b)} draws, min / median / max {1e3 * min(b):.1f} / "
              f"{1e3 * float(np.median(b)):.1f} / {1e3 * max(b):.1f} ms (max / min {max(b) / min(b):.2f})")
    pooled = np.concatenate(rounds)
    print("pooled ms: " + ", ".join(f"p{q} {1e3 * np.percentile(pooled, q):.1f}" for q in (50, 90, 95, 99)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([list(map(float, r)) for r in rounds], f)


if __name__ == "__main__":
    main()
