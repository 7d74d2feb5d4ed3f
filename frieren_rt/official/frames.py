"""CAVP's frame pipeline: a 4 fps grid on the input video's own timestamps, 224 x 224 RGB in [0, 1].

The official extraction (cyanbx/Frieren-V2A ``script/data_preprocess/reencode_video.py`` and
``extract_cavp_feature.py``, from Diff-Foley) re-encodes the video with FFmpeg's ``fps=4`` filter, resizes each
frame to 224 x 224 with torchvision's ``Resize`` on a PIL image (bilinear, antialiased, aspect not kept),
scales to [0, 1] (``ToTensor``) with no mean/std normalisation, and runs CAVP over 40-frame (10 s) clips.

Grid: slot k stands for video time ``t0 + k / 4`` to ``t0 + (k + 1) / 4``. FFmpeg's fps filter (rounding
"near", its default) gives slot k the last input frame whose timestamp rounds to at most k, i.e. the last frame
shown before ``t0 + (k + 0.5) / 4``: :func:`grid_indices` reproduces that on the real (possibly irregular)
timestamps instead of re-encoding. A latent at time tau then reads the slot whose interval holds tau
(``frieren_rt.model.timing.timestamp_index`` on the slot start times), which is how the official training
pairs frame k with latents 8k .. 8k + 7 (0.256 k .. 0.256 (k + 1) s), minus the 2.4 % drift of that repeat.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from frieren_rt.official.cavp import CAVPVideoEncoder

__all__ = ["CAVP_FPS", "CAVP_SIZE", "CAVP_CLIP_FRAMES", "grid_times", "grid_indices", "to_cavp_input",
           "CAVPFeatures"]

CAVP_FPS = 4.0  # Diff-Foley: "CAVP default FPS=4, Don't change it."
CAVP_SIZE = 224
CAVP_CLIP_FRAMES = 40  # the official extraction's batch: one 10 s clip through the 3-D CNN at a time


def grid_times(duration: float, *, start: float = 0.0, fps: float = CAVP_FPS) -> torch.Tensor:
    """Slot start times ``start + k / fps`` for every slot that begins before ``start + duration``. (K,) f64."""
    count = max(1, math.ceil(duration * fps - 1e-9))
    return start + torch.arange(count, dtype=torch.float64) / fps


def grid_indices(frame_times: torch.Tensor, slot_times: torch.Tensor, *, fps: float = CAVP_FPS) -> torch.Tensor:
    """Input frame per slot, as FFmpeg's ``fps`` filter (round=near) picks it: the last frame with timestamp
    < slot + 0.5 / fps; slots before the first frame take frame 0. frame_times (N,) increasing, slot_times (K,)
    -> (K,) long."""
    edges = slot_times.double() + 0.5 / fps
    idx = torch.searchsorted(frame_times.double().contiguous(), edges.contiguous(), right=False) - 1
    return idx.clamp(min=0)


def to_cavp_input(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(K, H, W, 3) uint8 RGB -> (K, 3, 224, 224) float32 in [0, 1], no normalisation (Diff-Foley).

    Bilinear with antialiasing approximates PIL's bilinear resize that torchvision's ``Resize`` runs on PIL
    images (the two differ by rounding, a few 1/255 steps at most); the aspect ratio is not kept."""
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    x = x.permute(0, 3, 1, 2).float()  # (K, 3, H, W) in 0..255
    if x.shape[-2:] != (CAVP_SIZE, CAVP_SIZE):
        x = F.interpolate(x, size=(CAVP_SIZE, CAVP_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return (x.round().clamp(0, 255) / 255.0).contiguous()  # PIL works on uint8: round like it does


class CAVPFeatures:
    """Decoded video -> CAVP features on the 4 fps grid: ``(slot_times (K,), features (K, 512))``.

    Clips of ``clip_frames`` slots go through the encoder one at a time (temporal convs zero-pad at clip edges,
    as in the official 40-frame extraction)."""

    def __init__(self, encoder: CAVPVideoEncoder, *, clip_frames: int = CAVP_CLIP_FRAMES,
                 device: torch.device | str = "cpu") -> None:
        self.encoder = encoder.eval()
        self.clip_frames = clip_frames
        self.device = torch.device(device)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(K, 3, 224, 224) in [0, 1] -> (K, embed_dim) unit-norm features, clip by clip."""
        out = []
        for clip in video.split(self.clip_frames):
            out.append(self.encoder(clip[None].to(self.device))[0].float().cpu())  # (k, embed_dim)
        return torch.cat(out)

    def __call__(self, frames: np.ndarray, times: np.ndarray | torch.Tensor,
                 duration: float) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (N, H, W, 3) uint8 shown at ``times`` (N,) seconds; the grid covers ``duration`` from
        ``times[0]``. Returns slot start times (K,) float64 and features (K, embed_dim)."""
        t = torch.as_tensor(np.asarray(times), dtype=torch.float64)
        slots = grid_times(duration, start=float(t[0]))
        picked = frames[grid_indices(t, slots).numpy()]  # (K, H, W, 3)
        return slots, self.encode(to_cavp_input(picked))
