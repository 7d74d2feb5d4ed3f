"""The latent class probe: snippets at true onsets, fitting, the detector's onsets and the students' class loss."""

from __future__ import annotations

import torch

from frieren_rt.train.class_probe import (LatentClassProbe, ProbeConfig, class_loss, detected_onsets, fit_probe,
                                          onset_snippets, window_class_scores)

CLASSES = ("low", "high")


def _clip(seed: int) -> tuple[torch.Tensor, list[dict]]:
    """40 latents of 4 channels, silent but for two events whose class sets which channel sounds."""
    g = torch.Generator().manual_seed(seed)
    z = 0.05 * torch.randn(4, 40, generator=g)
    events = []
    for k, start in enumerate((5, 25)):
        cls = (seed + k) % 2
        z[cls, start : start + 8] += 2.0
        events.append({"time": start / 10.0, "cls": CLASSES[cls]})
    return z, events


def _snippets(seeds: range) -> tuple[torch.Tensor, ...]:
    clips = {s: _clip(s) for s in seeds}
    lat = {s: (z, torch.full_like(z, 0.05)) for s, (z, _) in clips.items()}
    return onset_snippets(lat, {s: e for s, (_, e) in clips.items()}, CLASSES, latent_rate=10.0, max_len=8)


def test_snippets_start_at_each_onset_and_are_cut_at_the_clip_end():
    z, events = _clip(0)
    mean, std, length, label = onset_snippets({0: (z, z.abs())}, {0: events + [{"time": 3.6, "cls": "low"}]},
                                              CLASSES, latent_rate=10.0, max_len=8)
    assert mean.shape == (3, 4, 8) and length.tolist() == [8, 8, 4] and label.tolist() == [0, 1, 0]
    torch.testing.assert_close(mean[0], z[:, 5:13])
    assert torch.count_nonzero(mean[2, :, 4:]) == 0


def test_the_probe_learns_the_class_from_the_latents_and_round_trips(tmp_path):
    cfg = ProbeConfig(channels=4, classes=CLASSES, max_len=8, min_len=2, width=8)
    probe, scores = fit_probe(_snippets(range(20)), _snippets(range(100, 110)), cfg, steps=150)
    assert scores["val_acc"] == 1.0
    probe.save(tmp_path / "p.safetensors")
    back = LatentClassProbe.from_pretrained(tmp_path / "p.safetensors")
    z = torch.randn(3, 4, 8)
    valid = torch.ones(3, 8, dtype=torch.bool)
    torch.testing.assert_close(back(z, valid), probe(z, valid))


def test_detected_onsets_are_peaks_in_unknown_latents_with_room_after_them():
    k = 2  # classes; the last 3 raw features are the detector's posteriors ("no event" last)
    cond = torch.zeros(1, 6, 5 + k + 1)
    cond[..., -1] = 1.0
    cond[0, 1, -3:] = torch.tensor([0.9, 0.0, 0.1])  # class 0 in slot 1: a known latent
    cond[0, 3, -3:] = torch.tensor([0.1, 0.8, 0.1])  # class 1 in slot 3
    cond[0, 5, -3:] = torch.tensor([0.1, 0.8, 0.1])  # slot 5: too close to the window's end
    index = torch.arange(6).repeat_interleave(2)[None]  # (1, 12): two latents per slot
    mask = torch.zeros(1, 1, 12)
    mask[..., :4] = 1.0
    assert detected_onsets(cond, index, mask, classes=k, min_len=3) == [(0, 6, 6, 1)]


def test_the_class_loss_pulls_the_latents_toward_the_reported_class():
    torch.manual_seed(0)
    cfg = ProbeConfig(channels=4, classes=CLASSES, max_len=8, min_len=2, width=8)
    probe, _ = fit_probe(_snippets(range(20)), _snippets(range(100, 102)), cfg, steps=150)
    probe.requires_grad_(False)
    x1 = torch.zeros(1, 4, 12, requires_grad=True)
    assert float(class_loss(probe, x1, [])) == 0.0
    before = class_loss(probe, x1, [(0, 4, 8, 1)]).item()
    class_loss(probe, x1, [(0, 4, 8, 1)]).backward()
    after = float(class_loss(probe, (x1 - 5.0 * x1.grad).detach(), [(0, 4, 8, 1)]))
    assert after < before and torch.count_nonzero(x1.grad[..., :4]) == 0  # only the onset's latents move


def test_window_scores_rank_a_window_by_the_reported_class_of_each_of_its_onsets():
    torch.manual_seed(0)
    cfg = ProbeConfig(channels=4, classes=CLASSES, max_len=8, min_len=2, width=8)
    probe, _ = fit_probe(_snippets(range(20)), _snippets(range(100, 102)), cfg, steps=150)
    x1 = 0.05 * torch.randn(3, 4, 20)
    x1[0, 1, 4:12] += 2.0  # window 0 sounds "high" after its onset at latent 4
    x1[1, 0, 4:12] += 2.0  # window 1 sounds "low" there
    onsets = [(0, 4, 16, 1), (1, 4, 16, 1)]  # both onsets reported as "high"; window 2 has none
    scores = window_class_scores(probe, x1, onsets)
    assert scores.shape == (3,) and float(scores[2]) == 0.0
    assert float(scores[0]) > float(scores[1]) and float(scores[0]) <= 0.0
    # A window's score is the mean over its onsets: a second, wrong onset in window 0 lowers it.
    x1[0, 0, 13:20] += 2.0
    both = window_class_scores(probe, x1, onsets + [(0, 13, 7, 1)])
    assert float(both[0]) < float(scores[0])
