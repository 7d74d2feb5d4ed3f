"""Make-An-Audio 2's 1-D KL autoencoder over log-mel spectrograms, as Frieren uses it (frozen).

Module names mirror ``AutoencoderKL`` (encoder, decoder, quant_conv, post_quant_conv) so published weights
load with strict=True; forward semantics are in ../shared/fixtures/frieren_official/README.md ("VAE").
Shapes: B batch, M mel bins (80), T mel frames, Z latent channels (20), T' = T / 2 ** len(down_layers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from frieren_rt.official.loading import load_strict, read_state_dict, select_prefix

__all__ = ["LATENT_SCALE", "VAEConfig", "VAE_PRESETS", "vae_preset", "DiagonalGaussian", "AutoencoderKL1D",
           "LIGHTNING_PREFIX"]

# The diffusion model works on LATENT_SCALE * z (Stable Diffusion's constant, kept by Make-An-Audio 2 and
# Frieren); it lives in the training config, not in any checkpoint.
LATENT_SCALE = 0.18215
# Where the VAE sits inside a Frieren Lightning checkpoint (frieren.md, "Checkpoint layout").
LIGHTNING_PREFIX = "first_stage_model."
_OWN_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
# The decoder's res blocks, mid block and upsample conv use kernel 3 whatever ddconfig's kernel_size says
# (shapes of the published state dict: decoder.*.conv1.weight is (C, C, 3)).
_DECODER_KERNEL = 3


@dataclass(frozen=True, kw_only=True)
class VAEConfig:
    """Make-An-Audio 2 ``ddconfig`` fields that shape the network (dropout is inference-irrelevant).

    ch / ch_mult: width per level is ch * ch_mult[i]. down_layers: levels that halve time (encoder) and whose
    successor doubles it back (decoder). attn_layers: per-level attention; the published model lists only
    levels that do not exist ([3] with 3 levels), so attention is in the mid blocks only.
    """

    in_channels: int = 80
    out_ch: int = 80
    z_channels: int = 20
    embed_dim: int = 20
    ch: int = 384
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    kernel_size: int = 5
    down_layers: tuple[int, ...] = (0,)
    attn_layers: tuple[int, ...] = (3,)
    double_z: bool = True
    groups: int = 32

    def __post_init__(self) -> None:
        if any(0 <= i < len(self.ch_mult) for i in self.attn_layers):
            raise ValueError(f"attn_layers={self.attn_layers}: per-level attention is not part of the "
                             "published VAE and is not implemented (only mid-block attention)")
        if not self.double_z:
            raise ValueError("double_z=False gives no variance: not a KL autoencoder")
        for c in (self.ch * m for m in self.ch_mult):
            if c % self.groups:
                raise ValueError(f"width {c} not divisible by GroupNorm groups={self.groups}")

    @property
    def time_downsampling(self) -> int:
        return 2 ** len(self.down_layers)

    @classmethod
    def from_ddconfig(cls, embed_dim: int, ddconfig: dict[str, Any]) -> VAEConfig:
        """From the official ``first_stage_config.params`` (``embed_dim`` and ``ddconfig``)."""
        fields = ("in_channels", "out_ch", "z_channels", "ch", "num_res_blocks", "kernel_size", "double_z")
        seqs = ("ch_mult", "down_layers", "attn_layers")
        return cls(embed_dim=embed_dim, **{k: ddconfig[k] for k in fields if k in ddconfig},
                   **{k: tuple(ddconfig[k]) for k in seqs if k in ddconfig})


VAE_PRESETS = {
    "official": VAEConfig(),
    # The parity fixture's reduced size (vae_reduced.json): same structure, ch 32.
    "reduced": VAEConfig(ch=32),
}


def vae_preset(name: str) -> VAEConfig:
    if name not in VAE_PRESETS:
        raise KeyError(f"unknown VAE preset {name!r}; known: {sorted(VAE_PRESETS)}")
    return VAE_PRESETS[name]


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6)


def _conv(c_in: int, c_out: int, k: int) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, k, padding=k // 2)


class ResBlock(nn.Module):
    """x + conv2(swish(GN(conv1(swish(GN x))))), with a 1x1 ``nin_shortcut`` only when widths differ."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = _conv(c_in, c_out, kernel)
        self.norm2 = _norm(c_out, groups)
        self.conv2 = _conv(c_out, c_out, kernel)
        self.nin_shortcut = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, T) -> (B, c_out, T)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(x))


