"""The streaming engine: per session, frames with capture times in, paced 20 ms 48 kHz audio out.

Flow per session: ``push_frame`` (latest-wins buffer; the worker thread computes its visual features between
hops, off the hop's critical path) -> when video covers the next hop, the engine submits the hop to the
inference worker together with every other session due at the same moment -> on the worker thread: features
of any frames still waiting, one batched windowed generation, decode, crossfade, resample to 48 kHz -> back on
the event loop the samples go into the session's FIFO at their absolute index -> ``recv_audio`` paces them
out. Capture times must be on the engine's clock (the transport maps arrival/pts onto it).

Shared hop grid (issue 4): every session's timeline starts at the engine grid point ``k * hop`` at or before
its first frame (:func:`hop_grid_start`), so hop boundaries of all sessions coincide and their hops fall due at
the same poll and run as one batched forward pass. Sessions anchored to their own first frame fell due at
unrelated moments (mean batch 1.29 with 2 sessions) and queued behind each other. The shift (< 1 hop) moves
only where a session's audio timeline begins: audio for capture time t still plays at ``t + latency``.

Latency is fixed by construction (../shared/reference/streaming.md, "Audio/video sync tolerances"): FIFO
sample 0 plays at ``start + latency - delay`` (delay: the generator's ``stream_delay_samples``, the held-back
look-ahead or crossfade), so audio for capture time t plays at ``t + latency``;
anything later than that is dropped and shows as an underrun instead of growing the delay. The latency is a sum
of named parts (:class:`LatencyBudget`): the hop, the held-back look-ahead or crossfade and the resampler's, the wait
for video to cover the hop, one output frame, and the compute budget, which is measured at start-up
(:meth:`Engine.calibrate`: p95 of warm hops times a margin, at batch 1 and at ``budget_sessions``) unless the
config fixes it (issue 4). A session's latency is fixed when it opens, sized for the batch it will share: the
sessions then open, and at least ``budget_sessions``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
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
           "HopListener", "CalibrationFrame", "video_covered_until", "budget_from_samples", "quietest_round",
           "timing_percentiles", "hop_grid_start", "next_due_time", "batch_budget", "fade_in_from"]


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
    one session and of ``max(2, budget_sessions)`` sessions in one batch (the first ``calibration_warmup`` left out:
    first-call overheads, which also warms both batch shapes before any live hop), ``calibration_rounds`` times at
    each (within ``calibration_max_s``); budget at each = max(``budget_floor_s``, ``budget_margin`` x p95 of the
    quietest round), and linear in the batch size between and beyond them.
    warm_up: with a fixed latency or budget, still run the warm-up hops (False: tests that count calls).
    budget_sessions: the batch every session's latency covers at least (a second session joining a first
    then shares its hops without making them late). align_hops: sessions share the engine's hop grid (see
    the module docstring; False: each timeline starts at its first frame). features_on_arrival: visual
    features are computed on the worker thread as frames arrive, between hops."""

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
    # Every round runs (no early stop on a steady-looking round): the first round alone set budgets of 45 and
    # 67 ms in two runs of the same server, glass-to-ear 237 against 258 ms (issue 4: p50 <= 250 ms).
    calibration_rounds: int = 3
    # A further round starts only while the rounds so far took less than this (wall seconds): the shipped model's
    # round takes about 1 s on the 2-core CPU, the official model's (8.2 s windows) about a minute, where three
    # rounds at two batch sizes made a test's engine take 394 s to start.
    calibration_max_s: float = 10.0
    warm_up: bool = True  # without calibration, still run its warm-up hops at construction (Engine.warm_up)
    # 1: a lone session keeps the lowest latency; a session opened beside others is sized for their batch.
    # 2 would cost a lone session about 30 ms more on the 2-core machine (issue 4 profile).
    budget_sessions: int = 1
    align_hops: bool = True
    features_on_arrival: bool = True
    calibration_frame: tuple[int, int] = (120, 160)  # (H, W): the transports' default VideoSize
    # Live hops run beside the transport's threads (VP8 decode, RGB conversion, Opus encode): on the 2-core
    # development machine their hand-off-to-queued p99 was 1.65x the quiet start-up p95 (issue 4 profile); a
    # 5-minute run at 1.6 still had late hops (p99 74 ms against a 41 ms budget) under load, so 2.0: about
    # 10 ms more latency for a lone session. The "script" backend (off the GIL) ran at 1.75 while the budget came
    # from the first steady-looking round; from the quietest of three (lower and steadier), 5-minute soaks on the
    # AMD EPYC with one revised latent of look-ahead gave 6 underruns at 1.75 (budget 46 ms, glass-to-ear p50
    # 236 ms) and none at 2.0 (51 ms, 242 ms; BENCHMARKS.md, "Start-up calibration"), so 2.0 for every backend.
    budget_margin: float = 2.0
    budget_floor_s: float = 0.03


