"""render_clip: determinism by seed, splits, held-out variants, shapes, and silent stretches."""

import numpy as np
import pytest

from tests.world.conftest import requires_assets

pytestmark = requires_assets


@pytest.fixture(scope="module")
def clips():
    from frieren_rt.world.clip import render_clip

    return {s: render_clip(s, duration=4.0) for s in (7, 8)} | {"7b": render_clip(7, duration=4.0)}


def test_same_seed_gives_identical_frames_audio_and_events(clips):
    a, b = clips[7], clips["7b"]
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.audio, b.audio)
    assert a.events == b.events


def test_different_seed_differs(clips):
    assert not np.array_equal(clips[7].frames, clips[8].frames)
    assert not np.array_equal(clips[7].audio, clips[8].audio)


def test_clip_shapes_and_types(clips):
    c = clips[7]
    assert c.frames.dtype == np.uint8 and c.frames.shape == (120, 120, 160, 3)
    assert c.audio.dtype == np.float32 and c.audio.shape == (round(4.0 * 22050),)
    assert c.fps == 30 and c.sample_rate == 22050 and c.duration == pytest.approx(4.0)
    assert np.abs(c.audio).max() <= 1.0
    for e in c.events:
        assert e.time == pytest.approx(e.frame / c.fps) and 0 < e.loudness <= 1


def test_silent_spans_are_exactly_silent():
    from frieren_rt.world.clip import render_clip

    found = 0
    for seed in range(20, 26):
        c = render_clip(seed, duration=6.0)
        for a, b in c.silent_spans:
            seg = c.audio[round(a * c.sample_rate): round(b * c.sample_rate)]
            assert seg.size and not seg.any(), (seed, a, b)
            assert not any(a <= e.time < b for e in c.events)
            found += 1
    assert found > 0


def test_split_follows_seed_and_train_never_draws_held_out_sounds():
    from frieren_rt.world.clip import render_clip
    from frieren_rt.world.config import split_of
    from frieren_rt.world.sound_pool import held_out_ids

    assert (split_of(0), split_of(100_000), split_of(200_500)) == ("train", "val", "test")
    with pytest.raises(ValueError, match="no split"):
        split_of(150_000)
    held = set(held_out_ids())
    assert held
    used_train = {e.sound for s in range(30, 40) for e in render_clip(s, duration=4.0).events}
    assert not used_train & held
    assert render_clip(100_001, duration=1.0).split == "val"


def test_at_least_ten_event_classes_occur():
    from frieren_rt.world.clip import render_clip
    from frieren_rt.world.events import EVENT_CLASSES

    seen = {e.cls for s in range(40, 52) for e in render_clip(s, duration=5.0).events}
    assert len(EVENT_CLASSES) >= 10 and seen == set(EVENT_CLASSES)
