"""Audio/video sync through the real WebRTC path with the shipped model (issue 4, section 5, first test).

An aiortc client on 127.0.0.1 (no ICE servers) sends a test-split world clip at 30 fps; the server runs the
shipped model (``frieren_rt/weights``); the client records the audio that comes back with each 20 ms frame's
arrival time. Each event of the clip, shown on frame k, should sound at
``capture(k) + latency_s + transport``:
``latency_s`` is the server's reported capture -> send latency, ``transport`` the loopback path it does not
cover (video decode, Opus, the client's one-frame jitter buffer), fitted as the median offset and bounded.

The check (helpers in frieren_rt.streaming.latency): onsets found in the received audio by the offline
evaluation's detector (frieren_rt.eval.onsets), matched one-to-one to the events' expected times; an event
passes when its offset from the fitted transport is inside EBU R37 (sound at most 40 ms early, 60 ms late;
../shared/reference/streaming.md "Audio/video sync tolerances").

Why a fraction, and why MIN_MATCHED: the detector finds only ~77 % of the onsets even in the clips' TRUE audio
(quiet effects are masked by louder ones; frieren_rt/eval/onsets.py) and the model's offline onset F1 is
0.57-0.64 at +-40 ms, so "every event" would fail on a perfect transport. Chance is what the threshold must
beat: the model sounds ~1.5-2 onsets per second, so a wrong event list still lands ~20 % of its events inside
the 100 ms window. Measured on this clip (11 events, shipped model): the same received audio against the
true events shifted by 0.3-2 s (median offset refitted each time) matched 20-22 % on average, at most 5 of 11;
the mismatched clip's events (second test) 0-1 of 10; the true events 7-9 of 11. MIN_MATCHED = 0.5 (6 of 11)
sits between; in addition the median residual of the matched events must lie inside ATSC IS-191 (-15/+45 ms).

Clip rule (no cherry-picking): the first seed from TEST_SEED0 whose CLIP_S clip has at least MIN_EVENTS
*separable* events: no other event within SEPARATION_S (the detector keeps one onset per 200 ms), at least
WARMUP_S after the start (the stream's first window has no history) and END_S before the end (the last hop
never falls due: no later frame covers it). That is seed 200000 (11 events); the mismatched clip is the next
seed that qualifies (200002, 10 events).

Measured (shipped weights of 2026-11-26 12:00, variant "single", default hop 92.9 ms, 1 torch thread, this
2-core CPU with two training jobs running; ``pytest -s`` prints them), five runs: reported latency 196-200 ms,
fitted transport 23-31 ms, matched 0.64 / 0.64 / 0.73 / 0.82 / 0.73, matched residuals -11..+31 ms (median
0-4 ms), mismatched clip 0.00-0.10; 24-27 s per run. The run folder's "distill" variant (two-pass CFG) matched
0.73-0.82. The previous shipped weights (a6fdb26) failed: fitted transport -180 ms. The weights of 2026-11-26
20:35 (runs/small11, event gate on), one quiet run: latency 198 ms, transport 34 ms, matched 0.91, mismatched
clip 0.00; with the per-class gate holds: 204 ms, 33 ms, 0.73, 0.00. runs/small13 (shipped 2026-11-27), one
run: 240 ms, 30 ms, matched 1.00 (11 of 11), mismatched clip 0.00. runs/small18 (shipped later that day), one
run: 195 ms, 32 ms, matched 1.00 (11 of 11), mismatched clip 0.10. runs/small14 (shipped 2026-11-27 06:00), one
run: 196 ms, 30 ms, matched 0.91 (10 of 11), mismatched clip 0.00. runs/small19 (shipped 2026-11-27 09:00), one
run: 198 ms, 26 ms, matched 0.91 (10 of 11), mismatched clip 0.00.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from frieren_rt.streaming.latency import event_offsets, fraction_within, onset_play_times
from tests.world.conftest import requires_assets

FPS = 30
TEST_SEED0 = 200_000  # the world's test split starts here (frieren_rt.world)
CLIP_S = 16.0
MIN_EVENTS = 10
SEPARATION_S = 0.25
WARMUP_S = 1.0
END_S = 0.5
EARLY_S, LATE_S = 0.040, 0.060  # EBU R37: no event's sound outside it
ATSC_EARLY_S, ATSC_LATE_S = 0.015, 0.045  # ATSC IS-191: where the typical (median) matched event must sit
SEARCH_S = 0.25  # an onset further than this from an event's expected time is no match at all
MIN_MATCHED = 0.5
TRANSPORT_S = (0.0, 0.15)  # loopback transport beyond the reported latency (test_server: below 0.4 s)


def separable_events(events, duration: float) -> list:
    """The events the check uses (see the module docstring), in time order."""
    times = np.asarray([e.time for e in events], dtype=np.float64)
    return sorted((e for e in events if np.count_nonzero(np.abs(times - e.time) < SEPARATION_S) == 1
                   and WARMUP_S <= e.time <= duration - END_S), key=lambda e: e.time)


def qualifying_seeds(count: int, duration: float = CLIP_S):
    """The first ``count`` (seed, clip) of the test split with >= MIN_EVENTS separable events."""
    from frieren_rt.world import render_clip  # noqa: PLC0415

    out, seed = [], TEST_SEED0
    while len(out) < count:
        clip = render_clip(seed, duration=duration)
        if len(separable_events(clip.events, duration)) >= MIN_EVENTS:
            out.append((seed, clip))
        seed += 1
    return out


def sync_clip():
    """The clip both sync tests send (the browser test, tests/streaming/test_browser.py, too)."""
    return qualifying_seeds(1)[0][1]


@dataclass(frozen=True)
class SyncCheck:
    """One clip's events against received onsets. offsets (E,): onset minus ``capture + latency``, NaN where
    unmatched; transport_s: their median; residual (E,): offsets minus transport_s."""

    offsets: np.ndarray
    transport_s: float

    @property
    def residual(self) -> np.ndarray:
        return self.offsets - self.transport_s

    @property
    def matched(self) -> float:
        return fraction_within(self.residual, EARLY_S, LATE_S)

    @property
    def median_matched_s(self) -> float:
        """Median residual of the events inside EBU R37 (NaN when none)."""
        r = self.residual
        inside = r[(r >= -EARLY_S) & (r <= LATE_S)]
        return float(np.median(inside)) if len(inside) else float("nan")


def check_events(onsets: np.ndarray, expected: np.ndarray, transport_s: float | None = None, *,
                 search_s: float = SEARCH_S) -> SyncCheck:
    """``expected`` (E,) = capture + reported latency; ``transport_s`` None: fitted as the median offset."""
    offsets = event_offsets(onsets, expected, search_s)
    if transport_s is None:
        transport_s = float(np.nanmedian(offsets)) if np.isfinite(offsets).any() else float("nan")
    return SyncCheck(offsets, transport_s)


def shipped_engine(hop_s: float | None = None):
    """The shipped model (frieren_rt/weights, the best variant present: pipeline.resolve_weights) with the
    server's default options; ``hop_s`` None: the default hop (92.9 ms)."""
    from frieren_rt.streaming.builders import EngineOptions, build_engine  # noqa: PLC0415

    return build_engine(None, EngineOptions() if hop_s is None else EngineOptions(hop_s=hop_s))


