"""``frieren-rt eval``: the evaluation table (paper Table 2 shape) on the world's test split."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate the shipped models on the world's test split (onset sync, class acc, FD, KL, speed)",
        description="Generate audio for test-split world clips with each model row (base / reflow / reflow + "
        "distill at 1, 5, 25 Euler steps, Dopri5, the single-pass student), plus the true audio (ceiling) and a "
        "mismatched clip's audio (floor), and print the metrics table. Needs 'frieren-rt assets fetch'.",
    )
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--clips", type=int, default=10, help="test-split clips (default 10, 10 s each)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test",
                   help="world split to evaluate on (default test; train checks fitting, not generalisation)")
    p.add_argument("--quick", action="store_true", help="only the 1-step rows, base 25 steps and the references")
    p.add_argument("--row", action="append", default=None,
                   metavar="VARIANT:STEPS[:CFG[:TAIL_CFG]][@VOCODER[/DECODER]]",
                   help="evaluate this row instead of the table (repeatable), e.g. --row base:25:2 --row distill:1 "
                   "--row distill:1@student/offline#generate (frieren-rt generate's default: the student vocoder "
                   "after the offline VAE decoder, at generate's hop and look-ahead) --row single:1#engine (serve's "
                   "default) --row distill:1@hifigan; #engine / #generate override --hop and --lookahead; --row truth "
                   "and --row mismatched: the ceiling and floor rows")
    p.add_argument("--vocoder", choices=["auto", "student", "hifigan"], default="auto",
                   help="vocoder for generated rows (default: the student when shipped)")
    p.add_argument("--hop", type=float, default=None, metavar="S",
                   help="generation hop in seconds of the rows without a product geometry (default 0.2 s, 9 "
                   "latents, the model rows' common ground; 0.1 is the engine's and generate's 4-latent 92.9 ms hop)")
    p.add_argument("--lookahead", default="0", metavar="N|full",
                   help="latents generated past each hop before it is decoded (default 0; 'full': the decoder's and "
                   "vocoder's whole right context; the engine rows use serve's 1 revised, generate's 5 revised)")
    p.add_argument("--revise-lookahead", action="store_true",
                   help="the next hop generates the --lookahead latents again with its newer video instead of "
                   "keeping them (the vector field, not only the decoder, sees video after what it commits)")
    p.add_argument("--seam-in-lookahead", action="store_true",
                   help="crossfade each seam inside the --lookahead latents' audio (serve --seam-in-lookahead)")
    p.add_argument("-o", "--output", type=Path, default=Path("eval.json"), help="JSON report (default eval.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from frieren_rt.eval.runner import DEFAULT_ROWS, QUICK_ROWS, evaluate, markdown_table, parse_row  # noqa: PLC0415

    if args.clips < 2:
        raise ValueError("--clips must be >= 2 (FD needs a set, the mismatched row a second clip)")
    rows = [parse_row(r) for r in args.row] if args.row else QUICK_ROWS if args.quick else DEFAULT_ROWS
    if args.hop is not None and args.hop <= 0:
        raise ValueError("--hop must be > 0 seconds (0.1: the streaming engine's hop)")
    if args.lookahead != "full" and not (args.lookahead.isdigit()):
        raise ValueError(f"--lookahead must be a whole number of latents or 'full', got {args.lookahead!r}")
    if args.seam_in_lookahead and args.lookahead == "0":
        raise ValueError("--seam-in-lookahead needs --lookahead 1 or more (the seam lies in the look-ahead's audio)")
    report = evaluate(args.weights, clips=args.clips, rows=rows, vocoder=args.vocoder, out=args.output,
                      split=args.split, hop_s=args.hop,
                      lookahead=None if args.lookahead == "full" else int(args.lookahead),
                      revise_lookahead=args.revise_lookahead, lookahead_seam=args.seam_in_lookahead)
    print(markdown_table(report))
    print(f"(report: {args.output})")
    return 0
