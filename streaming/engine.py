"""The streaming engine: per session, frames with capture times in, paced 20 ms 48 kHz audio out.

Flow per session: ``push_frame`` (latest-wins buffer) -> when video covers the next hop, the engine submits
the hop to the inference worker together with every other session due at the same moment -> on the worker
thread: features for the new frames, one batched windowed generation, decode, crossfade, resample to 48 kHz
-> back on the event loop the samples go into the session's FIFO at their absolute index -> ``recv_audio``
paces them out. Capture times must be on the engine's clock (the transport maps arrival/pts onto it).

Latency is fixed by construction (../shared/reference/streaming.md, "Audio/video sync tolerances"): FIFO
sample 0 plays at ``start + latency - crossfade``, so audio for capture time t plays at ``t + latency``;
anything later than that is dropped and shows as an underrun instead of growing the delay. The latency is a sum
of named parts (:class:`LatencyBudget`): the hop, the held-back crossfade and resampler look-ahead, the wait
for video to cover the hop, one output frame, and the compute budget, which is measured at start-up
(:meth:`Engine.calibrate`: p95 of warm hops times a margin) unless the config fixes it (issue 4).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from frieren_rt.streaming.buffers import AudioFifo, LatestFrameBuffer
from frieren_rt.streaming.clock import Clock
from frieren_rt.streaming.pacer import AudioFrame, AudioPacer
from frieren_rt.streaming.resample import PolyphaseResampler
from frieren_rt.streaming.worker import InferenceWorker
from frieren_rt.windowing import (
    FeatureExtractor,
    FeatureTrack,
    HopTimings,
    StreamState,
    WindowedGenerator,
    hops_due,
    stopwatch,
)

__all__ = ["VideoFrame", "EngineConfig", "EngineSession", "Engine", "SessionStats", "LatencyBudget", "HopEvent",
           "HopListener", "CalibrationFrame", "video_covered_until", "budget_from_samples", "timing_percentiles"]


@dataclass(frozen=True)
class HopEvent:
    """One hop of one session, as :meth:`Engine.add_hop_listener` reports it. submitted / end: engine-clock
    times the hop was handed to the worker and its audio reached the session's FIFO; timings: its stages."""

    session: Hashable
    submitted: float
    end: float
    timings: HopTimings

    @property
    def turnaround_s(self) -> float:
        """Due -> audio queued: the model work plus the hand-offs to and from the worker thread (what the
        compute budget must cover)."""
        return self.end - self.submitted


HopListener = Callable[[HopEvent], None]


@dataclass(frozen=True)
class VideoFrame:
    """A decoded frame: pixels in whatever form the feature extractor takes; capture_time on the engine clock;
    decode_s: seconds the transport spent decoding it (reported as the hop's ``video_decode`` stage)."""

    pixels: Any
    capture_time: float
    decode_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Engine policy. feature_dim: width D of the extractor's features. compute_budget_s: time allowed for one
    hop's work inside the latency (None: measured by :meth:`Engine.calibrate` at construction).
    latency_s: fixes the whole latency instead (no calibration). max_lag_hops: a session further behind than
    this skips to the newest hop (restarting its continuity with a fade-in) rather than falling behind for ever.

    frame_grace_s: a hop falls due once the clock is this far past its end while the newest frame is less than
    a nominal frame interval older than that end (see :func:`video_covered_until`); None: only once a frame
    captured at or after the end arrives, which waits up to a frame interval (33 ms at 30 fps) longer.
    poll_s: how often :meth:`Engine.run` looks for due hops. Calibration: ``calibration_hops`` scratch hops of
    ``calibration_batch`` sessions (the first ``calibration_warmup`` left out: first-call overheads); budget =
    max(``budget_floor_s``, ``budget_margin`` x p95)."""

    feature_dim: int
    max_batch: int = 8
    compute_budget_s: float | None = None
    latency_s: float | None = None
    frame_slack: int = 4
    fifo_s: float = 2.0
    max_lag_hops: int = 4
    timing_history: int = 512
    frame_grace_s: float | None = 0.005
    poll_s: float = 0.005
    calibration_hops: int = 24
    calibration_warmup: int = 4
    calibration_batch: int = 1
    calibration_frame: tuple[int, int] = (120, 160)  # (H, W): the transports' default VideoSize
    # Live hops run beside the transport's threads (VP8 decode, RGB conversion, Opus encode): on the 2-core
    # development machine their hand-off-to-queued p99 was 1.65x the quiet start-up p95 (issue 4 profile).
    budget_margin: float = 1.6
    budget_floor_s: float = 0.03


@dataclass(frozen=True)
class LatencyBudget:
    """Capture time -> play time, by part (seconds). ``total`` is the engine's fixed playout latency.

    hop: video must cover a whole hop before it is generated. held: the crossfade tail held back for the next
    seam plus the resampler's look-ahead. video_wait: from the hop's end until it is due (a later frame, or the
    frame grace plus one poll). output_frame: audio leaves in whole 20 ms frames. compute: the budget for one
    hop's model work (features .. resample) and its hand-off to and from the worker thread."""

    hop: float
    held: float
    video_wait: float
    output_frame: float
    compute: float

    @property
    def total(self) -> float:
        return self.hop + self.held + self.video_wait + self.output_frame + self.compute

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"total": self.total}


