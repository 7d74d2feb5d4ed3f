"""``frieren-rt train STAGE``: one stage of the training recipe in a run folder (resumable)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STAGE_HELP = {
    "detector": "train the visual event detector (which frame shows a sound's cause, and its class) on world "
    "clips",
    "cache": "render world clips and cache their mel spectrograms and frozen visual features",
    "vae": "train the 1-D mel KL-VAE (2x temporal downsampling) and measure its reconstruction",
    "decoder": "retrain the VAE decoder at a larger size on the frozen encoder (latents and flow models unchanged)",
    "flow": "train the base rectified-flow model on streaming windows (CFG dropout, known-latent prefixes)",
    "reflow": "generate 25-step CFG teacher pairs from the base model and reflow the guided velocity",
    "distill": "one-step distillation of the reflow model (t = 0, x1 = x0 + v_guided)",
    "single": "fold CFG into the one-step student: one network pass per window instead of two",
    "vocoder": "distil a small student vocoder from HiFi-GAN universal (the CPU streaming budget needs it)",
    "export": "copy the run's trained files into frieren_rt/weights (float16) as the shipped model",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train the small model: detector | cache | vae | decoder | flow | reflow | distill | single | vocoder | export",
        description="Run one stage of the training recipe (in order: detector, cache, vae, flow, reflow, distill, single). "
        "Each stage reads and writes the run folder, checkpoints as it goes and resumes when run again. "
        + " ".join(f"{k}: {v}." for k, v in STAGE_HELP.items()),
    )
    p.add_argument("stage", choices=list(STAGE_HELP), help="which stage to run")
    p.add_argument("--run", type=Path, default=Path("runs/small"), help="run folder (default: runs/small)")
    p.add_argument("--config", type=Path, default=None,
                   help="JSON config: {'common': {...}, '<stage>': {...}} overriding the defaults")
    p.add_argument("--steps", type=int, default=None, help="override the number of optimisation steps")
    p.add_argument("--batch-size", type=int, default=None, help="override the batch size")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 2: this machine's cores)")
    p.add_argument("--device", default=None,
                   help="where flow, reflow, distill and single compute: cpu (default) or cuda[:N]; the same config "
                   "draws the same windows and noise on either (the other stages run on the CPU)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="checkpoint and stop after this long; run again to continue")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from frieren_rt.train.stages import load_stage_config, run_stage  # noqa: PLC0415

    cfg = load_stage_config(args.stage, args.config, steps=args.steps, batch_size=args.batch_size,
                            threads=args.threads, device=args.device)
    result = run_stage(args.stage, args.run, cfg, time_budget_s=args.time_budget)
    print(json.dumps({"stage": args.stage, **result}, indent=1))
    return 0
