"""A resumable training loop: checkpoints, loss logs, progress bar, wall-time records, a time budget.

Sessions on this project's machines end hard (180 min), so every stage checkpoints periodically and resumes
from its latest checkpoint when run again with the same output folder (issue 3, "Training").
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

__all__ = ["Checkpointer", "LossLog", "TrainState", "train_loop", "warmup_cosine"]


@dataclass
class TrainState:
    """What a checkpoint restores: step count, modules, optimizers, and the data generator's state."""

    step: int
    modules: Mapping[str, torch.nn.Module]
    optimizers: Mapping[str, torch.optim.Optimizer]
    generator: torch.Generator


class Checkpointer:
    """Atomic save/load of a TrainState under ``folder/checkpoint.pt`` (loaded with weights_only=True)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "checkpoint.pt"

    def save(self, state: TrainState) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        blob = {
            "step": state.step,
            "modules": {k: m.state_dict() for k, m in state.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
            "generator": state.generator.get_state(),
        }
        tmp = self.path.with_suffix(".tmp")
        torch.save(blob, tmp)
        os.replace(tmp, self.path)  # a session killed mid-write leaves the previous checkpoint intact

    def restore(self, state: TrainState) -> bool:
        """Load the checkpoint into ``state`` if one exists; returns whether it did."""
        if not self.path.is_file():
            return False
        blob = torch.load(self.path, map_location="cpu", weights_only=True)
        missing = [k for k in (*state.modules, *state.optimizers) if k not in {**blob["modules"], **blob["optimizers"]}]
        if missing:  # e.g. a flow run resumed with ema_decay whose checkpoint was saved without an average
            raise ValueError(f"{self.path} holds no state for {missing}: it was saved with another setup. Resume "
                             f"with the config it was trained with, or move the checkpoint away to start afresh")
        for k, m in state.modules.items():
            m.load_state_dict(blob["modules"][k])
        for k, o in state.optimizers.items():
            o.load_state_dict(blob["optimizers"][k])
        state.generator.set_state(blob["generator"])
        state.step = int(blob["step"])
        return True


class LossLog:
    """Append-only JSON-lines log of metrics per step (``folder/losses.jsonl``)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "losses.jsonl"

    def write(self, step: int, metrics: Mapping[str, float], elapsed: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "elapsed_s": round(elapsed, 3), **metrics}) + "\n")

    def read(self) -> list[dict[str, float]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def warmup_cosine(step: int, *, total: int, warmup: int, floor: float = 0.1) -> float:
    """Learning-rate multiplier: linear warm-up (Frieren uses 1000 steps) then cosine decay to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def train_loop(
    step_fn: Callable[[int], Mapping[str, float]],
    state: TrainState,
    *,
    total_steps: int,
    folder: Path,
    log_every: int = 20,
    checkpoint_every: int = 200,
    time_budget_s: float | None = None,
    desc: str = "train",
    clock: Callable[[], float] = time.monotonic,
) -> TrainState:
    """Run ``step_fn(step)`` from the checkpointed step to ``total_steps``.

    Resumes from ``folder/checkpoint.pt``; logs averaged metrics every ``log_every`` steps; checkpoints every
    ``checkpoint_every`` steps, at the end, and when ``time_budget_s`` runs out (then it returns early; rerun to
    continue). Wall time of this run is added to ``folder/wall_time.json``.
    """
    ckpt, log = Checkpointer(folder), LossLog(folder)
    resumed = ckpt.restore(state)
    start = clock()
    sums: dict[str, float] = {}
    count = 0
    bar = tqdm(total=total_steps, initial=state.step, desc=desc + (" (resumed)" if resumed else ""),
               dynamic_ncols=True, mininterval=1.0)
    try:
        while state.step < total_steps:
            metrics = step_fn(state.step)
            state.step += 1
            count += 1
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            bar.update(1)
            if state.step % log_every == 0 or state.step == total_steps:
                avg = {k: v / count for k, v in sums.items()}
                log.write(state.step, avg, clock() - start)
                bar.set_postfix({k: f"{v:.4g}" for k, v in avg.items()})
                sums, count = {}, 0
            out_of_time = time_budget_s is not None and clock() - start > time_budget_s
            if state.step % checkpoint_every == 0 or state.step == total_steps or out_of_time:
                ckpt.save(state)
            if out_of_time:
                break
    finally:
        bar.close()
        _add_wall_time(Path(folder), clock() - start, state.step)
    return state


def _add_wall_time(folder: Path, seconds: float, step: int) -> None:
    path = folder / "wall_time.json"
    record = json.loads(path.read_text()) if path.is_file() else {"seconds": 0.0, "runs": 0}
    record["seconds"] = round(record["seconds"] + seconds, 2)
    record["runs"] += 1
    record["last_step"] = step
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
