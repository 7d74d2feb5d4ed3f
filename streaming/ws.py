"""``GET /ws``: the game-capture WebSocket transport (PROTOCOL.md; wire format in frieren_rt.client.protocol).

Per connection: a JSON hello within ``handshake_timeout_s`` (version, audio format, token) -> a slot in the
same :class:`SessionRegistry` as WebRTC sessions -> a JSON config -> binary frames in (JPEG, raw RGB/RGBA/I420,
H.264 Annex B), 20 ms PCM frames out, each tagged with the client capture time it belongs to, plus credit and
stats messages. A :class:`WsSession` has the duck interface of ``webrtc.PeerSession`` that the registry and
``/stats`` use (id, created, closed, stats(), close()).

Flow control is credit-based (the pull pattern of the real-time latent-consistency demos,
../shared/reference/streaming.md): the client may have ``credits`` frames in flight and gets one credit back
per frame the server has consumed; of the frames waiting, the newest wins (H.264 access units are all decoded:
each depends on the previous). Bad frames get an ``error`` message and are dropped; the session goes on.
Decoding runs off the event loop; audio is paced by the engine exactly as for WebRTC (webrtc.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import time
from collections import deque
from typing import Any

import av
import numpy as np
from aiohttp import WSMsgType, web

from frieren_rt.client.protocol import (
    AUDIO_FLAG_SILENT,
    AUDIO_FLAG_TIMED,
    LIMITS,
    AudioFormat,
    AudioHeader,
    CloseCode,
    Config,
    ErrorCode,
    FrameHeader,
    HandshakeError,
    Hello,
    Limits,
    ProtocolError,
    VideoFormat,
    frame_samples,
    pack_audio,
    unpack_frame,
)
from frieren_rt.streaming.access import AccessPolicy, origin_of, token_from
from frieren_rt.streaming.engine import Engine, VideoFrame
from frieren_rt.streaming.resample import PolyphaseResampler
from frieren_rt.streaming.server import CONFIG, ENGINE, SESSIONS, ServerConfig, SessionLimit
from frieren_rt.streaming.webrtc import CaptureTimeMapper, LevelMeter, StreamFrame, VideoSize, session_stats

__all__ = ["ClientTimeline", "FrameDecoder", "PcmEncoder", "WsSession", "add_routes", "audio_capture_time"]

log = logging.getLogger(__name__)
_WS_OPEN = web.AppKey("ws_open", dict)  # every open WebSocket -> its session (None: in handshake)


# --- pure pieces -----------------------------------------------------------------------------------------------
class FrameDecoder:
    """Client payloads -> (H, W, 3) uint8 RGB at ``size``. One per session: H.264 decoding carries state.

    Called on a worker thread, one frame at a time. JPEG and H.264 go through FFmpeg decoders with
    ``err_detect=explode`` (a truncated or corrupt picture raises instead of being concealed) and
    ``max_pixels`` (a small message cannot make the decoder allocate a huge picture); raw formats are
    reshaped with numpy. Scaling to ``size`` is libswscale's, as for WebRTC frames (webrtc.frame_to_rgb).
    """

    def __init__(self, size: VideoSize, limits: Limits = LIMITS) -> None:
        self.size = size
        self.limits = limits
        self._codecs: dict[VideoFormat, av.CodecContext] = {}

    def _codec(self, fmt: VideoFormat) -> av.CodecContext:
        if fmt not in self._codecs:
            ctx = av.CodecContext.create("mjpeg" if fmt is VideoFormat.JPEG else "h264", "r")
            ctx.options = {"err_detect": "explode", "max_pixels": str(self.limits.max_pixels)}
            self._codecs[fmt] = ctx
        return self._codecs[fmt]

    def picture(self, header: FrameHeader, payload: bytes | memoryview) -> av.VideoFrame | None:
        """The decoded picture; None when an H.264 unit held no picture (parameter sets only)."""
        fmt = VideoFormat(header.format)
        if fmt in (VideoFormat.JPEG, VideoFormat.H264):
            if len(payload) == 0:  # an empty packet would put the decoder into draining mode
                raise ProtocolError(ErrorCode.DECODE_FAILED, f"empty {fmt.label} payload")
            try:
                frames = self._codec(fmt).decode(av.Packet(bytes(payload)))
            except (av.error.FFmpegError, ValueError) as exc:
                raise ProtocolError(ErrorCode.DECODE_FAILED, f"corrupt {fmt.label} data: {exc}") from None
            if not frames:
                if fmt is VideoFormat.JPEG:
                    raise ProtocolError(ErrorCode.DECODE_FAILED, "no picture in the jpeg data")
                return None
            return frames[-1]
        pixels = np.frombuffer(payload, dtype=np.uint8)
        w, h = header.width, header.height
        if fmt is VideoFormat.I420:
            return av.VideoFrame.from_ndarray(pixels.reshape(h * 3 // 2, w), format="yuv420p")
        channels = 3 if fmt is VideoFormat.RGB else 4
        return av.VideoFrame.from_ndarray(pixels.reshape(h, w, channels), format="rgb24" if channels == 3 else "rgba")

    def __call__(self, header: FrameHeader, payload: bytes | memoryview) -> np.ndarray | None:
        frame = self.picture(header, payload)
        if frame is None:
            return None
        return frame.to_ndarray(format="rgb24", width=self.size.width, height=self.size.height)


def to_pcm(samples: np.ndarray, fmt: AudioFormat, channels: int) -> bytes:
    """Mono float32 (n,) in [-1, 1] -> interleaved little-endian PCM, (n * channels) samples."""
    x = np.clip(samples, -1.0, 1.0)
    if channels == 2:
        x = np.repeat(x, 2)  # L R L R ...
    if fmt is AudioFormat.S16LE:
        return (x * 32767.0).astype("<i2").tobytes()
    return x.astype("<f4").tobytes()


class PcmEncoder:
    """Engine frames (mono float32, ``in_rate``, 20 ms) -> the client's 20 ms PCM frames with headers.

    At the engine's rate each frame maps to one frame. At a lower rate the stateful polyphase resampler maps
    output sample k to input time k / rate exactly (resample.py), so output frame m starts at input frame m's
    time and carries its timestamp; it is complete one input frame later (20 ms more latency).
    """

    def __init__(self, fmt: AudioFormat, rate: int, channels: int, *, in_rate: int = 48000) -> None:
        self.fmt, self.rate, self.channels = fmt, rate, channels
        self.frame = frame_samples(rate)
        self._resampler = None if rate == in_rate else PolyphaseResampler(in_rate, rate)
        self._buf = np.zeros(0, dtype=np.float32)
        self._meta: deque[tuple[int | None, bool]] = deque()  # (timestamp us, silent) per input frame
        self.frames_out = 0

    def push(self, samples: np.ndarray, timestamp_us: int | None, silent: bool) -> list[bytes]:
        """One engine frame in; the messages now complete out (zero or more)."""
        self._meta.append((timestamp_us, silent))
        out = samples if self._resampler is None else self._resampler.process(samples)
        self._buf = np.concatenate([self._buf, out])
        messages = []
        while len(self._buf) >= self.frame and self._meta:
            chunk, self._buf = self._buf[: self.frame], self._buf[self.frame:]
            ts, quiet = self._meta.popleft()
            flags = (AUDIO_FLAG_SILENT if quiet else 0) | (AUDIO_FLAG_TIMED if ts is not None else 0)
            header = AudioHeader(self.fmt, flags, self.channels, self.frame, ts or 0,
                                 self.frames_out * self.frame, self.rate)
            messages.append(pack_audio(header, to_pcm(chunk, self.fmt, self.channels)))
            self.frames_out += 1
        return messages


class ClientTimeline:
    """Client capture times (microseconds, any origin) <-> the engine clock (seconds).

    Forward mapping is webrtc.CaptureTimeMapper's (anchored at the first arrival, corrected for jitter and for
    a lagging sender clock); the inverse uses the offset of the newest mapping, so audio tags follow the same
    corrections.
    """

    def __init__(self) -> None:
        self._mapper = CaptureTimeMapper()
        self.offset: float | None = None  # engine time - client time, seconds

    def to_engine(self, timestamp_us: int, arrival: float) -> float:
        t = self._mapper.map(timestamp_us / 1e6, arrival)
        self.offset = t - timestamp_us / 1e6
        return t

    @property
    def revision_s(self) -> float:
        """How far the first frame's capture has moved since it was mapped (CaptureTimeMapper.revision_s)."""
        return self._mapper.revision_s

    def to_client_us(self, engine_time: float) -> int | None:
        return None if self.offset is None else round((engine_time - self.offset) * 1e6)


