"""The ``/ws`` game-capture protocol, version 1: message layouts, codes and limits (PROTOCOL.md is the spec).

Text messages carry JSON control (hello, config, credit, stats, error); binary messages carry media with a
fixed little-endian header: video frames from the client (:data:`FRAME_HEADER`, 24 bytes) and PCM audio from
the server (:data:`AUDIO_HEADER`, 32 bytes). Both ends of the connection import this module: the server
(frieren_rt.streaming.ws) and the client (frieren_rt.client.ws); it imports neither.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

__all__ = [
    "AUDIO_FLAG_SILENT", "AUDIO_FLAG_TIMED", "AUDIO_HEADER", "AUDIO_MAGIC", "AUDIO_RATES", "AudioFormat",
    "AudioHeader", "CloseCode", "Config", "ErrorCode", "FRAME_HEADER", "FRAME_MAGIC", "FrameHeader",
    "HandshakeError", "Hello", "Limits", "PROTOCOL_VERSION", "ProtocolError", "VideoFormat", "frame_samples",
    "pack_audio", "pack_frame", "raw_payload_bytes", "unpack_audio", "unpack_frame",
]

PROTOCOL_VERSION = 1
FRAME_MAGIC = b"FV"
AUDIO_MAGIC = b"FA"

# magic, version, format, sequence u32, capture time i64 us, width u16, height u16, payload length u32
FRAME_HEADER = struct.Struct("<2sBBIqHHI")  # 24 bytes
# magic, version, format, flags, channels, samples per channel u16, video timestamp i64 us,
# sample index u64, sample rate u32, payload length u32
AUDIO_HEADER = struct.Struct("<2sBBBBHqQII")  # 32 bytes

AUDIO_FLAG_SILENT = 1  # pre-roll or underrun: the payload is digital silence
AUDIO_FLAG_TIMED = 2  # video_timestamp_us is valid (clear before the session's first frame)
AUDIO_RATES = (48000, 24000, 16000)  # 48 kHz default (Opus/WebRTC); 24 and 16 kHz for speech-style pipes
FRAME_MS = 20  # audio frame duration (RFC 7587 Opus frame, the engine's pacing grid)


class VideoFormat(IntEnum):
    """Client frame payloads. Raw formats are tightly packed rows, top row first."""

    JPEG = 1  # one baseline/progressive JPEG (JFIF) image
    RGB = 2  # width * height * 3 bytes
    RGBA = 3  # width * height * 4 bytes (alpha ignored): what canvas getImageData returns
    I420 = 4  # planar Y, U, V (4:2:0), even width and height: width * height * 3 / 2 bytes
    H264 = 5  # one H.264 access unit in Annex B byte stream form (start codes), decoded in order

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> VideoFormat:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown video format {name!r}; known: {[f.label for f in cls]}") from None


class AudioFormat(IntEnum):
    S16LE = 1  # signed 16-bit little-endian, interleaved
    F32LE = 2  # float32 little-endian in [-1, 1], interleaved

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def sample_bytes(self) -> int:
        return 2 if self is AudioFormat.S16LE else 4

    @classmethod
    def parse(cls, name: str) -> AudioFormat:
        try:
            return cls[str(name).upper()]
        except KeyError:
            raise ValueError(f"unknown audio format {name!r}; known: s16le, f32le") from None


class ErrorCode(StrEnum):
    """``{"type": "error", "code": ...}`` messages: the frame is dropped, the session goes on."""

    BAD_HEADER = "bad_header"  # shorter than 24 bytes, wrong magic/version, or length field != payload
    UNKNOWN_FORMAT = "unknown_format"  # format byte not in VideoFormat
    FRAME_TOO_LARGE = "frame_too_large"  # width/height beyond Limits, or decoded picture too large
    BAD_PAYLOAD = "bad_payload"  # raw payload size does not match width x height x format
    DECODE_FAILED = "decode_failed"  # corrupt JPEG or H.264 access unit, or no picture in it
    STALE_TIMESTAMP = "stale_timestamp"  # capture time not after the previous frame's
    UNEXPECTED_TEXT = "unexpected_text"  # a text message that is not a known control message
    CREDIT_EXCEEDED = "credit_exceeded"  # a frame beyond the granted credit: the oldest waiting one is dropped


class CloseCode(IntEnum):
    """WebSocket close codes the server uses (RFC 6455 section 7.4; 4000-4999 are private use)."""

    NORMAL = 1000  # the client said bye
    GOING_AWAY = 1001  # the server is shutting down
    MESSAGE_TOO_BIG = 1009  # a message over max_message_bytes (enforced by the WebSocket layer)
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # every session slot is taken
    BAD_HELLO = 4000  # first message not a JSON hello object (binary, malformed, too long)
    UNAUTHORIZED = 4001  # token missing or wrong
    UNSUPPORTED_VERSION = 4002
    UNSUPPORTED_CONFIG = 4003  # audio format / rate / channels / credits out of range
    HANDSHAKE_TIMEOUT = 4004  # no hello within handshake_timeout_s
    IDLE_TIMEOUT = 4005  # no frame within idle_timeout_s
    TOO_MANY_ERRORS = 4006  # Limits.max_consecutive_errors bad frames in a row
    SLOW_CONSUMER = 4007  # the client did not read what the server sent for idle_timeout_s


@dataclass(frozen=True)
class Limits:
    """Hard limits of protocol version 1 (the server's max_message_bytes bounds each message on top)."""

    max_width: int = 4096
    max_height: int = 4096
    max_pixels: int = 3840 * 2160  # also bounds what a JPEG/H.264 decoder may allocate (FFmpeg max_pixels)
    max_hello_bytes: int = 4096
    max_credits: int = 8
    default_credits: int = 2
    max_consecutive_errors: int = 32
    min_stats_interval_s: float = 0.1
    max_stats_interval_s: float = 10.0


LIMITS = Limits()


class ProtocolError(ValueError):
    """A bad frame: ``code`` is the ErrorCode sent back; the session continues."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class HandshakeError(ValueError):
    """A hello the server refuses: the connection is closed with ``close_code``."""

    def __init__(self, close_code: CloseCode, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code


# --- frames ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameHeader:
    seq: int
    timestamp_us: int  # capture time on the client's clock, microseconds (any origin, increasing)
    width: int
    height: int
    format: int  # a VideoFormat value (kept an int so an unknown one can be reported)
    payload_len: int


def raw_payload_bytes(fmt: VideoFormat, width: int, height: int) -> int | None:
    """Exact payload size of a raw format; None for compressed ones."""
    if fmt is VideoFormat.RGB:
        return width * height * 3
    if fmt is VideoFormat.RGBA:
        return width * height * 4
    if fmt is VideoFormat.I420:
        return width * height * 3 // 2
    return None


def pack_frame(payload: bytes, *, seq: int, timestamp_us: int, width: int, height: int,
               fmt: VideoFormat | int) -> bytes:
    head = FRAME_HEADER.pack(FRAME_MAGIC, PROTOCOL_VERSION, int(fmt), seq & 0xFFFFFFFF, int(timestamp_us),
                             width, height, len(payload))
    return head + bytes(payload)


def unpack_frame(message: bytes, limits: Limits = LIMITS) -> tuple[FrameHeader, memoryview]:
    """Parse and check one client frame message; raise :class:`ProtocolError` with the reason."""
    if len(message) < FRAME_HEADER.size:
        raise ProtocolError(ErrorCode.BAD_HEADER,
                            f"message of {len(message)} bytes is shorter than the {FRAME_HEADER.size}-byte header")
    magic, version, fmt, seq, ts, w, h, n = FRAME_HEADER.unpack_from(message)
    if magic != FRAME_MAGIC:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"bad magic {magic!r}, expected {FRAME_MAGIC!r}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"frame header version {version}, expected {PROTOCOL_VERSION}")
    payload = memoryview(message)[FRAME_HEADER.size:]
    if n != len(payload):
        raise ProtocolError(ErrorCode.BAD_HEADER, f"payload length field {n} but {len(payload)} bytes follow")
    header = FrameHeader(seq, ts, w, h, fmt, n)
    if fmt not in VideoFormat._value2member_map_:
        raise ProtocolError(ErrorCode.UNKNOWN_FORMAT, f"unknown format {fmt}; known: "
                            + ", ".join(f"{f.value}={f.label}" for f in VideoFormat))
    check_size(VideoFormat(fmt), w, h, limits)
    expected = raw_payload_bytes(VideoFormat(fmt), w, h)
    if expected is not None and expected != n:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD,
                            f"{VideoFormat(fmt).label} {w}x{h} needs {expected} payload bytes, got {n}")
    return header, payload


def check_size(fmt: VideoFormat, width: int, height: int, limits: Limits = LIMITS) -> None:
    """Width/height against the limits (0 x 0 allowed for compressed formats: the decoder finds the size)."""
    compressed = fmt in (VideoFormat.JPEG, VideoFormat.H264)
    if compressed and width == height == 0:
        return
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"{width}x{height} is over the limit "
                            f"({limits.max_width}x{limits.max_height}, {limits.max_pixels} pixels)")
    if width == 0 or height == 0:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"empty frame size {width}x{height}")
    if fmt is VideoFormat.I420 and (width % 2 or height % 2):
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"i420 needs even width and height, got {width}x{height}")


# --- audio -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioHeader:
    format: AudioFormat
    flags: int
    channels: int
    samples: int  # per channel
    video_timestamp_us: int  # capture time (client clock) that the first sample belongs to
    sample_index: int  # per channel, since the session's audio began: frames are contiguous
    sample_rate: int

    @property
    def silent(self) -> bool:
        return bool(self.flags & AUDIO_FLAG_SILENT)

    @property
    def timed(self) -> bool:
        return bool(self.flags & AUDIO_FLAG_TIMED)


def frame_samples(sample_rate: int) -> int:
    """Samples per channel in one 20 ms frame."""
    return sample_rate * FRAME_MS // 1000


def pack_audio(header: AudioHeader, payload: bytes) -> bytes:
    return AUDIO_HEADER.pack(AUDIO_MAGIC, PROTOCOL_VERSION, int(header.format), header.flags, header.channels,
                             header.samples, header.video_timestamp_us, header.sample_index, header.sample_rate,
                             len(payload)) + payload


def unpack_audio(message: bytes) -> tuple[AudioHeader, memoryview]:
    if len(message) < AUDIO_HEADER.size:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"audio message of {len(message)} bytes is too short")
    magic, version, fmt, flags, ch, n, ts, index, rate, length = AUDIO_HEADER.unpack_from(message)
    if magic != AUDIO_MAGIC or version != PROTOCOL_VERSION:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"not a version {PROTOCOL_VERSION} audio message")
    payload = memoryview(message)[AUDIO_HEADER.size:]
    fmt = AudioFormat(fmt)
    if length != len(payload) or length != n * ch * fmt.sample_bytes:
        raise ProtocolError(ErrorCode.BAD_HEADER, "audio payload length does not match its header")
    return AudioHeader(fmt, flags, ch, n, ts, index, rate), payload


# --- handshake ---------------------------------------------------------------------------------------------
def _load_object(text: str | bytes, kind: str, limit: int) -> dict[str, Any]:
    if len(text) > limit:
        raise HandshakeError(CloseCode.BAD_HELLO, f"{kind} longer than {limit} bytes")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HandshakeError(CloseCode.BAD_HELLO, f"{kind} is not JSON") from None
    if not isinstance(obj, dict) or obj.get("type") != kind:
        raise HandshakeError(CloseCode.BAD_HELLO, f'expected a JSON object with "type": "{kind}"')
    return obj


@dataclass(frozen=True, kw_only=True)
class Hello:
    """The client's first message. credits: frames it wants in flight (1..8); stats_interval_s: how often the
    server sends stats; seed: the generator's noise seed (None: the server picks)."""

    version: int = PROTOCOL_VERSION
    token: str | None = None
    audio_format: str = "s16le"
    sample_rate: int = 48000
    channels: int = 1
    credits: int = LIMITS.default_credits
    stats_interval_s: float = 1.0
    seed: int | None = None
    client: str = ""

    def to_json(self) -> str:
        body = {"type": "hello", "version": self.version,
                "audio": {"format": self.audio_format, "sample_rate": self.sample_rate, "channels": self.channels},
                "credits": self.credits, "stats_interval_s": self.stats_interval_s, "client": self.client}
        if self.token is not None:
            body["token"] = self.token
        if self.seed is not None:
            body["seed"] = self.seed
        return json.dumps(body)

    @classmethod
    def from_json(cls, text: str | bytes, limits: Limits = LIMITS) -> Hello:
        """Parse and validate; raise :class:`HandshakeError` with the close code and reason."""
        obj = _load_object(text, "hello", limits.max_hello_bytes)
        if obj.get("version") != PROTOCOL_VERSION:
            raise HandshakeError(CloseCode.UNSUPPORTED_VERSION,
                                 f"protocol version {obj.get('version')!r} unsupported; this server speaks "
                                 f"{PROTOCOL_VERSION}")
        audio = obj.get("audio", {})
        token, seed, client = obj.get("token"), obj.get("seed"), obj.get("client", "")
        try:
            if not isinstance(audio, dict):
                raise ValueError("audio must be an object")
            hello = cls(token=token if isinstance(token, str) else None,
                        audio_format=AudioFormat.parse(audio.get("format", "s16le")).label,
                        sample_rate=_int(audio.get("sample_rate", 48000), "sample_rate"),
                        channels=_int(audio.get("channels", 1), "channels"),
                        credits=_int(obj.get("credits", limits.default_credits), "credits"),
                        stats_interval_s=_float(obj.get("stats_interval_s", 1.0), "stats_interval_s"),
                        seed=None if seed is None else _int(seed, "seed"), client=str(client)[:64])
        except ValueError as exc:
            raise HandshakeError(CloseCode.UNSUPPORTED_CONFIG, str(exc)) from None
        hello.check(limits)
        return hello

    def check(self, limits: Limits = LIMITS) -> None:
        problems = []
        if self.sample_rate not in AUDIO_RATES:
            problems.append(f"sample_rate {self.sample_rate} not in {list(AUDIO_RATES)}")
        if self.channels not in (1, 2):
            problems.append(f"channels {self.channels} not 1 or 2")
        if not 1 <= self.credits <= limits.max_credits:
            problems.append(f"credits {self.credits} not in 1..{limits.max_credits}")
        if not limits.min_stats_interval_s <= self.stats_interval_s <= limits.max_stats_interval_s:
            problems.append(f"stats_interval_s {self.stats_interval_s} not in "
                            f"[{limits.min_stats_interval_s}, {limits.max_stats_interval_s}]")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            problems.append("seed must be in [0, 2^63)")
        if problems:
            raise HandshakeError(CloseCode.UNSUPPORTED_CONFIG, "; ".join(problems))


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class Config:
    """The server's answer to a hello: what it will send and accept. latency_s: capture -> audio (engine);
    stream_delay_s: the first sample stands this long before the first frame's capture; video_size: what
    frames are scaled to (send at least this); credits: frames the client may have in flight."""

    session: str
    audio_format: str
    sample_rate: int
    channels: int
    frame_samples: int
    credits: int
    max_message_bytes: int
    video_formats: tuple[str, ...] = tuple(f.label for f in VideoFormat)
    video_size: tuple[int, int] = (160, 120)
    window_s: float = 0.0
    hop_s: float = 0.0
    latency_s: float = 0.0
    stream_delay_s: float = 0.0
    idle_timeout_s: float = 30.0
    stats_interval_s: float = 1.0
    limits: Limits = field(default_factory=Limits)
    version: int = PROTOCOL_VERSION

    def to_json(self) -> str:
        body = asdict(self)
        body["audio"] = {k: body.pop(k) for k in ("audio_format", "sample_rate", "channels", "frame_samples")}
        body["audio"]["format"] = body["audio"].pop("audio_format")
        return json.dumps({"type": "config", **body})

    @classmethod
    def from_json(cls, text: str | bytes) -> Config:
        obj = _load_object(text, "config", 1 << 16)
        audio = obj.pop("audio")
        obj.pop("type")
        return cls(audio_format=audio["format"], sample_rate=audio["sample_rate"], channels=audio["channels"],
                   frame_samples=audio["frame_samples"], video_formats=tuple(obj.pop("video_formats")),
                   video_size=tuple(obj.pop("video_size")), limits=Limits(**obj.pop("limits")), **obj)
