"""Python WebRTC clients of the server (the demo and the tests): publish a clip, record the audio back.

- :class:`ClipVideoTrack`: frames (N, H, W, 3) uint8 sent at their frame rate, paced on the monotonic clock;
  the time each frame is handed to the encoder is its capture time.
- :class:`AudioRecorder`: pulls a received audio track, keeping mono samples and each frame's arrival time.
- :func:`publish_offer` (the page's JSON ``/offer``), :func:`whip_publish` / :func:`whep_play` (RFC 9725 and
  its playback counterpart) return small handles whose ``close`` ends the session the way a client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError

from frieren_rt.streaming.latency import ReceivedAudio
from frieren_rt.streaming.webrtc import new_peer_connection

__all__ = ["AudioRecorder", "ClipVideoTrack", "Publisher", "audio_jitter_prefetch", "prefer_codec",
           "publish_offer", "whep_play", "whip_publish"]

VIDEO_CLOCK = 90000  # RTP video clock rate (RFC 3551)


class ClipVideoTrack(MediaStreamTrack):
    """Sends ``frames`` at ``fps`` (looping), one per 1/fps of the monotonic clock from the first ``recv``."""

    kind = "video"

    def __init__(self, frames: np.ndarray, fps: float, *, loop: bool = True) -> None:
        super().__init__()
        self.frames = frames
        self.fps = fps
        self.loop = loop
        self.capture_times: list[float] = []  # monotonic time frame i was handed to the encoder
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        i = len(self.capture_times)
        if i >= len(self.frames) and not self.loop:
            self.stop()
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + i / self.fps - time.monotonic()))
        frame = av.VideoFrame.from_ndarray(self.frames[i % len(self.frames)], format="rgb24")
        frame.pts, frame.time_base = round(i * VIDEO_CLOCK / self.fps), Fraction(1, VIDEO_CLOCK)
        self.capture_times.append(time.monotonic())
        return frame


def audio_jitter_prefetch(pc: RTCPeerConnection, track: MediaStreamTrack, prefetch: int | None) -> bool:
    """Set the audio jitter buffer of ``track``'s receiver to hold ``prefetch`` frames (None: aiortc's default).

    aiortc's audio receiver holds 4 x 20 ms frames before releasing the first (80 ms,
    ../shared/reference/environment.md); 0 is the smallest it allows: a frame is released when the next one
    arrives (one packet interval, 20 ms). aiortc has no option for it, so the private buffer is swapped (checked,
    left alone if absent); call this from the ``track`` event, before media flows. True if it was replaced."""
    attr = "_RTCRtpReceiver__jitter_buffer"
    if prefetch is None:
        return False
    for receiver in pc.getReceivers():
        old = getattr(receiver, attr, None)
        if receiver.track is track and isinstance(old, JitterBuffer):
            setattr(receiver, attr, JitterBuffer(capacity=old.capacity, prefetch=prefetch))
            return True
    return False


class AudioRecorder:
    """Records a received audio track: mono float32 samples and per-frame monotonic arrival times."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.arrivals: list[float] = []
        self.frame_sizes: list[int] = []
        self.sample_rates: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self, track: MediaStreamTrack) -> None:
        self._task = asyncio.ensure_future(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.arrivals.append(time.monotonic())
                x = frame.to_ndarray()  # packed s16: (1, channels * n)
                ch = len(frame.layout.channels)
                mono = x.reshape(-1, ch).mean(axis=1).astype(np.float32) / 32768.0
                self.chunks.append(mono)
                self.frame_sizes.append(frame.samples)
                self.sample_rates.add(frame.sample_rate)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def received(self) -> ReceivedAudio:
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        frame = self.frame_sizes[0] if self.frame_sizes else 960
        rate = next(iter(self.sample_rates)) if self.sample_rates else 48000
        return ReceivedAudio(samples, np.asarray(self.arrivals), rate=rate, frame=frame)


def prefer_codec(pc: RTCPeerConnection, kind: str, mime: str) -> None:
    """Offer only ``mime`` (e.g. "video/H264") on every ``kind`` transceiver."""
    caps = [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType == mime]
    for t in pc.getTransceivers():
        if t.kind == kind:
            t.setCodecPreferences(caps)


@dataclass
class Publisher:
    """A publishing client. ``location``: the WHIP resource (None for /offer); ``info``: the server's reply."""

    pc: RTCPeerConnection
    video: ClipVideoTrack | None
    recorder: AudioRecorder
    session: str | None
    location: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None
    headers: dict[str, str] = field(default_factory=dict)

    async def close(self, *, delete: bool = True) -> int | None:
        """Stop recording, DELETE the WHIP resource (when there is one), close the connection; returns the
        DELETE status."""
        status = None
        await self.recorder.stop()
        if delete and self.location is not None and self.http is not None:
            async with self.http.delete(self.location, headers=self.headers) as r:
                status = r.status
        await self.pc.close()
        if self.http is not None:
            await self.http.close()
        return status


def _connected(pc: RTCPeerConnection) -> asyncio.Event:
    ev = asyncio.Event()

    @pc.on("connectionstatechange")
    def _() -> None:
        if pc.connectionState == "connected":
            ev.set()

    return ev


def _record_audio(pc: RTCPeerConnection, recorder: AudioRecorder, prefetch: int | None) -> None:
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            audio_jitter_prefetch(pc, track, prefetch)
            recorder.start(track)

    pc.on("track", on_track)


async def publish_offer(base: str, frames: np.ndarray, fps: float, *, codec: str | None = None,
                        seed: int | None = None, timeout_s: float = 10.0,
                        jitter_prefetch: int | None = 0) -> Publisher:
    """Connect like the page: send video, receive the generated audio on the same connection.
    ``jitter_prefetch``: audio frames the receiver holds back (see :func:`audio_jitter_prefetch`)."""
    pc = new_peer_connection()
    video = ClipVideoTrack(frames, fps)
    pc.addTrack(video)
    pc.addTransceiver("audio", direction="recvonly")
    if codec:
        prefer_codec(pc, "video", codec)
    recorder = AudioRecorder()
    _record_audio(pc, recorder, jitter_prefetch)
    connected = _connected(pc)
    await pc.setLocalDescription(await pc.createOffer())
    body: dict[str, Any] = {"sdp": pc.localDescription.sdp, "type": "offer"}
    if seed is not None:
        body["seed"] = seed
    async with aiohttp.ClientSession() as http, http.post(f"{base}/offer", json=body) as r:
        info = await r.json()
        if r.status != 200:
            await pc.close()
            raise ConnectionError(f"/offer answered {r.status}: {info.get('error')}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=info["sdp"], type="answer"))
    await asyncio.wait_for(connected.wait(), timeout_s)
    return Publisher(pc, video, recorder, info["session"], info=info)


async def _post_sdp(http: aiohttp.ClientSession, url: str, sdp: str,
                    headers: dict[str, str]) -> tuple[int, str, str | None]:
    async with http.post(url, data=sdp, headers={"Content-Type": "application/sdp", **headers}) as r:
        return r.status, await r.text(), r.headers.get("Location")


async def whip_publish(base: str, frames: np.ndarray, fps: float, *, token: str | None = None,
                       codec: str | None = None, timeout_s: float = 10.0) -> Publisher:
    """RFC 9725 publish: offer (video sendonly) -> 201 + Location + answer; ``close`` sends DELETE."""
    pc = new_peer_connection()
    video = ClipVideoTrack(frames, fps)
    pc.addTransceiver(video, direction="sendonly")
    if codec:
        prefer_codec(pc, "video", codec)
    connected = _connected(pc)
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = aiohttp.ClientSession(base)
    status, text, location = await _post_sdp(http, "/whip", pc.localDescription.sdp, headers)
    if status != 201 or location is None:
        await pc.close()
        await http.close()
        raise ConnectionError(f"WHIP POST answered {status} (Location {location!r}): {text.strip()}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
    await asyncio.wait_for(connected.wait(), timeout_s)
    return Publisher(pc, video, AudioRecorder(), location.rstrip("/").rsplit("/", 1)[-1], location=location,
                     http=http, headers=headers)


async def whep_play(base: str, session: str | None = None, *, token: str | None = None,
                    timeout_s: float = 10.0, jitter_prefetch: int | None = 0) -> Publisher:
    """WHEP play: audio recvonly offer -> 201 + Location; records the audio; ``close`` sends DELETE."""
    pc = new_peer_connection()
    pc.addTransceiver("audio", direction="recvonly")
    recorder = AudioRecorder()
    _record_audio(pc, recorder, jitter_prefetch)
    connected = _connected(pc)
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = aiohttp.ClientSession(base)
    status, text, location = await _post_sdp(http, "/whep" + (f"/{session}" if session else ""),
                                             pc.localDescription.sdp, headers)
    if status != 201 or location is None:
        await pc.close()
        await http.close()
        raise ConnectionError(f"WHEP POST answered {status}: {text.strip()}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
    await asyncio.wait_for(connected.wait(), timeout_s)
    return Publisher(pc, None, recorder, session, location=location, http=http, headers=headers)


def synthetic_frames(n: int, *, width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) uint8: a moving bright square over a gradient, for tests that need no world assets."""
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 120, width, dtype=np.float32)[None, :, None] + rng.uniform(0, 40, (1, 1, 3))
    out = np.broadcast_to(base, (n, height, width, 3)).astype(np.uint8).copy()
    for i in range(n):
        x = (i * 4) % (width - 20)
        out[i, 40:60, x : x + 20] = 255
    return out


async def wait_for(predicate: Any, timeout_s: float, every_s: float = 0.02) -> float:
    """Poll ``predicate()`` until true; returns the seconds it took (raises TimeoutError)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(every_s)
    return time.monotonic() - t0

