"""Local use (issue 6, item 3): the engine in-process, a video source in, a sound card (or a file) out.

Sources yield ``(t, rgb)``: seconds since the source's first frame and an (H, W, 3) uint8 frame at the
engine's frame size. :class:`FileSource` decodes a video file with PyAV and :class:`ArraySource` plays frames
held in memory (a world clip); both are paced by their timestamps on the engine clock. :class:`CameraSource`
reads a V4L2 camera through PyAV (Linux) and paces itself: its frames carry their arrival time.

Sinks take the engine's paced 20 ms, 48 kHz mono frames. A sound card pulls audio on its own clock, so the
device-like sinks put a small bounded buffer (:class:`DeviceBuffer`) between the engine's pacer and the
device: the device takes one frame per 20 ms of its own clock, plays silence and counts an underrun when none
is there, and drops the oldest frame when the two clocks drift apart by more than the buffer.
:class:`SoundDeviceSink` plays through PortAudio (sounddevice); :class:`ClockedNullSink` is the same
consumer on an injected clock, for machines with no sound card (ALSA's null device has no clock: it "plays" a
second in 7 ms, ../shared/reference/environment.md); :class:`WavSink` writes what a speaker would have played.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
import time
import wave
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from frieren_rt.streaming.clock import Clock
from frieren_rt.streaming.engine import Engine, VideoFrame
from frieren_rt.streaming.webrtc import AUDIO_FRAME, AUDIO_RATE, StreamFrame, VideoSize

__all__ = ["ArraySource", "AudioOutputUnavailable", "CameraSource", "CameraUnavailable", "ClockedNullSink",
           "DeviceBuffer", "FileSource", "LiveResult", "SoundDeviceSink", "WavSink", "load_sounddevice",
           "open_sink", "open_source", "output_device", "output_kind", "run_live", "run_local"]

NO_FILE_HINT = "or write the audio to a file with --output FILE.wav"


class AudioOutputUnavailable(RuntimeError):
    """No way to play sound here; the message says what is missing and what to do."""


class CameraUnavailable(RuntimeError):
    """The camera cannot be opened; the message says why."""


# --- sources ------------------------------------------------------------------------------------------------
class FrameSource(Protocol):
    live: bool  # True: frames arrive at their own pace (a camera); False: the runner paces them by ``t``

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]: ...

    def close(self) -> None: ...


def fit_rgb(rgb: np.ndarray, size: VideoSize) -> np.ndarray:
    """(H, W, 3) uint8 -> (size.height, size.width, 3) uint8, scaled by libswscale like the WebRTC path."""
    if rgb.shape[:2] == (size.height, size.width):
        return rgb
    import av  # noqa: PLC0415

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").to_ndarray(
        format="rgb24", width=size.width, height=size.height)


class ArraySource:
    """Frames (N, H, W, 3) uint8 held in memory at ``fps``: frame i at t = i / fps."""

    live = False

    def __init__(self, frames: np.ndarray, fps: float, size: VideoSize) -> None:
        self.frames, self.fps, self.size = frames, fps, size

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        for i, f in enumerate(self.frames):
            yield i / self.fps, fit_rgb(f, self.size)

    def close(self) -> None:
        pass


class FileSource:
    """A video file's first video stream, decoded by PyAV; t from each frame's timestamp."""

    live = False

    def __init__(self, path: Path, size: VideoSize) -> None:
        import av  # noqa: PLC0415

        if not path.is_file():
            raise FileNotFoundError(f"input video {path} does not exist")
        self.size = size
        try:
            self.container = av.open(str(path))
        except av.error.FFmpegError as exc:
            raise ValueError(f"cannot read {path} as a video: {exc}") from exc
        if not self.container.streams.video:
            self.container.close()
            raise ValueError(f"{path} has no video stream")
        self.stream = self.container.streams.video[0]
        self.fps = float(self.stream.average_rate or 30)

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        t0 = None
        for i, frame in enumerate(self.container.decode(self.stream)):
            t = frame.time if frame.time is not None else i / self.fps
            t0 = t if t0 is None else t0
            yield t - t0, frame.to_ndarray(format="rgb24", width=self.size.width, height=self.size.height)

    def close(self) -> None:
        self.container.close()


class CameraSource:
    """A V4L2 camera (Linux) through PyAV's ``v4l2`` input; frames are live (t = arrival)."""

    live = True

    def __init__(self, device: str, size: VideoSize, *, fps: int = 30) -> None:
        import av  # noqa: PLC0415

        if not Path(device).exists():
            raise CameraUnavailable(f"no camera at {device} (this machine has no V4L2 video device there): "
                                    "connect one or name another with --input camera:/dev/videoN, or use "
                                    "--input FILE or --input world:SEED")
        self.size = size
        try:
            self.container = av.open(device, format="v4l2", options={"framerate": str(fps)})
        except av.error.FFmpegError as exc:
            raise CameraUnavailable(f"cannot open camera {device} through V4L2: {exc}") from exc

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        t0 = time.monotonic()
        for frame in self.container.decode(video=0):
            yield time.monotonic() - t0, frame.to_ndarray(format="rgb24", width=self.size.width,
                                                          height=self.size.height)

    def close(self) -> None:
        self.container.close()