@contextlib.contextmanager
def cli_threads():
    """One torch thread, as ``frieren-rt serve`` runs on <= 2 cores (frieren_rt/cli/serve.py)."""
    import torch  # noqa: PLC0415

    before = torch.get_num_threads()
    torch.set_num_threads(1 if (os.cpu_count() or 1) <= 2 else before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


async def stream_clip(frames: np.ndarray, engine: Callable = shipped_engine, tail_s: float = 0.6):
    """Send ``frames`` once through the server on loopback.

    Returns (received audio, capture times (N,), reported latency_s)."""
    from frieren_rt.streaming import client  # noqa: PLC0415
    from frieren_rt.streaming.server import ServerConfig, bound_port, create_app, start  # noqa: PLC0415

    app = create_app(ServerConfig(port=0), engine=engine)
    runner = await start(app, "127.0.0.1", 0)
    try:
        pub = await client.publish_offer(f"http://127.0.0.1:{bound_port(runner)}", frames, FPS)
        pub.video.loop = False
        await asyncio.sleep(len(frames) / FPS + pub.info["latency_s"] + tail_s)
        await pub.close()
    finally:
        await runner.cleanup()
    return pub.recorder.received(), np.asarray(pub.video.capture_times), float(pub.info["latency_s"])


def expected_times(events, captures: np.ndarray, latency_s: float) -> np.ndarray:
    return np.asarray([captures[e.frame] for e in events]) + latency_s


@pytest.fixture(scope="module")
def session():
    """One streamed session of the sync clip (shared by both tests: the model run is the slow part)."""
    (_, clip), (_, other) = qualifying_seeds(2)
    with cli_threads():
        audio, captures, latency_s = asyncio.run(stream_clip(clip.frames))
    onsets = onset_play_times(audio)
    truth = check_events(onsets, expected_times(separable_events(clip.events, CLIP_S), captures, latency_s))
    print(f"\nsync: latency {1000 * latency_s:.0f} ms, transport {1000 * truth.transport_s:.0f} ms, "
          f"offsets-transport ms {np.round(1000 * truth.residual).tolist()}, matched {truth.matched:.2f}")
    return onsets, captures, latency_s, truth, separable_events(other.events, CLIP_S)


@pytest.mark.slow
@requires_assets
def test_received_onsets_follow_the_clips_events_within_ebu_r37_after_the_reported_latency(session) -> None:
    _, _, _, truth, _ = session
    lo, hi = TRANSPORT_S
    assert lo <= truth.transport_s <= hi, truth  # the reported latency accounts for all but the transport
    assert truth.matched >= MIN_MATCHED, np.round(1000 * truth.residual)
    assert -ATSC_EARLY_S <= truth.median_matched_s <= ATSC_LATE_S, np.round(1000 * truth.residual)


@pytest.mark.slow
@requires_assets
def test_the_same_check_fails_on_another_clips_events(session) -> None:
    onsets, captures, latency_s, truth, other = session
    wrong = check_events(onsets, expected_times(other, captures, latency_s), truth.transport_s)
    print(f"mismatched clip: matched {wrong.matched:.2f}, ms {np.round(1000 * wrong.residual).tolist()}")
    assert wrong.matched < MIN_MATCHED


def test_onset_play_times_find_noise_bursts_on_the_client_clock_and_match_them_one_to_one() -> None:
    """The check's own parts on synthetic audio (no model, no network): bursts at known play times."""
    from frieren_rt.streaming.latency import ReceivedAudio  # noqa: PLC0415

    rate, frame, t0 = 48000, 960, 100.0
    bursts = np.asarray([0.5, 1.3, 2.1, 2.9])  # seconds from sample 0
    x = np.zeros(int(3.5 * rate), np.float32)
    rng = np.random.default_rng(0)
    for b in bursts:
        i = round(b * rate)
        x[i : i + 2400] = 0.5 * rng.standard_normal(2400) * np.exp(-np.arange(2400) / 600)
    audio = ReceivedAudio(x, t0 + np.arange(len(x) // frame + 1) * frame / rate, rate=rate, frame=frame)
    onsets = onset_play_times(audio)
    assert np.abs(onsets - (t0 + bursts)).max() < 0.010
    offsets = event_offsets(onsets, t0 + np.asarray([0.52, 1.3, 1.31, 4.0]), search_s=0.25)
    assert np.allclose(offsets[:2], [-0.02, 0.0], atol=0.010)
    assert np.isnan(offsets[2]) and np.isnan(offsets[3])  # 1.3's onset is taken; nothing near 4.0
    assert fraction_within(offsets, EARLY_S, LATE_S) == 0.5
    assert fraction_within(offsets + 0.07, EARLY_S, LATE_S) == 0.25  # ~67 ms late is outside EBU R37
