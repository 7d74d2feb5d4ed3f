"""Configuration of the vector field: one frozen dataclass, named presets, derived sizes.

Sizes and semantics of the ``official`` preset are those of Frieren's ChannelConcatDiT
(../shared/reference/frieren.md, "Vector field"); ``small`` is this project's streaming model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

TimeMapping = Literal["repeat", "timestamp"]
TimestepInput = Literal["int1000", "float1000"]

__all__ = ["VectorFieldConfig", "PRESETS", "preset"]


@dataclass(frozen=True, kw_only=True)
class VectorFieldConfig:
    """Everything that shapes the ChannelConcatDiT.

    latent_channels: channels C of the (B, C, T) latent the field acts on.
    raw_cond_dim: width of the raw per-frame visual features (CAVP 512 in the official model).
    cond_dim: width after the condition Linear (``cond_stage_model``) that also defines the CFG null.
    hidden / heads / depth: transformer width, attention heads (head dim = hidden / heads), number of blocks.
    ff_mult / ff_kernel: conv feed-forward inner width multiple and kernel (gated, so the first conv is 2x).
    in_kernel: kernel of the audio input Conv1d.
    max_len: rows of the learned position table (tokens = T + 1 with the timestep token).
    cond_rate / latent_rate: frames and latents per second, used by the length regulation.
    time_mapping: "repeat" = official nearest integer repeat (drifts: 32 frames at 4 fps = 8.0 s vs 256 latents
        = 8.192 s, 2.4 %); "timestamp" = each latent takes the frame nearest its true time.
    timestep_input: "int1000" = the network receives long(t * 1000) as the official code does (truncating);
        "float1000" = t * 1000 unrounded.
    known_latents: extra input channels [known latents * mask | mask] so a window can be told the audio
        latents already emitted (streaming continuity; issue 2, "small").
    zero_init: zero-initialise each block's output projection and the final conv (paper design).
    """

    latent_channels: int = 20
    raw_cond_dim: int = 512
    cond_dim: int = 768
    hidden: int = 576
    heads: int = 8
    depth: int = 4
    ff_mult: int = 4
    ff_kernel: int = 9
    in_kernel: int = 5
    max_len: int = 1000
    block_groups: int = 32
    final_groups: int = 16
    cond_rate: float = 4.0
    latent_rate: float = 31.25
    time_mapping: TimeMapping = "repeat"
    timestep_input: TimestepInput = "int1000"
    known_latents: bool = False
    zero_init: bool = True

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by heads={self.heads}")
        if self.hidden % 2:
            raise ValueError(f"hidden={self.hidden} must be even (audio and condition halves)")
        for groups in (self.block_groups, self.final_groups):
            if self.hidden % groups:
                raise ValueError(f"hidden={self.hidden} must be divisible by GroupNorm groups={groups}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def in_channels(self) -> int:
        """Channels of the audio input conv: x_t, plus [known * mask | mask] when continuity is on."""
        return 2 * self.latent_channels + 1 if self.known_latents else self.latent_channels

    @property
    def ff_inner(self) -> int:
        return self.ff_mult * self.hidden

    @property
    def repeat_factor(self) -> int:
        """Integer latents per condition frame for the official "repeat" mapping (31.25 / 4 -> 8)."""
        return max(1, round(self.latent_rate / self.cond_rate))

    def with_(self, **changes: object) -> VectorFieldConfig:
        return replace(self, **changes)


PRESETS: dict[str, VectorFieldConfig] = {
    # Exactly the published ChannelConcatDiT + Video_Feat_Encoder_NoPosembed (159,276,692 parameters).
    "official": VectorFieldConfig(),
    # Streaming on a 2-core CPU: 128 wide, 4 blocks of 2 heads (head dim 64), 1.6 s windows at 43 latents/s;
    # feed-forward kernel 3 (conv FFNs are most of the cost: kernel 5 trained 1.3x slower here).
    # Conditions are visual features at the video rate, mapped to latents by true timestamps.
    "small": VectorFieldConfig(
        latent_channels=8,
        raw_cond_dim=256,
        cond_dim=128,
        hidden=128,
        heads=2,
        depth=4,
        ff_mult=2,
        ff_kernel=3,
        in_kernel=3,
        max_len=256,
        cond_rate=30.0,
        latent_rate=22050 / 512,
        time_mapping="timestamp",
        timestep_input="float1000",
        known_latents=True,
    ),
}


def preset(name: str, **overrides: object) -> VectorFieldConfig:
    """A named preset, optionally with fields overridden (e.g. ``preset("small", depth=2)``)."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
    return base.with_(**overrides) if overrides else base