class AttnBlock(nn.Module):
    """Single-head self-attention over time with 1x1-conv projections (LDM's AttnBlock in 1-D)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = nn.Conv1d(channels, channels, 1)
        self.k = nn.Conv1d(channels, channels, 1)
        self.v = nn.Conv1d(channels, channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, T)
        h = self.norm(x)
        q, k, v = (m(h).transpose(1, 2)[:, None] for m in (self.q, self.k, self.v))  # (B, 1, T, C) each
        h = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2)  # (B, C, T); scale 1/sqrt(C)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    """Zero-pad (0, 1) then a stride-2 conv, kernel 3: T -> T / 2 (LDM's asymmetric padding)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1)))


class Upsample(nn.Module):
    """Nearest x2 in time then a kernel-3 conv: T -> 2T."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv(channels, channels, _DECODER_KERNEL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.block_1 = ResBlock(channels, channels, kernel, groups)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResBlock(channels, channels, kernel, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution level: res blocks at ``block.{j}``, then an optional ``downsample`` / ``upsample``."""

    def __init__(self, blocks: list[ResBlock], resample: nn.Module | None, name: str) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self._resample_name = name
        if resample is not None:
            self.add_module(name, resample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.block:
            x = blk(x)
        resample = getattr(self, self._resample_name, None)
        return x if resample is None else resample(x)


class Encoder(nn.Module):
    """(B, M, T) log-mel -> (B, 2Z, T') moments before ``quant_conv``."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        k, g = cfg.kernel_size, cfg.groups
        widths = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = _conv(cfg.in_channels, cfg.ch, k)
        levels, c = [], cfg.ch
        for i, w in enumerate(widths):
            blocks = [ResBlock(c if j == 0 else w, w, k, g) for j in range(cfg.num_res_blocks)]
            levels.append(Level(blocks, Downsample(w) if i in cfg.down_layers else None, "downsample"))
            c = w
        self.down = nn.ModuleList(levels)
        self.mid = MidBlock(c, k, g)
        self.norm_out = _norm(c, g)
        self.conv_out = _conv(c, 2 * cfg.z_channels, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, Z, T') latent after ``post_quant_conv`` -> (B, M, T) log-mel. Levels run from the deepest up."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        k, g = cfg.kernel_size, cfg.groups
        widths = [cfg.ch * m for m in cfg.ch_mult]
        c = widths[-1]
        self.conv_in = _conv(cfg.z_channels, c, k)
        self.mid = MidBlock(c, _DECODER_KERNEL, g)
        levels: list[Level] = [None] * len(widths)  # type: ignore[list-item]  # filled deepest first
        for i in reversed(range(len(widths))):
            w = widths[i]
            n = cfg.num_res_blocks + 1
            blocks = [ResBlock(c if j == 0 else w, w, _DECODER_KERNEL, g) for j in range(n)]
            levels[i] = Level(blocks, Upsample(w) if i - 1 in cfg.down_layers else None, "upsample")
            c = w
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(c, g)
        self.conv_out = _conv(c, cfg.out_ch, k)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class DiagonalGaussian:
    """The posterior N(mean, exp(logvar)) from moments (B, 2Z, T'); logvar clamped to [-30, 20] as in LDM."""

    def __init__(self, moments: torch.Tensor) -> None:
        self.mean, logvar = torch.chunk(moments, 2, dim=1)  # (B, Z, T') each
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * eps, eps drawn from ``generator`` (on the mean's device)."""
        mean = self.mean
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.mean + self.std * eps


class AutoencoderKL1D(nn.Module):
    """encode: (B, M, T) log10-mel -> DiagonalGaussian over (B, Z, T / 2); decode: (B, Z, T / 2) -> (B, M, T).

    Latents here are unscaled: the vector field works on ``LATENT_SCALE * z``, so decode ``z_scaled /
    LATENT_SCALE``. T must be a multiple of ``cfg.time_downsampling`` for decode(encode(x)) to keep length.
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv1d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv1d(cfg.embed_dim, cfg.z_channels, 1)

    def moments(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, M, T) -> (B, 2Z, T'): [mean | logvar] before the clamp."""
        return self.quant_conv(self.encoder(mel))

    def encode(self, mel: torch.Tensor) -> DiagonalGaussian:
        return DiagonalGaussian(self.moments(mel))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    @classmethod
    def from_pretrained(cls, path: str | Path, cfg: VAEConfig | None = None) -> AutoencoderKL1D:
        """Load a separate VAE checkpoint (bare keys) or a Frieren Lightning checkpoint.

        In a Lightning checkpoint only ``first_stage_model.*`` is read (the DiT, ``cond_stage_model`` and
        diffusion buffers such as ``betas`` / ``alphas_cumprod`` are ignored). In a bare checkpoint only the
        four module prefixes are read (a training checkpoint's ``loss.*`` discriminator is ignored). Every key
        the module needs must be present with its shape (CheckpointMismatchError otherwise).
        """
        model = cls(cfg or vae_preset("official"))
        state = read_state_dict(path)
        if any(k.startswith(LIGHTNING_PREFIX) for k in state):
            state = select_prefix(state, LIGHTNING_PREFIX)
        state = {k: v for k, v in state.items() if k.startswith(_OWN_PREFIXES)}
        load_strict(model, state, what=f"VAE {path}")
        return model.eval()
