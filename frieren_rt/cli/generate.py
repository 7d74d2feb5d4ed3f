"""``frieren-rt generate IN.mp4 -o OUT.mp4``: offline Foley for a video file of any length."""

from __future__ import annotations

import argparse
from pathlib import Path

from frieren_rt.cli.serve import add_backend_args, add_gate_arg
from frieren_rt.pipeline import GENERATE_GEOMETRY


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate", help="add generated sound effects to a video file (offline, any length)",
        description="Generate sound effects for INPUT and write OUTPUT with the generated audio muxed in (the "
        "video stream is copied). Uses the same windowing and continuity code as the streaming engine.",
    )
    p.add_argument("input", type=Path, help="input video (any format FFmpeg/PyAV reads)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .mp4 (video copied + AAC audio)")
    p.add_argument("--model", default="distill",
                   choices=["base", "reflow", "distill", "single", "small", "official"],
                   help="shipped model variant (default: distill, the one-step reflow + distilled student; small = "
                   "distill), or official: the published Frieren files in --weights DIR (16 kHz audio)")
    p.add_argument("--weights", type=Path, default=None,
                   help="folder with <model>.safetensors and vae.safetensors (default: the shipped weights); with "
                   "--model official: frieren.ckpt, vocoder/best_netG.pt + args.yml, cavp_epoch66.ckpt")
    p.add_argument("--official-sizes", choices=["official", "reduced"], default="official",
                   help="widths of the --model official files: official (published) or reduced (the parity "
                   "fixtures' widths, for tests)")
    # pipeline.GENERATE_GEOMETRY: the 0.1 s hop with 5 revised latents. Against the 0.2 s hop with the whole right
    # context (the default before), 24 test / 30 validation clips: class accuracy 0.391 / 0.374 -> 0.446 / 0.413,
    # learned onset F1 0.856 / 0.793 -> 0.851 / 0.811, at 0.34 instead of 0.20 s per second of audio (MODEL_CARD.md).
    p.add_argument("--hop", type=float, default=GENERATE_GEOMETRY.hop_s, metavar="S",
                   help=f"generation hop, seconds (default {GENERATE_GEOMETRY.hop_s}: 4 latents, as the streaming "
                   "engine; --model official keeps its own)")
    p.add_argument("--lookahead", type=int, default=GENERATE_GEOMETRY.lookahead, metavar="N",
                   help=f"latents generated past each hop before its audio is kept (default "
                   f"{GENERATE_GEOMETRY.lookahead}); the VAE decoder and vocoder read them as right context")
    p.add_argument("--revise-lookahead", action=argparse.BooleanOptionalAction,
                   default=GENERATE_GEOMETRY.revise_lookahead,
                   help="the next hop generates the look-ahead latents again with its newer video (default on: "
                   "the model sees video after every sound it commits; --no-revise-lookahead keeps them)")
    p.add_argument("--steps", type=int, default=None,
                   help="Euler steps (default: 1, or 25 for --model base and official)")
    p.add_argument("--sampler", choices=["euler", "dopri5"], default="euler", help="ODE solver (default: euler)")
    p.add_argument("--cfg", type=float, default=None,
                   help="classifier-free guidance scale (default: 4.5, or 1 for --model single, whose weights "
                   "fold guidance in; 1 = one network pass, no guidance)")
    p.add_argument("--vocoder", choices=["student", "hifigan"], default="student",
                   help="mel -> waveform, after the wider offline VAE decoder when the weights folder has one: "
                   "student (default; the small vocoder trained on the world's audio, about 0.14 s per second of "
                   "audio on this 2-core CPU, and the most class and sync, MODEL_CARD.md) or hifigan (the "
                   "pretrained HiFi-GAN universal: about 4x slower, closer to real recordings' texture by aiSFX "
                   "FD, less class identity); ignored with --model official")
    p.add_argument("--seed", type=int, default=0, help="noise seed (same seed + input = same audio)")
    p.add_argument("--wav", type=Path, default=None,
                   help="also write the generated audio as a WAV (22.05 kHz; 16 kHz with --model official)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default: cpu)")
    add_backend_args(p, default="eager")  # the evaluation tables were made eager; script gives the same audio to ~1e-5
    add_gate_arg(p)
    p.set_defaults(func=run)


def generation_options(args: argparse.Namespace):  # noqa: ANN201 - GenerationOptions, imported lazily
    """The shipped-model options for ``args``: offline generation has the whole clip, so it always decodes with
    the wider offline VAE decoder when the folder has one (its 8 latents of look-ahead cost nothing here), before
    either vocoder, at the 0.1 s hop with 5 revised latents of look-ahead unless told otherwise."""
    from frieren_rt.pipeline import GenerationOptions  # noqa: PLC0415

    if args.lookahead < 0:
        raise ValueError("--lookahead must be >= 0 latents")
    if args.hop <= 0:
        raise ValueError("--hop must be > 0 seconds (0.1: 4 latents)")
    return GenerationOptions(variant="distill" if args.model == "small" else args.model, steps=args.steps,
                             sampler=args.sampler, cfg=args.cfg, backend=args.backend, precision=args.precision,
                             event_gate=args.event_gate, vocoder=args.vocoder, decoder="offline",
                             lookahead=args.lookahead, revise_lookahead=args.revise_lookahead, hop_s=args.hop)


def run(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from frieren_rt.io.video import mux_audio, read_video  # noqa: PLC0415
    from frieren_rt.pipeline import FoleyPipeline  # noqa: PLC0415

    if args.output.resolve() == args.input.resolve():
        raise ValueError("output must differ from input (the input video is read while the output is written)")
    if args.model == "official":
        pipe = official_pipeline(args)
    else:
        pipe = FoleyPipeline.from_dir(args.weights, generation_options(args), device=args.device)
    video = read_video(args.input)
    start = time.monotonic()
    with tqdm(total=1, desc="generate", unit="hop") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        audio = pipe.generate(video.frames, video.times, video.duration, seed=args.seed, progress=progress)
    took = time.monotonic() - start
    mux_audio(args.input, audio, pipe.sample_rate, args.output)
    if args.wav is not None:
        write_wav(args.wav, audio, pipe.sample_rate)
    print(f"{args.output}: {video.duration:.2f} s of audio in {took:.1f} s "
          f"({took / max(video.duration, 1e-9):.2f} s per second of video), peak {np.abs(audio).max():.2f}")
    return 0


def official_pipeline(args: argparse.Namespace):  # noqa: ANN201
    """The published Frieren (issue 7) from --weights; Euler 25 steps and CFG 4.5 unless told otherwise."""
    from frieren_rt.official.pipeline import OfficialOptions, OfficialPipeline  # noqa: PLC0415

    if args.weights is None:
        raise ValueError("--model official needs --weights DIR (the published Frieren files)")
    if args.sampler != "euler" or args.backend != "eager" or args.precision != "fp32":
        raise ValueError("--model official runs with --sampler euler, --backend eager, --precision fp32 only")
    options = OfficialOptions(steps=25 if args.steps is None else args.steps,
                              cfg=4.5 if args.cfg is None else args.cfg, sizes=args.official_sizes)
    return OfficialPipeline.from_dir(args.weights, options, device=args.device)


def write_wav(path: Path, audio, sample_rate: int) -> None:
    import wave  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
