"""``frieren-rt world render``: write one procedural clip of the Foley world as mp4 + JSON event list."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "world",
        help="render clips of the procedural game-Foley world (video + true audio + event list)",
        description="The procedural game-Foley world: 2-D game scenes whose sounds follow from the picture, "
        "rendered deterministically from a seed (train 0..99999, val 100000..100999, test 200000..200999).",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = sub.add_parser(
        "render",
        help="render one clip to an mp4 (H.264 + AAC) and a JSON event list beside it",
        description="Render clip SEED to OUTPUT.mp4 with its true audio, and OUTPUT.json with the events "
        "(time, class, source object id, loudness, ...). Needs 'frieren-rt assets fetch' first.",
    )
    r.add_argument("--seed", type=int, required=True, help="clip seed; its range picks the split")
    r.add_argument("-o", "--output", type=Path, required=True, help="output .mp4 path")
    r.add_argument("--duration", type=float, default=None, help="seconds (default: the preset's, 10)")
    r.add_argument("--preset", default="small", help="world preset: small (160x120), square224, pal (25 fps)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from frieren_rt.world.config import PRESETS, split_of  # noqa: PLC0415

    split_of(args.seed)  # a seed outside every split is a user error, caught before the assets load

    if args.output.suffix.lower() != ".mp4":
        raise ValueError(f"output must end in .mp4, got {args.output}")
    if not args.output.parent.resolve().is_dir():
        raise FileNotFoundError(f"output folder {args.output.parent} does not exist")
    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    if args.duration is not None and not 0 < args.duration <= 600:
        raise ValueError(f"--duration must be in (0, 600] seconds, got {args.duration}")

    from frieren_rt.world.clip import render_clip  # noqa: PLC0415
    from frieren_rt.world.mp4 import write_clip  # noqa: PLC0415

    clip = render_clip(args.seed, duration=args.duration, config=args.preset)
    json_path = write_clip(clip, args.output)
    classes = sorted({e.cls for e in clip.events})
    print(f"{args.output}: {clip.duration:.2f} s, {clip.frames.shape[2]}x{clip.frames.shape[1]} @ {clip.fps} fps, "
          f"split {clip.split}, {len(clip.events)} events ({', '.join(classes)}); events in {json_path}")
    return 0
