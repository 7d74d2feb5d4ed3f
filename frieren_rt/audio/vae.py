"""A small 1-D KL-VAE over log-mel frames: mel (B, 80, T) <-> latent (B, z, T / 2).

The layout follows Make-An-Audio 2's 1-D KL autoencoder used by Frieren (../shared/reference/frieren.md,
"Audio"): mel bins as channels, GroupNorm/SiLU residual blocks, one 2x temporal downsampling (stride-2 conv
with asymmetric (0, 1) padding; decoder: nearest 2x upsample + conv), a diagonal-Gaussian posterior (Kingma &
Welling 2014) and a latent scale constant (Rombach et al. 2022, LDM, section 4.3.2). It omits the mid-block
self-attention and, by default, normalises each frame on its own (``norm_over_time=False``): GroupNorm
statistics taken over time make every output depend on the whole chunk, so chunked streaming decode could not
match a full decode. With per-frame norms the decoder's receptive field is finite and derived from its layers
(:meth:`VAEDecoder.context_latents`), and chunked decoding with that context equals full decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PRESETS",
    "DiagonalGaussian",
    "MelVAE",
    "VAEConfig",
    "VAEDecoder",
    "VAEEncoder",
    "edge_l1",
    "latent_scale_from",
    "preset",
    "mel_flux_l1",
    "vae_loss",
]


@dataclass(frozen=True, kw_only=True)
class VAEConfig:
    """mel_channels: input bins; z_channels: latent channels; widths: channels per level (level 0 at the mel
    rate, the others after the single 2x downsampling); res_blocks: residual blocks per level; kernel:
    res-block conv kernel; io_kernel: kernel of the first and last convs; groups: GroupNorm groups;
    norm_over_time: GroupNorm statistics over (channels in group x time) as Make-An-Audio 2 (chunk dependent)
    instead of per frame; latent_scale: multiply z by this for the flow model (1 / std of training latents;
    0.18215 in Frieren); kl_weight: weight of the KL term in :func:`vae_loss`; decoder_widths /
    decoder_res_blocks: the decoder's own sizes (None: widths / res_blocks), so a wider decoder can be trained
    on a frozen encoder's latents without changing them (``frieren-rt train decoder``); decoder_causal_blocks:
    extra residual blocks per decoder level whose convs read only the current and past frames, so they add depth
    and left context but no look-ahead (the streaming engine pays every latent of look-ahead in latency).
    """

    mel_channels: int = 80
    z_channels: int = 8
    widths: tuple[int, ...] = (128, 256)
    res_blocks: int = 2
    kernel: int = 3
    io_kernel: int = 5
    groups: int = 32
    norm_over_time: bool = False
    latent_scale: float = 1.0
    kl_weight: float = 1e-4
    logvar_clamp: tuple[float, float] = (-30.0, 20.0)
    decoder_widths: tuple[int, ...] | None = None
    decoder_res_blocks: int | None = None
    decoder_causal_blocks: int = 0

    def __post_init__(self) -> None:
        if len(self.widths) < 2:
            raise ValueError(
                f"widths needs >= 2 levels (before and after the 2x downsampling), got {self.widths}"
            )
        if self.decoder_widths is not None and len(self.decoder_widths) != len(self.widths):
            raise ValueError(f"decoder_widths {self.decoder_widths} needs as many levels as widths {self.widths}")
        for w in self.widths + (self.decoder_widths or ()):
            if w % self.groups:
                raise ValueError(f"width {w} not divisible by groups={self.groups}")
        if self.kernel % 2 == 0 or self.io_kernel % 2 == 0:
            raise ValueError("kernels must be odd ('same' padding)")

    @property
    def downsample(self) -> int:
        """Mel frames per latent frame."""
        return 2


PRESETS: dict[str, VAEConfig] = {
    "base": VAEConfig(),
    # Streaming: 0.37 M parameters (decoder 0.22 M); kernel-3 input/output convs keep the decoder's context at
    # 5 latents each side (see VAEDecoder.context_latents).
    "small": VAEConfig(widths=(64, 128), res_blocks=1, groups=16, io_kernel=3),
}


def preset(name: str, **overrides) -> VAEConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown VAE preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


# --- layers, each able to say which input frames an output range reads (for the receptive field) -----------


def _conv_span(conv: nn.Conv1d, a: int, b: int) -> tuple[int, int]:
    """Input frames a 'same'-padded stride-1 conv reads for outputs [a, b]."""
    (k,), (d,) = conv.kernel_size, conv.dilation
    half = d * (k - 1) // 2
    return a - half, b + half


def _causal_span(conv: nn.Conv1d, a: int, b: int) -> tuple[int, int]:
    """Input frames a left-padded (causal) stride-1 conv reads for outputs [a, b]."""
    (k,), (d,) = conv.kernel_size, conv.dilation
    return a - d * (k - 1), b


class Norm(nn.Module):
    """GroupNorm over channel groups, per frame (local) or over the sequence (``over_time``). (B, C, T)."""

    def __init__(self, channels: int, groups: int, over_time: bool, eps: float = 1e-6) -> None:
        super().__init__()
        self.groups, self.over_time, self.eps = groups, over_time, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.over_time:
            return F.group_norm(x, self.groups, self.weight, self.bias, self.eps)
        b, c, t = x.shape
        g = x.view(b, self.groups, c // self.groups, t)  # (B, G, C/G, T): statistics over C/G per frame
        var, mean = torch.var_mean(g, dim=2, keepdim=True, correction=0)
        g = (g - mean) * torch.rsqrt(var + self.eps)
        return g.view(b, c, t) * self.weight[:, None] + self.bias[:, None]


class ResBlock(nn.Module):
    """x -> skip(x) + conv(SiLU(norm(conv(SiLU(norm(x)))))). (B, C_in, T) -> (B, C_out, T). causal: both convs
    left-padded, so output frame t reads input frames <= t (VAEConfig.decoder_causal_blocks)."""

    def __init__(self, c_in: int, c_out: int, cfg: VAEConfig, *, causal: bool = False) -> None:
        super().__init__()
        self.pad = (cfg.kernel - 1, 0) if causal else None
        padding = 0 if causal else cfg.kernel // 2
        self.norm1 = Norm(c_in, cfg.groups, cfg.norm_over_time)
        self.conv1 = nn.Conv1d(c_in, c_out, cfg.kernel, padding=padding)
        self.norm2 = Norm(c_out, cfg.groups, cfg.norm_over_time)
        self.conv2 = nn.Conv1d(c_out, c_out, cfg.kernel, padding=padding)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def _in(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.pad is None else F.pad(h, self.pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self._in(F.silu(self.norm1(x))))
        h = self.conv2(self._in(F.silu(self.norm2(h))))
        return self.skip(x) + h

    def input_span(self, a: int, b: int) -> tuple[int, int]:
        span = _conv_span if self.pad is None else _causal_span
        return span(self.conv1, *span(self.conv2, a, b))


class Downsample(nn.Module):
    """Stride-2 conv (kernel 3), (0, 1) padding, as Make-An-Audio 2: (B, C, T) -> (B, C, T / 2), T even."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2:
            raise ValueError(f"the VAE encoder needs an even number of mel frames, got {x.shape[-1]}")
        return self.conv(F.pad(x, (0, 1)))


