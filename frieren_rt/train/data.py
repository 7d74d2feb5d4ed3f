"""Training batches in the streaming geometry, drawn from the feature cache and the VAE latents.

Each flow sample is a window whose end is the newest frame, of the length the streaming engine uses
(``StreamGeometry.window_latents``), conditioned exactly as ``WindowedGenerator.window_inputs`` conditions it
(``window_conditioning`` over the frames on screen during the window), with a random known-latent prefix:
the latents already emitted that streaming continuity feeds back (issue 3, "Training").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frieren_rt.data import FeatureCache
from frieren_rt.model.timing import latent_times
from frieren_rt.windowing import StreamGeometry, window_conditioning

__all__ = ["WindowBatch", "WindowSampler", "mel_segments", "segment_origins"]


@dataclass
class WindowBatch:
    """x1 (B, C, W) target latents; cond (B, S, D) frame features; cond_index (B, W) long; known (B, C, W);
    mask (B, 1, W) 1 = known (emitted) latent; seeds / ends identify the windows."""

    x1: torch.Tensor
    cond: torch.Tensor
    cond_index: torch.Tensor
    known: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> WindowBatch:
        return WindowBatch(*(getattr(self, f).to(device) for f in ("x1", "cond", "cond_index", "known", "mask")))

    def index(self, idx: torch.Tensor) -> WindowBatch:
        return WindowBatch(*(getattr(self, f)[idx] for f in ("x1", "cond", "cond_index", "known", "mask")))

    @staticmethod
    def cat(batches: list[WindowBatch]) -> WindowBatch:
        return WindowBatch(*(torch.cat([getattr(b, f) for b in batches]) for f in
                             ("x1", "cond", "cond_index", "known", "mask")))


def clip_features(cache: FeatureCache, seed: int) -> torch.Tensor:
    """(F, 1280 + m) float32 raw per-frame features [image | motion] of a cached clip."""
    rec = cache[seed]
    return torch.cat([rec.image.float(), rec.motion.float()], dim=-1)


class WindowSampler:
    """Random streaming windows. latents: seed -> (mean (C, N), std (C, N)) scaled flow latents of each clip.

    p_event: probability of a window whose newest hop contains an event onset (else the end is uniform).
    p_fresh: probability of a window with nothing emitted yet (stream start, mask all 0); otherwise the first
    W - h latents are known with h = hop latents (as in steady streaming) or, with probability p_long_gap, a
    random gap in [hop, W] (after an underrun or a skipped hop).
    steady_hops: the steady-streaming gaps h to draw from, in latents (default: the geometry's hop only). The
    engine's default hop (0.1 s, 4 latents) is shorter than the offline one (0.2 s, 9): a model trained on
    9 only never saw the mask it streams with.
    """

    def __init__(self, cache: FeatureCache, latents: dict[int, tuple[torch.Tensor, torch.Tensor]],
                 geometry: StreamGeometry, *, p_fresh: float = 0.15, p_long_gap: float = 0.25,
                 p_event: float = 0.5, steady_hops: tuple[int, ...] | None = None) -> None:
        self.cache, self.latents, self.geometry = cache, latents, geometry
        self.seeds = [s for s in cache.seeds if s in latents]
        self.features = {s: clip_features(cache, s) for s in self.seeds}
        self.p_fresh, self.p_long_gap, self.p_event = p_fresh, p_long_gap, p_event
        self.steady_hops = steady_hops or (geometry.hop_latents,)
        if not all(1 <= h <= geometry.window_latents for h in self.steady_hops):
            raise ValueError(f"steady hops {self.steady_hops} must lie in [1, {geometry.window_latents}] latents")

    def window(self, seed: int, end: int, gap: int, gen: torch.Generator, sample_posterior: bool) -> WindowBatch:
        g = self.geometry
        w = g.window_latents
        mean, std = self.latents[seed]
        start = end - w
        x1 = mean[:, start:end]
        if sample_posterior:  # Frieren trains on posterior samples of the VAE (frieren.md, "Audio")
            x1 = x1 + std[:, start:end] * torch.randn(x1.shape, generator=gen)
        lat_ts = latent_times(w, g.latent_rate, start=start / g.latent_rate)
        cond, index = window_conditioning(self.cache[seed].frame_ts, self.features[seed], lat_ts, g.cond_slots)
        mask = torch.zeros(1, w)
        mask[:, : w - gap] = 1.0
        return WindowBatch(x1[None], cond[None], index[None], (x1 * mask)[None], mask[None])

    def batch(self, size: int, gen: torch.Generator, *, sample_posterior: bool = True) -> WindowBatch:
        g = self.geometry
        w, hop = g.window_latents, g.hop_latents
        items = []
        for _ in range(size):
            seed = self.seeds[int(torch.randint(len(self.seeds), (1,), generator=gen))]
            n = self.latents[seed][0].shape[1]
            end = int(torch.randint(w, n + 1, (1,), generator=gen))
            u = float(torch.rand((), generator=gen))
            if u < self.p_fresh:
                gap = w
            elif u < self.p_fresh + self.p_long_gap:
                gap = int(torch.randint(hop, w + 1, (1,), generator=gen))
            else:
                gap = self.steady_hops[int(torch.randint(len(self.steady_hops), (1,), generator=gen))]
            events = self.cache[seed].events
            if events and float(torch.rand((), generator=gen)) < self.p_event:
                # A window whose newest hop holds an event onset: the case streaming must get right (the
                # sound has to start in the hop its visible cause appears in), rare among uniform windows.
                # The onset lies in the unknown latents (the newest min(gap, hop)).
                e = events[int(torch.randint(len(events), (1,), generator=gen))]
                onset = int(e["time"] * g.latent_rate)
                end = min(n, max(w, onset + 1 + int(torch.randint(min(gap, hop), (1,), generator=gen))))
            items.append(self.window(seed, end, gap, gen, sample_posterior))
        return WindowBatch.cat(items)


def segment_origins(cache: FeatureCache, size: int, frames: int, gen: torch.Generator) -> list[tuple[int, int]]:
    """(seed, first mel frame) of ``size`` random crops of ``frames`` frames of cached clips."""
    seeds = cache.seeds
    out = []
    for _ in range(size):
        seed = seeds[int(torch.randint(len(seeds), (1,), generator=gen))]
        out.append((seed, int(torch.randint(0, cache[seed].mel.shape[1] - frames + 1, (1,), generator=gen))))
    return out


def mel_segments(cache: FeatureCache, size: int, frames: int, gen: torch.Generator,
                 origins: list[tuple[int, int]] | None = None) -> torch.Tensor:
    """Random (size, 80, frames) log-mel crops of cached clips (frames even: the VAE halves time), or the crops
    at ``origins`` (from :func:`segment_origins`, which draws the same numbers)."""
    origins = segment_origins(cache, size, frames, gen) if origins is None else origins
    return torch.stack([cache[seed].mel[:, start : start + frames] for seed, start in origins])