@dataclass(frozen=True)
class LatencyBudget:
    """Capture time -> play time, by part (seconds). ``total`` is the engine's fixed playout latency.

    hop: video must cover a whole hop before it is generated. held: the look-ahead latents and the crossfade tail
    held back for the next seam (none when the seam lies in the look-ahead: StreamGeometry.lookahead_seam),
    plus the resampler's look-ahead. video_wait: from the hop's end until it is due (a later frame, or the
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


def hop_grid_start(first_capture: float, hop_s: float) -> float:
    """The engine hop grid point ``k * hop_s`` (clock zero is the grid origin) at or before ``first_capture``:
    where a session's timeline starts so that its hop boundaries coincide with every other session's."""
    return math.floor(first_capture / hop_s + 1e-9) * hop_s


def fade_in_from(samples: np.ndarray, at: int, start: int, fade: int) -> np.ndarray:
    """Samples (k,) whose first is stream index ``at``, silent before index ``start`` and ramped in linearly
    over ``fade`` samples from there (a new array). A grid-aligned timeline begins up to a hop before the
    session's first frame: its audio starts at that frame, as it did when the frame anchored the timeline."""
    idx = np.arange(at, at + len(samples), dtype=np.float64)
    gain = np.clip((idx - start) / max(fade, 1), 0.0, 1.0).astype(np.float32)
    return samples * gain


def next_due_time(now: float, hop_s: float, grace_s: float) -> float:
    """Clock time at or after ``now`` at which hops on the shared grid next fall due: a grid point plus the
    frame grace (:func:`video_covered_until`)."""
    return math.ceil((now - grace_s) / hop_s - 1e-9) * hop_s + grace_s


def batch_budget(budgets: dict[int, float], n: int) -> float:
    """Compute budget for a batch of ``n`` hops from budgets measured at some batch sizes: linear through the
    smallest and the largest measured size (extrapolated beyond, never below the smallest's budget)."""
    lo, hi = min(budgets), max(budgets)
    if hi == lo:
        return budgets[lo]
    slope = max(0.0, (budgets[hi] - budgets[lo]) / (hi - lo))
    return budgets[lo] + slope * (max(n, lo) - lo)


