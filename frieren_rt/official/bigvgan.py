"""The 16 kHz BigVGAN generator Frieren vocodes with (Make-An-Audio's "bigvnat", Lee et al. ICLR 2023).

Names mirror the official generator so that ``best_netG.pt["generator"]`` loads with strict=True: every conv
keeps its weight-norm parametrisation (``weight_g`` / ``weight_v``, Salimans & Kingma 2016) and every
anti-aliased activation its stored ``*.filter`` buffers. :meth:`BigVGAN.remove_weight_norm` folds the
parametrisation into plain convs for inference (same output, one fewer op per conv).
Shapes: mel (B, num_mels, T) -> waveform (B, 1, T * hop_length), hop_length = prod(upsample_rates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from frieren_rt.official.alias_free import Activation1d, Snake, SnakeBeta
from frieren_rt.official.loading import CheckpointMismatchError, load_strict, read_state_dict
from frieren_rt.official.yaml_subset import parse_yaml

__all__ = ["BigVGANConfig", "BIGVGAN_PRESETS", "bigvgan_preset", "WeightNormConv1d", "BigVGAN"]

CHECKPOINT_NAME = "best_netG.pt"
ARGS_NAME = "args.yml"


@dataclass(frozen=True, kw_only=True)
class BigVGANConfig:
    """The ``args.yml`` fields the generator reads (bigvgan_*.json "config_keys_read_by_generator")."""

    num_mels: int = 80
    upsample_initial_channel: int = 1536
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4)
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    activation: str = "snakebeta"
    snake_logscale: bool = True

    def __post_init__(self) -> None:
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        if self.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {self.resblock!r}")
        if self.activation not in ("snake", "snakebeta"):
            raise ValueError(f"activation must be 'snake' or 'snakebeta', got {self.activation!r}")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError("upsample_initial_channel must halve exactly at every upsampling stage")

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> BigVGANConfig:
        """From a parsed ``args.yml`` / config dict; other training fields are ignored."""
        needed = [f for f in cls.__dataclass_fields__ if f not in args]
        if needed:
            raise KeyError(f"BigVGAN config lacks {needed}")
        return cls(
            num_mels=int(args["num_mels"]),
            upsample_initial_channel=int(args["upsample_initial_channel"]),
            upsample_rates=tuple(args["upsample_rates"]),
            upsample_kernel_sizes=tuple(args["upsample_kernel_sizes"]),
            resblock=str(args["resblock"]),
            resblock_kernel_sizes=tuple(args["resblock_kernel_sizes"]),
            resblock_dilation_sizes=tuple(tuple(d) for d in args["resblock_dilation_sizes"]),
            activation=str(args["activation"]),
            snake_logscale=bool(args["snake_logscale"]),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> BigVGANConfig:
        return cls.from_args(parse_yaml(Path(path).read_text()))


BIGVGAN_PRESETS = {
    "official": BigVGANConfig(),
    # The parity fixture's reduced size (bigvgan_reduced.json): initial channels 128.
    "reduced": BigVGANConfig(upsample_initial_channel=128),
}


def bigvgan_preset(name: str) -> BigVGANConfig:
    if name not in BIGVGAN_PRESETS:
        raise KeyError(f"unknown BigVGAN preset {name!r}; known: {sorted(BIGVGAN_PRESETS)}")
    return BIGVGAN_PRESETS[name]


class WeightNormConv1d(nn.Module):
    """Conv1d (or ConvTranspose1d) with weight = g * v / ||v||, the norm over all dims but the first.

    Stored as ``weight_g`` (D0, 1, 1) and ``weight_v`` like ``torch.nn.utils.weight_norm`` (dim 0) stores
    them; for a transposed conv dim 0 is the input channel, so the norm is per input channel.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, *, stride: int = 1, padding: int = 0,
                 dilation: int = 1, transposed: bool = False) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation, self.transposed = stride, padding, dilation, transposed
        shape = (c_in, c_out, kernel) if transposed else (c_out, c_in, kernel)
        v = torch.empty(shape)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))  # nn.Conv1d's default, before weight_norm wraps it
        self.weight_g = nn.Parameter(self._norm(v))
        self.weight_v = nn.Parameter(v)
        fan_in = (c_out if transposed else c_in) * kernel
        self.bias = nn.Parameter(torch.empty(c_out).uniform_(-fan_in**-0.5, fan_in**-0.5))

    @staticmethod
    def _norm(v: torch.Tensor) -> torch.Tensor:
        return v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))  # (D0, 1, 1)

    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / self._norm(self.weight_v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            return F.conv_transpose1d(x, self.weight(), self.bias, self.stride, self.padding)
        return F.conv1d(x, self.weight(), self.bias, self.stride, self.padding, self.dilation)

    def fused(self) -> nn.Conv1d | nn.ConvTranspose1d:
        """A plain conv holding the current weight: the same function without the parametrisation."""
        w = self.weight().detach()
        if self.transposed:
            conv: nn.Conv1d | nn.ConvTranspose1d = nn.ConvTranspose1d(
                w.shape[0], w.shape[1], w.shape[2], self.stride, self.padding, device=w.device, dtype=w.dtype)
        else:
            conv = nn.Conv1d(w.shape[1], w.shape[0], w.shape[2], self.stride, self.padding, self.dilation,
                             device=w.device, dtype=w.dtype)
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(self.bias)
        return conv


def _padding(kernel: int, dilation: int) -> int:
    return (kernel * dilation - dilation) // 2  # "same" length for odd kernels


def _dilated(channels: int, kernel: int, dilation: int) -> WeightNormConv1d:
    return WeightNormConv1d(channels, channels, kernel, dilation=dilation, padding=_padding(kernel, dilation))


def _activation(cfg: BigVGANConfig, channels: int) -> Activation1d:
    act = SnakeBeta if cfg.activation == "snakebeta" else Snake
    return Activation1d(act(channels, logscale=cfg.snake_logscale))


class AMPBlock1(nn.Module):
    """Anti-aliased multi-periodicity block: per dilation d, x += conv2(act(conv1_d(act(x))))."""

    def __init__(self, cfg: BigVGANConfig, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(_dilated(channels, kernel, d) for d in dilations)
        self.convs2 = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel, padding=_padding(kernel, 1)) for _ in dilations)
        self.activations = nn.ModuleList(_activation(cfg, channels) for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, T)
        acts1, acts2 = self.activations[::2], self.activations[1::2]
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, acts1, acts2, strict=True):
            x = x + c2(a2(c1(a1(x))))
        return x


