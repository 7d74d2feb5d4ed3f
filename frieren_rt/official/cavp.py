"""CAVP's video branch (Diff-Foley, Luo et al. NeurIPS 2023): per-frame visual features for Frieren.

A SlowOnly 3-D ResNet-50 (Feichtenhofer et al., ICCV 2019; mmaction2's ResNet3dSlowOnly) over the whole clip,
a spatial mean per frame, Linear 2048 -> 512 and an L2 normalisation per frame. Convolutions carry mmcv's
ConvModule names (``conv`` / ``bn``) so that ``cavp_epoch66.ckpt`` loads with strict=True once DataParallel's
``module.`` is removed. Temporal convs (3x1x1 in the last two stages) zero-pad at clip edges, so features
depend on where a clip starts and ends (the official extraction uses 40-frame clips at 4 fps).
Shapes: video (B, T, 3, H, W) in [0, 1] -> features (B, T, embed_dim).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from frieren_rt.official.loading import load_strict, read_state_dict, strip_substring

__all__ = ["CAVPConfig", "CAVP_PRESETS", "cavp_preset", "CAVPVideoEncoder", "ResNet3dSlowOnly"]

Triple = tuple[int, int, int]
_EXPANSION = 4  # Bottleneck output width = 4 x its inner width
# Keys of the full CAVP checkpoint that the video branch does not use (audio branch, CLIP-style logit scale).
_IGNORED_PREFIXES = ("spec_encoder.", "spec_project_head.", "logit_scale", "audio_")


@dataclass(frozen=True, kw_only=True)
class CAVPConfig:
    """base_channels: stem width (64 for ResNet-50; the stage widths are 1, 2, 4, 8 x it, times 4 out).
    stage_blocks: Bottleneck3d blocks per stage. inflate: stages whose conv1 is 3x1x1 (temporal) in every
    block. spatial_strides: per-stage stride of the first block's conv2. embed_dim: projection width."""

    base_channels: int = 64
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3)
    inflate: tuple[bool, ...] = (False, False, True, True)
    spatial_strides: tuple[int, ...] = (1, 2, 2, 2)
    embed_dim: int = 512
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        if not len(self.stage_blocks) == len(self.inflate) == len(self.spatial_strides):
            raise ValueError("stage_blocks, inflate and spatial_strides must have one entry per stage")

    @property
    def feat_dim(self) -> int:
        return self.base_channels * 2 ** (len(self.stage_blocks) - 1) * _EXPANSION


CAVP_PRESETS = {
    "official": CAVPConfig(),
    # The parity fixture's reduced size (cavp_reduced.json): base width 16, so feat_dim 512.
    "reduced": CAVPConfig(base_channels=16),
}


def cavp_preset(name: str) -> CAVPConfig:
    if name not in CAVP_PRESETS:
        raise KeyError(f"unknown CAVP preset {name!r}; known: {sorted(CAVP_PRESETS)}")
    return CAVP_PRESETS[name]


class ConvModule(nn.Module):
    """Conv3d (no bias) -> BatchNorm3d -> optional ReLU, named like mmcv's ConvModule."""

    def __init__(self, c_in: int, c_out: int, kernel: Triple, *, stride: Triple = (1, 1, 1),
                 padding: Triple = (0, 0, 0), relu: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm3d(c_out, eps=eps)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Bottleneck3d(nn.Module):
    """1x1x1 (or 3x1x1) -> 1x3x3 (spatial stride) -> 1x1x1 x4, plus identity or a strided 1x1x1 projection."""

    def __init__(self, c_in: int, width: int, *, stride: int, inflate: bool, eps: float) -> None:
        super().__init__()
        k1, p1 = ((3, 1, 1), (1, 0, 0)) if inflate else ((1, 1, 1), (0, 0, 0))
        self.conv1 = ConvModule(c_in, width, k1, padding=p1, eps=eps)
        spatial = (1, stride, stride)
        self.conv2 = ConvModule(width, width, (1, 3, 3), stride=spatial, padding=(0, 1, 1), eps=eps)
        out = width * _EXPANSION
        self.conv3 = ConvModule(width, out, (1, 1, 1), relu=False, eps=eps)
        needs_proj = stride != 1 or c_in != out
        self.downsample = (ConvModule(c_in, out, (1, 1, 1), stride=spatial, relu=False, eps=eps)
                           if needs_proj else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class ResNet3dSlowOnly(nn.Module):
    """(B, 3, T, H, W) -> (B, T, feat_dim): the last stage's map averaged over H and W per frame."""

    def __init__(self, cfg: CAVPConfig) -> None:
        super().__init__()
        base, eps = cfg.base_channels, cfg.bn_eps
        self.conv1 = ConvModule(3, base, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), eps=eps)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        c = base
        self.stage_names: list[str] = []
        for i, (blocks, inflate, stride) in enumerate(zip(cfg.stage_blocks, cfg.inflate, cfg.spatial_strides,
                                                         strict=True)):
            width = base * 2**i
            layer = nn.Sequential(*(
                Bottleneck3d(c if j == 0 else width * _EXPANSION, width, stride=stride if j == 0 else 1,
                             inflate=inflate, eps=eps) for j in range(blocks)))
            self.add_module(f"layer{i + 1}", layer)
            self.stage_names.append(f"layer{i + 1}")
            c = width * _EXPANSION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1].mean(dim=(3, 4)).transpose(1, 2)  # (B, T, feat_dim)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[stem conv1, maxpool, layer1, ..., layerN] maps, each (B, C, T, H', W')."""
        outs = [self.conv1(x)]
        outs.append(self.maxpool(outs[-1]))
        for name in self.stage_names:
            outs.append(getattr(self, name)(outs[-1]))
        return outs


class CAVPVideoEncoder(nn.Module):
    """video (B, T, 3, H, W) RGB in [0, 1], no mean/std normalisation -> (B, T, embed_dim) unit-norm features.

    The official extraction feeds 224 x 224 frames at 4 fps, a 10 s clip (40 frames) at a time.
    """

    def __init__(self, cfg: CAVPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.video_encoder = ResNet3dSlowOnly(cfg)
        self.video_project_head = nn.Linear(cfg.feat_dim, cfg.embed_dim)

    def project(self, video: torch.Tensor) -> torch.Tensor:
        """Unnormalised projections (B, T, embed_dim)."""
        frames = self.video_encoder(video.permute(0, 2, 1, 3, 4))  # via (B, 3, T, H, W) -> (B, T, feat_dim)
        return self.video_project_head(frames)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(video), dim=-1)

    @classmethod
    def from_pretrained(cls, path: str | Path, cfg: CAVPConfig | None = None) -> CAVPVideoEncoder:
        """Load ``cavp_epoch66.ckpt`` (its ``state_dict``, every ``module.`` removed) or a safetensors file.

        Only ``video_encoder.*`` and ``video_project_head.*`` are used; the audio branch (``spec_encoder.*``,
        ``spec_project_head.*``) and ``logit_scale`` are ignored. Missing BatchNorm ``num_batches_tracked``
        counters are tolerated (unused in eval); every other key must be present with its exact shape.
        """
        model = cls(cfg or cavp_preset("official"))
        state = strip_substring(read_state_dict(path), "module.")
        load_strict(model, state, what=f"CAVP {path}", ignore_prefixes=_IGNORED_PREFIXES)
        return model.eval()
