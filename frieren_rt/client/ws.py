"""A client of the ``/ws`` game-capture protocol (PROTOCOL.md): frames in, tagged PCM and stats out.

- :class:`CaptureClient` (asyncio): ``connect`` does the hello/config exchange; ``send_frame`` waits for a
  credit and sends one encoded frame; ``submit`` is latest-wins (a newer frame replaces one still waiting for
  credit, so the server always gets the newest picture); ``recv_audio`` returns :class:`AudioChunk` s.
- :class:`FrameEncoder`: RGB arrays -> JPEG / raw RGB, RGBA, I420 / H.264 Annex B payloads (PyAV).
- :class:`BlockingCaptureClient`: the same from synchronous code (its own event loop on a thread).
- :func:`stream_frames`: send frames at their frame rate and collect the audio (what ``frieren-rt capture``
  runs); :func:`aligned_audio` lays tagged chunks out on the video's timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from frieren_rt.client.protocol import (
    AudioFormat,
    AudioHeader,
    Config,
    Hello,
    VideoFormat,
    pack_frame,
    unpack_audio,
)

__all__ = ["AudioChunk", "BlockingCaptureClient", "CaptureClient", "CaptureResult", "FrameEncoder",
           "ServerClosed", "aligned_audio", "stream_frames"]


class ServerClosed(ConnectionError):
    """The server refused or ended the session: ``code`` is the WebSocket close code (or the HTTP status of
    a refused upgrade), ``reason`` its text."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"server closed the connection: {code} {reason}".strip())
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class AudioChunk:
    """One 20 ms server frame: samples (n, channels) float32 in [-1, 1]; arrival: monotonic seconds."""

    header: AudioHeader
    samples: np.ndarray
    arrival: float


def decode_pcm(header: AudioHeader, payload: bytes | memoryview) -> np.ndarray:
    """PCM payload -> (n, channels) float32."""
    if header.format is AudioFormat.S16LE:
        x = np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32767.0
    else:
        x = np.frombuffer(payload, dtype="<f4").astype(np.float32)
    return x.reshape(header.samples, header.channels)


