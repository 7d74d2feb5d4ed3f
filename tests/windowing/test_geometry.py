import math

import pytest
import torch

from frieren_rt.windowing import StreamGeometry, context_latents_for, gather_known, hops_due, known_mask, window_span


def test_default_geometry_is_whole_latents_and_whole_20ms_crossfade() -> None:
    g = StreamGeometry()
    assert g.samples_per_latent == 512
    assert (g.window_latents, g.hop_latents, g.overlap_latents) == (69, 9, 60)
    assert g.hop_samples == 9 * 512
    assert g.hop_duration_s == pytest.approx(9 * 512 / 22050)
    # 20 ms is exactly 441 samples at 22.05 kHz and 960 at 48 kHz (one Opus frame).
    assert g.crossfade_samples == 441 and g.output_frame_samples == 960
    assert g.crossfade_samples / g.model_sample_rate == pytest.approx(g.output_frame_s)
    assert g.history_latents == 60


def test_crossfade_snaps_to_whole_output_frames() -> None:
    assert StreamGeometry(crossfade_s=0.035).crossfade_samples == 2 * 441
    assert StreamGeometry(crossfade_s=0.001).crossfade_samples == 441  # at least one frame


@pytest.mark.parametrize("changes", [{"hop_s": 2.0}, {"context_latents": 0}, {"latent_rate": 40.0}])
def test_inconsistent_geometry_is_rejected(changes: dict) -> None:
    with pytest.raises(ValueError):
        StreamGeometry(**changes)


def test_window_ends_with_its_hop() -> None:
    g = StreamGeometry()
    assert window_span(0, g) == (9 - 69, 9)
    assert window_span(10, g) == (99 - 69, 99)


def test_context_covers_decoder_then_vocoder() -> None:
    assert context_latents_for(2, 3) == 4  # 3 mel frames need 2 latents at 2 mels per latent


def test_known_mask_marks_only_emitted_latents_inside_the_window() -> None:
    m = known_mask(start=-5, window=10, emitted=3)
    assert m.shape == (1, 10)
    assert m[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0]


def test_gather_known_aligns_history_to_window_positions() -> None:
    history = torch.arange(2 * 6, dtype=torch.float32).view(2, 6)  # latents 10..15
    out = gather_known(history, history_start=10, start=8, window=5)  # latents 8..12
    assert out[:, :2].abs().sum() == 0
    assert torch.equal(out[:, 2:], history[:, :3])
    assert history[0, 0] == 0  # input untouched


def test_a_hop_is_due_once_video_reaches_its_end() -> None:
    g = StreamGeometry()
    end0 = g.hop_latents / g.latent_rate
    assert hops_due(0, 5.0 + end0 - 1e-4, 5.0, g) == 0
    assert hops_due(0, 5.0 + end0, 5.0, g) == 1
    assert hops_due(1, 5.0 + 3.5 * end0, 5.0, g) == 2
    assert hops_due(4, 5.0 + end0, 5.0, g) == 0


def test_cond_slots_cover_a_window_of_frames() -> None:
    g = StreamGeometry()
    assert g.cond_slots >= math.ceil(g.window_duration_s * g.frame_rate) + 1


def test_the_seam_lies_in_the_look_ahead_only_when_asked_and_the_look_ahead_holds_the_crossfade() -> None:
    assert StreamGeometry(lookahead_latents=1).held_tail_samples == 441  # by default the tail is held
    assert StreamGeometry(lookahead_latents=1, lookahead_seam=True).held_tail_samples == 0  # 512 >= 441
    for short in ({"lookahead_latents": 0}, {"lookahead_latents": 1, "crossfade_s": 0.04}):  # 0, then 512 < 882
        with pytest.raises(ValueError, match="lookahead_seam needs a look-ahead of at least the crossfade"):
            StreamGeometry(lookahead_seam=True, **short)
