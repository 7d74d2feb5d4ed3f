"""``frieren-rt capture``: send a video file or a world clip to a server's /ws endpoint; play or record the
audio it sends back (the game-capture protocol of PROTOCOL.md, via frieren_rt.client)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import numpy as np


class AudioOutputUnavailable(RuntimeError):
    """No way to play sound here; the message says what is missing."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "capture",
        help="send a video file or world clip over the /ws game-capture protocol; play or record the audio",
        description="Connect to a running 'frieren-rt serve' at --server (ws://HOST:PORT/ws), send the frames "
        "of --input in real time (FILE: any video PyAV reads; world:SEED: a rendered world clip), and play the "
        "generated audio (--play, needs PortAudio and an output device) or write it to a WAV laid out on the "
        "video's timeline (--record).",
    )
    p.add_argument("--server", required=True, metavar="URL", help="ws://HOST:PORT/ws (http:// is accepted too)")
    p.add_argument("--input", required=True, metavar="FILE|world:SEED", help="video file or world:SEED")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--play", action="store_true", help="play the audio on the default output device")
    out.add_argument("--record", type=Path, default=None, metavar="OUT.wav", help="write the audio to a WAV file")
    p.add_argument("--token", default=None, help="bearer token of the server (serve --token)")
    p.add_argument("--format", default="jpeg", choices=["jpeg", "rgb", "rgba", "i420", "h264"],
                   help="frame encoding on the wire (default jpeg)")
    p.add_argument("--audio-format", default="s16le", choices=["s16le", "f32le"])
    p.add_argument("--sample-rate", type=int, default=48000, choices=[48000, 24000, 16000])
    p.add_argument("--duration", type=float, default=None, metavar="S", help="send at most S seconds")
    p.set_defaults(func=run)


def ws_url(server: str) -> str:
    url = server.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"--server must be a ws:// or http:// URL, got {server!r}")
    return url if url.rstrip("/").endswith("/ws") else url.rstrip("/") + "/ws"


def load_frames(spec: str, duration: float | None) -> tuple[np.ndarray, float]:
    """(N, H, W, 3) uint8 frames and their rate from FILE or world:SEED."""
    if spec.startswith("world:"):
        from frieren_rt.world import render_clip  # noqa: PLC0415

        try:
            seed = int(spec.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"--input world:SEED needs an integer seed, got {spec!r}") from None
        clip = render_clip(seed, duration=duration)
        return clip.frames, float(clip.fps)
    from frieren_rt.io.video import read_video  # noqa: PLC0415

    video = read_video(spec)
    frames = video.frames if duration is None else video.frames[: max(1, round(duration * video.fps))]
    return frames, video.fps


class Player:
    """Plays received chunks through sounddevice: a FIFO drained by the PortAudio callback, silence on underrun."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        try:
            import sounddevice as sd  # noqa: PLC0415
        except OSError as exc:  # PortAudio missing raises OSError, not ImportError (environment.md)
            raise AudioOutputUnavailable(f"cannot play: the PortAudio library is missing ({exc}); install it "
                                         "(Debian: apt-get install libportaudio2) or use --record OUT.wav") from None
        try:
            sd.query_devices(kind="output")
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioOutputUnavailable(f"cannot play: no audio output device ({exc}); use --record OUT.wav") from None
        self._buf = np.zeros((0, channels), dtype=np.float32)
        self.underruns = 0
        self.stream = sd.OutputStream(samplerate=sample_rate, channels=channels, dtype="float32",
                                      callback=self._callback)
        self.stream.start()

    def push(self, samples: np.ndarray) -> None:
        self._buf = np.concatenate([self._buf, samples])

    def _callback(self, out: np.ndarray, frames: int, time: Any, status: Any) -> None:
        n = min(frames, len(self._buf))
        out[:n], out[n:] = self._buf[:n], 0.0
        self._buf = self._buf[n:]
        self.underruns += int(n < frames)

    def close(self) -> None:
        self.stream.stop()
        self.stream.close()


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """(N, channels) float32 -> 16-bit PCM WAV."""
    import wave  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(audio.shape[1])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def run(args: argparse.Namespace) -> int:
    from frieren_rt.client.protocol import Hello  # noqa: PLC0415
    from frieren_rt.client.ws import ServerClosed, aligned_audio, stream_frames  # noqa: PLC0415

    url = ws_url(args.server)
    frames, fps = load_frames(args.input, args.duration)
    hello = Hello(audio_format=args.audio_format, sample_rate=args.sample_rate, client="frieren-rt capture")
    player = None
    try:
        player = Player(args.sample_rate, 1) if args.play else None
    except AudioOutputUnavailable as exc:
        print(f"frieren-rt capture: error: {exc}")
        return 2
    try:
        result = asyncio.run(stream_frames(url, frames, fps, hello=hello, token=args.token, fmt=args.format,
                                           on_audio=(lambda c: player.push(c.samples)) if player else None))
    except ServerClosed as exc:
        print(f"frieren-rt capture: error: the server refused the session: {exc}")
        return 2
    except OSError as exc:
        print(f"frieren-rt capture: error: cannot reach {url}: {exc}")
        return 2
    finally:
        if player is not None:
            player.close()
    duration = len(frames) / fps
    if args.record is not None:
        write_wav(args.record, aligned_audio(result.chunks, args.sample_rate, duration), args.sample_rate)
    s = result.stats
    print(f"{url}: {result.frames_sent} of {len(frames)} frames sent ({result.frames_replaced} replaced by newer "
          f"ones while waiting for credit), {result.audio_s:.2f} s of audio received"
          + (f", wrote {args.record}" if args.record else ""))
    if s:
        print(f"engine latency {1000 * s['latency_s']:.0f} ms, {s['hops']} hops, {s['underruns']} underruns, "
              f"{s['errors']} frame errors")
    for e in result.errors[:5]:
        print(f"server error {e.get('code')}: {e.get('message')}")
    return 0
