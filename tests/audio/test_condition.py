"""frieren_rt.audio.condition: the detector's posteriors on the vocoder's mel frames."""

from __future__ import annotations

import pytest
import torch

from frieren_rt.audio.condition import condition_channels, event_condition, mel_frame_times, with_condition
from frieren_rt.audio.hifigan import HifiganGenerator
from frieren_rt.audio.student_vocoder import build_student


def _posteriors(frames: int, onsets: dict[int, int], classes: int = 3) -> torch.Tensor:
    """(frames, classes + 1) softmax rows: "no event" everywhere but at each onset frame -> its class."""
    p = torch.zeros(frames, classes + 1)
    p[:, -1] = 1.0
    for frame, cls in onsets.items():
        p[frame] = 0.0
        p[frame, cls] = 1.0
    return p


def test_mel_frame_times_are_the_centres_of_hifigans_padded_windows() -> None:
    t = mel_frame_times(3, first=10)
    assert torch.allclose(t, (torch.tensor([10.0, 11.0, 12.0], dtype=torch.float64) + 0.5) * 256 / 22050)


def test_each_mel_frame_reads_the_video_frame_on_screen_with_p_event_and_a_decaying_class_hold() -> None:
    fps = 30.0
    post = _posteriors(30, {10: 2})
    frame_ts = torch.arange(30, dtype=torch.float64) / fps
    mel_times = torch.tensor([5 / fps + 0.001, 10 / fps + 0.001, 10.99 / fps, 11 / fps + 0.001, 14 / fps + 0.001],
                             dtype=torch.float64)
    cond = event_condition(post, frame_ts, mel_times, decay=0.5)
    assert cond.shape == (condition_channels(3), 5)
    assert torch.equal(cond[0], torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0]))  # P(event) of the frame on screen only
    assert torch.allclose(cond[3], torch.tensor([0.0, 1.0, 1.0, 0.5, 0.5**4]))  # class 2 held, halving per frame
    assert torch.equal(cond[1:3], torch.zeros(2, 5))  # the other classes: nothing
    before = event_condition(post, frame_ts + 1.0, torch.tensor([0.0], dtype=torch.float64), decay=0.5)
    assert torch.equal(before, event_condition(post, frame_ts, torch.tensor([0.0], dtype=torch.float64), decay=0.5))


def test_the_hold_is_causal_a_later_onset_changes_nothing_before_it() -> None:
    frame_ts = torch.arange(20, dtype=torch.float64) / 25.0
    mel_times = mel_frame_times(60)
    a = event_condition(_posteriors(20, {4: 0}), frame_ts, mel_times)
    b = event_condition(_posteriors(20, {4: 0, 15: 1}), frame_ts, mel_times)
    early = mel_times < 15 / 25.0
    assert torch.equal(a[:, early], b[:, early]) and not torch.equal(a, b)


def test_a_mismatched_posterior_and_time_count_is_refused() -> None:
    with pytest.raises(ValueError, match="frame times"):
        event_condition(torch.zeros(5, 4), torch.zeros(6, dtype=torch.float64), mel_frame_times(3))


def test_a_vocoder_extended_with_a_condition_renders_as_before_until_trained_and_checks_its_input() -> None:
    torch.manual_seed(0)
    plain = build_student("tiny", generator=torch.Generator().manual_seed(0)).eval()
    extended = with_condition(plain, 4).eval()
    assert extended.cfg.cond_channels == 4 and extended.context_frames() == plain.context_frames()
    mel = torch.randn(1, 80, 24) - 5.0
    with torch.no_grad():
        assert torch.equal(extended(torch.cat([mel, torch.rand(1, 4, 24)], dim=1)), plain(mel))
    with pytest.raises(ValueError, match="80 mel bands \\+ 4 condition channels"):
        extended(mel)
    with pytest.raises(ValueError, match="already reads"):
        with_condition(extended, 4)


def test_a_conditioned_vocoder_is_saved_and_loaded_with_its_condition() -> None:
    import tempfile
    from pathlib import Path

    from frieren_rt.train.vocoder import load_vocoder, save_vocoder

    model = with_condition(build_student("tiny", generator=torch.Generator().manual_seed(0)), 5)
    with torch.no_grad():
        model.conv_cond.weight.normal_()  # as if trained: the condition now matters
    with tempfile.TemporaryDirectory() as d:
        save_vocoder(model.eval(), Path(d) / "v.safetensors")
        loaded = load_vocoder(Path(d) / "v.safetensors")
    x = torch.cat([torch.randn(1, 80, 16) - 5.0, torch.rand(1, 5, 16)], dim=1)
    assert isinstance(loaded, HifiganGenerator) and loaded.cfg.cond_channels == 5
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x))


def test_a_long_stream_reads_a_bounded_history_and_gives_the_whole_historys_condition() -> None:
    from frieren_rt.audio.condition import CONDITION_DECAY, LOOKBACK
    from frieren_rt.vision.events import event_trace

    gen = torch.Generator().manual_seed(0)
    post = torch.rand(1000, 4, generator=gen).softmax(-1)  # 33 s at 30 fps, every frame a little of everything
    frame_ts = torch.arange(1000, dtype=torch.float64) / 30.0
    mel_times = 30.0 + mel_frame_times(40)  # a hop's frames, 30 s in
    got = event_condition(post, frame_ts, mel_times)
    shown = (mel_times * 30.0).floor().long()
    whole = event_trace(post[None, : int(shown.max()) + 1, :-1], CONDITION_DECAY)[0]  # every frame before
    assert torch.allclose(got[1:], whole[shown].T, atol=CONDITION_DECAY**LOOKBACK)
    assert torch.allclose(got[0], 1.0 - post[shown, -1])
