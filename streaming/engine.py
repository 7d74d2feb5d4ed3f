"""The streaming engine: per session, frames with capture times in, paced 20 ms 48 kHz audio out.

Flow per session: ``push_frame`` (latest-wins buffer) -> when video covers the next hop, the engine submits
the hop to the inference worker together with every other session due at the same moment -> on the worker
thread: features for the new frames, one batched windowed generation, decode, crossfade, resample to 48 kHz
-> back on the event loop the samples go into the session's FIFO at their absolute index -> ``recv_audio``
paces them out. Capture times must be on the engine's clock (the transport maps arrival/pts onto it).

Latency is fixed by construction (../shared/reference/streaming.md, "Audio/video sync tolerances"): FIFO
sample 0 plays at ``start + latency - crossfade``, so audio for capture time t plays at ``t + latency``;
anything later than that is dropped and shows as an underrun instead of growing the delay.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
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

__all__ = ["VideoFrame", "EngineConfig", "EngineSession", "Engine", "SessionStats"]


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
    hop's work inside the latency. max_lag_hops: a session further behind than this skips to the newest hop
    (restarting its continuity with a fade-in) rather than falling behind for ever."""

    feature_dim: int
    max_batch: int = 8
    compute_budget_s: float = 0.1
    latency_s: float | None = None
    frame_slack: int = 4
    fifo_s: float = 2.0
    max_lag_hops: int = 4
    timing_history: int = 512


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
        return hops_due(self.stream.next_hop, self.frames.newest_time, self.stream.start_time, g)

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

    @property
    def latency_s(self) -> float:
        """Capture time -> play time. Default: one hop, the held-back crossfade and resampler look-ahead, one
        frame interval (a hop is due only once a later frame arrives), one output frame, the compute budget."""
        if self.config.latency_s is not None:
            return self.config.latency_s
        g = self.generator.geometry
        held = self.generator.stream_delay_samples + PolyphaseResampler(
            g.model_sample_rate, g.output_sample_rate
        ).lookahead_input_samples
        return (
            g.hop_duration_s
            + held / g.model_sample_rate
            + 1.0 / g.frame_rate
            + g.output_frame_s
            + self.config.compute_budget_s
        )

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
        futures = self.worker.submit_many([(job.session.id, job) for job in jobs])
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        for job, result in zip(jobs, results, strict=True):
            job.session.fifo.write(result.samples, at=result.at)
            job.session.timings.append(result.timings)
        return len(jobs)

    async def run(self, *, poll_s: float = 0.005) -> None:
        """Step whenever hops are due, until cancelled."""
        while True:
            if await self.step() == 0:
                await self.clock.sleep_until(self.clock.now() + poll_s)

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