class CalibrationFrame(np.ndarray):
    """Calibration pixels: an (H, W, 3) uint8 array that also carries ``key`` and ``rgb`` like
    webrtc.StreamFrame, so every extractor (plain arrays, per-session motion, CAVP) takes it."""

    key: str
    rgb: np.ndarray

    @classmethod
    def noise(cls, key: str, size: tuple[int, int], rng: np.random.Generator) -> CalibrationFrame:
        frame = rng.integers(0, 256, (*size, 3), dtype=np.uint8).view(cls)
        frame.key, frame.rgb = key, np.asarray(frame)
        return frame


def video_covered_until(newest: float, now: float, *, frame_interval: float, grace_s: float | None) -> float:
    """Capture time up to which the video is known: the newest frame's, or, once the clock is ``grace_s`` past a
    later time that is less than one nominal frame interval after that frame, that time (the newest frame is
    still the one on screen there: a hop ending before the next frame is captured needs no later frame).
    Capture times are on the engine clock with arrival as their upper bound (webrtc.CaptureTimeMapper), so a
    frame captured before ``now - grace_s`` has arrived unless it was delayed by more than the grace; a stalled
    sender still stops generation, one frame interval after its last frame."""
    if grace_s is None:
        return newest
    return max(newest, min(now - grace_s, newest + frame_interval))


def budget_from_samples(seconds: Sequence[float], *, margin: float, floor_s: float) -> float:
    """Compute budget from measured per-hop seconds: max(floor, margin x p95)."""
    if not len(seconds):
        raise ValueError("no calibration samples")
    return max(floor_s, margin * float(np.percentile(np.asarray(seconds, dtype=float), 95)))


def timing_percentiles(timings: Sequence[HopTimings]) -> dict[str, dict[str, float]]:
    """Per stage of :class:`HopTimings` and ``compute`` (their total): {"p50_s", "p95_s"} over ``timings``
    ({} when there are none). For ``GET /stats`` and the profiler."""
    if not timings:
        return {}
    names = [f.name for f in fields(HopTimings) if f.name != "batch_size"]
    rows = np.array([[getattr(t, n) for n in names] + [t.total] for t in timings], dtype=float)  # (N, S + 1)
    p50, p95 = np.percentile(rows, [50, 95], axis=0)
    return {n: {"p50_s": float(a), "p95_s": float(b)} for n, a, b in zip([*names, "compute"], p50, p95, strict=True)}

@dataclass(frozen=True)
class SessionStats:
    hops: int
    frames_received: int
    frames_dropped: int
    underruns: int
    late_samples: int
    fifo_depth: int
    latency_s: float
    skipped_hops: int


@dataclass(frozen=True)
class _HopJob:
    session: EngineSession
    frames: list[tuple[float, VideoFrame]]