def open_source(spec: str, size: VideoSize = VideoSize(), *, world_duration_s: float = 10.0) -> FrameSource:
    """``FILE`` | ``camera`` | ``camera:/dev/videoN`` | ``world:SEED`` (a rendered world clip)."""
    if spec == "camera" or spec.startswith("camera:"):
        return CameraSource(spec.partition(":")[2] or "/dev/video0", size)
    if spec.startswith("world:"):
        try:
            seed = int(spec.partition(":")[2])
        except ValueError:
            raise ValueError(f"world input must be world:SEED with an integer seed, got {spec!r}") from None
        from frieren_rt.world import render_clip  # noqa: PLC0415

        clip = render_clip(seed, duration=world_duration_s)
        return ArraySource(clip.frames, clip.fps, size)
    return FileSource(Path(spec), size)


# --- sinks --------------------------------------------------------------------------------------------------
class DeviceBuffer:
    """Frames between the engine's pacer and a device pulling on its own clock: bounded (``capacity``, the
    oldest dropped and counted), primed with ``prefill`` frames before the first one plays (so scheduling
    jitter of up to ``prefill`` frames never starves the device), silence plus ``underruns += 1`` when empty.
    Thread-safe: PortAudio pulls from its own thread."""

    def __init__(self, *, frame_samples: int = AUDIO_FRAME, capacity: int = 10, prefill: int = 2) -> None:
        self.frame_samples = frame_samples
        self.capacity = capacity
        self.prefill = prefill
        self._frames: deque[np.ndarray] = deque()
        self._lock = threading.Lock()
        self._primed = False
        self.played = 0
        self.underruns = 0
        self.overflows = 0

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, samples: np.ndarray) -> None:
        with self._lock:
            self._frames.append(np.asarray(samples, dtype=np.float32))
            if len(self._frames) > self.capacity:
                self._frames.popleft()
                self.overflows += 1

    def take(self) -> np.ndarray:
        """The next frame to play, (frame_samples,) float32."""
        with self._lock:
            self.played += 1
            self._primed = self._primed or len(self._frames) >= self.prefill
            if self._primed and self._frames:
                return self._frames.popleft()
            self.underruns += int(self._primed)
            return np.zeros(self.frame_samples, dtype=np.float32)


class AudioSink(Protocol):
    """Takes (960,) float32 mono 48 kHz frames as the engine releases them."""

    async def start(self) -> None: ...

    async def write(self, samples: np.ndarray) -> None: ...

    async def close(self) -> None: ...


