"""Motion features: how much each part of the picture changed since the previous frame (pure functions).

Sound effects follow visible events (impacts, explosions, flashes), and a frozen per-frame ImageNet feature
sees content, not change; SoundReactor (arXiv 2510.02110) likewise feeds each frame's features together with
their difference from the previous frame. Here the change is measured directly in pixels: the mean absolute
luma difference on a coarse grid, a few numbers per frame that cost well under a millisecond.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .encoder import to_unit_float

__all__ = ["luma", "motion_dim", "motion_features"]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights


def motion_dim(grid: int = 4) -> int:
    """Size of one frame's motion vector: grid x grid cells plus the whole-frame mean."""
    return grid * grid + 1


def luma(frames: torch.Tensor, size: int) -> torch.Tensor:
    """RGB (N, 3, H, W) uint8 or [0, 1] float -> luma (N, 1, size, size) in [0, 1], area-averaged."""
    x = to_unit_float(frames)
    y = (x * x.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)  # (N, 1, H, W)
    return F.adaptive_avg_pool2d(y, (size, size))


def motion_features(
    frames: torch.Tensor, *, grid: int = 4, size: int = 64, previous: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-frame mean |luma_t - luma_{t-1}| per grid cell, then over the whole frame.

    frames: (B, T, 3, H, W) uint8 or float in [0, 1]; previous: optional (B, 3, H, W) frame shown before
    frames[:, 0] (streaming carries it across calls); without it the first frame's motion is 0.
    size: side of the luma image the difference is taken on (removes pixel noise and compression grain).
    Returns (B, T, grid * grid + 1) float32 in [0, 1]: cells in row-major order, then the frame mean.
    """
    b, t = frames.shape[:2]
    y = luma(frames.reshape(b * t, *frames.shape[2:]), size).view(b, t, size, size)  # (B, T, S, S)
    if previous is not None:
        before = luma(previous, size).view(b, 1, size, size)
    else:
        before = y[:, :1]  # the first frame compared with itself: no motion
    diff = (y - torch.cat([before, y[:, :-1]], dim=1)).abs()  # (B, T, S, S)
    cells = F.adaptive_avg_pool2d(diff.view(b * t, 1, size, size), (grid, grid)).view(b, t, grid * grid)
    return torch.cat([cells, diff.mean(dim=(2, 3)).unsqueeze(-1)], dim=-1)  # (B, T, grid^2 + 1)
