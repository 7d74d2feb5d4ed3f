"""The event gate: a trapezoid around event frames, applied on the emitted timeline of the windowed generator."""

import numpy as np
import pytest
import torch

from frieren_rt.windowing import generate_offline
from frieren_rt.windowing.gate import EventGate, GateConfig, class_hold_times, detector_posteriors, gate_gain
from tests.windowing.standins import SR, make_generator, tiny_vector_field

C = 8
FPS = 30.0


def test_gain_is_one_from_pre_before_to_hold_after_each_event_and_ramps_to_zero_around_it() -> None:
    cfg = GateConfig(pre_s=0.03, hold_s=0.4, ramp_s=0.02)
    t = torch.tensor([0.0, 0.94, 0.96, 0.97, 1.0, 1.4, 1.41, 1.42, 2.0], dtype=torch.float64)
    got = gate_gain(torch.tensor([1.0], dtype=torch.float64), t, cfg)
    np.testing.assert_allclose(got.numpy(), [0, 0, 0.5, 1, 1, 1, 0.5, 0, 0], atol=1e-5)
    two = gate_gain(torch.tensor([1.0, 1.2], dtype=torch.float64), t, cfg)  # the max over events
    assert two[5] == 1.0 and gate_gain(torch.zeros(0), t, cfg).abs().sum() == 0  # no event: closed


def test_a_bad_config_is_refused_with_the_rule() -> None:
    with pytest.raises(ValueError, match="threshold"):
        GateConfig(threshold=0.0)


def test_the_generator_gates_its_emitted_audio_on_the_capture_timeline_including_the_flushed_tail() -> None:
    times = torch.arange(60, dtype=torch.float64) / FPS + 5.0  # capture clock starts at 5 s
    feats = torch.randn(60, C, generator=torch.Generator().manual_seed(1))
    feats[:, -3:] = torch.tensor([0.0, 0.0, 1.0])  # two detector classes + "no event": nothing happens ...
    feats[27, -3:] = torch.tensor([0.8, 0.1, 0.1])  # ... except a class-0 event on frame 27 (5.9 s)
    plain = generate_offline(make_generator(tiny_vector_field(raw_dim=C)), times, feats, 1.9)
    gate = EventGate(GateConfig(class_hold_s=(0.3, 1.0)), detector_posteriors(2))
    gated = generate_offline(make_generator(tiny_vector_field(raw_dim=C), gate=gate), times, feats, 1.9)
    gain = gate_gain(times[27:28], 5.0 + torch.arange(len(plain), dtype=torch.float64) / SR,
                     GateConfig(hold_s=0.3))  # class 0's hold
    np.testing.assert_allclose(gated.numpy(), (plain * gain).numpy(), atol=1e-6)
    assert gain[: int(0.8 * SR)].abs().max() == 0 and gain[int(0.9 * SR)] == 1  # it opened only around 0.9 s
    assert gain[int(1.25 * SR):].abs().max() == 0  # and closed after class 0's 0.3 s
    assert np.abs(plain.numpy()[: int(0.8 * SR)]).max() > 0  # there was sound to remove


def test_each_event_holds_for_its_most_likely_class_and_a_wrong_table_is_refused() -> None:
    post = torch.tensor([[0.1, 0.8, 0.1], [0.7, 0.1, 0.2], [0.0, 0.1, 0.9]])  # class 1, class 0, no event
    gate = EventGate(GateConfig(class_hold_s=(0.2, 1.5)), detector_posteriors(2))
    times, holds = gate.events(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), post)
    assert times.tolist() == [1.0, 2.0] and holds.tolist() == [1.5, 0.2]
    uniform = EventGate(GateConfig(hold_s=0.4), detector_posteriors(2))
    assert uniform.events(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), post)[1].tolist() == [0.4, 0.4]
    with pytest.raises(ValueError, match="3 holds for 2 detector classes"):
        EventGate(GateConfig(class_hold_s=(0.2, 1.5, 1.0)), detector_posteriors(2)).events(
            torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), post)


def test_a_frame_whose_event_probability_is_spread_over_classes_opens_the_gate_only_without_a_confidence_floor(
) -> None:
    # P(event) 0.8 each: frame 1 on one class (confidence 1.0), frame 2 spread 0.4 / 0.4 (confidence 0.5).
    post = torch.tensor([[0.8, 0.0, 0.2], [0.4, 0.4, 0.2]])
    times = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert EventGate(GateConfig(), detector_posteriors(2)).events(times, post)[0].tolist() == [1.0, 2.0]
    strict = EventGate(GateConfig(min_class_confidence=0.6), detector_posteriors(2))
    assert strict.events(times, post)[0].tolist() == [1.0]
    with pytest.raises(ValueError, match="min_class_confidence"):
        GateConfig(min_class_confidence=1.5)


def test_class_hold_times_take_the_quantile_of_each_class_and_fall_back_for_unseen_classes() -> None:
    durations = {"coin": [0.1, 0.2, 0.3, 0.4], "boom": [1.0]}
    assert class_hold_times(durations, ("boom", "coin", "door"), quantile=0.75, fallback_s=0.4) == (1.0, 0.4, 0.4)