class Upsample(nn.Module):
    """Nearest 2x then a 'same' conv: (B, C, T) -> (B, C, 2T)."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

    def input_span(self, a: int, b: int) -> tuple[int, int]:
        lo, hi = _conv_span(self.conv, a, b)
        return lo // 2, hi // 2  # nearest: output frame n reads input frame floor(n / 2)


class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)) over latents (B, z, T'). Sampling takes an explicit generator."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mean, self.logvar = mean, logvar

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * noise

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per element, (B, z, T'): 0.5 (mean^2 + var - 1 - logvar)."""
        return 0.5 * (self.mean.square() + self.logvar.exp() - 1.0 - self.logvar)


class VAEEncoder(nn.Module):
    """mel (B, mel_channels, T), T even -> (mean, logvar), each (B, z, T / 2)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.conv_in = nn.Conv1d(cfg.mel_channels, w[0], cfg.io_kernel, padding=cfg.io_kernel // 2)
        blocks: list[nn.Module] = [ResBlock(w[0], w[0], cfg) for _ in range(cfg.res_blocks)]
        blocks.append(Downsample(w[0]))
        for c_in, c_out in zip(w[:-1], w[1:]):
            blocks += [ResBlock(c_in if i == 0 else c_out, c_out, cfg) for i in range(cfg.res_blocks)]
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = Norm(w[-1], cfg.groups, cfg.norm_over_time)
        self.conv_out = nn.Conv1d(w[-1], 2 * cfg.z_channels, cfg.kernel, padding=cfg.kernel // 2)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(self.conv_in(mel))  # (B, widths[-1], T / 2)
        mean, logvar = self.conv_out(F.silu(self.norm_out(h))).chunk(2, dim=1)  # 2 x (B, z, T / 2)
        return mean, logvar.clamp(*self.cfg.logvar_clamp)


class VAEDecoder(nn.Module):
    """z (B, z_channels, T') unscaled -> mel (B, mel_channels, 2 T')."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = (cfg.decoder_widths or cfg.widths)[::-1]  # deepest first
        blocks = cfg.res_blocks if cfg.decoder_res_blocks is None else cfg.decoder_res_blocks
        self.conv_in = nn.Conv1d(cfg.z_channels, w[0], cfg.io_kernel, padding=cfg.io_kernel // 2)
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(w[:-1], w[1:])):
            layers += [ResBlock(c_in, c_in, cfg) for _ in range(blocks)]
            layers += [ResBlock(c_in, c_in, cfg, causal=True) for _ in range(cfg.decoder_causal_blocks)]
            if i == len(w) - 2:  # the last level returns to the mel rate
                layers.append(Upsample(c_in, cfg.kernel))
            layers.append(ResBlock(c_in, c_out, cfg))
        layers += [ResBlock(w[-1], w[-1], cfg) for _ in range(blocks - 1)]
        layers += [ResBlock(w[-1], w[-1], cfg, causal=True) for _ in range(cfg.decoder_causal_blocks)]
        self.blocks = nn.Sequential(*layers)
        self.norm_out = Norm(w[-1], cfg.groups, cfg.norm_over_time)
        self.conv_out = nn.Conv1d(w[-1], cfg.mel_channels, cfg.io_kernel, padding=cfg.io_kernel // 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.conv_in(z))  # (B, widths[0], 2 T')
        return self.conv_out(F.silu(self.norm_out(h)))

    def input_span(self, a: int, b: int) -> tuple[int, int]:
        """Latent frames [lo, hi] that output mel frames [a, b] read (ignoring the signal ends)."""
        lo, hi = _conv_span(self.conv_out, a, b)
        for layer in reversed(self.blocks):
            lo, hi = layer.input_span(lo, hi)
        return _conv_span(self.conv_in, lo, hi)

    def context_latents(self) -> tuple[int, int]:
        """(left, right) latent frames of real context that make chunked decoding equal full decoding.

        Exact only with per-frame norms (``norm_over_time=False``); otherwise the receptive field is
        unbounded.
        """
        if self.cfg.norm_over_time:
            raise ValueError(
                "GroupNorm over time makes every output depend on the whole chunk: no finite context"
            )
        s = 1000
        lo, hi = self.input_span(2 * s, 2 * s + 1)  # the two mel frames of latent s
        return s - lo, hi - s


class MelVAE(nn.Module):
    """encode(mel) -> posterior; decode(z) -> mel. ``to_flow`` / ``from_flow`` apply the latent scale."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VAEEncoder(cfg)
        self.decoder = VAEDecoder(cfg)

    def encode(self, mel: torch.Tensor) -> DiagonalGaussian:
        """mel (B, mel_channels, T), T even -> posterior over (B, z, T / 2)."""
        return DiagonalGaussian(*self.encoder(mel))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z, T') unscaled -> mel (B, mel_channels, 2 T')."""
        return self.decoder(z)

    def to_flow(self, z: torch.Tensor) -> torch.Tensor:
        """Latent as the flow model sees it: latent_scale * z (LDM convention)."""
        return z * self.cfg.latent_scale

    def from_flow(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.cfg.latent_scale

    def forward(self, mel: torch.Tensor, *, generator: torch.Generator | None = None):
        """Reconstruction through a posterior sample: returns (mel_hat (B, M, T), posterior)."""
        posterior = self.encode(mel)
        return self.decode(posterior.sample(generator)), posterior


def latent_scale_from(z: torch.Tensor) -> float:
    """1 / std of a batch of training latents: ``VAEConfig.latent_scale`` (LDM, section 4.3.2)."""
    return float(1.0 / z.float().std())


def vae_loss(
    model: MelVAE,
    mel: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    kl_weight: float | None = None,
    flux_weight: float = 0.0,
    with_mel: bool = False,
) -> dict[str, torch.Tensor]:
    """L1 reconstruction (mean over mel elements) + kl_weight * KL (mean over latent elements) + flux_weight *
    :func:`mel_flux_l1` (the mel's frame-to-frame change, where attacks live).

    mel: (B, M, T), T even. Returns {"loss", "recon", "kl", "flux"} scalars, and with ``with_mel`` the
    reconstruction itself under "mel_hat" (B, M, T) (for a loss on it downstream). (Make-An-Audio 2 adds
    adversarial and perceptual terms; those belong to a training recipe, not here.)
    """
    mel_hat, posterior = model(mel, generator=generator)
    recon = (mel_hat - mel).abs().mean()
    kl = posterior.kl().mean()
    flux = mel_flux_l1(mel_hat, mel)
    weight = model.cfg.kl_weight if kl_weight is None else kl_weight
    out = {"loss": recon + weight * kl + flux_weight * flux, "recon": recon, "kl": kl, "flux": flux}
    return (out | {"mel_hat": mel_hat}) if with_mel else out


def edge_l1(decoder: VAEDecoder, z: torch.Tensor, mel: torch.Tensor, ends: Sequence[int]) -> torch.Tensor:
    """Mean |mel_hat - mel| over the mel frames of the last ``right`` latents before each end, decoded from the
    latents before that end alone (the decoder's left context of them, nothing to their right).

    This is how the streaming engine decodes the newest latents of each hop at look-ahead 0
    (frieren_rt.windowing.generator.WindowedGenerator.decode): the decoder reads ``right`` latents ahead
    (:meth:`VAEDecoder.context_latents`) and finds zero padding there, where whole-clip training only ever showed
    it the next latents. z: (B, C, L) unscaled; mel: (B, M, 2 L); ends: latent indices in [left + right, L].
    """
    left, right = decoder.context_latents()
    n, length = left + right, z.shape[-1]
    if not ends or any(not n <= e <= length for e in ends):
        raise ValueError(f"ends {list(ends)} must lie in [{n}, {length}] (the decoder's context is {left} + {right})")
    chunks = torch.cat([z[..., e - n : e] for e in ends])  # (K B, C, left + right)
    target = torch.cat([mel[..., 2 * (e - right) : 2 * e] for e in ends])  # (K B, M, 2 right)
    return (decoder(chunks)[..., 2 * left :] - target).abs().mean()


def mel_flux_l1(mel_hat: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Mean |d/dt mel_hat - d/dt mel| over (B, M, T - 1): an L1 on the time difference, which a decoder that
    smooths attacks pays for and a constant offset does not."""
    return (mel_hat.diff(dim=-1) - mel.diff(dim=-1)).abs().mean()
