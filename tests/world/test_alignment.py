"""Every event's sound starts at its frame's time and its cause first appears in that frame.

Counterfactual check: render the clip with one event removed. Frames before the event's frame and audio before
its onset sample must be identical; the event's frame must differ and the audio must differ within one audio
frame (256 samples, the vocoder hop) of the onset.
"""

import numpy as np
import pytest

from tests.world.conftest import requires_assets

pytestmark = requires_assets
HOP = 256


@pytest.mark.parametrize("seed", [2, 22, 28])  # together these cover all 11 classes
def test_event_onsets_align_in_picture_and_sound(seed):
    from frieren_rt.world.config import WorldConfig
    from frieren_rt.world.render import mix_audio, render_frames
    from frieren_rt.world.scene import plan_clip
    from frieren_rt.world.sound_pool import load_pool

    cfg = WorldConfig(duration=5.0)
    pool = load_pool(cfg.sample_rate)
    scene = plan_clip(seed, cfg, pool=pool)
    assert scene.events
    all_ids = frozenset(e.id for e in scene.events)
    frames, audio = render_frames(scene), mix_audio(scene, pool)
    for e in scene.events:
        live = all_ids - {e.id}
        f2, a2 = render_frames(scene, live), mix_audio(scene, pool, live)
        onset = cfg.frame_sample(e.frame)
        assert np.array_equal(frames[: e.frame], f2[: e.frame]), f"{e.cls} changes the picture early"
        assert not np.array_equal(frames[e.frame], f2[e.frame]), f"{e.cls} not visible at its frame"
        diff = np.abs(audio - a2)
        assert not diff[:onset].any(), f"{e.cls} sounds before its frame"
        assert diff[onset: onset + HOP].any(), f"{e.cls} silent in the first audio frame after its onset"
        if e.cls == "engine":  # sound exactly while the flame is visible
            end = cfg.frame_sample(e.frame + round(e.duration * cfg.fps))
            assert not diff[end:].any()


@pytest.mark.parametrize("seed", [22, 28])  # seed 2 has no pickups in 5 s
def test_a_pickups_sparkle_shows_on_its_own_frame(seed):
    """The item is picked up at the walker's centre; its sparkle must not be hidden behind the walker on the
    pickup frame (it was: about 1 pixel changed there, and the event detector found 9 % of coin pickups)."""
    from frieren_rt.world.config import WorldConfig
    from frieren_rt.world.render import render_frames
    from frieren_rt.world.scene import plan_clip
    from frieren_rt.world.sound_pool import load_pool

    cfg = WorldConfig(duration=5.0)
    scene = plan_clip(seed, cfg, pool=load_pool(cfg.sample_rate))
    pickups = [e for e in scene.events if e.cls in ("coin", "powerup")]
    assert pickups
    frames, ids = render_frames(scene), frozenset(e.id for e in scene.events)
    for e in pickups:
        without = render_frames(scene, ids - {e.id})[e.frame].astype(int)
        changed = int((np.abs(frames[e.frame].astype(int) - without).sum(-1) > 30).sum())
        assert changed >= 10, f"{e.cls} at frame {e.frame}: only {changed} pixels show it"
