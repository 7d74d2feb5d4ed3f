"""BigVGAN's anti-aliased periodic activations: x2 upsample -> Snake/SnakeBeta -> x2 low-pass downsample.

BigVGAN (Lee et al., ICLR 2023, sec. 3.2) runs its periodic nonlinearity at twice the rate between Kaiser-
windowed sinc filters so that the harmonics it creates do not alias. The filters are persistent buffers
(``*.upsample.filter``, ``*.downsample.lowpass.filter``) stored in the published checkpoint; they are also
recomputed here from the same formula so a freshly built module holds them. Shapes: (B, C, T) throughout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["kaiser_sinc_filter", "UpSample1d", "LowPassFilter1d", "DownSample1d", "Snake", "SnakeBeta",
           "Activation1d"]


def _kaiser_beta(attenuation_db: float) -> float:
    # Kaiser's empirical formula for the window's beta from the stop-band attenuation A (Oppenheim & Schafer).
    if attenuation_db > 50.0:
        return 0.1102 * (attenuation_db - 8.7)
    if attenuation_db >= 21.0:
        return 0.5842 * (attenuation_db - 21.0) ** 0.4 + 0.07886 * (attenuation_db - 21.0)
    return 0.0


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass, normalised to unit DC gain. Cutoff and half width in cycles/sample.

    Returns (1, 1, kernel_size). Even sizes put the taps at half-integer times (no centre tap).
    """
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    window = torch.kaiser_window(kernel_size, beta=_kaiser_beta(attenuation), periodic=False)
    if kernel_size % 2 == 0:
        time = torch.arange(-half, half) + 0.5
    else:
        time = torch.arange(kernel_size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    """x2 (``ratio``) upsampling: replicate-pad, zero-stuffing transposed conv with the low-pass, crop."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, ratio * T)
        c = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        # The ratio restores the amplitude lost to the inserted zeros.
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(c, -1, -1), stride=self.ratio, groups=c)
        return x[..., self.crop_left:-self.crop_right]


class LowPassFilter1d(nn.Module):
    """Depthwise low-pass with replicate padding (left k/2 - 1, right k/2 for even k) and a stride."""

    def __init__(self, cutoff: float, half_width: float, stride: int, kernel_size: int = 12) -> None:
        super().__init__()
        self.stride = stride
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, T / stride)
        c = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(c, -1, -1), stride=self.stride, groups=c)


class DownSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class Snake(nn.Module):
    """x + sin^2(a x) / a per channel; ``logscale`` stores log a (BigVGAN's snake_logscale)."""

    def __init__(self, channels: int, *, logscale: bool = True) -> None:
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.alpha[None, :, None]
        a = torch.exp(a) if self.logscale else a
        return x + (1.0 / (a + 1e-9)) * torch.sin(x * a).pow(2)


class SnakeBeta(nn.Module):
    """x + sin^2(a x) / b per channel, separate frequency a and magnitude b (BigVGAN eq. 2)."""

    def __init__(self, channels: int, *, logscale: bool = True) -> None:
        super().__init__()
        self.logscale = logscale
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.alpha[None, :, None], self.beta[None, :, None]
        if self.logscale:
            a, b = torch.exp(a), torch.exp(b)
        return x + (1.0 / (b + 1e-9)) * torch.sin(x * a).pow(2)


class Activation1d(nn.Module):
    """upsample -> ``act`` -> downsample, each by 2: the output has the input's length."""

    def __init__(self, act: nn.Module, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.act = act
        self.upsample = UpSample1d(ratio, kernel_size)
        self.downsample = DownSample1d(ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))
