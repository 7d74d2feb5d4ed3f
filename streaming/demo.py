"""``frieren-rt demo``: a world clip through the real WebRTC path on loopback, recorded and muxed to mp4.

One process: the server (``create_app`` on 127.0.0.1, ICE offering loopback only) and an aiortc client that
sends the clip's frames at their frame rate over ``POST /offer`` and records the audio that comes back. The
mp4 holds the sent frames and the received audio shifted earlier by the measured glass-to-ear latency: the
sync a broadcaster gets after delaying the video by that latency (../shared/reference/streaming.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from frieren_rt.streaming.engine import Engine
from frieren_rt.streaming.latency import ReceivedAudio, first_audio_latency, onset_offsets, summarize

__all__ = ["DemoResult", "run_demo", "mux_mp4"]


@dataclass(frozen=True)
class DemoResult:
    output: Path
    engine_latency_s: float
    glass_to_ear_s: float | None  # first frame's capture -> its audio at the client
    onset_error: dict[str, float]  # per-event sync error stats (meaningful with a trained model only)
    underruns: int
    frames_sent: int
    audio_s: float


def mux_mp4(frames: np.ndarray, fps: int, audio: np.ndarray, rate: int, path: Path) -> None:
    """(N, H, W, 3) uint8 frames + (S,) float32 mono audio -> H.264 + AAC mp4 (PyAV's bundled FFmpeg)."""
    import av  # noqa: PLC0415

    h, w = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus = out.add_stream("aac", rate=rate, layout="mono")
        for f in frames[:, :h, :w]:
            out.mux(vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        out.mux(vs.encode())
        for i in range(0, len(audio), 1024):
            af = av.AudioFrame.from_ndarray(audio[None, i : i + 1024].astype(np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = rate, i, Fraction(1, rate)
            out.mux(aus.encode(af))
        out.mux(aus.encode())


def align_to_video(audio: ReceivedAudio, first_capture: float, shift_s: float, n: int) -> np.ndarray:
    """Received samples placed on the video's timeline (sample 0 at the first frame's capture), played
    ``shift_s`` earlier; (n,) float32, zero where nothing was received."""
    out = np.zeros(n, np.float32)
    if not len(audio.samples):
        return out
    start = round((float(audio.play_time(0)) - first_capture - shift_s) * audio.rate)  # may be negative
    lo, hi = max(0, start), min(n, start + len(audio.samples))
    if hi > lo:
        out[lo:hi] = audio.samples[lo - start : hi - start]
    return out


async def _run(frames: np.ndarray, fps: int, engine: Engine | Callable[[], Engine], tail_s: float,
               event_frames: list[int]) -> tuple:
    from frieren_rt.streaming import client  # noqa: PLC0415
    from frieren_rt.streaming.profile import pacer_first_index  # noqa: PLC0415
    from frieren_rt.streaming.server import SESSIONS, ServerConfig, bound_port, create_app, start  # noqa: PLC0415

    app = create_app(ServerConfig(port=0), engine=engine)
    runner = await start(app, "127.0.0.1", 0)
    try:
        pub = await client.publish_offer(f"http://127.0.0.1:{bound_port(runner)}", frames, fps)
        pub.video.loop = False
        await asyncio.sleep(len(frames) / fps)
        # Counted while video still covers what plays: the clip's last hop never falls due (no later frame).
        session = app[SESSIONS].sessions[pub.session]
        stats = session.stats()
        # The received sample standing for the first frame, from the server's pacer. The first non-silent
        # sample would not do: with a model that syncs, a scene that opens silent plays silence first.
        es = session.engine_session
        pacer = (es.pacer.start, es.first_frame_anchor) if es.pacer.start is not None else None
        await asyncio.sleep(pub.info["latency_s"] + tail_s)
        await pub.close()
    finally:
        await runner.cleanup()
    audio = pub.recorder.received()
    captures = pub.video.capture_times
    index = None if pacer is None else pacer_first_index(*pacer, rate=audio.rate)
    if index is not None and 0 <= index < len(audio.samples):
        g2e = float(audio.play_time(index)) - (captures[0] - pub.info["stream_delay_s"])
    else:
        g2e = first_audio_latency(audio, captures[0], pub.info["stream_delay_s"])
    events = [captures[k] for k in event_frames if k < len(captures)]
    errors = onset_offsets(audio, events, g2e or pub.info["latency_s"], threshold=0.05) if events else []
    return audio, captures, g2e, errors, stats, pub.info["latency_s"]


def run_demo(*, seed: int, duration: float, output: Path, engine: Engine | Callable[[], Engine],
             tail_s: float = 0.5) -> DemoResult:
    from frieren_rt.world import render_clip  # noqa: PLC0415

    clip = render_clip(seed, duration=duration)
    event_frames = [e.frame for e in clip.events]
    audio, captures, g2e, errors, stats, latency = asyncio.run(
        _run(clip.frames, clip.fps, engine, tail_s, event_frames))
    n = round(len(clip.frames) / clip.fps * audio.rate)
    aligned = align_to_video(audio, captures[0], g2e or 0.0, n)
    mux_mp4(clip.frames, clip.fps, aligned, audio.rate, Path(output))
    return DemoResult(output=Path(output), engine_latency_s=latency, glass_to_ear_s=g2e,
                      onset_error=summarize([e for e in errors if e is not None]), underruns=stats["underruns"],
                      frames_sent=len(captures), audio_s=len(audio.samples) / audio.rate)