def audio_capture_time(anchor: float, latency_s: float, first_recv: float, rate: int, frame: int,
                       index: int) -> float:
    """Engine-clock capture time that paced frame ``index``'s first sample belongs to.

    FIFO sample i plays at ``anchor + i / rate`` and carries the audio of capture time ``play - latency``
    (engine.py); the pacer's frame n starts at FIFO sample ``n * frame + round((first_recv - anchor) * rate)``
    (pacer.py, first_recv = clock time of its first recv)."""
    i = index * frame + round((first_recv - anchor) * rate)
    return anchor + i / rate - latency_s


# --- one session -----------------------------------------------------------------------------------------------
class WsSession:
    """One capture client: its WebSocket, engine session, decoder and the three loops (decode, audio, stats).

    ``run`` drives the receive loop until the client goes; ``closed`` is set once everything is released.
    """

    def __init__(self, session_id: str, *, ws: web.WebSocketResponse, engine: Engine, config: ServerConfig,
                 hello: Hello, limits: Limits = LIMITS) -> None:
        self.id = session_id
        self.ws = ws
        self.engine = engine
        self.cfg = config
        self.hello = hello
        self.limits = limits
        self.engine_session = engine.open_session(session_id, seed=hello.seed)
        self.decoder = FrameDecoder(config.video_size, limits)
        g = engine.generator.geometry
        self.pcm = PcmEncoder(AudioFormat.parse(hello.audio_format), hello.sample_rate, hello.channels,
                              in_rate=g.output_sample_rate)
        self.timeline = ClientTimeline()
        self.meter = LevelMeter()
        self.created = time.monotonic()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._pending: deque[tuple[FrameHeader, memoryview, float]] = deque()
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._last_ts: int | None = None
        self._last_media = engine.clock.now()
        self._errors_in_row = 0
        self.counts = dict(frames_in=0, frames_decoded=0, frames_latest_wins=0, credit_overruns=0, errors=0,
                           no_picture=0, bytes_in=0, audio_messages=0)
        self.last_error: dict[str, Any] | None = None
        self.players: dict[str, Any] = {}  # WHEP players: none (see audio_track)

    # --- lifecycle -------------------------------------------------------------------------------------------
    def config_message(self) -> Config:
        gen = self.engine.generator
        g = gen.geometry
        return Config(session=self.id, audio_format=self.hello.audio_format, sample_rate=self.hello.sample_rate,
                      channels=self.hello.channels, frame_samples=frame_samples(self.hello.sample_rate),
                      credits=self.hello.credits, max_message_bytes=self.cfg.max_message_bytes,
                      video_size=(self.cfg.video_size.width, self.cfg.video_size.height),
                      window_s=g.window_s, hop_s=g.hop_s, latency_s=self.engine_session.latency_s,
                      stream_delay_s=self.stream_delay_s, idle_timeout_s=self.cfg.idle_timeout_s,
                      stats_interval_s=self.hello.stats_interval_s, limits=self.limits)

    @property
    def stream_delay_s(self) -> float:
        gen = self.engine.generator
        return gen.stream_delay_samples / gen.geometry.model_sample_rate

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # keep a reference until done (RUF006)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        try:
            await self._send(self.config_message().to_json())
            for loop in (self._decode_loop(), self._audio_loop(), self._stats_loop()):
                self._spawn(loop)
            await self._receive_loop()
        except (ConnectionError, RuntimeError, asyncio.TimeoutError):
            pass  # the client went away mid-send
        finally:
            await self.close(CloseCode.NORMAL, "bye")

    async def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "server closing") -> None:
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        self.close_code = code
        self.engine.close_session(self.id)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=int(code), message=reason.encode()[:120]), 2.0)
        self.closed.set()

    def _close_soon(self, code: CloseCode, reason: str) -> None:
        self._spawn(self.close(code, reason))

    async def _send(self, data: str | bytes) -> None:
        """One message; a client that does not read for ``idle_timeout_s`` is closed (SLOW_CONSUMER)."""
        async with self._send_lock:
            if self.ws.closed:
                raise ConnectionResetError("websocket closed")
            send = self.ws.send_str(data) if isinstance(data, str) else self.ws.send_bytes(data)
            try:
                await asyncio.wait_for(send, self.cfg.idle_timeout_s)
            except asyncio.TimeoutError:
                self._close_soon(CloseCode.SLOW_CONSUMER, "client does not read")
                raise

    async def _send_json(self, **body: Any) -> None:
        await self._send(json.dumps(body))

    # --- client -> server ------------------------------------------------------------------------------------
    async def _receive_loop(self) -> None:
        clock = self.engine.clock
        while not self._closing:
            wait = self._last_media + self.cfg.idle_timeout_s - clock.now()
            try:
                msg = await self.ws.receive(timeout=max(wait, 0.001))
            except asyncio.TimeoutError:
                await self.close(CloseCode.IDLE_TIMEOUT, f"no frame for {self.cfg.idle_timeout_s:g} s")
                return
            if msg.type == WSMsgType.BINARY:
                await self._on_frame(msg.data, clock.now())
            elif msg.type == WSMsgType.TEXT:
                await self._on_text(msg.data)
            else:  # CLOSE, CLOSING, CLOSED, ERROR (1009 too big, 1007 bad UTF-8: aiohttp closed it already)
                return

    async def _on_text(self, text: str) -> None:
        try:
            kind = json.loads(text).get("type")
        except (json.JSONDecodeError, AttributeError):
            kind = None
        if kind == "bye":
            await self.close(CloseCode.NORMAL, "bye")
            return
        await self._reject(ProtocolError(ErrorCode.UNEXPECTED_TEXT,
                                         'expected a binary frame or {"type": "bye"}'), None)

    async def _on_frame(self, data: bytes, arrival: float) -> None:
        self.counts["frames_in"] += 1
        self.counts["bytes_in"] += len(data)
        self._last_media = arrival
        try:
            header, payload = unpack_frame(data, self.limits)
        except ProtocolError as exc:
            await self._reject(exc, None)
            await self._grant(1)
            return
        if len(self._pending) >= self.hello.credits:  # the client ignored its credit: the oldest goes
            old = self._pending.popleft()
            self.counts["credit_overruns"] += 1
            await self._send_json(type="error", code=ErrorCode.CREDIT_EXCEEDED.value, seq=old[0].seq,
                                  message=f"more than {self.hello.credits} frames in flight; dropped frame "
                                  f"{old[0].seq}")
            await self._grant(1)
        self._pending.append((header, payload, arrival))
        self._wake.set()

    async def _reject(self, exc: ProtocolError, seq: int | None) -> None:
        self.counts["errors"] += 1
        self._errors_in_row += 1
        self.last_error = {"code": exc.code.value, "message": str(exc), "seq": seq}
        await self._send_json(type="error", **self.last_error)
        if self._errors_in_row >= self.limits.max_consecutive_errors:
            self._close_soon(CloseCode.TOO_MANY_ERRORS, f"{self._errors_in_row} bad messages in a row")

    async def _grant(self, n: int) -> None:
        await self._send_json(type="credit", grant=n)

    # --- decode ----------------------------------------------------------------------------------------------
    async def _decode_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                header, payload, arrival = self._pending.popleft()
                if self._pending and header.format != VideoFormat.H264:  # latest wins; H.264 needs every unit
                    self.counts["frames_latest_wins"] += 1
                    await self._grant(1)
                    continue
                t0 = time.perf_counter()
                try:
                    rgb = await loop.run_in_executor(None, self.decoder, header, payload)
                except ProtocolError as exc:
                    await self._reject(exc, header.seq)
                else:
                    self._accept(header, rgb, arrival, time.perf_counter() - t0)
                await self._grant(1)

    def _accept(self, header: FrameHeader, rgb: np.ndarray | None, arrival: float, decode_s: float) -> None:
        if rgb is None:
            self.counts["no_picture"] += 1
            return
        if self._last_ts is not None and header.timestamp_us <= self._last_ts:
            self._spawn(self._reject(ProtocolError(
                ErrorCode.STALE_TIMESTAMP, f"capture time {header.timestamp_us} us is not after the previous "
                f"frame's {self._last_ts} us"), header.seq))
            return
        self._last_ts = header.timestamp_us
        self._errors_in_row = 0
        self.counts["frames_decoded"] += 1
        capture = self.timeline.to_engine(header.timestamp_us, arrival)
        self.engine_session.push_frame(VideoFrame(StreamFrame(self.id, rgb), capture, decode_s=decode_s))
        self.engine_session.first_capture_revision_s = self.timeline.revision_s

    # --- server -> client ------------------------------------------------------------------------------------
    async def _audio_loop(self) -> None:
        s = self.engine_session
        first_recv = self.engine.clock.now()  # the pacer's start: its first recv reads the clock right after
        while True:
            frame = await s.recv_audio()
            self.meter.update(frame.samples, frame.silent)
            ts = None
            if s.pacer.anchor is not None and self.timeline.offset is not None:
                t = audio_capture_time(s.pacer.anchor, s.latency_s, first_recv, s.pacer.sample_rate,
                                       s.pacer.frame_samples, frame.index)
                ts = self.timeline.to_client_us(t)
            for message in self.pcm.push(frame.samples, ts, frame.silent):
                await self._send(message)
                self.counts["audio_messages"] += 1

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.hello.stats_interval_s)
            await self._send_json(type="stats", **self.stats())

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "transport": "websocket",
            "state": "closed" if self._closing else "open",
            **session_stats(self.engine_session, self.meter, self.stream_delay_s,
                            extra_dropped=self.counts["frames_latest_wins"] + self.counts["credit_overruns"]),
            "pending_frames": len(self._pending),
            **self.counts,
            "last_error": self.last_error,
            "age_s": round(time.monotonic() - self.created, 3),
        }

    # WHEP (whip.py) asks every registered session for these; a WebSocket session's audio goes back over /ws,
    # so a WHEP offer for it gets 409 from audio_track.
    max_players = 0
    players_full = False

    def audio_track(self) -> Any:
        raise web.HTTPConflict(text=f"session {self.id} is a WebSocket session: its audio goes back over /ws\n")

    async def remove_player(self, player_id: str) -> bool:
        return False


