"""WebRTC media stages between aiortc peer connections and engine sessions.

Per session: :class:`VideoIngest` pulls the peer's video (released by :class:`MarkerJitterBuffer` as soon as
a frame's last packet is in, then drained from aiortc's unbounded receive queue to the newest frame, aiortc
issues 1192/104/64), converts it to RGB off the event loop and pushes it with a capture time
on the engine clock; :class:`GeneratedAudioTrack` turns the engine's paced 20 ms mono frames into the s16 stereo
48 kHz frames aiortc's Opus encoder expects. :class:`PeerSession` owns one peer connection, its engine session
and the listeners (WHEP players) of its audio, and closes everything once the peer goes away.

ICE: the default configuration has no STUN/TURN server (RTCConfiguration(iceServers=[]): the machines have no
internet), and :func:`ice_host_addresses` can restrict aioice's host candidates to loopback, which aioice
otherwise leaves out (../shared/reference/environment.md, "aiortc").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.contrib.media import MediaRelay
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from frieren_rt.streaming.clock import Clock
from frieren_rt.streaming.engine import Engine, EngineSession, VideoFrame, timing_percentiles

__all__ = [
    "AUDIO_RATE",
    "AUDIO_FRAME",
    "CaptureTimeMapper",
    "GeneratedAudioTrack",
    "LevelMeter",
    "MarkerJitterBuffer",
    "PeerSession",
    "session_stats",
    "StreamFrame",
    "VideoSize",
    "VideoIngest",
    "ice_host_addresses",
    "low_latency_video_receiver",
    "new_peer_connection",
    "to_s16_stereo",
]

log = logging.getLogger(__name__)

AUDIO_RATE = 48000
AUDIO_FRAME = 960  # 20 ms: the Opus frame WebRTC uses (RFC 7587)


# --- ICE -----------------------------------------------------------------------------------------------------
def new_peer_connection(ice_servers: Sequence[str] = ()) -> RTCPeerConnection:
    """A peer connection with exactly the given STUN/TURN URLs (none by default: no traffic leaves the host)."""
    servers = [RTCIceServer(urls=url) for url in ice_servers]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


@contextlib.contextmanager
def ice_host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Make aioice offer exactly ``addresses`` as host candidates while the context is open.

    aioice's gathering skips 127.0.0.1 and offers every other interface; a server bound to loopback (and every
    test) must offer loopback only. aioice has no option for this, so its address lookup is replaced for the
    process and restored on exit.
    """
    import aioice.ice  # noqa: PLC0415

    original = aioice.ice.get_host_addresses
    wanted = list(addresses)

    def lookup(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in wanted if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = lookup
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


# --- audio out -----------------------------------------------------------------------------------------------
def to_s16_stereo(samples: np.ndarray, index: int, *, rate: int = AUDIO_RATE) -> av.AudioFrame:
    """Mono float32 (n,) in [-1, 1] -> packed s16 stereo frame with pts = index * n (time base 1 / rate)."""
    s16 = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    interleaved = np.repeat(s16, 2)[None, :]  # (1, 2n): L R L R ...
    frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
    frame.sample_rate = rate
    frame.pts = index * len(samples)
    frame.time_base = Fraction(1, rate)
    return frame


class LevelMeter:
    """Running audio level for the page: RMS (dBFS) of the last frame and a decaying peak."""

    def __init__(self) -> None:
        self.rms_db = -120.0
        self.peak = 0.0
        self.frames = 0
        self.silent_frames = 0

    def update(self, samples: np.ndarray, silent: bool) -> None:
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
        self.rms_db = 20.0 * np.log10(max(rms, 1e-6))
        self.peak = max(float(np.abs(samples).max(initial=0.0)), self.peak * 0.95)
        self.frames += 1
        self.silent_frames += int(silent)


class GeneratedAudioTrack(MediaStreamTrack):
    """The engine session's audio as an aiortc track: 20 ms s16 stereo 48 kHz frames, paced by the engine
    (one frame per 20 ms of its clock, silence on underrun), so aiortc's as-fast-as-possible ``recv`` loop
    never runs ahead."""

    kind = "audio"

    def __init__(self, session: EngineSession, meter: LevelMeter | None = None) -> None:
        super().__init__()
        self.session = session
        self.meter = meter or LevelMeter()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.session.recv_audio()
        self.meter.update(frame.samples, frame.silent)
        return to_s16_stereo(frame.samples, frame.index)


# --- video in ------------------------------------------------------------------------------------------------
class CaptureTimeMapper:
    """RTP presentation times -> capture times on the engine clock.

    The first frame's arrival anchors the stream: capture = anchor + (pts - pts0) * time_base. A frame can never
    have been captured after it arrived, so when network jitter makes a frame arrive earlier than the anchor
    implies, the anchor moves back; when the sender's timestamps fall more than ``max_lag_s`` behind arrival
    (a paused or slow sender clock), the anchor moves forward, so timestamps never fall behind for ever.

    A late first frame is common: a sender's first encode (a keyframe, encoder start-up) can take over 100 ms
    while later frames flow on time (seen with aiortc's VP8 sender: 130 ms). Later frames then move the anchor
    back and are mapped right, but the first frame was already handed on with the late time: ``revision_s``
    says by how much, so the first frame's audio can be located on the corrected timeline (EngineSession).
    """

    def __init__(self, *, max_lag_s: float = 1.0) -> None:
        self.max_lag_s = max_lag_s
        self._anchor: float | None = None
        self._first_anchor: float | None = None
        self._pts0 = 0.0

    @property
    def revision_s(self) -> float:
        """How much earlier the first frame's capture is estimated now than when it was mapped (seconds;
        positive when it arrived late, negative when a lagging sender clock moved the anchor forward)."""
        if self._anchor is None or self._first_anchor is None:
            return 0.0
        return self._first_anchor - self._anchor

    def map(self, pts_s: float, arrival: float) -> float:
        """pts_s: the frame's presentation time in seconds; arrival: clock time it arrived."""
        if self._anchor is None:
            self._anchor, self._pts0 = arrival, pts_s
            self._first_anchor = arrival
        t = self._anchor + pts_s - self._pts0
        if t > arrival:
            self._anchor -= t - arrival
            t = arrival
        elif t < arrival - self.max_lag_s:
            self._anchor += arrival - self.max_lag_s - t
            t = arrival - self.max_lag_s
        return t


@dataclass(frozen=True)
class VideoSize:
    """Size frames are converted to before the feature extractor (all sessions share one batch)."""

    width: int = 160
    height: int = 120


@dataclass(frozen=True)
class StreamFrame:
    """Pixels handed to the engine: the RGB array tagged with its session, so an extractor with per-stream
    state (motion) can tell sessions apart in a shared batch; ``np.asarray`` gives the (H, W, 3) array."""

    key: str
    rgb: np.ndarray

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.rgb if dtype is None else self.rgb.astype(dtype)


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer with frames released as soon as they are complete.

    aiortc treats a frame as complete only when the first packet of the *next* frame arrives (a new RTP
    timestamp), which holds every frame back one frame interval (33 ms at 30 fps) before decoding. The RTP
    marker bit flags the last packet of a video frame (RFC 3550 section 5.1; VP8: RFC 7741 section 4.1; H.264:
    RFC 6184 section 5.1), so contiguous packets from the oldest held one up to a marked packet, all of one
    timestamp, are a whole frame: release it then. A sender that never marks falls back to aiortc's rule.
    """

    def __init__(self, capacity: int = 512) -> None:
        super().__init__(capacity=capacity, is_video=True)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        packets: list[RtpPacket] = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]  # type: ignore[operator]
            if packet is None:
                return None  # a gap: wait (or let aiortc's overflow handling skip it)
            if packets and packet.timestamp != packets[0].timestamp:
                return self._release(packets)  # the next frame began: this one is whole (aiortc's rule)
            packets.append(packet)
            if packet.marker:
                return self._release(packets)
        return None

    def _release(self, packets: list[RtpPacket]) -> JitterFrame:
        self.remove(len(packets))
        return JitterFrame(data=b"".join(p._data for p in packets), timestamp=packets[0].timestamp)  # type: ignore[attr-defined]


def low_latency_video_receiver(pc: RTCPeerConnection, track: MediaStreamTrack) -> bool:
    """Give the receiver of ``track`` a :class:`MarkerJitterBuffer`; True if it was replaced. aiortc has no
    option for this, so its private buffer is swapped (name-mangled: checked, and left alone if absent). Call it
    from the ``track`` event: aiortc fires it while applying the remote description, before media flows."""
    attr = "_RTCRtpReceiver__jitter_buffer"
    for receiver in pc.getReceivers():
        if receiver.track is track and isinstance(getattr(receiver, attr, None), JitterBuffer):
            setattr(receiver, attr, MarkerJitterBuffer(getattr(receiver, attr).capacity))
            return True
    log.warning("aiortc's video jitter buffer was not found; frames are released one frame late")
    return False


def frame_to_rgb(frame: av.VideoFrame, size: VideoSize) -> np.ndarray:
    """Decoded frame -> (H, W, 3) uint8 RGB at ``size`` (scaling by libswscale)."""
    return frame.to_ndarray(format="rgb24", width=size.width, height=size.height)


class VideoIngest:
    """Pulls a remote video track into an engine session: latest wins, conversion off the event loop."""

    def __init__(self, track: MediaStreamTrack, session: EngineSession, clock: Clock, size: VideoSize) -> None:
        self.track = track
        self.session = session
        self.clock = clock
        self.size = size
        self.mapper = CaptureTimeMapper()
        self.frames_in = 0
        self.frames_skipped = 0  # stale frames drained from aiortc's queue without conversion
        self.last_arrival: float | None = None  # clock time of the newest frame (PeerSession's idle timeout)

    def _newest(self, frame: Any) -> Any:
        """Drop every frame already queued behind ``frame`` (aiortc's RemoteStreamTrack queue is unbounded)."""
        queue = getattr(self.track, "_queue", None)
        while queue is not None and not queue.empty():
            nxt = queue.get_nowait()
            if nxt is None:  # end of track: put the marker back for the next recv
                queue.put_nowait(None)
                break
            frame = nxt
            self.frames_skipped += 1
        return frame

    async def run(self) -> None:
        """Until the track ends."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            arrival = self.last_arrival = self.clock.now()
            frame = self._newest(frame)
            self.frames_in += 1
            pts_s = float(frame.pts * frame.time_base) if frame.pts is not None else arrival
            t0 = time.perf_counter()
            rgb = await loop.run_in_executor(None, frame_to_rgb, frame, self.size)
            decode_s = time.perf_counter() - t0
            pixels = StreamFrame(str(self.session.id), rgb)
            self.session.push_frame(VideoFrame(pixels, self.mapper.map(pts_s, arrival), decode_s=decode_s))
            self.session.first_capture_revision_s = self.mapper.revision_s


async def discard(track: MediaStreamTrack) -> None:
    """Consume a track nobody uses (a publisher's microphone) so aiortc's unbounded queue never grows."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


# --- one peer ------------------------------------------------------------------------------------------------
def session_stats(session: Any, meter: LevelMeter, stream_delay_s: float, *, extra_dropped: int = 0
                  ) -> dict[str, Any]:
    """The engine-side statistics every transport reports for a session (``GET /stats``, /ws stats messages):
    latency, hops, frames received / dropped (plus the transport's own drops), underruns, FIFO depth, output
    level and compute per hop p50 / p95."""
    s = session.stats()
    # The same percentiles as /stats "stages" (timing_percentiles): a second estimator (the nearest lower rank)
    # read 4.0 ms where the interpolated one read 7.0 over one run's few hops with a warm-up outlier.
    compute = timing_percentiles(list(session.timings)).get("compute")
    return {
        "latency_s": s.latency_s,
        "stream_delay_s": stream_delay_s,
        "hops": s.hops,
        "frames_received": s.frames_received,
        "frames_dropped": s.frames_dropped + extra_dropped,
        "underruns": s.underruns,
        "late_samples": s.late_samples,
        "skipped_hops": s.skipped_hops,
        "fifo_depth": s.fifo_depth,
        "audio_frames": meter.frames,
        "silent_frames": meter.silent_frames,
        "level_db": round(meter.rms_db, 1),
        "peak": round(meter.peak, 4),
        "compute_p50_s": compute["p50_s"] if compute else None,
        "compute_p95_s": compute["p95_s"] if compute else None,
    }


class PeerSession:
    """One publishing peer: its connection, engine session, audio fan-out and player connections.

    The audio source is paced once and fanned out through a MediaRelay (buffered per consumer, each consumer an
    RTP sender pulling in real time), so the page's own connection and any WHEP players hear the same stream.
    ``closed`` is set once every resource is released.

    Limits (issue 6): a connection (the publisher's or a player's) that has not completed ICE + DTLS within
    ``handshake_timeout_s`` is closed; a publisher whose video stops for ``idle_timeout_s`` (on the engine
    clock) is closed, though its peer may still be alive (ICE consent, RFC 7675, only notices a vanished one);
    at most ``max_players`` WHEP players. Every per-session buffer is bounded: the engine session's
    (latest-wins frames, FIFO, feature track, timings), aiortc's receive queue drained to the newest frame by
    :class:`VideoIngest`, a discarded microphone consumed, and one relay queue per listener drained by its RTP
    sender as fast as the paced source fills it.
    """

    def __init__(self, session_id: str, *, pc: RTCPeerConnection, engine: Engine, size: VideoSize,
                 seed: int | None = None, handshake_timeout_s: float = 10.0, idle_timeout_s: float = 30.0,
                 max_players: int = 4) -> None:
        self.id = session_id
        self.pc = pc
        self.engine = engine
        self.engine_session = engine.open_session(session_id, seed=seed)
        self.audio = GeneratedAudioTrack(self.engine_session)
        self.relay = MediaRelay()
        self.size = size
        self.ingest: VideoIngest | None = None
        self.players: dict[str, RTCPeerConnection] = {}
        self.created = time.monotonic()
        self.handshake_timeout_s = handshake_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_players = max_players
        self._opened_at = engine.clock.now()
        self.closed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)
        self._spawn(self._handshake_watchdog(pc, self.close))
        self._spawn(self._idle_watchdog())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # keep a reference (RUF006) until done
        task.add_done_callback(self._tasks.discard)

    @property
    def stream_delay_s(self) -> float:
        """The first emitted sample stands for this long before the first frame's capture (held crossfade)."""
        gen = self.engine.generator
        return gen.stream_delay_samples / gen.geometry.model_sample_rate

    def audio_track(self) -> MediaStreamTrack:
        """A new consumer of this session's generated audio."""
        return self.relay.subscribe(self.audio, buffered=True)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and self.ingest is None:
            low_latency_video_receiver(self.pc, track)
            self.ingest = VideoIngest(track, self.engine_session, self.engine.clock, self.size)
            self._spawn(self._ingest_then_close(self.ingest))
        else:
            self._spawn(discard(track))

    async def _ingest_then_close(self, ingest: VideoIngest) -> None:
        await ingest.run()
        await self.close()  # the publisher's video ended: the session is over

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close()

    async def _handshake_watchdog(self, pc: RTCPeerConnection, on_timeout: Any) -> None:
        """``on_timeout()`` unless ``pc`` got past ICE + DTLS within the handshake timeout (aiortc's states never
        return to new/connecting once connected, so a later drop is left to ``_on_state``)."""
        await asyncio.sleep(self.handshake_timeout_s)
        if pc.connectionState in ("new", "connecting"):
            log.info("session %s: a connection did not complete its handshake in %.1f s; closing it", self.id,
                     self.handshake_timeout_s)
            await on_timeout()

    def idle_s(self) -> float:
        """Engine-clock seconds since the newest video frame (since the session opened, before the first)."""
        last = self.ingest.last_arrival if self.ingest is not None else None
        return self.engine.clock.now() - (self._opened_at if last is None else last)

    async def _idle_watchdog(self) -> None:
        clock = self.engine.clock
        while (idle := self.idle_s()) < self.idle_timeout_s:
            await clock.sleep_until(clock.now() + self.idle_timeout_s - idle)
        log.info("session %s sent no video for %.1f s; closing", self.id, self.idle_timeout_s)
        await self.close()

    @property
    def players_full(self) -> bool:
        return len(self.players) >= self.max_players

    async def add_player(self, player_id: str, pc: RTCPeerConnection) -> bool:
        """Register a negotiated player connection; False (the caller closes ``pc``) when the session is full."""
        if self.players_full or self._closing:
            return False
        self.players[player_id] = pc
        self._spawn(self._handshake_watchdog(pc, lambda: self.remove_player(player_id)))

        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.remove_player(player_id)

        pc.on("connectionstatechange", on_state)
        return True

    async def remove_player(self, player_id: str) -> bool:
        pc = self.players.pop(player_id, None)
        if pc is not None:
            await pc.close()
        return pc is not None

    async def close(self) -> None:
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        self.engine.close_session(self.id)
        self.audio.stop()
        for pid in list(self.players):
            await self.remove_player(pid)
        await self.pc.close()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self.closed.set()

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.pc.connectionState,
            **session_stats(self.engine_session, self.audio.meter, self.stream_delay_s,
                            extra_dropped=self.ingest.frames_skipped if self.ingest else 0),
            "players": len(self.players),
            "age_s": round(time.monotonic() - self.created, 3),
            "idle_s": round(self.idle_s(), 3),
        }