# --- encoding --------------------------------------------------------------------------------------------------
class FrameEncoder:
    """(H, W, 3) uint8 RGB -> (payload, width, height) in ``fmt``. H.264: libx264 with zerolatency (no frame
    delay, ../shared/reference/streaming.md), Annex B, a keyframe every ``keyframe_s``; its state is per stream."""

    def __init__(self, fmt: VideoFormat | str = VideoFormat.JPEG, *, fps: float = 30.0, keyframe_s: float = 1.0) -> None:
        self.fmt = VideoFormat.parse(fmt) if isinstance(fmt, str) else fmt
        self.fps = fps
        self.keyframe_s = keyframe_s
        self._ctx: Any = None
        self._size: tuple[int, int] | None = None
        self._n = 0

    def _context(self, width: int, height: int) -> Any:
        import av  # noqa: PLC0415

        if self._size != (width, height):
            codec = "mjpeg" if self.fmt is VideoFormat.JPEG else "libx264"
            ctx = av.CodecContext.create(codec, "w")
            ctx.width, ctx.height = width, height
            ctx.time_base = Fraction(1, round(self.fps))
            ctx.pix_fmt = "yuvj420p" if self.fmt is VideoFormat.JPEG else "yuv420p"
            if self.fmt is VideoFormat.H264:
                ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                               "g": str(max(1, round(self.keyframe_s * self.fps)))}
            self._ctx, self._size = ctx, (width, height)
        return self._ctx

    def __call__(self, rgb: np.ndarray) -> tuple[bytes, int, int]:
        import av  # noqa: PLC0415

        h, w = rgb.shape[:2]
        if self.fmt is VideoFormat.RGB:
            return np.ascontiguousarray(rgb).tobytes(), w, h
        if self.fmt is VideoFormat.RGBA:
            alpha = np.full((h, w, 1), 255, dtype=np.uint8)
            return np.concatenate([rgb, alpha], axis=2).tobytes(), w, h
        if w % 2 or h % 2:  # 4:2:0 chroma needs even sizes: drop the odd row/column
            rgb, w, h = rgb[: h // 2 * 2, : w // 2 * 2], w // 2 * 2, h // 2 * 2
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if self.fmt is VideoFormat.I420:
            return frame.reformat(format="yuv420p").to_ndarray().tobytes(), w, h
        ctx = self._context(w, h)
        frame = frame.reformat(format=ctx.pix_fmt)
        frame.pts = self._n
        self._n += 1
        return b"".join(bytes(p) for p in ctx.encode(frame)), w, h


# --- the client ------------------------------------------------------------------------------------------------
class CaptureClient:
    """One /ws session. Create with :meth:`connect`; ``config`` is the server's answer to the hello."""

    def __init__(self, ws: Any, config: Config, *, encoder: FrameEncoder | None = None,
                 on_audio: Callable[[AudioChunk], None] | None = None, audio_buffer: int = 500) -> None:
        self.ws = ws
        self.config = config
        self.encoder = encoder or FrameEncoder()
        self.on_audio = on_audio
        self.credits = config.credits
        self.stats: dict[str, Any] = {}
        self.errors: deque[dict[str, Any]] = deque(maxlen=100)
        self.frames_sent = 0
        self.frames_replaced = 0  # dropped by latest-wins while waiting for credit
        self.audio_dropped = 0  # chunks dropped because nobody read them (audio_buffer full)
        self.close_code: int | None = None
        self.close_reason = ""
        self._audio: deque[AudioChunk] = deque()
        self._audio_buffer = audio_buffer
        self._audio_ready = asyncio.Event()
        self._credit = asyncio.Event()
        self._credit.set()
        self._seq = 0
        self._newest: tuple[np.ndarray, int] | None = None
        self._newest_ready = asyncio.Event()
        self._done = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())
        self._sender = asyncio.ensure_future(self._send_newest())

    @classmethod
    async def connect(cls, url: str, hello: Hello = Hello(), *, token: str | None = None,
                      max_message_bytes: int = 16 * 1024 * 1024, timeout_s: float = 10.0,
                      **kwargs: Any) -> CaptureClient:
        """Open ``url`` (ws://HOST:PORT/ws), send ``hello``, return once the config arrives. ``token`` goes in
        the Authorization header (RFC 6750); a refusal raises :class:`ServerClosed`."""
        from websockets.asyncio.client import connect  # noqa: PLC0415
        from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: PLC0415

        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        try:
            # permessage-deflate costs 40x on raw video (environment.md): compression off.
            ws = await connect(url, compression=None, max_size=max_message_bytes, additional_headers=headers,
                               open_timeout=timeout_s)
        except InvalidStatus as exc:
            raise ServerClosed(exc.response.status_code, exc.response.body.decode(errors="replace")) from None
        try:
            await ws.send(hello.to_json())
            reply = await asyncio.wait_for(ws.recv(), timeout_s)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            raise ServerClosed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
        return cls(ws, Config.from_json(reply), **kwargs)

    # --- frames ------------------------------------------------------------------------------------------------
    async def send_frame(self, payload: bytes, *, fmt: VideoFormat, width: int, height: int,
                         timestamp_us: int) -> int:
        """Wait for a credit, send one frame; returns its sequence number."""
        while self.credits <= 0:
            self._credit.clear()
            await self._wait(self._credit)
        self.credits -= 1
        seq = self._seq
        self._seq += 1
        await self.ws.send(pack_frame(payload, seq=seq, timestamp_us=timestamp_us, width=width, height=height,
                                      fmt=fmt))
        self.frames_sent += 1
        return seq

    def submit(self, rgb: np.ndarray, timestamp_us: int) -> None:
        """Latest wins: queue ``rgb`` to be encoded and sent at the next credit, replacing a frame still waiting."""
        if self._newest is not None:
            self.frames_replaced += 1
        self._newest = (rgb, timestamp_us)
        self._newest_ready.set()

    async def _send_newest(self) -> None:
        while True:
            await self._newest_ready.wait()
            while self.credits <= 0:  # wait here, not after encoding: a newer frame may still arrive
                self._credit.clear()
                await self._credit.wait()
                if self._done.is_set():
                    return
            self._newest_ready.clear()
            if self._newest is None:
                continue
            (rgb, ts), self._newest = self._newest, None
            payload, w, h = self.encoder(rgb)
            await self.send_frame(payload, fmt=self.encoder.fmt, width=w, height=h, timestamp_us=ts)

    # --- server messages ---------------------------------------------------------------------------------------
    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed  # noqa: PLC0415

        try:
            async for message in self.ws:
                if isinstance(message, str):
                    self._on_control(json.loads(message))
                else:
                    header, payload = unpack_audio(message)
                    self._on_chunk(AudioChunk(header, decode_pcm(header, payload), time.monotonic()))
        except ConnectionClosed:
            pass
        finally:
            self.close_code, self.close_reason = self.ws.close_code, self.ws.close_reason or ""
            self._done.set()
            self._credit.set()
            self._audio_ready.set()

    def _on_control(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "credit":
            self.credits += int(msg.get("grant", 0))
            self._credit.set()
        elif kind == "stats":
            self.stats = msg
        elif kind == "error":
            self.errors.append(msg)

    def _on_chunk(self, chunk: AudioChunk) -> None:
        if self.on_audio is not None:
            self.on_audio(chunk)
            return
        if len(self._audio) >= self._audio_buffer:
            self._audio.popleft()
            self.audio_dropped += 1
        self._audio.append(chunk)
        self._audio_ready.set()

    async def recv_audio(self, timeout_s: float | None = None) -> AudioChunk | None:
        """The next audio chunk; None on timeout or once the connection has closed and nothing is left."""
        while not self._audio:
            if self._done.is_set():
                return None
            self._audio_ready.clear()
            try:
                await asyncio.wait_for(self._audio_ready.wait(), timeout_s)
            except asyncio.TimeoutError:
                return None
        return self._audio.popleft()

    async def _wait(self, event: asyncio.Event) -> None:
        await event.wait()
        if self._done.is_set():
            raise ServerClosed(self.close_code, self.close_reason)

    @property
    def closed(self) -> bool:
        return self._done.is_set()

    async def wait_closed(self, timeout_s: float | None = None) -> None:
        await asyncio.wait_for(self._done.wait(), timeout_s)

    async def close(self) -> None:
        """Say bye and wait for the server's close (1000)."""
        self._sender.cancel()
        with contextlib.suppress(Exception):
            await self.ws.send(json.dumps({"type": "bye"}))
            await asyncio.wait_for(self._done.wait(), 5.0)
        await self.ws.close()
        await asyncio.gather(self._reader, self._sender, return_exceptions=True)


# --- a whole clip ----------------------------------------------------------------------------------------------
@dataclass
class CaptureResult:
    config: Config
    frames_sent: int = 0
    frames_replaced: int = 0
    chunks: list[AudioChunk] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None

    @property
    def audio_s(self) -> float:
        return sum(c.header.samples for c in self.chunks) / self.config.sample_rate if self.chunks else 0.0


async def stream_frames(url: str, frames: Iterable[np.ndarray], fps: float, *, hello: Hello = Hello(),
                        token: str | None = None, fmt: VideoFormat | str = VideoFormat.JPEG, tail_s: float = 1.0,
                        on_audio: Callable[[AudioChunk], None] | None = None) -> CaptureResult:
    """Send ``frames`` at ``fps`` in real time (capture timestamps i / fps on the client's timeline, in us),
    latest wins while waiting for credit; keep receiving for ``tail_s`` after the last frame; return the audio."""
    result: CaptureResult | None = None

    def keep(chunk: AudioChunk) -> None:
        result.chunks.append(chunk)  # type: ignore[union-attr]
        if on_audio is not None:
            on_audio(chunk)

    client = await CaptureClient.connect(url, hello, token=token, encoder=FrameEncoder(fmt, fps=fps), on_audio=keep)
    result = CaptureResult(config=client.config)
    try:
        start = time.monotonic()
        for i, rgb in enumerate(frames):
            await asyncio.sleep(max(0.0, start + i / fps - time.monotonic()))
            if client.closed:
                break
            client.submit(rgb, round(i * 1e6 / fps))
        await asyncio.sleep(tail_s)
        result.stats = dict(client.stats)
    finally:
        await client.close()
    result.frames_sent, result.frames_replaced = client.frames_sent, client.frames_replaced
    result.errors, result.close_code = list(client.errors), client.close_code
    return result


def aligned_audio(chunks: Iterable[AudioChunk], sample_rate: int, duration_s: float, channels: int = 1) -> np.ndarray:
    """Tagged chunks laid out on the video timeline: sample k of the result belongs to capture time
    k / rate (timestamps from 0). Untagged chunks (before the first frame) are skipped. (N, channels) float32."""
    n = round(duration_s * sample_rate)
    out = np.zeros((n, channels), dtype=np.float32)
    for c in chunks:
        if not c.header.timed:
            continue
        at = round(c.header.video_timestamp_us * sample_rate / 1e6)
        lo, hi = max(at, 0), min(at + len(c.samples), n)
        if lo < hi:
            out[lo:hi] = c.samples[lo - at: hi - at, :channels]
    return out


# --- blocking wrapper ------------------------------------------------------------------------------------------
class BlockingCaptureClient:
    """:class:`CaptureClient` for synchronous code: an event loop on a daemon thread runs it."""

    def __init__(self, url: str, hello: Hello = Hello(), *, token: str | None = None,
                 encoder: FrameEncoder | None = None, timeout_s: float = 10.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="frieren-rt-ws", daemon=True)
        self._thread.start()
        try:
            self.client: CaptureClient = self._call(
                CaptureClient.connect(url, hello, token=token, encoder=encoder, timeout_s=timeout_s), timeout_s + 1)
        except BaseException:
            self._stop()
            raise

    def _call(self, coro: Any, timeout_s: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    @property
    def config(self) -> Config:
        return self.client.config

    @property
    def stats(self) -> dict[str, Any]:
        return dict(self.client.stats)

    def submit(self, rgb: np.ndarray, timestamp_us: int) -> None:
        self._loop.call_soon_threadsafe(self.client.submit, rgb, timestamp_us)

    def send_frame(self, payload: bytes, *, fmt: VideoFormat, width: int, height: int, timestamp_us: int) -> int:
        return self._call(self.client.send_frame(payload, fmt=fmt, width=width, height=height,
                                                 timestamp_us=timestamp_us))

    def read_audio(self, timeout_s: float = 1.0) -> AudioChunk | None:
        return self._call(self.client.recv_audio(timeout_s))

    def close(self) -> None:
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                self._call(self.client.close(), 10.0)
        self._stop()

    def _stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> BlockingCaptureClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