# --- handshake and route ---------------------------------------------------------------------------------------
async def read_hello(ws: web.WebSocketResponse, timeout_s: float, limits: Limits = LIMITS) -> Hello:
    """The first message as a :class:`Hello`; :class:`HandshakeError` (with the close code) otherwise."""
    try:
        msg = await ws.receive(timeout=timeout_s)
    except asyncio.TimeoutError:
        raise HandshakeError(CloseCode.HANDSHAKE_TIMEOUT, f"no hello within {timeout_s:g} s") from None
    if msg.type == WSMsgType.TEXT:
        return Hello.from_json(msg.data, limits)
    if msg.type == WSMsgType.BINARY:
        raise HandshakeError(CloseCode.BAD_HELLO, "the first message must be a JSON hello, not binary")
    raise ConnectionResetError("closed before the hello")


def _token_ok(expected: str | None, *given: str | None) -> bool:
    if expected is None:
        return True
    return any(g is not None and hmac.compare_digest(g.encode(), expected.encode()) for g in given)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    app, cfg = request.app, request.app[CONFIG]
    # The access middleware (access.py) answers these before the upgrade when installed; checked here too so
    # /ws is never open by omission.
    policy = AccessPolicy.from_config(cfg)
    origin = request.headers.get("Origin")
    if origin is not None and not policy.origin_allowed(origin, origin_of(request)):
        return web.json_response({"error": f"origin {origin!r} is not allowed"}, status=403)
    presented = token_from(request)
    if presented is not None and not _token_ok(cfg.token, presented):
        return web.json_response({"error": "wrong token"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="frieren-rt"'})
    ws = web.WebSocketResponse(compress=False, max_msg_size=cfg.max_message_bytes, timeout=2.0)
    await ws.prepare(request)
    open_ws: dict[web.WebSocketResponse, WsSession | None] = app[_WS_OPEN]
    open_ws[ws] = None
    try:
        await _handshake_and_run(app, cfg, ws, presented)
    finally:
        open_ws.pop(ws, None)
    return ws


async def _handshake_and_run(app: web.Application, cfg: ServerConfig, ws: web.WebSocketResponse,
                             presented: str | None) -> None:
    try:
        hello = await read_hello(ws, cfg.handshake_timeout_s)
        # The token may come with the upgrade (header, ?token=: the access layer checks it) or in the hello;
        # a hello that names a token must name the right one.
        if not _token_ok(cfg.token, presented, hello.token) or (
                hello.token is not None and not _token_ok(cfg.token, hello.token)):
            raise HandshakeError(CloseCode.UNAUTHORIZED, "missing or wrong token")
        registry = app[SESSIONS]
        try:
            registry.reserve()
        except SessionLimit as exc:
            raise HandshakeError(CloseCode.TRY_AGAIN_LATER, str(exc)) from None
        try:
            session = WsSession(secrets.token_urlsafe(8), ws=ws, engine=app[ENGINE], config=cfg, hello=hello)
            registry.add(session)  # type: ignore[arg-type]  # duck-typed like webrtc.PeerSession
        finally:
            registry.release()
    except HandshakeError as exc:
        await ws.close(code=int(exc.close_code), message=str(exc).encode()[:120])
        return
    except ConnectionResetError:
        return
    app[_WS_OPEN][ws] = session
    await session.run()


async def _close_all(app: web.Application) -> None:
    """On shutdown: 1001 to every open WebSocket, in session or handshake (aiohttp would otherwise wait up to
    its shutdown timeout for their handlers)."""

    async def close(ws: web.WebSocketResponse, session: WsSession | None) -> None:
        if session is not None:
            await session.close(CloseCode.GOING_AWAY, "server shutting down")
        else:
            await ws.close(code=CloseCode.GOING_AWAY, message=b"server shutting down")

    await asyncio.gather(*(close(ws, s) for ws, s in list(app[_WS_OPEN].items())), return_exceptions=True)


def add_routes(app: web.Application) -> None:
    app[_WS_OPEN] = {}
    app.router.add_get("/ws", ws_handler)
    app.on_shutdown.append(_close_all)