class ClockedNullSink:
    """Plays into nothing, exactly on ``clock``: frame n is taken at start + n * 20 ms, like a sound card's
    period interrupt. ``record=True`` keeps what was played (tests)."""

    def __init__(self, clock: Clock, *, rate: int = AUDIO_RATE, frame_samples: int = AUDIO_FRAME,
                 buffer: DeviceBuffer | None = None, record: bool = False) -> None:
        self.clock = clock
        self.frame_s = frame_samples / rate
        self.buffer = buffer or DeviceBuffer(frame_samples=frame_samples)
        self.recorded: list[np.ndarray] | None = [] if record else None
        self._task: asyncio.Task[None] | None = None

    @property
    def underruns(self) -> int:
        return self.buffer.underruns

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._consume())

    async def _consume(self) -> None:
        start = self.clock.now()
        n = 0
        while True:
            await self.clock.sleep_until(start + n * self.frame_s)
            frame = self.buffer.take()
            if self.recorded is not None:
                self.recorded.append(frame)
            n += 1

    async def write(self, samples: np.ndarray) -> None:
        self.buffer.put(samples)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class WavSink:
    """Writes every frame to a 16-bit mono WAV as it is released (no clock of its own)."""

    def __init__(self, path: Path, *, rate: int = AUDIO_RATE) -> None:
        self.path = Path(path)
        self.rate = rate
        self.frames = 0
        self.underruns = 0  # a file never starves
        self._wav: wave.Wave_write | None = None

    async def start(self) -> None:
        self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - closed in close()
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(self.rate)

    async def write(self, samples: np.ndarray) -> None:
        assert self._wav is not None, "start() first"
        self._wav.writeframes((np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())
        self.frames += 1

    async def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


def load_sounddevice() -> ModuleType:
    """The sounddevice module, or :class:`AudioOutputUnavailable` saying what is missing. sounddevice raises
    OSError (not ImportError) when the PortAudio library is absent (environment.md)."""
    try:
        return importlib.import_module("sounddevice")
    except OSError as exc:
        raise AudioOutputUnavailable(
            "PortAudio library not found: sounddevice needs it to play sound. Install it (Debian/Ubuntu: "
            f"sudo apt install libportaudio2; macOS: brew install portaudio), {NO_FILE_HINT}") from exc
    except ImportError as exc:
        raise AudioOutputUnavailable(f"the sounddevice package is not installed (pip install sounddevice), "
                                     f"{NO_FILE_HINT}") from exc


def output_device(sd: Any, device: int | str | None = None) -> dict[str, Any]:
    """PortAudio's description of the output ``device`` (None: the default), or AudioOutputUnavailable."""
    which = "the default audio output device" if device is None else f"audio output device {device!r}"
    try:
        info = dict(sd.query_devices(device, kind="output"))
    except (ValueError, sd.PortAudioError) as exc:
        raise AudioOutputUnavailable(f"no audio output device: {which} cannot be opened ({exc}); this "
                                     f"machine may have no sound card. Connect or enable one, {NO_FILE_HINT}"
                                     ) from exc
    if int(info.get("max_output_channels", 0)) < 1:
        raise AudioOutputUnavailable(f"no audio output device: {which} ({info.get('name')}) has no output "
                                     f"channels; {NO_FILE_HINT}")
    return info


class SoundDeviceSink:
    """Plays through PortAudio: a callback stream of 20 ms blocks pulling from a :class:`DeviceBuffer`
    (PortAudio's thread never waits on the event loop)."""

    def __init__(self, device: int | str | None = None, *, rate: int = AUDIO_RATE,
                 frame_samples: int = AUDIO_FRAME, buffer: DeviceBuffer | None = None) -> None:
        self.sd = load_sounddevice()
        self.info = output_device(self.sd, device)
        self.device, self.rate, self.frame_samples = device, rate, frame_samples
        self.buffer = buffer or DeviceBuffer(frame_samples=frame_samples)
        self.device_underflows = 0  # PortAudio's own report: the callback was late
        self._carry = np.zeros(0, dtype=np.float32)
        self._stream: Any = None

    @property
    def underruns(self) -> int:
        return self.buffer.underruns

    def _callback(self, outdata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        if getattr(status, "output_underflow", False):
            self.device_underflows += 1
        while len(self._carry) < frames:  # PortAudio may ask for a block size other than 20 ms
            self._carry = np.concatenate([self._carry, self.buffer.take()])
        outdata[:, 0] = self._carry[:frames]
        self._carry = self._carry[frames:]

    async def start(self) -> None:
        self._stream = self.sd.OutputStream(samplerate=self.rate, channels=1, dtype="float32",
                                            blocksize=self.frame_samples, device=self.device,
                                            callback=self._callback, latency="low")
        self._stream.start()

    async def write(self, samples: np.ndarray) -> None:
        self.buffer.put(samples)

    async def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


def output_kind(spec: str) -> str:
    """``device`` | ``null`` | ``wav``; ValueError for anything else."""
    if spec in ("device", "null"):
        return spec
    if Path(spec).suffix.lower() != ".wav":
        raise ValueError(f"--output must be 'device', 'null' or a FILE.wav, got {spec!r}")
    return "wav"


def open_sink(spec: str, clock: Clock, *, audio_device: int | str | None = None) -> AudioSink:
    """``device`` (the sound card), ``null`` (a clocked null sink on ``clock``) or ``FILE.wav``."""
    kind = output_kind(spec)
    if kind == "device":
        return SoundDeviceSink(audio_device)
    return ClockedNullSink(clock) if kind == "null" else WavSink(Path(spec))


# --- the runner ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveResult:
    """frames_in: video frames pushed; audio_frames: 20 ms frames handed to the sink; latency_s: capture ->
    play; video_start_s: where the first frame's sound sits in the output (its pre-roll); engine_underruns:
    frames with no audio in time while video covered them; sink_underruns: frames the device found missing."""

    frames_in: int
    audio_frames: int
    latency_s: float
    video_start_s: float | None
    engine_underruns: int
    sink_underruns: int
    seconds: float


async def _feed(source: FrameSource, engine: Engine, session: Any,
                max_s: float | None) -> tuple[int, float | None]:
    """Push the source's frames, paced by their timestamps (or as they arrive, for a live source); decoding
    runs off the event loop. Returns frames pushed and the first frame's capture time."""
    loop, clock = asyncio.get_running_loop(), engine.clock
    frames = iter(source)
    n, t0 = 0, None
    while True:
        t_dec = time.perf_counter()
        item = await loop.run_in_executor(None, next, frames, None)
        decode_s = time.perf_counter() - t_dec
        if item is None:
            return n, t0
        t, rgb = item
        if t0 is None:
            t0 = clock.now() - t
        if max_s is not None and t >= max_s:
            return n, t0
        if not source.live:
            await clock.sleep_until(t0 + t)
        capture = clock.now() if source.live else t0 + t
        session.push_frame(VideoFrame(StreamFrame(str(session.id), rgb), capture, decode_s=decode_s))
        n += 1


async def run_live(source: FrameSource, sink: AudioSink, engine: Engine, *,
                   max_duration_s: float | None = None, tail_s: float = 0.2) -> LiveResult:
    """Play ``source`` through ``engine`` into ``sink`` in real time on the engine's clock, until the source
    ends (plus the engine latency and ``tail_s``, so its last sound plays out) or ``max_duration_s``."""
    clock = engine.clock
    session = engine.open_session("local")
    played = {"frames": 0, "start": None}

    async def play() -> None:
        while True:
            frame = await session.recv_audio()
            if played["start"] is None:  # the pacer's frame 0 time: output sample 0
                played["start"] = clock.now() - frame.index * session.pacer.frame_s
            await sink.write(frame.samples)
            played["frames"] += 1

    t_start = clock.now()
    tasks = [asyncio.ensure_future(engine.run())]
    await sink.start()
    tasks.append(asyncio.ensure_future(play()))
    try:
        frames_in, t0 = await _feed(source, engine, session, max_duration_s)
        # Counted while video still covers what plays: the last hop never falls due (no later frame comes).
        underruns = session.stats().underruns
        await clock.sleep_until(clock.now() + session.latency_s + tail_s)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sink.close()
        engine.close_session(session.id)
    start = played["start"]
    return LiveResult(frames_in=frames_in, audio_frames=played["frames"], latency_s=session.latency_s,
                      video_start_s=None if t0 is None or start is None else t0 + session.latency_s - start,
                      engine_underruns=underruns, sink_underruns=sink.underruns,
                      seconds=clock.now() - t_start)


def run_local(input_spec: str, output_spec: str, *, engine: Engine | Callable[[], Engine],
              audio_device: int | str | None = None, duration_s: float | None = None,
              size: VideoSize = VideoSize()) -> LiveResult:
    """The ``frieren-rt live`` library call: checks the output, then the input, then builds the engine (the
    slow part) and plays until the input ends, ``duration_s`` passes, or Ctrl-C."""
    if output_kind(output_spec) == "device":
        output_device(load_sounddevice(), audio_device)  # fail before the model loads
    source = open_source(input_spec, size, world_duration_s=duration_s or 10.0)
    try:
        built = engine if isinstance(engine, Engine) else engine()
    except BaseException:
        source.close()
        raise
    try:
        sink = open_sink(output_spec, built.clock, audio_device=audio_device)
        return asyncio.run(run_live(source, sink, built, max_duration_s=duration_s))
    finally:
        source.close()
        if built is not engine:
            built.close()
