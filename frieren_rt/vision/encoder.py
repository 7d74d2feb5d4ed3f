"""The frozen image encoder: video frames -> one pooled 1280-d MobileNetV2 feature per frame.

Frames are resized to a square ``resolution`` without cropping (aspect not kept, as CAVP's preprocessing in
Frieren; ../shared/reference/frieren.md), scaled to [0, 1] and ImageNet-normalised (the statistics
torchvision's checkpoint was trained with).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .mobilenet_v2 import FEATURE_DIM, MobileNetV2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageEncoder", "preprocess", "to_unit_float"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_unit_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]; float input is returned as float32 (assumed already in [0, 1])."""
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()


def preprocess(frames: torch.Tensor, resolution: int) -> torch.Tensor:
    """RGB frames (N, 3, H, W), uint8 or float in [0, 1] -> (N, 3, res, res) ImageNet-normalised float32.

    Bilinear resize with antialiasing when shrinking (a plain bilinear downscale aliases small sprites away).
    """
    x = to_unit_float(frames)
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True
        )
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class ImageEncoder(nn.Module):
    """Frozen MobileNetV2: frames (B, T, 3, H, W) uint8 or [0, 1] float -> features (B, T, 1280).

    resolution: square input side. Measured on the 2-core CPU, 1 thread, from 320x240 frames (5-frame calls,
    benchmarks/audio_stack.py) and on 70 public-domain landscape photos (endless-sky-data; ImageNet top-1 in
    the landscape classes 970-980, cosine similarity of the feature to the 224 px feature):
    96 px 5.3 ms/frame, 56/70, 0.81; 128 px 5.7 ms, 61/70, 0.88; 160 px 10.7 ms, 63/70, 0.94; 224 px 19.8 ms,
    65/70, 1.0. 160 is the default; 128 halves the cost when the CPU is short.
    chunk: frames per backbone call, bounding peak memory on long clips.
    """

    feature_dim = FEATURE_DIM

    def __init__(self, backbone: MobileNetV2, *, resolution: int = 160, chunk: int = 64) -> None:
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.resolution, self.chunk = resolution, chunk

    @classmethod
    def from_package(cls, *, resolution: int = 160, root: Path | None = None) -> ImageEncoder:
        return cls(MobileNetV2.from_package(root=root), resolution=resolution)

    def train(self, mode: bool = True) -> ImageEncoder:
        """Stays in eval mode: BatchNorm must keep its ImageNet statistics (the encoder is frozen)."""
        super().train(False)
        return self

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        flat = frames.reshape(b * t, *frames.shape[2:])  # (B*T, 3, H, W)
        feats = [self.backbone.pooled(preprocess(part, self.resolution)) for part in flat.split(self.chunk)]
        return torch.cat(feats).view(b, t, FEATURE_DIM)  # (B, T, 1280)
