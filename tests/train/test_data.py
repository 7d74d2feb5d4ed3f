"""Streaming-geometry training windows (frieren_rt.train.data.WindowSampler): where windows end and what is
known, on an in-memory clip whose latents are their own positions."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from frieren_rt.train.data import WindowSampler
from frieren_rt.windowing import StreamGeometry

GEOM = StreamGeometry(window_s=1.6, hop_s=0.2)
SECONDS, FPS = 10.0, 30


@dataclass
class _Record:  # the FeatureCache record fields WindowSampler reads
    events: list[dict]
    frame_ts: torch.Tensor = field(default_factory=lambda: torch.arange(int(SECONDS * FPS), dtype=torch.float64) / FPS)
    image: torch.Tensor = field(default_factory=lambda: torch.zeros(int(SECONDS * FPS), 4))
    motion: torch.Tensor = field(default_factory=lambda: torch.zeros(int(SECONDS * FPS), 2))


class _Cache:
    def __init__(self, events: list[dict]) -> None:
        self.seeds = [0]
        self.record = _Record(events)

    def __getitem__(self, seed: int) -> _Record:
        return self.record


def _sampler(p_event: float) -> tuple[WindowSampler, list[int]]:
    onsets = [2.0, 3.3, 5.7, 8.2]  # seconds, all after the first whole window (1.6 s)
    n = int(SECONDS * GEOM.latent_rate)
    position = torch.arange(n, dtype=torch.float32).expand(2, n)  # latent value = its index in the clip
    sampler = WindowSampler(_Cache([{"time": t} for t in onsets]), {0: (position, torch.zeros(2, n))}, GEOM,
                            p_event=p_event)
    return sampler, [int(t * GEOM.latent_rate) for t in onsets]


def _newest_hops(sampler: WindowSampler, count: int) -> list[range]:
    batch = sampler.batch(count, torch.Generator().manual_seed(0), sample_posterior=False)
    ends = batch.x1[:, 0, -1].long() + 1  # (B,) one past each window's newest latent
    return [range(e - GEOM.hop_latents, e) for e in ends.tolist()]


def test_p_event_one_puts_an_onset_in_every_newest_hop() -> None:
    sampler, onsets = _sampler(1.0)
    hops = _newest_hops(sampler, 64)
    assert all(any(o in hop for o in onsets) for hop in hops)


def test_p_event_zero_leaves_onsets_to_chance() -> None:
    sampler, onsets = _sampler(0.0)
    hops = _newest_hops(sampler, 200)
    share = sum(any(o in hop for o in onsets) for hop in hops) / len(hops)
    assert share < 0.3  # 4 onsets x 9-latent hops over ~360 possible window ends: about 0.1


def test_known_prefix_is_the_emitted_past_and_the_rest_is_hidden() -> None:
    sampler, _ = _sampler(0.5)
    batch = sampler.batch(32, torch.Generator().manual_seed(1), sample_posterior=False)
    assert torch.equal(batch.known, batch.x1 * batch.mask)
    free = (1 - batch.mask[:, 0]).sum(-1)  # (B,) unknown latents per window
    assert ((free >= GEOM.hop_latents) & (free <= GEOM.window_latents)).all()
    assert (batch.mask[:, 0, -GEOM.hop_latents:] == 0).all()  # the newest hop is never given


def test_steady_hops_give_the_engines_short_gap_too() -> None:
    """The engine streams with 4-latent hops by default; training draws both that mask and the offline 9."""
    sampler, onsets = _sampler(1.0)
    sampler = WindowSampler(sampler.cache, sampler.latents, GEOM, p_event=1.0, p_fresh=0.0, p_long_gap=0.0,
                            steady_hops=(4, GEOM.hop_latents))
    batch = sampler.batch(64, torch.Generator().manual_seed(2), sample_posterior=False)
    free = (1 - batch.mask[:, 0]).sum(-1).long()  # (B,)
    assert set(free.tolist()) == {4, GEOM.hop_latents}
    ends = batch.x1[:, 0, -1].long() + 1
    for e, f in zip(ends.tolist(), free.tolist(), strict=True):  # the onset is in the unknown part
        assert any(e - f <= o < e for o in onsets)


def test_mel_segments_at_their_origins_repeat_the_segments_drawn_without_them() -> None:
    from types import SimpleNamespace

    from frieren_rt.train.data import mel_segments, segment_origins

    mels = {s: torch.randn(80, 50, generator=torch.Generator().manual_seed(s)) for s in (3, 4)}
    cache = type("C", (), {"seeds": [3, 4], "__getitem__": lambda self, s: SimpleNamespace(mel=mels[s])})()
    drawn = mel_segments(cache, 5, 16, torch.Generator().manual_seed(1))
    origins = segment_origins(cache, 5, 16, torch.Generator().manual_seed(1))
    assert torch.equal(mel_segments(cache, 5, 16, torch.Generator(), origins), drawn)  # the same draws
    for (seed, start), segment in zip(origins, drawn, strict=True):
        assert torch.equal(segment, mels[seed][:, start : start + 16])
