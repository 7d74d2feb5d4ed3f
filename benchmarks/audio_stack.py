"""Time the frozen audio/visual stages on the CPU: mel, HiFi-GAN universal (and untrained students), VAE
decode, image encoder per frame, motion features. Prints one table and the per-hop cost of a streaming step.

    python benchmarks/audio_stack.py --threads 1 2 --hop-ms 160 --bf16

Needs the asset cache (``frieren-rt assets fetch``) for HiFi-GAN universal and MobileNetV2; stages whose
assets are missing are skipped with a message. Each time is the minimum and the median of --repeats calls
after one warm-up call: on a shared machine other jobs inflate the median, so budgets use the minimum.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from frieren_rt.assets.paths import AssetMissingError
from frieren_rt.audio.hifigan import HifiganGenerator
from frieren_rt.audio.mel import HIFIGAN_22K, LogMel
from frieren_rt.audio.student_vocoder import build_student
from frieren_rt.audio.vae import MelVAE, preset
from frieren_rt.vision.encoder import ImageEncoder
from frieren_rt.vision.mobilenet_v2 import MobileNetV2
from frieren_rt.vision.motion import motion_features


class Row(NamedTuple):
    stage: str
    setting: str
    threads: int
    min_ms: float
    median_ms: float
    audio_s: float | None = None  # audio seconds one call covers, for the real-time factor


def timed(fn: Callable[[], object], repeats: int, *, bf16: bool = False) -> tuple[float, float]:
    """(min, median) ms over ``repeats`` calls after one warm-up (oneDNN builds primitives lazily)."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(1000.0 * (time.perf_counter() - start))
    return min(times), statistics.median(times)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts to time")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--hop-ms", type=float, default=160.0, help="streaming hop: audio produced per model call")
    p.add_argument("--fps", type=float, default=30.0, help="video frame rate for the per-hop cost")
    p.add_argument(
        "--width", type=int, default=320, help="incoming video frame size (resized by the encoder)"
    )
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--resolutions", type=int, nargs="+", default=[96, 128, 160, 224])
    p.add_argument("--stream-resolution", type=int, default=160, help="image size used in the per-hop cost")
    p.add_argument("--vae", default="small", help="VAE preset (untrained weights: timing only)")
    p.add_argument("--students", nargs="*", default=["v2", "v3", "tiny"], help="untrained student vocoders")
    p.add_argument("--bf16", action="store_true", help="also time the vocoders under bf16 autocast (AMX)")
    p.add_argument("--skip-universal", action="store_true", help="skip HiFi-GAN universal (slowest stage)")
    return p.parse_args()


def load_models(args: argparse.Namespace) -> tuple[dict[str, HifiganGenerator], MobileNetV2 | None]:
    vocoders: dict[str, HifiganGenerator] = {}
    if not args.skip_universal:
        try:
            vocoders["hifigan universal"] = HifiganGenerator.from_package()
        except AssetMissingError as err:
            print(f"skipped HiFi-GAN universal: {err}")
    for name in args.students:
        vocoders[f"student {name} (untrained)"] = build_student(name).eval()
    try:
        backbone = MobileNetV2.from_package()
    except AssetMissingError as err:
        print(f"skipped the image encoder: {err}")
        backbone = None
    return vocoders, backbone


