"""Per-frame visual features -> per-latent features by presentation timestamp, and the trainable projection.

Video frames arrive at their own (possibly irregular) times; the flow model wants one condition vector per
latent. Each latent takes the frame on screen at its centre time (:func:`frieren_rt.model.timing.
timestamp_index`), which avoids the 2.4 % drift of Frieren's integer repeat (../shared/reference/frieren.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from frieren_rt.model.timing import latent_times, timestamp_index

from .mobilenet_v2 import FEATURE_DIM
from .motion import motion_dim

__all__ = ["ProjectionConfig", "VisualProjection", "features_at_latents", "features_at_times"]


def features_at_times(features: torch.Tensor, frame_ts: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Pick, for each query time, the features of the last frame shown at or before it.

    features: (B, F, D); frame_ts: (F,) or (B, F) increasing seconds; times: (T,) or (B, T) seconds.
    Returns (B, T, D). Times before the first frame read frame 0.
    """
    b, _, d = features.shape
    idx = timestamp_index(frame_ts.to(torch.float64), times.to(torch.float64))  # (T,) or (B', T)
    idx = idx.expand(b, idx.shape[-1]) if idx.dim() == 2 else idx.unsqueeze(0).expand(b, -1)  # (B, T)
    return torch.gather(features, 1, idx.unsqueeze(-1).expand(-1, -1, d))  # (B, T, D)


def features_at_latents(
    features: torch.Tensor,
    frame_ts: torch.Tensor,
    *,
    num_latents: int,
    latent_rate: float,
    start: float = 0.0,
) -> torch.Tensor:
    """(B, F, D) at frame times -> (B, num_latents, D); latent j is centred at start + (j + 0.5) / rate."""
    return features_at_times(features, frame_ts, latent_times(num_latents, latent_rate, start))


@dataclass(frozen=True, kw_only=True)
class ProjectionConfig:
    """image_dim: frozen encoder width (1280); motion_dim: per-frame motion size (0 = no motion input);
    raw_cond_dim: output width, the vector field's ``raw_cond_dim``; hidden: None = one Linear, else a
    2-layer MLP.
    """

    image_dim: int = FEATURE_DIM
    motion_dim: int = motion_dim(4)
    raw_cond_dim: int = 256  # the "small" vector field preset's raw_cond_dim
    hidden: int | None = None
    dropout: float = 0.0


class VisualProjection(nn.Module):
    """Trainable map from frozen per-frame features to the vector field's raw condition.

    forward(image (B, F, image_dim), motion (B, F, motion_dim) or None) -> (B, F, raw_cond_dim).
    The image features (non-negative ReLU6 averages with a wide per-channel scale) are LayerNorm-ed; motion
    enters unnormalised because its absolute size (how much changed) is the signal.
    """

    def __init__(self, cfg: ProjectionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_norm = nn.LayerNorm(cfg.image_dim)
        width = cfg.image_dim + cfg.motion_dim
        if cfg.hidden is None:
            self.net: nn.Module = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(width, cfg.raw_cond_dim))
        else:
            self.net = nn.Sequential(
                nn.Linear(width, cfg.hidden),
                nn.GELU(),
                nn.Dropout(cfg.dropout),
                nn.Linear(cfg.hidden, cfg.raw_cond_dim),
            )

    def forward(self, image: torch.Tensor, motion: torch.Tensor | None = None) -> torch.Tensor:
        parts = [self.image_norm(image)]
        if self.cfg.motion_dim:
            if motion is None:
                raise ValueError(f"this projection expects motion features of size {self.cfg.motion_dim}")
            parts.append(motion)
        return self.net(torch.cat(parts, dim=-1))  # (B, F, raw_cond_dim)
