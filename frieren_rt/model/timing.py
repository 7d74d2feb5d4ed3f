"""Length regulation: which condition frame each latent frame reads (pure functions).

Frieren repeats each 4 fps CAVP frame 8 times to reach 31.25 latents/s; 32 frames (8.0 s) then cover 256
latents (8.192 s), so audio drifts 2.4 % (0.192 s per window; ../shared/reference/frieren.md). The timestamp
mapping instead gives each latent the frame that is on screen at the latent's centre time.
"""

from __future__ import annotations

import torch

__all__ = ["repeat_index", "timestamp_index", "latent_times", "frame_times"]


def repeat_index(num_latents: int, num_frames: int, factor: int) -> torch.Tensor:
    """Official nearest integer repeat: latent j reads frame j // factor. Returns (T,) long."""
    if num_frames * factor < num_latents:
        raise ValueError(
            f"{num_frames} condition frames x{factor} cover only {num_frames * factor} of {num_latents} latents"
        )
    return torch.arange(num_latents) // factor


def latent_times(num_latents: int, latent_rate: float, start: float = 0.0) -> torch.Tensor:
    """Centre time in seconds of each latent frame: start + (j + 0.5) / rate. Returns (T,) float64."""
    return start + (torch.arange(num_latents, dtype=torch.float64) + 0.5) / latent_rate


def frame_times(num_frames: int, frame_rate: float, start: float = 0.0) -> torch.Tensor:
    """Presentation time of each video frame on a regular grid: start + i / rate. Returns (F,) float64."""
    return start + torch.arange(num_frames, dtype=torch.float64) / frame_rate


def timestamp_index(frame_ts: torch.Tensor, latent_ts: torch.Tensor) -> torch.Tensor:
    """Index of the frame on screen at each latent time: the last frame with timestamp <= the latent's time.

    frame_ts: (F,) or (B, F) increasing presentation times (seconds); latent_ts: (T,) or (B, T).
    Latents before the first frame read frame 0. Returns (T,) or (B, T) long.
    """
    if frame_ts.dim() == 1 and latent_ts.dim() == 1:
        idx = torch.searchsorted(frame_ts.contiguous(), latent_ts.contiguous(), right=True) - 1
    else:
        frames = frame_ts if frame_ts.dim() == 2 else frame_ts.unsqueeze(0)  # (B or 1, F)
        lat = latent_ts if latent_ts.dim() == 2 else latent_ts.unsqueeze(0)  # (B or 1, T)
        b = max(frames.shape[0], lat.shape[0])
        idx = torch.searchsorted(frames.expand(b, -1).contiguous(), lat.expand(b, -1).contiguous(), right=True)
        idx = idx - 1
    return idx.clamp(min=0)