@dataclass(frozen=True)
class _HopResult:
    samples: np.ndarray  # (k,) float32 at 48 kHz
    at: int  # FIFO index of samples[0]
    timings: HopTimings


class EngineSession:
    """One stream's buffers and state. ``push_frame`` and ``recv_audio`` are its two media directions."""

    def __init__(self, session_id: Hashable, *, engine: Engine, seed: int) -> None:
        g, cfg = engine.generator.geometry, engine.config
        self.id = session_id
        self.seed = seed
        self.frames: LatestFrameBuffer[VideoFrame] = LatestFrameBuffer(
            int(np.ceil(g.hop_duration_s * g.frame_rate)) + cfg.frame_slack
        )
        self.track = FeatureTrack(dim=cfg.feature_dim, max_frames=4 * g.cond_slots)
        self.fifo = AudioFifo(capacity=round(cfg.fifo_s * g.output_sample_rate))
        self.pacer = AudioPacer(
            self.fifo, engine.clock, sample_rate=g.output_sample_rate, frame_samples=g.output_frame_samples
        )
        self.timings: deque[HopTimings] = deque(maxlen=cfg.timing_history)
        self.latency_s = engine.latency_s
        self.stream: StreamState | None = None  # created at the first frame: its capture time is t0
        self.resampler = PolyphaseResampler(g.model_sample_rate, g.output_sample_rate)
        self.out_offset = 0  # FIFO index of the resampler's output 0
        self.skipped_hops = 0
        self._engine = engine

    def push_frame(self, frame: VideoFrame) -> None:
        """Non-blocking; the newest frames win."""
        self.frames.put(frame, frame.capture_time)
        if self.stream is None:
            gen = self._engine.generator
            self.stream = gen.new_stream(start_time=frame.capture_time, seed=self.seed)
            delay_s = gen.stream_delay_samples / gen.geometry.model_sample_rate
            self.pacer.set_anchor(frame.capture_time + self.latency_s - delay_s)

    async def recv_audio(self) -> AudioFrame:
        """The next 20 ms frame, released on the clock's 20 ms grid (silence before audio or on underrun)."""
        return await self.pacer.recv()

    def hops_due(self) -> int:
        if self.stream is None or self.frames.newest_time is None:
            return 0
        g = self._engine.generator.geometry
        covered = video_covered_until(self.frames.newest_time, self._engine.clock.now(),
                                      frame_interval=1.0 / g.frame_rate,
                                      grace_s=self._engine.config.frame_grace_s)
        return hops_due(self.stream.next_hop, covered, self.stream.start_time, g)

    def skip_to(self, hop: int) -> None:
        """Jump the timeline to ``hop``: continuity restarts (empty history, silent tail -> fade-in)."""
        assert self.stream is not None
        g = self._engine.generator.geometry
        s = self.stream
        self.skipped_hops += hop - s.next_hop
        s.next_hop = hop
        s.history = s.history.new_zeros(s.history.shape[0], 0)
        s.history_start = hop * g.hop_latents
        s.tail = torch.zeros_like(s.tail)
        s.emitted_samples = hop * g.hop_samples
        self.resampler = PolyphaseResampler(g.model_sample_rate, g.output_sample_rate)
        self.out_offset = round(s.emitted_samples * g.output_sample_rate / g.model_sample_rate)

    def stats(self) -> SessionStats:
        return SessionStats(
            hops=0 if self.stream is None else self.stream.next_hop,
            frames_received=self.frames.received,
            frames_dropped=self.frames.dropped,
            underruns=self.fifo.underruns,
            late_samples=self.fifo.late_samples,
            fifo_depth=self.fifo.depth,
            latency_s=self.latency_s,
            skipped_hops=self.skipped_hops,
        )


