"""Where the latency goes: N sessions through the real server and transport, measured per stage (issue 6).

``run_profile`` connects N clients (WebRTC ``POST /offer`` or the ``/ws`` protocol, behind one small
:class:`Transport` interface) to a running server, or to one it starts on 127.0.0.1, sends each a looping
world clip at its frame rate for ``duration_s`` and reports per sweep point:

- per stage (decode, features, vector field, VAE decode, vocoder, resample/encode, transport) and for the
  compute of a whole hop: n / mean / p50 / p95 / p99 / max in ms; real-time factor = p95 compute per hop / hop
  (../shared/reference/streaming.md, "What to report");
- glass-to-ear per received 20 ms frame, time to first audio (session start -> the audio standing for the
  first frame plays; without an in-process server, -> the first generated sample plays; ``time_to_first_frame_s``:
  -> the first 20 ms frame, pre-roll silence included), underruns, frames
  dropped by latest-wins, and the audio FIFO / video buffer depths sampled over the run.

How each is measured (one monotonic clock: clients and an in-process server share ``time.monotonic``):

- Engine stages come from the engine's own per-hop :class:`HopTimings`; :class:`HopProbe` listens to the
  engine's per-hop callback (``Engine.add_hop_listener``), which also says when each hop's audio was queued.
  Against a remote ``--server`` only ``GET /stats/{session}`` is visible: its per-stage p50/p95 (``stages``)
  then stand in for the engine's, and the hop comes from the ``/offer`` reply (``hop_s``).
- Glass-to-ear extends the method of ``benchmarks/streaming.py`` (:func:`latency.first_audio_latency`): one
  received sample stands for the first frame's capture (minus the held crossfade) and later frames follow on
  the gap-free 48 kHz timeline, so frame k's glass-to-ear is its play time minus the capture time its first
  sample stands for. In-process, that sample is located from the server pacer's timeline
  (:func:`pacer_first_index`), which stays exact when start-up hops came too late to play; against a remote
  WebRTC server it is the first generated sample, which such start-up underruns shift later. Over ``/ws``
  every audio frame carries the client capture time it belongs to, which gives glass-to-ear exactly.
- ``transport`` = glass-to-ear - the engine's fixed playout latency: video uplink (encode, network,
  decode) plus audio downlink (Opus encode, network, the client's jitter buffer). ``resample_encode`` is the
  engine's 16 -> 48 kHz resampling; Opus / PCM encoding runs in the transport and is counted there.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from frieren_rt.streaming.latency import ReceivedAudio, first_audio_latency, first_nonsilent, summarize
from frieren_rt.windowing import HopTimings

__all__ = ["STAGES", "ProfileConfig", "Stream", "Transport", "WebRtcTransport", "WsTransport", "HopProbe",
           "chunks_audio", "frame_glass_to_ear", "pacer_first_index", "tagged_glass_to_ear",
           "stage_summaries", "point_report", "trace_events", "markdown_table", "write_plots",
           "write_outputs", "parse_sweep", "run_profile", "transport_for", "world_clips"]

# Report stage name -> HopTimings field (None: measured at the client, not in the engine).
STAGES: dict[str, str | None] = {
    "decode": "video_decode", "features": "features", "vector_field": "vector_field",
    "vae_decode": "vae_decode", "vocoder": "vocoder", "resample_encode": "resample", "transport": None,
}
ENGINE_STAGES = tuple(k for k, v in STAGES.items() if v is not None)


@dataclass(frozen=True, kw_only=True)
class ProfileConfig:
    """sessions: the sweep (session counts run one after another). duration_s: seconds per point. server: a
    running server's base URL (None: the caller gives an engine and one starts on 127.0.0.1, port 0).
    warmup_hops: each session's first hops are left out of the stage statistics (model warm-up, batching
    settling).
    sample_every_s: how often GET /stats is polled for queue depths."""

    sessions: tuple[int, ...] = (1,)
    duration_s: float = 30.0
    transport: str = "webrtc"
    server: str | None = None
    warmup_hops: int = 5
    clip_seed: int = 200_000
    clip_s: float = 10.0
    sample_every_s: float = 0.25
    close_timeout_s: float = 5.0


def parse_sweep(text: str) -> tuple[int, ...]:
    """``"sessions=1,2,4,8"`` -> (1, 2, 4, 8)."""
    key, _, values = text.partition("=")
    if key.strip() != "sessions" or not values:
        raise ValueError(f"--sweep takes sessions=N,N,..., got {text!r}")
    counts = tuple(int(v) for v in values.split(",") if v.strip())
    if not counts or min(counts) < 1:
        raise ValueError(f"--sweep session counts must be >= 1, got {text!r}")
    return counts


# --- transports ---------------------------------------------------------------------------------------------
@dataclass
class Stream:
    """One client session, whatever the transport. ``capture_times``: client clock times frames were handed
    to the transport (grows while it runs); ``audio()``: what came back so far; ``close()``: leave as a client
    would. ``tagged()``: (play times, glass-to-ear) per audio frame from capture-time tags the server put on
    them (the /ws protocol), None where the transport has none."""

    session: str
    latency_s: float  # the engine's playout latency (capture -> play on the server)
    stream_delay_s: float  # the first emitted sample stands for this long before the first capture
    opened_at: float  # monotonic time the client started connecting
    connected_at: float
    capture_times: list[float]
    audio: Callable[[], ReceivedAudio]
    close: Callable[[], Awaitable[Any]]
    tagged: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    hop_s: float | None = None  # the engine's hop, where the transport's handshake reports it


class Transport(Protocol):
    name: str

    async def connect(self, base: str, frames: np.ndarray, fps: float, *, seed: int) -> Stream:
        """A session sending ``frames`` (N, H, W, 3) uint8 at ``fps`` (looping) to the server ``base``."""
        ...


class WebRtcTransport:
    """The page's path: ``POST /offer``, video out and the audio back on one peer connection (client.py)."""

    name = "webrtc"

    async def connect(self, base: str, frames: np.ndarray, fps: float, *, seed: int) -> Stream:
        from frieren_rt.streaming import client  # noqa: PLC0415

        t0 = time.monotonic()
        pub = await client.publish_offer(base, frames, fps, seed=seed)
        assert pub.video is not None and pub.session is not None
        return Stream(session=pub.session, latency_s=pub.info["latency_s"],
                      stream_delay_s=pub.info["stream_delay_s"], opened_at=t0, connected_at=time.monotonic(),
                      capture_times=pub.video.capture_times, audio=pub.recorder.received, close=pub.close,
                      hop_s=pub.info.get("hop_s"))