class AMPBlock2(nn.Module):
    """The lighter variant (resblock "2"): per dilation d, x += conv_d(act(x))."""

    def __init__(self, cfg: BigVGANConfig, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_dilated(channels, kernel, d) for d in dilations)
        self.activations = nn.ModuleList(_activation(cfg, channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, act in zip(self.convs, self.activations, strict=True):
            x = x + conv(act(x))
        return x


class BigVGAN(nn.Module):
    """mel (B, num_mels, T) log10 magnitudes -> waveform (B, 1, T * hop_length) in [-1, 1]."""

    def __init__(self, cfg: BigVGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c0 = cfg.upsample_initial_channel
        self.conv_pre = WeightNormConv1d(cfg.num_mels, c0, 7, padding=3)
        # Each stage is a one-element ModuleList in the official code: keys read ups.{i}.0.*.
        self.ups = nn.ModuleList(
            nn.ModuleList([WeightNormConv1d(c0 >> i, c0 >> (i + 1), k, stride=u, padding=(k - u) // 2,
                                            transposed=True)])
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True)))
        block = AMPBlock1 if cfg.resblock == "1" else AMPBlock2
        self.resblocks = nn.ModuleList(
            block(cfg, c0 >> (i + 1), k, tuple(d))
            for i in range(len(cfg.upsample_rates))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True))
        c_last = c0 >> len(cfg.upsample_rates)
        self.activation_post = _activation(cfg, c_last)
        self.conv_post = WeightNormConv1d(c_last, 1, 7, padding=3)

    def stages(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate activations [conv_pre, up_0, stage_0, ..., up_{n-1}, stage_{n-1}, pre_tanh]."""
        outs = [self.conv_pre(mel)]
        x = outs[0]
        n = len(self.cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            for conv in up:
                x = conv(x)
            outs.append(x)
            # The stage output is the mean of the AMP blocks with different kernels (multi-receptive field).
            x = sum(self.resblocks[i * n + j](x) for j in range(n)) / n  # type: ignore[assignment]
            outs.append(x)
        outs.append(self.conv_post(self.activation_post(x)))
        return outs

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.stages(mel)[-1])

    def remove_weight_norm(self) -> BigVGAN:
        """Replace every weight-norm conv by a plain conv with the folded weight (in place; returns self).

        The state dict then has ``weight`` instead of ``weight_g`` / ``weight_v``: load checkpoints first.
        """
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, WeightNormConv1d):
                    setattr(parent, name, child.fused())
        return self

    @classmethod
    def from_pretrained(cls, path: str | Path, cfg: BigVGANConfig | None = None) -> BigVGAN:
        """Load from a vocoder folder (``best_netG.pt`` + ``args.yml``), a ``best_netG.pt`` file (its
        ``generator`` entry) or a ``.safetensors`` file of generator keys.

        cfg: when None, read from ``args.yml`` in the folder (or beside the file); a safetensors file without
        one falls back to the official preset. Missing files and mismatched keys raise with every problem.
        """
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        weights = folder / CHECKPOINT_NAME if path.is_dir() else path
        args = folder / ARGS_NAME
        missing = [str(weights)] if not weights.is_file() else []
        if cfg is None and not args.is_file() and weights.suffix != ".safetensors":
            missing.append(str(args))
        if missing:
            raise FileNotFoundError("BigVGAN vocoder files missing: " + ", ".join(missing))
        if cfg is None:
            cfg = BigVGANConfig.from_yaml(args) if args.is_file() else bigvgan_preset("official")
        inner = None if weights.suffix == ".safetensors" else "generator"
        try:
            state = read_state_dict(weights, inner_key=inner)
        except CheckpointMismatchError as err:
            raise CheckpointMismatchError(f"BigVGAN: {err}") from None
        model = cls(cfg)
        load_strict(model, state, what=f"BigVGAN {weights}")
        return model.eval()