def quietest_round(rounds: Sequence[Sequence[float]]) -> Sequence[float]:
    """The calibration round (per-hop seconds) with the smallest p95. On the shared 2-core machine back-to-back
    rounds of 24 hops differ by up to 1.6x at p50 and 1.9x at p95 with nothing else running (the machine's own
    speed moves): budgets from one round ranged 42-81 ms (31 rounds), from the quietest of three 42-51 ms (10
    draws; ``python benchmarks/calibration_spread.py --rounds 30``, BENCHMARKS.md, "Start-up calibration")."""
    if not rounds:
        raise ValueError("no calibration rounds")
    return min(rounds, key=lambda r: float(np.percentile(np.asarray(r, dtype=float), 95)))


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
        self.latency_s = engine.latency_for(len(engine.sessions) + 1)  # fixed for the session's lifetime
        self.closed = False
        self.audio_from = 0  # FIFO index of the first frame's audio (silence before it)
        self.decode_s = 0.0  # transport decode seconds of the frames featurised since the last hop
        self.stream: StreamState | None = None  # created at the first frame: its capture time is t0
        self.resampler = PolyphaseResampler(g.model_sample_rate, g.output_sample_rate)
        self.out_offset = 0  # FIFO index of the resampler's output 0
        self.skipped_hops = 0
        # Seconds by which the transport now puts the first frame's capture earlier than the time it was
        # pushed with (webrtc.CaptureTimeMapper.revision_s: a late first frame); set by the ingest.
        self.first_capture_revision_s = 0.0
        self._engine = engine

    @property
    def first_frame_anchor(self) -> float | None:
        """Clock time at which the pacer plays the audio standing for the first frame's capture (minus the held
        crossfade) on the session's timeline, where every frame's audio plays at its capture time + latency;
        None before the first frame. On the shared hop grid FIFO sample 0 stands for the grid point up to a
        hop earlier, ``audio_from`` samples before the first frame. A first frame that arrived late was pushed
        with a late capture time; later frames are mapped right, so the timeline holds its capture
        ``first_capture_revision_s`` earlier (the latency every later frame gets, not the first frame's own)."""
        if self.pacer.anchor is None:
            return None
        rate = self._engine.generator.geometry.output_sample_rate
        return self.pacer.anchor + self.audio_from / rate - self.first_capture_revision_s

    def push_frame(self, frame: VideoFrame) -> None:
        """Non-blocking; the newest frames win."""
        self.frames.put(frame, frame.capture_time)
        engine = self._engine
        if self.stream is None:
            gen = engine.generator
            start = frame.capture_time
            if engine.config.align_hops:
                start = hop_grid_start(start, gen.geometry.hop_duration_s)
            self.stream = gen.new_stream(start_time=start, seed=self.seed)
            g = gen.geometry
            self.audio_from = round((frame.capture_time - start) * g.output_sample_rate)
            delay_s = gen.stream_delay_samples / g.model_sample_rate
            self.pacer.set_anchor(start + self.latency_s - delay_s)
        if engine.config.features_on_arrival:
            engine.worker.poke()

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
            self._run_batch, max_batch=config.max_batch, max_pending=1,
            idle=self._idle_features if config.features_on_arrival else None,
        )
        self._ids = itertools.count()
        self._hop_listeners: list[HopListener] = []
        self._feature_s_per_frame = 0.0  # running estimate, for keeping idle work clear of due hops
        self.idle_feature_s: deque[float] = deque(maxlen=config.timing_history)  # off-path feature calls
        self.calibration_s: list[float] = []  # measured seconds per calibration hop at batch 1 (warm-up left out)
        self.batch_calibration_s: dict[int, list[float]] = {}  # the same per calibrated batch size
        fixed = config.compute_budget_s if config.compute_budget_s is not None else 0.0
        self._budgets: dict[int, float] = {1: fixed}
        if config.compute_budget_s is None and config.latency_s is None:
            for batch in sorted({1, min(max(2, config.budget_sessions), config.max_batch)}):
                samples = self._quiet_calibration(batch)
                self.batch_calibration_s[batch] = samples
                self._budgets[batch] = budget_from_samples(samples, margin=config.budget_margin,
                                                           floor_s=config.budget_floor_s)
            self.calibration_s = self.batch_calibration_s[1]
        elif config.warm_up:
            self.warm_up()

    def warm_up(self) -> None:
        """Run the warm-up hops calibration would run, at batch 1 and timing nothing: first-call overheads
        (the script backend's trace, about 0.2-0.5 s; lazy allocations) happen here, not in a live session's
        first hop. Calibration warms as it measures; a fixed latency or budget skips it, hence this (a first
        live hop that traced ran 0.2 s late: CI underruns in tests/streaming/test_server.py)."""
        warm = max(1, self.config.calibration_warmup)
        self.calibrate(hops=warm + 1, batch=1, warmup=warm)

    @property
    def compute_budget_s(self) -> float:
        """The compute budget of a batch of ``budget_sessions`` hops (the one :attr:`latency_budget` holds)."""
        return self.compute_budget_for(self.config.budget_sessions)

    def compute_budget_for(self, sessions: int) -> float:
        """Compute budget of one batched hop of ``sessions`` sessions (at least ``budget_sessions``)."""
        return batch_budget(self._budgets, max(sessions, self.config.budget_sessions))

    def _quiet_calibration(self, batch: int) -> list[float]:
        """The quietest (:func:`quietest_round`) of ``calibration_rounds`` calibration rounds, fewer once
        ``calibration_max_s`` has passed (at least one): a burst of other work during start-up (seen here: one
        round's p95 at 100x its median) or a slow spell of the machine would otherwise set every session's
        latency."""
        cfg, t0, rounds = self.config, time.perf_counter(), []
        while not rounds or (len(rounds) < cfg.calibration_rounds
                             and time.perf_counter() - t0 < cfg.calibration_max_s):
            rounds.append(self.calibrate(hops=cfg.calibration_hops, batch=batch, warmup=cfg.calibration_warmup))
        return list(quietest_round(rounds))

    @property
    def latency_budget(self) -> LatencyBudget:
        """The default latency by part (see :class:`LatencyBudget`): that of a session opened while at most
        ``budget_sessions`` are open."""
        return self.latency_budget_for(self.config.budget_sessions)

    def latency_budget_for(self, sessions: int) -> LatencyBudget:
        """The latency by part of a session opened when ``sessions`` sessions (itself included) are open."""
        g, cfg = self.generator.geometry, self.config
        held = self.generator.stream_delay_samples + PolyphaseResampler(
            g.model_sample_rate, g.output_sample_rate
        ).lookahead_input_samples
        frame_interval = 1.0 / g.frame_rate
        wait = frame_interval if cfg.frame_grace_s is None else min(frame_interval, cfg.frame_grace_s + cfg.poll_s)
        return LatencyBudget(hop=g.hop_duration_s, held=held / g.model_sample_rate, video_wait=wait,
                             output_frame=g.output_frame_s, compute=self.compute_budget_for(sessions))

    @property
    def latency_s(self) -> float:
        """Capture time -> play time: the config's ``latency_s``, else :attr:`latency_budget`'s total."""
        return self.latency_for(self.config.budget_sessions)

    def latency_for(self, sessions: int) -> float:
        """Latency of a session opened when ``sessions`` sessions (itself included) are open."""
        if self.config.latency_s is not None:
            return self.config.latency_s
        return self.latency_budget_for(sessions).total

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
        leave no trace (their extractor state is forgotten). With ``features_on_arrival`` each hop's frames but
        the newest are featurised before the clock starts, as live frames are between hops."""
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
                for s in scratch:
                    for i, t in enumerate(times):
                        s.push_frame(VideoFrame(CalibrationFrame.noise(str(s.id), size, rng), t))
                        if self.config.features_on_arrival and i == len(times) - 2:
                            self._featurize([s])  # off the clock: done between hops when live
                jobs = [_HopJob(s) for s in scratch]
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
        session = self.sessions.pop(session_id, None)
        if session is not None:
            session.closed = True  # the worker featurises no more of its frames
        self._forget(session_id)
        self.worker.forget(session_id)

    def _forget(self, session_id: Hashable) -> None:
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
            jobs.append(_HopJob(session))
        if not jobs:
            return 0
        submitted = self.clock.now()
        futures = self.worker.submit_many([(job.session.id, job) for job in jobs])
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        end = self.clock.now()
        g = self.generator.geometry
        fade = round(g.crossfade_samples * g.output_sample_rate / g.model_sample_rate)
        for job, result in zip(jobs, results, strict=True):
            s, samples = job.session, result.samples
            if s.audio_from > 0 and result.at < s.audio_from + fade:  # hops before and at the first frame
                samples = fade_in_from(samples, result.at, s.audio_from, fade)
            s.fifo.write(samples, at=result.at)
            s.timings.append(result.timings)
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
    def _featurize(self, sessions: Sequence[EngineSession], *, next_hop_only: bool = False) -> float:
        """Features of every frame waiting in these sessions' buffers (``next_hop_only``: of those captured
        before the end of the session's next hop), in one extractor call, appended to their tracks in capture
        order. Runs on the worker thread only (or before the worker has sessions), so tracks and per-session
        extractor state are touched by one thread at a time. Returns seconds spent."""
        g = self.generator.geometry

        def horizon(s: EngineSession) -> float | None:
            return s.stream.hop_end_time(g) if next_hop_only and s.stream is not None else None

        taken = [(s, s.frames.drain(horizon(s))) for s in sessions if not s.closed]
        taken = [(s, items) for s, items in taken if items]
        frames = [f for _, items in taken for _, f in items]
        if not frames:
            return 0.0
        t0 = time.perf_counter()
        feats = self.features([f.pixels for f in frames]).detach().float().cpu()  # (N, D)
        if self.generator.device.type == "cuda":
            torch.cuda.synchronize(self.generator.device)
        spent = time.perf_counter() - t0
        for (s, items), part in zip(taken, feats.split([len(items) for _, items in taken]), strict=True):
            s.track.append([t for t, _ in items], part)
            s.decode_s += sum(f.decode_s for _, f in items)
            if s.closed:  # closed while its features were computed: drop the state that call re-created
                self._forget(s.id)
        per_frame = spent / len(frames)
        self._feature_s_per_frame = per_frame if not self._feature_s_per_frame else (
            0.8 * self._feature_s_per_frame + 0.2 * per_frame)
        return spent

    def _idle_features(self) -> None:
        """Between hops: featurise frames that arrived, unless that could still be running when the next hop
        on the shared grid falls due (then the hop does it, and no due hop waits behind idle work)."""
        sessions = [s for s in list(self.sessions.values()) if len(s.frames)]
        if not sessions:
            return
        cfg, g = self.config, self.generator.geometry
        if cfg.align_hops:
            now = self.clock.now()
            pending = sum(len(s.frames) for s in sessions)
            due = next_due_time(now, g.hop_duration_s, cfg.frame_grace_s or 0.0)
            if now + 1.5 * self._feature_s_per_frame * pending > due:
                return
        # Only frames the next hop reads: frames further ahead mean generation is behind (a burst, or a flood
        # of stale video), where latest-wins should trim them rather than the worker spend time on each.
        self.idle_feature_s.append(self._featurize(sessions, next_hop_only=True))

    def _run_batch(self, jobs: list[_HopJob]) -> list[_HopResult]:
        """All model work for one batch of hops (runs on the inference thread only)."""
        times: dict[str, float] = {}
        spent = self._featurize([job.session for job in jobs])  # frames not featurised between hops
        if spent:
            times["features"] = spent
        decode = 0.0
        for job in jobs:
            decode, job.session.decode_s = decode + job.session.decode_s, 0.0
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