class Engine:
    """Orchestrates sessions over one generator, one feature extractor and one inference worker thread."""

    def __init__(
        self,
        *,
        generator: WindowedGenerator,
        features: FeatureExtractor,
        clock: Clock,
        config: EngineConfig,
    ) -> None:
        self.generator = generator
        self.features = features
        self.clock = clock
        self.config = config
        self.sessions: dict[Hashable, EngineSession] = {}
        self.worker: InferenceWorker[_HopJob, _HopResult] = InferenceWorker(
            self._run_batch, max_batch=config.max_batch, max_pending=1
        )
        self._ids = itertools.count()
        self._hop_listeners: list[HopListener] = []
        self.calibration_s: list[float] = []  # measured seconds per calibration hop (warm-up left out)
        self.compute_budget_s = config.compute_budget_s if config.compute_budget_s is not None else 0.0
        if config.compute_budget_s is None and config.latency_s is None:
            self.calibration_s = self._quiet_calibration()
            self.compute_budget_s = budget_from_samples(self.calibration_s, margin=config.budget_margin,
                                                        floor_s=config.budget_floor_s)

    def _quiet_calibration(self, rounds: int = 3) -> list[float]:
        """The calibration round with the smallest p95 among up to ``rounds``, stopping at the first whose p95
        is within 1.5x its median: on a shared machine a burst of other work during start-up would otherwise
        set every session's latency (seen here: one round's p95 at 100x the median)."""
        cfg, best = self.config, None
        for _ in range(rounds):
            s = self.calibrate(hops=cfg.calibration_hops, batch=cfg.calibration_batch, warmup=cfg.calibration_warmup)
            p50, p95 = np.percentile(s, [50, 95])
            if best is None or p95 < np.percentile(best, 95):
                best = s
            if p95 <= 1.5 * p50:
                break
        assert best is not None
        return best

    @property
    def latency_budget(self) -> LatencyBudget:
        """The default latency by part (see :class:`LatencyBudget`)."""
        g, cfg = self.generator.geometry, self.config
        held = self.generator.stream_delay_samples + PolyphaseResampler(
            g.model_sample_rate, g.output_sample_rate
        ).lookahead_input_samples
        frame_interval = 1.0 / g.frame_rate
        wait = frame_interval if cfg.frame_grace_s is None else min(frame_interval, cfg.frame_grace_s + cfg.poll_s)
        return LatencyBudget(hop=g.hop_duration_s, held=held / g.model_sample_rate, video_wait=wait,
                             output_frame=g.output_frame_s, compute=self.compute_budget_s)

    @property
    def latency_s(self) -> float:
        """Capture time -> play time: the config's ``latency_s``, else :attr:`latency_budget`'s total."""
        if self.config.latency_s is not None:
            return self.config.latency_s
        return self.latency_budget.total

    def add_hop_listener(self, listener: HopListener) -> None:
        """Call ``listener(HopEvent)`` on the event loop for every hop once its audio is queued (the
        profiler's per-hop trace)."""
        self._hop_listeners.append(listener)

    def remove_hop_listener(self, listener: HopListener) -> None:
        self._hop_listeners.remove(listener)

    def calibrate(self, *, hops: int, batch: int = 1, warmup: int = 2) -> list[float]:
        """Wall seconds per hop from hand-off to the inference worker to its result (features .. resample) for
        ``hops`` hops of ``batch`` scratch sessions fed noise frames at the nominal frame rate; the first
        ``warmup`` are left out. Blocks the calling thread; call it before any session exists. Scratch sessions
        leave no trace (their extractor state is forgotten)."""
        if hops <= warmup:
            raise ValueError(f"calibration needs more hops ({hops}) than warm-up hops ({warmup})")
        g, size = self.generator.geometry, self.config.calibration_frame
        rng = np.random.default_rng(0)
        scratch = [EngineSession(f"calibration-{i}", engine=self, seed=i) for i in range(batch)]
        n, out = 0, []
        try:
            for k in range(hops):
                times = []
                while n / g.frame_rate <= (k + 1) * g.hop_duration_s:  # the frames covering hop k, as live
                    times.append(n / g.frame_rate)
                    n += 1
                jobs = []
                for s in scratch:
                    for t in times:
                        s.push_frame(VideoFrame(CalibrationFrame.noise(str(s.id), size, rng), t))
                    jobs.append(_HopJob(s, s.frames.drain()))
                t0 = time.perf_counter()  # through the worker thread, as live hops run (torch's thread pools
                for f in self.worker.submit_many([(job.session.id, job) for job in jobs]):  # are per thread)
                    f.result()
                if k >= warmup:
                    out.append(time.perf_counter() - t0)
        finally:
            forget = getattr(self.features, "forget", None)
            for s in scratch:
                if forget is not None:
                    forget(s.id)
        return out

    def open_session(self, session_id: Hashable | None = None, *, seed: int | None = None) -> EngineSession:
        n = next(self._ids)
        sid = n if session_id is None else session_id
        if sid in self.sessions:
            raise KeyError(f"session {sid!r} already open")
        session = EngineSession(sid, engine=self, seed=n if seed is None else seed)
        self.sessions[sid] = session
        return session

    def close_session(self, session_id: Hashable) -> None:
        self.sessions.pop(session_id, None)
        forget = getattr(self.features, "forget", None)  # extractors with per-stream state (motion) drop it
        if forget is not None:
            forget(session_id)

    async def step(self) -> int:
        """Submit the next hop of every due session as one batch; await it; queue the audio. Returns hops done."""
        jobs = []
        for session in list(self.sessions.values()):
            due = session.hops_due()
            if due == 0:
                continue
            if due > self.config.max_lag_hops:
                assert session.stream is not None
                session.skip_to(session.stream.next_hop + due - 1)
            jobs.append(_HopJob(session, session.frames.drain()))
        if not jobs:
            return 0
        submitted = self.clock.now()
        futures = self.worker.submit_many([(job.session.id, job) for job in jobs])
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        end = self.clock.now()
        for job, result in zip(jobs, results, strict=True):
            job.session.fifo.write(result.samples, at=result.at)
            job.session.timings.append(result.timings)
            event = HopEvent(job.session.id, submitted, end, result.timings)
            for listener in list(self._hop_listeners):
                listener(event)
        return len(jobs)

    async def run(self, *, poll_s: float | None = None) -> None:
        """Step whenever hops are due, until cancelled (looking every ``poll_s``, default the config's)."""
        poll = self.config.poll_s if poll_s is None else poll_s
        while True:
            if await self.step() == 0:
                await self.clock.sleep_until(self.clock.now() + poll)

    def close(self) -> None:
        self.worker.stop()

    # --- worker thread -------------------------------------------------------------------------------------
    def _run_batch(self, jobs: list[_HopJob]) -> list[_HopResult]:
        """All model work for one batch of hops (runs on the inference thread only)."""
        times: dict[str, float] = {}
        frames = [f for job in jobs for _, f in job.frames]
        if frames:
            with stopwatch(times, "features", self.generator.device):
                feats = self.features([f.pixels for f in frames]).detach().float().cpu()  # (N, D)
            for job, part in zip(jobs, feats.split([len(j.frames) for j in jobs]), strict=True):
                job.session.track.append([t for t, _ in job.frames], part)
        states = [job.session.stream for job in jobs]
        assert all(s is not None for s in states)
        audio, gen_times = self.generator.step(states, [job.session.track.tensors() for job in jobs])  # type: ignore[arg-type]
        times.update(gen_times)
        results = []
        with stopwatch(times, "resample"):
            for job, wave in zip(jobs, audio, strict=True):
                s = job.session
                at = s.out_offset + s.resampler.output_count
                results.append(_HopResult(s.resampler.process(wave.numpy()), at, HopTimings()))
        decode = sum(f.decode_s for f in frames)
        timings = HopTimings(
            video_decode=decode,
            features=times.get("features", 0.0),
            vector_field=times.get("vector_field", 0.0),
            vae_decode=times.get("vae_decode", 0.0),
            vocoder=times.get("vocoder", 0.0),
            resample=times.get("resample", 0.0),
            batch_size=len(jobs),
        )
        return [_HopResult(r.samples, r.at, timings) for r in results]
