"""Visual conditioning of a window: per-frame features with capture times, mapped to latents by timestamp.

Frames arrive irregularly (jitter, latest-wins drops), so each latent reads the frame on screen at its centre
time (the "timestamp" mapping of frieren_rt.model.timing), never a fixed repeat factor.
"""

from __future__ import annotations

from collections import deque

import torch

from frieren_rt.model.timing import timestamp_index

__all__ = ["FeatureTrack", "select_frames", "window_conditioning"]


class FeatureTrack:
    """Bounded history of (capture time, feature) of one stream; older frames fall off (``max_frames``)."""

    def __init__(self, *, dim: int, max_frames: int) -> None:
        self.dim = dim
        self._times: deque[float] = deque(maxlen=max_frames)
        self._feats: deque[torch.Tensor] = deque(maxlen=max_frames)

    def __len__(self) -> int:
        return len(self._times)

    def append(self, times: list[float] | torch.Tensor, features: torch.Tensor) -> None:
        """Add frames in capture order. times: (N,); features: (N, dim). Out-of-order frames are ignored."""
        for t, f in zip(torch.as_tensor(times, dtype=torch.float64).tolist(), features, strict=True):
            if self._times and t <= self._times[-1]:
                continue
            self._times.append(float(t))
            self._feats.append(f.detach().float().cpu())

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(F,) float64 capture times and (F, dim) features."""
        if not self._times:
            return torch.zeros(0, dtype=torch.float64), torch.zeros(0, self.dim)
        return torch.tensor(list(self._times), dtype=torch.float64), torch.stack(list(self._feats))


def select_frames(frame_times: torch.Tensor, t_start: float, t_end: float, slots: int) -> torch.Tensor:
    """Indices of the frames a window [t_start, t_end) reads: the one on screen at t_start and all captured
    inside it, the newest ``slots`` of them if there are more. (K,) long, K <= slots."""
    inside = torch.nonzero((frame_times > t_start) & (frame_times < t_end)).flatten()
    before = torch.nonzero(frame_times <= t_start).flatten()
    idx = torch.cat([before[-1:], inside]) if len(before) else inside
    return idx[-slots:]


def window_conditioning(
    frame_times: torch.Tensor, features: torch.Tensor, latent_ts: torch.Tensor, slots: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Condition tensor and latent->slot index for one window.

    frame_times (F,) float64, features (F, D), latent_ts (T,) centre times of the window's latents.
    Returns cond (slots, D) (unused slots repeat the last frame; none at all -> zeros) and index (T,) long.
    Latents before the first selected frame read it (frieren_rt.model.timing.timestamp_index).
    """
    t_len = latent_ts.shape[0]
    half = 0.5 * float(latent_ts[1] - latent_ts[0]) if t_len > 1 else 0.0
    sel = select_frames(frame_times, float(latent_ts[0]) - half, float(latent_ts[-1]) + half, slots)
    if len(sel) == 0:
        return features.new_zeros(slots, features.shape[-1]), torch.zeros(t_len, dtype=torch.long)
    index = timestamp_index(frame_times[sel], latent_ts)  # (T,) in [0, K)
    cond = features[sel]  # (K, D)
    pad = cond[-1:].expand(slots - len(sel), -1)
    return torch.cat([cond, pad]), index