def chunks_audio(chunks: Sequence[Any], rate: int) -> ReceivedAudio:
    """/ws audio chunks (``samples`` (n, channels), ``arrival``) -> mono :class:`ReceivedAudio`."""
    if not chunks:
        return ReceivedAudio(np.zeros(0, np.float32), np.zeros(0), rate=rate)
    mono = np.concatenate([c.samples.mean(axis=1) for c in chunks]).astype(np.float32)
    return ReceivedAudio(mono, np.array([c.arrival for c in chunks]), rate=rate, frame=len(chunks[0].samples))


def tagged_glass_to_ear(chunks: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(arrival (k,), glass-to-ear (k,)) of the chunks tagged with a capture time: the server tags each 20 ms
    frame with the client capture time (us, here the client's monotonic clock) its first sample belongs to, so
    glass-to-ear is exact per frame and needs no shared clock with the server (PROTOCOL.md)."""
    timed = [c for c in chunks if c.header.timed]
    play = np.array([c.arrival for c in timed])
    return play, play - np.array([c.header.video_timestamp_us / 1e6 for c in timed])


class WsTransport:
    """The game-capture path: ``/ws`` through ``frieren_rt.client.ws`` (issue 6 item 2). Frames are encoded as
    ``fmt`` (JPEG by default) and submitted latest-wins against the server's credits; capture timestamps are
    the client's monotonic clock in microseconds."""

    name = "ws"

    def __init__(self, fmt: str = "jpeg") -> None:
        self.fmt = fmt

    async def connect(self, base: str, frames: np.ndarray, fps: float, *, seed: int) -> Stream:
        try:
            from frieren_rt.client import ws  # noqa: PLC0415
            from frieren_rt.client.protocol import Hello  # noqa: PLC0415
        except ImportError as exc:
            raise ValueError("--transport ws needs the WebSocket client frieren_rt.client.ws "
                             f"(issue 6 item 2), which is not available: {exc}") from exc
        url = "ws" + base.removeprefix("http") + "/ws"  # http://h:p -> ws://h:p/ws, https -> wss
        chunks: list[Any] = []
        t0 = time.monotonic()
        client = await ws.CaptureClient.connect(url, Hello(seed=seed, client="frieren-rt profile"),
                                                encoder=ws.FrameEncoder(self.fmt, fps=fps),
                                                on_audio=chunks.append)
        captures: list[float] = []
        feed = asyncio.ensure_future(_feed(client, frames, fps, captures))

        async def close() -> None:
            feed.cancel()
            await asyncio.gather(feed, return_exceptions=True)
            await client.close()

        cfg = client.config
        return Stream(session=cfg.session, latency_s=cfg.latency_s, stream_delay_s=cfg.stream_delay_s,
                      opened_at=t0, connected_at=time.monotonic(), capture_times=captures,
                      audio=lambda: chunks_audio(chunks, cfg.sample_rate), close=close,
                      tagged=lambda: tagged_glass_to_ear(chunks), hop_s=cfg.hop_s or None)


async def _feed(client: Any, frames: np.ndarray, fps: float, captures: list[float]) -> None:
    """Submit ``frames`` (looping) at ``fps`` on the monotonic clock, tagged with their capture time."""
    start = time.monotonic()
    for i in itertools.count():
        await asyncio.sleep(max(0.0, start + i / fps - time.monotonic()))
        if client.closed:
            return
        now = time.monotonic()
        client.submit(frames[i % len(frames)], round(now * 1e6))
        captures.append(now)


def transport_for(name: str) -> Transport:
    transports: dict[str, Callable[[], Transport]] = {"webrtc": WebRtcTransport, "ws": WsTransport}
    if name not in transports:
        raise ValueError(f"unknown transport {name!r} (choose from {', '.join(transports)})")
    return transports[name]()


# --- engine-side probe (in-process server only) -------------------------------------------------------------
class HopProbe:
    """Records every hop of every session of an in-process engine: ``hops[session] = [(end, HopTimings)]``,
    ``end`` being the engine-clock time the hop's audio reached the session's FIFO, and ``turnaround[session]``
    (seconds from the hop's hand-off to the worker to then; what the engine's compute budget covers), from the
    engine's per-hop callback."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.hops: dict[Hashable, list[tuple[float, HopTimings]]] = {}
        self.turnaround: dict[Hashable, list[float]] = {}
        engine.add_hop_listener(self._on_hop)

    def _on_hop(self, event: Any) -> None:
        self.hops.setdefault(event.session, []).append((event.end, event.timings))
        self.turnaround.setdefault(event.session, []).append(event.turnaround_s)

    def clear(self) -> None:
        self.hops.clear()
        self.turnaround.clear()

    def video_depth(self, session: Hashable) -> int | None:
        """Frames waiting in the session's latest-wins buffer (None once it has closed)."""
        s = self.engine.sessions.get(session)
        return None if s is None else len(s.frames)

    def pacer_times(self, session: Hashable) -> tuple[float, float] | None:
        """(pacer start, time the first frame's audio plays) on the engine clock once both are known."""
        s = self.engine.sessions.get(session)
        if s is None or s.pacer.start is None or s.first_frame_anchor is None:
            return None
        return s.pacer.start, s.first_frame_anchor

    @property
    def hop_s(self) -> float:
        return float(self.engine.generator.geometry.hop_duration_s)

    def detach(self) -> None:
        with contextlib.suppress(ValueError):
            self.engine.remove_hop_listener(self._on_hop)


# --- pure statistics ----------------------------------------------------------------------------------------
def frame_glass_to_ear(audio: ReceivedAudio, first_capture: float, stream_delay_s: float, *,
                       first_index: int | None = None,
                       threshold: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """(play times (k,), glass-to-ear (k,)) in seconds for the received frame holding sample ``first_index``
    and every frame after it. ``first_index``: the received sample that stands for ``first_capture -
    stream_delay_s`` (None: the first generated sample, as :func:`first_audio_latency` takes it); later
    samples follow on the gap-free 48 kHz timeline (underruns are silence, not gaps)."""
    s0 = first_nonsilent(audio.samples, threshold) if first_index is None else first_index
    if s0 is None or s0 < 0 or s0 >= len(audio.arrivals) * audio.frame:
        return np.zeros(0), np.zeros(0)
    later = np.arange(s0 // audio.frame + 1, len(audio.arrivals)) * audio.frame  # first sample of each frame
    idx = np.concatenate([[s0], later]).astype(np.int64)
    play = audio.play_time(idx)
    stands_for = first_capture - stream_delay_s + (idx - s0) / audio.rate
    return play, play - stands_for


def pacer_first_index(pacer_start: float, anchor: float, rate: int = 48000) -> int:
    """The received sample standing for the stream's first capture (minus the held crossfade), from the
    server's pacer: frame n leaves at ``pacer_start + n * 20 ms`` carrying FIFO samples from ``n * frame +
    (pacer_start - anchor) * rate``, and FIFO sample 0 is that capture; the client receives the pacer's frames
    in order from 0 (checked on loopback: within 7 ms of the first-generated-sample method when nothing was
    lost). Unlike the first generated sample, this holds when start-up hops came too late to play."""
    return round((anchor - pacer_start) * rate)


def ms_summary(seconds: Sequence[float] | np.ndarray) -> dict[str, float]:
    """n / mean / p50 / p95 / p99 / max in ms ({} when empty)."""
    s = summarize([float(x) for x in np.asarray(seconds, dtype=float).ravel()])
    if not s:
        return {}
    out = {k: (v if k == "n" else 1000.0 * v) for k, v in s.items()}
    out["mean"] = 1000.0 * float(np.mean(np.asarray(seconds, dtype=float)))
    return out


def stage_summaries(timings: Sequence[HopTimings]) -> dict[str, dict[str, float]]:
    """Per engine stage and ``compute`` (the hop's total): ms summaries over ``timings`` (one per session
    and hop)."""
    out = {name: ms_summary([getattr(t, attr) for t in timings]) for name, attr in STAGES.items() if attr}
    out["compute"] = ms_summary([t.total for t in timings])
    return out


def session_record(stream: Stream, stats: dict[str, Any], depths: list[tuple[float, float, int | None]],
                   hops: list[tuple[float, HopTimings]],
                   pacer: tuple[float, float] | None = None,
                   turnaround: Sequence[float] = ()) -> dict[str, Any]:
    """Everything measured about one session (raw arrays kept for the trace and plots). ``pacer``: the server
    pacer's (start, anchor) when the server runs in-process (exact glass-to-ear even after start-up
    underruns); ``turnaround``: per hop, seconds from its hand-off to the worker to its audio queued."""
    audio = stream.audio()
    first = stream.capture_times[0] if stream.capture_times else float("nan")
    index = None if pacer is None else pacer_first_index(*pacer, rate=audio.rate)
    if stream.tagged is not None:
        (play, g2e), method = stream.tagged(), "audio capture-time tags"
    else:
        play, g2e = frame_glass_to_ear(audio, first, stream.stream_delay_s, first_index=index)
        method = "first generated sample" if index is None else "server pacer timeline"
    s0 = first_nonsilent(audio.samples)
    return {"session": stream.session, "latency_s": stream.latency_s, "opened_at": stream.opened_at,
            "connect_s": stream.connected_at - stream.opened_at, "frames_sent": len(stream.capture_times),
            "received_s": len(audio.samples) / audio.rate, "play": play, "g2e": g2e,
            "g2e_method": method, "hop_s": stream.hop_s,
            "first_g2e_s": first_audio_latency(audio, first, stream.stream_delay_s),
            # Time to first audio: until the audio standing for the first frame plays (the pacer's index when
            # known: the stream's sound starts there even when the scene opens silent, as world clips do), else
            # until the first generated (non-silent) sample plays.
            "ttfa_s": (float(audio.play_time(index)) - stream.opened_at
                       if index is not None and 0 <= index < len(audio.arrivals) * audio.frame
                       else None if s0 is None else float(audio.play_time(s0)) - stream.opened_at),
            "first_frame_s": float(audio.arrivals[0]) - stream.opened_at if len(audio.arrivals) else None,
            "stats": stats, "depths": depths, "hops": hops, "turnaround": list(turnaround)}


def point_report(sessions: list[dict[str, Any]], *, hop_s: float, warmup_hops: int, duration_s: float,
                 transport: str) -> dict[str, Any]:
    """One sweep point's JSON report from its session records."""
    timings = [t for s in sessions for _, t in s["hops"][warmup_hops:]]
    turnaround = [x for s in sessions for x in s.get("turnaround", [])[warmup_hops:]]
    stats = [s["stats"] for s in sessions]
    g2e = np.concatenate([s["g2e"] for s in sessions]) if sessions else np.zeros(0)
    transport_s = np.concatenate([s["g2e"] - s["latency_s"] for s in sessions]) if sessions else np.zeros(0)
    if timings:
        stages, source = stage_summaries(timings), "engine"
    else:  # a remote server: only the percentiles its GET /stats reports are visible
        stages, source = remote_stages(stats), "http /stats"
    stages["transport"] = ms_summary(transport_s)
    compute_p95 = stages["compute"].get("p95", float("nan"))
    fifo = [f for s in sessions for _, f, _ in s["depths"]]
    video = [v for s in sessions for _, _, v in s["depths"] if v is not None]
    return {
        "sessions": len(sessions), "transport": transport, "duration_s": duration_s, "hop_s": hop_s,
        "engine_latency_s": sessions[0]["latency_s"] if sessions else None, "stage_source": source,
        "glass_to_ear_method": sessions[0]["g2e_method"] if sessions else None,
        "stages": stages, "real_time_factor": compute_p95 / 1000.0 / hop_s,
        "mean_batch": float(np.mean([t.batch_size for t in timings])) if timings else None,
        "hop_turnaround_ms": ms_summary(turnaround),
        "glass_to_ear_ms": ms_summary(g2e),
        "time_to_first_audio_s": summarize([s["ttfa_s"] for s in sessions if s["ttfa_s"] is not None]),
        "time_to_first_frame_s": summarize([s["first_frame_s"] for s in sessions
                                            if s["first_frame_s"] is not None]),
        "underruns": int(sum(st.get("underruns", 0) for st in stats)),
        "frames_dropped": int(sum(st.get("frames_dropped", 0) for st in stats)),
        "frames_sent": int(sum(s["frames_sent"] for s in sessions)),
        "queue_depths": {"audio_fifo_ms": _plain_summary(fifo), "video_frames": _plain_summary(video)},
        "per_session": [_session_json(s) for s in sessions],
        "raw": {"glass_to_ear_ms": [round(1000 * float(x), 3) for x in g2e],
                "compute_ms": [round(1000 * t.total, 3) for t in timings]},
    }


def remote_stages(stats: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per report stage and ``compute``, p50 / p95 in ms from the sessions' ``GET /stats`` ``stages`` ({stage:
    {p50_s, p95_s}} per HopTimings field): the median of the sessions' p50s and the largest p95."""
    out: dict[str, dict[str, float]] = {}
    for name, attr in [*((k, v) for k, v in STAGES.items() if v), ("compute", "compute")]:
        rows = [s["stages"][attr] for s in stats if attr in (s.get("stages") or {})]
        if rows:
            out[name] = {"p50": 1000 * float(np.median([r["p50_s"] for r in rows])),
                         "p95": 1000 * float(max(r["p95_s"] for r in rows))}
    out.setdefault("compute", {})
    return out


def _plain_summary(values: Sequence[float]) -> dict[str, float]:
    if not len(values):
        return {}
    v = np.asarray(values, dtype=float)
    return {"n": float(len(v)), "mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max())}


def _session_json(s: dict[str, Any]) -> dict[str, Any]:
    st = s["stats"]
    return {"session": s["session"], "first_glass_to_ear_ms": None if s["first_g2e_s"] is None else
            1000 * s["first_g2e_s"], "time_to_first_audio_s": s["ttfa_s"],
            "time_to_first_frame_s": s["first_frame_s"], "connect_s": s["connect_s"],
            "frames_sent": s["frames_sent"], "received_s": s["received_s"], "hops": st.get("hops"),
            "frames_received": st.get("frames_received"), "frames_dropped": st.get("frames_dropped"),
            "underruns": st.get("underruns"), "late_samples": st.get("late_samples"),
            "skipped_hops": st.get("skipped_hops")}


# --- Chrome / Perfetto trace (Trace Event Format) ---------------------------------------------------------
def _slice(name: str, pid: int, tid: int, start: float, dur: float, t0: float, **args: Any) -> dict[str, Any]:
    return {"name": name, "ph": "X", "cat": "hop", "pid": pid, "tid": tid, "ts": round((start - t0) * 1e6, 1),
            "dur": round(max(dur, 0.0) * 1e6, 1), "args": args}


def _meta(kind: str, pid: int, tid: int, name: str) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}


def trace_events(sessions: list[dict[str, Any]], *, pid: int, label: str, t0: float,
                 hop_s: float) -> list[dict[str, Any]]:
    """One sweep point as a process; per session an ``engine`` track (a slice per stage per hop, laid back
    to back ending when the batch completed), ``transport`` async slices (one per hop of audio, ending at its
    play time; async because a transport longer than a hop overlaps the next) and a queue-depth counter.

    ``decode`` is the sum over the hop's frames, which were converted one by one as they arrived; it is drawn
    just before ``features`` and shortened where it would overlap the previous hop (``args.ms`` keeps the
    measured time).
    """
    ev = [_meta("process_name", pid, 0, label)]
    for j, s in enumerate(sessions):
        tid, prev_end = j + 1, -np.inf
        ev.append(_meta("thread_name", pid, tid, f"{s['session']} engine"))
        for k, (end, t) in enumerate(s["hops"]):
            at = end
            for name in reversed(ENGINE_STAGES):
                dur = getattr(t, STAGES[name])  # type: ignore[arg-type]
                start = max(at - dur, prev_end) if name == "decode" else at - dur
                ev.append(_slice(name, pid, tid, start, at - start, t0, hop=k, batch=t.batch_size,
                                 ms=round(1000 * dur, 3)))
                at = start
            prev_end = end
        play, g2e = s["play"], s["g2e"]
        step = max(1, round(hop_s * 50))  # 20 ms frames per hop
        for k in range(0, len(play), step):
            dur = float(g2e[k]) - s["latency_s"]
            common = {"name": f"transport {s['session']}", "cat": "transport", "id": f"{pid}.{tid}.{k}",
                      "pid": pid, "tid": tid}
            ev.append(common | {"ph": "b", "ts": round((float(play[k]) - dur - t0) * 1e6, 1),
                                "args": {"hop": k // step,
                                         "glass_to_ear_ms": round(1000 * float(g2e[k]), 2)}})
            ev.append(common | {"ph": "e", "ts": round((float(play[k]) - t0) * 1e6, 1)})
        if len(play):
            ev.append({"name": "first audio", "ph": "i", "s": "t", "pid": pid, "tid": tid,
                       "ts": round((float(play[0]) - t0) * 1e6, 1)})
        for t, fifo_ms, video in s["depths"]:
            args = {"audio_fifo_ms": fifo_ms} | ({"video_frames": video} if video is not None else {})
            ev.append({"name": f"queues {s['session']}", "ph": "C", "pid": pid,
                       "ts": round((t - t0) * 1e6, 1), "args": args})
    return ev


# --- tables and plots ---------------------------------------------------------------------------------------
def markdown_table(report: dict[str, Any]) -> str:
    """The sweep as a markdown table (BENCHMARKS.md)."""
    def f(d: dict[str, float], *keys: str) -> str:
        return " / ".join(f"{d[k]:.0f}" if k in d else "-" for k in keys)

    head = ("| sessions | compute per hop p50 / p95 / p99 | p95 / hop | stage p95 ms: "
            + " / ".join(STAGES) + " | glass-to-ear p50 / p95 / p99 | time to first audio | underruns | "
            "frames dropped / sent | audio FIFO p95 |")
    rows = [head, "|" + "---|" * 9]
    for r in report["runs"]:
        st = r["stages"]
        stage = " / ".join(f(st.get(k, {}), "p95") for k in STAGES)
        ttfa = r["time_to_first_audio_s"]
        fifo = r["queue_depths"]["audio_fifo_ms"]
        rows.append(f"| {r['sessions']} | {f(st['compute'], 'p50', 'p95', 'p99')} ms | "
                    f"{r['real_time_factor']:.2f} | {stage} | "
                    f"{f(r['glass_to_ear_ms'], 'p50', 'p95', 'p99')} ms | "
                    f"{ttfa.get('p50', float('nan')):.2f} s | {r['underruns']} | "
                    f"{r['frames_dropped']} / {r['frames_sent']} | {fifo.get('p95', float('nan')):.0f} ms |")
    return "\n".join(rows)


def _sessions_label(n: int) -> str:
    return f"{n} session" + ("s" if n != 1 else "")


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    """latency_cdf.png, stages.png (mean ms per hop, stacked), sessions_p95.png. Needs matplotlib (Agg)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    runs = report["runs"]
    paths = [out / "latency_cdf.png", out / "stages.png", out / "sessions_p95.png"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for r in runs:
        for ax, key in zip(axes, ("glass_to_ear_ms", "compute_ms"), strict=True):
            v = np.sort(np.asarray(r["raw"][key], dtype=float))
            if len(v):
                ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=_sessions_label(r["sessions"]))
    axes[0].set(title="glass-to-ear per 20 ms frame", xlabel="ms", ylabel="fraction")
    axes[1].set(title="compute per hop", xlabel="ms")
    axes[1].axvline(1000 * runs[0]["hop_s"], color="k", ls="--", lw=1, label="hop")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(runs))
    bottom = np.zeros(len(runs))
    for name in STAGES:
        h = np.array([r["stages"].get(name, {}).get("mean", 0.0) for r in runs])
        ax.bar(x, h, bottom=bottom, label=name)
        bottom += h
    ax.set(xticks=x, xticklabels=[str(r["sessions"]) for r in runs], xlabel="sessions",
           ylabel="mean ms per hop", title="where a hop's latency goes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    n = [r["sessions"] for r in runs]
    ax.plot(n, [r["stages"]["compute"].get("p95", np.nan) for r in runs], "o-", label="compute per hop p95")
    ax.plot(n, [r["glass_to_ear_ms"].get("p95", np.nan) for r in runs], "s-", label="glass-to-ear p95")
    ax.axhline(1000 * runs[0]["hop_s"], color="k", ls="--", lw=1, label="hop (real-time limit)")
    ax.set(xlabel="sessions", ylabel="ms", xticks=n, title="sessions vs p95")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[2], dpi=100)
    plt.close(fig)
    return paths


def write_outputs(report: dict[str, Any], trace: list[dict[str, Any]], out: Path, *,
                  plots: bool = True) -> list[Path]:
    """profile.json, trace.json (open in ui.perfetto.dev or chrome://tracing) and the PNGs."""
    import json  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(report, indent=1))
    (out / "trace.json").write_text(json.dumps({"traceEvents": trace, "displayTimeUnit": "ms"}))
    written = [out / "profile.json", out / "trace.json"]
    return written + (write_plots(report, out) if plots else [])


# --- the driver ---------------------------------------------------------------------------------------------
def world_clips(seed: int, count: int, clip_s: float) -> list[tuple[np.ndarray, float]]:
    """``count`` world clips (frames (N, H, W, 3) uint8, fps), seeds ``seed``, ``seed + 1``, ..."""
    from frieren_rt.world import render_clip  # noqa: PLC0415

    return [(c.frames, float(c.fps)) for c in (render_clip(seed + i, duration=clip_s) for i in range(count))]


async def _get_json(http: Any, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else {})


async def _sample(http: Any, base: str, streams: list[Stream], probe: HopProbe | None, cfg: ProfileConfig,
                  tick: Callable[[float], None]) -> tuple[dict[str, dict[str, Any]], dict[str, list]]:
    """Poll GET /stats/{session} until ``duration_s`` has passed: the last stats and (t, FIFO ms, video
    frames); with an in-process engine also each session's pacer times (under ``"pacer"`` in its stats)."""
    last: dict[str, dict[str, Any]] = {s.session: {} for s in streams}
    depths: dict[str, list] = {s.session: [] for s in streams}
    end = time.monotonic() + cfg.duration_s
    while (now := time.monotonic()) < end:
        for s in streams:
            status, st = await _get_json(http, f"{base}/stats/{s.session}")
            if status == 200:
                last[s.session] = st
                video = probe.video_depth(s.session) if probe else None
                depths[s.session].append((now, 1000.0 * st.get("fifo_depth", 0) / 48000, video))
                if probe and (times := probe.pacer_times(s.session)) is not None:
                    st["pacer"] = times
        wait = min(cfg.sample_every_s, max(0.0, end - time.monotonic()))
        await asyncio.sleep(wait)
        tick(time.monotonic() - now)
    return last, depths


async def _run_point(n: int, base: str, cfg: ProfileConfig, transport: Transport,
                     clips: list[tuple[np.ndarray, float]], probe: HopProbe | None,
                     tick: Callable[[float], None]) -> list[dict[str, Any]]:
    import aiohttp  # noqa: PLC0415

    async with aiohttp.ClientSession() as http:
        _, info = await _get_json(http, f"{base}/sessions")
        if info.get("max_sessions", n) < n:
            raise ValueError(f"the server allows {info['max_sessions']} sessions; the sweep asks for {n}")
        streams = list(await asyncio.gather(*(transport.connect(base, *clips[i % len(clips)], seed=i)
                                              for i in range(n))))
        try:
            stats, depths = await _sample(http, base, streams, probe, cfg, tick)
        finally:
            await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)
        hops = probe.hops if probe else {}
        turnaround = probe.turnaround if probe else {}
        records = [session_record(s, stats[s.session], depths[s.session], hops.get(s.session, []),
                                  stats[s.session].pop("pacer", None), turnaround.get(s.session, []))
                   for s in streams]
        deadline = time.monotonic() + cfg.close_timeout_s  # the next point starts on an empty server
        while time.monotonic() < deadline and (await _get_json(http, f"{base}/sessions"))[1].get("sessions"):
            await asyncio.sleep(0.1)
    return records


async def _profile(cfg: ProfileConfig, engine: Any, clips: list[tuple[np.ndarray, float]],
                   tick: Callable[[float], None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from frieren_rt.streaming.server import (  # noqa: PLC0415
        ENGINE,
        ServerConfig,
        bound_port,
        create_app,
        start,
    )

    transport = transport_for(cfg.transport)
    runner, probe, base = None, None, cfg.server
    if base is None:
        app = create_app(ServerConfig(port=0, max_sessions=max(cfg.sessions)), engine=engine)
        runner = await start(app, "127.0.0.1", 0)
        base, probe = f"http://127.0.0.1:{bound_port(runner)}", HopProbe(app[ENGINE])
    t0, runs, trace = time.monotonic(), [], []
    load_before = os.getloadavg()
    try:
        for i, n in enumerate(cfg.sessions):
            if probe:
                probe.clear()
            records = await _run_point(n, base.rstrip("/"), cfg, transport, clips, probe, tick)
            # a remote server says its hop in the /offer reply and the /ws hello
            hop_s = probe.hop_s if probe else next((r["hop_s"] for r in records if r["hop_s"]), float("nan"))
            runs.append(point_report(records, hop_s=hop_s, warmup_hops=cfg.warmup_hops,
                                     duration_s=cfg.duration_s, transport=transport.name))
            trace += trace_events(records, pid=i + 1, label=f"{_sessions_label(n)} ({transport.name})", t0=t0,
                                  hop_s=hop_s)
    finally:
        if probe:
            probe.detach()
        if runner is not None:
            await runner.cleanup()
    machine = {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
               "server": "in-process 127.0.0.1" if cfg.server is None else cfg.server}
    report = {"config": asdict(cfg), "machine": machine, "runs": runs}
    if probe:
        report["engine"] = engine_summary(probe.engine)
    return report, trace


def engine_summary(engine: Any) -> dict[str, Any]:
    """The in-process engine's latency by part (ms) and its start-up calibration (ms per hop)."""
    parts = getattr(engine, "latency_budget", None)
    calib = list(getattr(engine, "calibration_s", []))
    out: dict[str, Any] = {"latency_s": engine.latency_s, "torch_threads": _torch_threads()}
    if parts is not None:
        out["latency_ms"] = {k: 1000 * v for k, v in parts.as_dict().items()}
    if calib:
        out["calibration_ms"] = ms_summary(calib)
    return out


def _torch_threads() -> int:
    import torch  # noqa: PLC0415

    return torch.get_num_threads()


def run_profile(cfg: ProfileConfig, *, engine: Any = None,
                clips: list[tuple[np.ndarray, float]] | None = None,
                progress: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the sweep; returns (JSON report, trace events). ``engine``: an Engine or a factory for the
    in-process server (required unless ``cfg.server``); ``clips``: (frames, fps) per session (default: world
    clips)."""
    if cfg.server is None and engine is None:
        raise ValueError("give a running server's URL or an engine to start one")
    if cfg.duration_s <= 0:
        raise ValueError("duration must be > 0 seconds")
    clips = clips or world_clips(cfg.clip_seed, max(cfg.sessions), min(cfg.clip_s, cfg.duration_s))
    from tqdm import tqdm  # noqa: PLC0415

    total = cfg.duration_s * len(cfg.sessions)
    with tqdm(total=round(total, 1), unit="s", disable=not progress, desc="profile",
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:
        return asyncio.run(_profile(cfg, engine, clips, lambda dt: bar.update(min(dt, bar.total - bar.n))))