def time_stages(args: argparse.Namespace, threads: int, vocoders, backbone, vae: MelVAE) -> list[Row]:
    torch.set_num_threads(threads)
    sr, hop = HIFIGAN_22K.sample_rate, HIFIGAN_22K.hop_length
    second = sr // hop  # 86 mel frames = 0.998 s
    hop_frames = round(args.hop_ms / 1000 * sr / hop)  # mel frames per streaming hop
    hop_s, second_s = hop_frames * hop / sr, second * hop / sr
    rows = []
    mel = LogMel()
    wave = torch.randn(1, second * hop) * 0.1
    rows.append(Row("mel", "1 s", threads, *timed(lambda: mel(wave), args.repeats), second_s))
    for name, voc in vocoders.items():
        left, right = voc.context_frames()
        full = torch.randn(1, 80, second) - 5
        chunk = torch.randn(1, 80, hop_frames + left + right) - 5
        for bf16 in (False, True) if args.bf16 else (False,):
            label = f"{name} bf16" if bf16 else name
            rows.append(
                Row(
                    label,
                    "1 s",
                    threads,
                    *timed(lambda voc=voc, full=full: voc(full), args.repeats, bf16=bf16),
                    second_s,
                )
            )
            rows.append(
                Row(
                    label,
                    f"hop {hop_frames} + ctx {left}+{right} fr",
                    threads,
                    *timed(lambda voc=voc, chunk=chunk: voc(chunk), args.repeats, bf16=bf16),
                    hop_s,
                )
            )
    left, right = vae.decoder.context_latents()
    lat_hop = (hop_frames + 1) // 2
    z_full = torch.randn(1, vae.cfg.z_channels, second // 2)
    z_chunk = torch.randn(1, vae.cfg.z_channels, lat_hop + left + right)
    rows.append(
        Row(
            f"VAE decode {args.vae}",
            "1 s",
            threads,
            *timed(lambda: vae.decode(z_full), args.repeats),
            second_s,
        )
    )
    rows.append(
        Row(
            f"VAE decode {args.vae}",
            f"hop {lat_hop} + ctx {left}+{right} lat",
            threads,
            *timed(lambda: vae.decode(z_chunk), args.repeats),
            hop_s,
        )
    )
    per_hop = max(1, round(args.fps * hop_s))
    video = torch.randint(0, 256, (1, per_hop, 3, args.height, args.width), dtype=torch.uint8)
    size = f"{args.width}x{args.height}"
    if backbone is not None:
        for res in args.resolutions:
            enc = ImageEncoder(backbone, resolution=res)
            rows.append(
                Row(
                    "image encoder 1 frame",
                    f"{res}px from {size}",
                    threads,
                    *timed(lambda enc=enc: enc(video[:, :1]), args.repeats),
                )
            )
            rows.append(
                Row(
                    f"image encoder {per_hop} frames",
                    f"{res}px from {size}",
                    threads,
                    *timed(lambda enc=enc: enc(video), args.repeats),
                )
            )
    rows.append(
        Row(
            "motion features 1 frame",
            f"4x4 grid from {size}",
            threads,
            *timed(lambda: motion_features(video[:, :1]), args.repeats),
        )
    )
    return rows


def print_table(rows: list[Row]) -> None:
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other jobs inflate timings)")
    print(f"{'stage':<34} {'setting':<26} {'thr':>3} {'min ms':>8} {'med ms':>8} {'RTF(min)':>8}")
    for r in rows:
        rtf = f"{r.min_ms / 1000 / r.audio_s:8.3f}" if r.audio_s else " " * 8
        print(f"{r.stage:<34} {r.setting:<26} {r.threads:>3} {r.min_ms:>8.1f} {r.median_ms:>8.1f} {rtf}")


def print_hop_cost(args: argparse.Namespace, rows: list[Row]) -> None:
    """Vocoder chunk + VAE chunk + the hop's frames through encoder and motion, against the hop length."""
    for threads in args.threads:
        mine = [r for r in rows if r.threads == threads]
        hop_rows = {r.stage: r for r in mine if r.setting.startswith("hop")}
        vae = hop_rows.pop(f"VAE decode {args.vae}")
        images = next(
            (
                r
                for r in mine
                if r.stage.startswith("image encoder")
                and "1 frame" not in r.stage
                and r.setting.startswith(f"{args.stream_resolution}px")
            ),
            None,
        )
        per_hop = round(args.fps * vae.audio_s)
        motion = next(r for r in mine if r.stage.startswith("motion")).min_ms * per_hop
        visual = (images.min_ms if images else 0.0) + motion
        print(
            f"\nPer-hop cost, {threads} thread(s): {vae.audio_s * 1000:.0f} ms of audio, {per_hop} frames at "
            f"{args.stream_resolution}px (min times; the flow model is not included)"
        )
        for name, voc in hop_rows.items():
            total = voc.min_ms + vae.min_ms + visual
            print(
                f"  {name:<32} {total:7.1f} ms = {total / 1000 / vae.audio_s:.2f} x real time "
                f"(vocoder {voc.min_ms:.0f}, VAE {vae.min_ms:.1f}, images + motion {visual:.0f})"
            )


def main() -> None:
    args = parse_args()
    vocoders, backbone = load_models(args)
    vae = MelVAE(preset(args.vae)).eval()
    rows = [row for threads in args.threads for row in time_stages(args, threads, vocoders, backbone, vae)]
    print_table(rows)
    print_hop_cost(args, rows)


if __name__ == "__main__":
    main()
