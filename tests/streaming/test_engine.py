"""The engine end to end on a fake clock with tiny stand-in stages."""

import asyncio

import numpy as np
import torch

from frieren_rt.streaming import Engine, EngineConfig, EngineSession, ManualClock, VideoFrame
from frieren_rt.windowing import StreamGeometry
from tests.windowing.standins import BatchSpy, make_generator, tiny_vector_field

FPS = 30.0
D = 16
_PROJ = torch.randn(3, D, generator=torch.Generator().manual_seed(7))


def _features(frames: list) -> torch.Tensor:
    """Stand-in image encoder: mean colour of each frame through a fixed projection. (N, D)."""
    colours = torch.tensor(np.stack([f.reshape(-1, 3).mean(0) for f in frames]), dtype=torch.float32)
    return colours @ _PROJ


def _frame(i: int) -> np.ndarray:
    return np.full((4, 4, 3), np.sin(i / 7.0), dtype=np.float32) + np.arange(3, dtype=np.float32)


def _make_engine(spy: BatchSpy, **cfg: object) -> tuple[Engine, ManualClock]:
    clock = ManualClock(0.0, auto_advance=True)
    engine = Engine(
        generator=make_generator(spy), features=_features, clock=clock, config=EngineConfig(feature_dim=D, **cfg)
    )
    return engine, clock


async def _drive(engine: Engine, clock: ManualClock, sessions: list[EngineSession], seconds: float,
                 step_every: int = 1) -> dict:
    """Every 20 ms of clock: pull one audio frame per session, push the frames captured so far, and (every
    ``step_every`` ticks) let the engine generate every due hop."""
    out: dict = {s.id: [] for s in sessions}
    next_frame = 0
    for n in range(round(seconds / 0.02)):
        for s in sessions:
            out[s.id].append(await s.recv_audio())
        while next_frame / FPS <= clock.now() + 1e-9:
            for s in sessions:
                s.push_frame(VideoFrame(_frame(next_frame), next_frame / FPS, decode_s=0.001))
            next_frame += 1
        if n % step_every == 0:
            while await engine.step():
                pass
    return out


def _assert_continuous(frames: list) -> None:
    first = next(i for i, f in enumerate(frames) if f.samples.any())
    assert not any(f.silent for f in frames[first:]), "an underrun after audio started"
    audio = np.concatenate([f.samples for f in frames[first + 1 :]])
    assert np.abs(audio).max() > 0
    assert np.abs(np.diff(audio)).max() < 0.5 * np.abs(audio).max()  # no click or gap to zero


def test_sessions_due_together_share_one_batched_forward_and_play_continuously() -> None:
    spy = BatchSpy(tiny_vector_field(raw_dim=D))
    engine, clock = _make_engine(spy)
    sessions = [engine.open_session(f"s{i}") for i in range(3)]
    try:
        out = asyncio.run(_drive(engine, clock, sessions, 2.0))
    finally:
        engine.close()
    assert spy.batch_sizes and set(spy.batch_sizes) == {3}  # one forward pass of one model for 3 sessions
    assert set(engine.worker.batch_sizes) == {3}
    g = engine.generator.geometry
    for s in sessions:
        stats = s.stats()
        assert stats.hops >= int((2.0 - 0.1) / g.hop_duration_s) - 1
        assert stats.underruns == 0 and stats.late_samples == 0 and stats.skipped_hops == 0
        assert stats.frames_dropped == 0
        _assert_continuous(out[s.id])
        t = s.timings[-1]
        assert t.batch_size == 3 and t.vector_field > 0 and t.vocoder > 0 and t.resample > 0
        assert t.video_decode > 0 and t.features > 0
    assert not np.allclose(out["s0"][-1].samples, out["s1"][-1].samples)  # own noise per session


def test_audio_starts_at_the_reported_latency_after_the_first_frame() -> None:
    engine, clock = _make_engine(BatchSpy(tiny_vector_field(raw_dim=D)))
    session = engine.open_session()
    try:
        out = asyncio.run(_drive(engine, clock, [session], 1.0))
    finally:
        engine.close()
    g = engine.generator.geometry
    expected = engine.latency_s - g.crossfade_s  # FIFO sample 0 is timeline sample -crossfade
    first = next(i for i, f in enumerate(out[session.id]) if f.samples.any())
    assert first == int(expected / 0.02)  # the frame containing the anchor
    assert 0.3 < engine.latency_s < 0.45


def test_a_slow_consumer_drops_stale_video_but_never_audio_continuity() -> None:
    spy = BatchSpy(tiny_vector_field(raw_dim=D))
    engine, clock = _make_engine(spy, latency_s=1.0)
    session = engine.open_session()
    try:
        out = asyncio.run(_drive(engine, clock, [session], 3.0, step_every=25))  # wakes every 0.5 s
    finally:
        engine.close()
    stats = session.stats()
    assert stats.frames_dropped > 0  # latest-wins: 15 frames per wake-up, room for fewer
    assert stats.skipped_hops == 0 and stats.underruns == 0 and stats.late_samples == 0
    assert max(spy.batch_sizes) == 1
    _assert_continuous(out[session.id])


def test_a_session_too_far_behind_skips_ahead_instead_of_lagging_for_ever() -> None:
    engine, clock = _make_engine(BatchSpy(tiny_vector_field(raw_dim=D)), max_lag_hops=2)
    session = engine.open_session()
    try:
        for i in range(40):  # 1.3 s of video arrives before the engine runs at all
            session.push_frame(VideoFrame(_frame(i), i / FPS))
        assert asyncio.run(engine.step()) == 1
    finally:
        engine.close()
    stats = session.stats()
    assert stats.skipped_hops == session.stream.next_hop - 1 and stats.skipped_hops >= 4
    assert session.fifo.end > 0
