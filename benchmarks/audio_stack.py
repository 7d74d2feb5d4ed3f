"""Time the frozen audio/visual stages on the CPU: mel, HiFi-GAN universal (and untrained students), VAE decode,
image encoder per frame, motion features. Prints one table and a per-hop streaming budget.

    python benchmarks/audio_stack.py --threads 1 2 --hop-ms 160

Needs the asset cache (``frieren-rt assets fetch``) for HiFi-GAN universal and MobileNetV2; stages whose
assets are missing are reported as skipped. Timings are medians of --repeats after one warm-up call.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from frieren_rt.assets.paths import AssetMissingError
from frieren_rt.audio.hifigan import HifiganGenerator
from frieren_rt.audio.mel import HIFIGAN_22K, LogMel
from frieren_rt.audio.student_vocoder import build_student
from frieren_rt.audio.vae import MelVAE, preset
from frieren_rt.vision.encoder import ImageEncoder
from frieren_rt.vision.mobilenet_v2 import MobileNetV2
from frieren_rt.vision.motion import motion_features


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    with torch.inference_mode():
        fn()  # warm-up: oneDNN primitive creation
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts to time")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--hop-ms", type=float, default=160.0, help="streaming hop: audio produced per model call")
    p.add_argument("--fps", type=float, default=30.0, help="video frame rate for the per-hop budget")
    p.add_argument("--width", type=int, default=320, help="incoming video frame size (resized by the encoder)")
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--resolutions", type=int, nargs="+", default=[96, 128, 160, 224])
    p.add_argument("--stream-resolution", type=int, default=160, help="image size used in the per-hop budget")
    p.add_argument("--vae", default="small", help="VAE preset (untrained weights: timing only)")
    p.add_argument("--students", nargs="*", default=["v2", "v3", "tiny"], help="untrained student vocoders")
    p.add_argument("--skip-universal", action="store_true", help="skip HiFi-GAN universal (slowest stage)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    sr, hop = HIFIGAN_22K.sample_rate, HIFIGAN_22K.hop_length
    second = sr // hop  # 86 mel frames = 0.998 s
    hop_frames = round(args.hop_ms / 1000 * sr / hop)  # mel frames per streaming hop
    hop_s = hop_frames * hop / sr
    rows: list[tuple[str, str, int, float, str]] = []  # stage, setting, threads, ms, note

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
        print(f"skipped image encoder: {err}")
        backbone = None
    vae = MelVAE(preset(args.vae)).eval()
    vae_left, vae_right = vae.decoder.context_latents()
    mel_fn = LogMel()
    wave = torch.randn(1, second * hop) * 0.1
    frames_per_hop = args.fps * hop_s

    for threads in args.threads:
        torch.set_num_threads(threads)
        rows.append(("mel", "1 s", threads, median_ms(lambda: mel_fn(wave), args.repeats), ""))
        for name, voc in vocoders.items():
            left, right = voc.context_frames()
            full = torch.randn(1, 80, second) - 5
            chunk = torch.randn(1, 80, hop_frames + left + right) - 5
            ms = median_ms(lambda: voc(full), args.repeats)
            rows.append((name, "1 s", threads, ms, f"RTF {ms / 1000 / (second * hop / sr):.2f}"))
            ms = median_ms(lambda: voc(chunk), args.repeats)
            rows.append((name, f"hop {hop_frames} + ctx {left}+{right} fr", threads, ms, f"RTF {ms / 1000 / hop_s:.2f}"))
        lat_hop = (hop_frames + 1) // 2
        z_full = torch.randn(1, vae.cfg.z_channels, second // 2)
        z_chunk = torch.randn(1, vae.cfg.z_channels, lat_hop + vae_left + vae_right)
        ms = median_ms(lambda: vae.decode(z_full), args.repeats)
        rows.append((f"VAE decode {args.vae}", "1 s", threads, ms, f"RTF {ms / 1000 / (second * hop / sr):.3f}"))
        ms = median_ms(lambda: vae.decode(z_chunk), args.repeats)
        rows.append((f"VAE decode {args.vae}", f"hop {lat_hop} + ctx {vae_left}+{vae_right} lat", threads, ms,
                     f"RTF {ms / 1000 / hop_s:.3f}"))
        per_hop = max(1, round(frames_per_hop))
        video = torch.randint(0, 256, (1, per_hop, 3, args.height, args.width), dtype=torch.uint8)
        size = f"{args.width}x{args.height}"
        if backbone is not None:
            for res in args.resolutions:
                enc = ImageEncoder(backbone, resolution=res)
                ms = median_ms(lambda: enc(video[:, :1]), args.repeats)
                batched = median_ms(lambda: enc(video), args.repeats)
                rows.append(("image encoder", f"{res}px from {size}", threads, ms,
                             f"1 frame/call; {per_hop}/call: {batched / per_hop:.1f} ms/frame"))
                rows.append(("image encoder batch", f"{res}px x{per_hop} frames", threads, batched, "one call per hop"))
        ms = median_ms(lambda: motion_features(video[:, :1]), args.repeats)
        rows.append(("motion features", f"4x4 grid from {size}", threads, ms, "per frame"))

    print(f"\n{'stage':<30} {'setting':<28} {'thr':>3} {'ms':>9}  note")
    for stage, setting, threads, ms, note in rows:
        print(f"{stage:<30} {setting:<28} {threads:>3} {ms:>9.1f}  {note}")

    print(f"\nPer-hop budget ({hop_s * 1000:.0f} ms of audio, {frames_per_hop:.1f} video frames at {args.fps:g} fps,"
          f" {args.stream_resolution}px; excludes the flow model):")
    for threads in args.threads:
        def find(stage: str, prefix: str) -> float | None:
            hits = [r[3] for r in rows if r[0] == stage and r[1].startswith(prefix) and r[2] == threads]
            return hits[0] if hits else None

        images = (find("image encoder batch", f"{args.stream_resolution}px") or 0.0)
        images += round(frames_per_hop) * (find("motion features", "4x4") or 0.0)
        vae_ms = find(f"VAE decode {args.vae}", "hop") or 0.0
        for name in vocoders:
            voc = find(name, "hop") or 0.0
            total = voc + vae_ms + images
            print(f"  {threads} thr, {name:<26}: {total:7.1f} ms = {total / 1000 / hop_s:.2f}x real time "
                  f"(vocoder {voc:.0f}, VAE {vae_ms:.1f}, images+motion {images:.0f})")


if __name__ == "__main__":
    main()
