"""``frieren-rt live``: the engine on this machine, a video file / camera / world clip in, sound out."""

from __future__ import annotations

import argparse
import sys

from frieren_rt.cli.serve import add_engine_args, engine_factory


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "live",
        help="run the engine in-process: a video file, camera or world clip in, the sound card or a WAV out",
        description="Generate sound for a video in real time on this machine, without a server. The input is "
        "a video file, a V4L2 camera (camera, or camera:/dev/videoN) or a world clip (world:SEED, needs "
        "'frieren-rt assets fetch'); the output is the sound card (device: needs the PortAudio library, e.g. "
        "apt install libportaudio2), a 16-bit 48 kHz WAV (FILE.wav: what the speaker would have played, the "
        "video's sound starting after the printed pre-roll) or 'null' (a clocked null sink, for machines "
        "with no sound card). Runs in real time until the input ends, --duration passes, or Ctrl-C.",
    )
    p.add_argument("-i", "--input", required=True, metavar="FILE|camera[:DEV]|world:SEED",
                   help="video source")
    p.add_argument("-o", "--output", default="device", metavar="device|FILE.wav|null",
                   help="where the sound goes (default: the sound card)")
    p.add_argument("--audio-device", default=None, metavar="NAME|INDEX",
                   help="sound output device (default: the system's default output)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds of video (default: the whole file; world clips: 10 s)")
    add_engine_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.duration is not None and args.duration <= 0:
        raise ValueError("--duration must be > 0 seconds")
    from frieren_rt.streaming.local import (  # noqa: PLC0415
        AudioOutputUnavailable,
        CameraUnavailable,
        run_local,
    )

    device = args.audio_device
    device = int(device) if device is not None and device.isdigit() else device  # PortAudio index or name
    try:
        r = run_local(args.input, args.output, engine=engine_factory(args), audio_device=device,
                      duration_s=args.duration)
    except (AudioOutputUnavailable, CameraUnavailable) as exc:
        print(f"frieren-rt live: error: {exc}", file=sys.stderr)
        return 2
    ms = lambda s: "n/a" if s is None else f"{1000 * s:.0f} ms"  # noqa: E731
    print(f"{args.output}: {r.frames_in} video frames in, {r.audio_frames * 0.02:.2f} s of audio out in "
          f"{r.seconds:.2f} s; underruns: engine {r.engine_underruns}, output {r.sink_underruns}")
    print(f"latency {ms(r.latency_s)} (capture -> play); the video's first frame sounds at "
          f"{ms(r.video_start_s)} of the output")
    return 0
