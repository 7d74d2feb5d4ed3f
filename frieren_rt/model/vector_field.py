"""VectorField: the velocity contract ``v = net(x_t, t, cond)`` around ChannelConcatDiT.

It owns the condition Linear (``cond_stage_model``; the CFG null condition is zero raw features passed
through it, as in Frieren), the mapping of flow time t in [0, 1] to the network's timestep input, the length
regulation of conditions to the latent rate, and the known-latent continuity channels of the small preset.
State-dict keys equal the Lightning checkpoint's (``model.diffusion_model.*``, ``cond_stage_model.*``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from frieren_rt.flow.samplers import batch_times
from frieren_rt.model.config import VectorFieldConfig, preset
from frieren_rt.model.dit import ChannelConcatDiT
from frieren_rt.model.timing import frame_times, latent_times, repeat_index, timestamp_index

__all__ = ["VectorField", "ConditionLinear", "OFFICIAL_PREFIXES"]

# Keys of a Frieren Lightning checkpoint that belong to the vector field (frieren.md, "Checkpoint layout").
OFFICIAL_PREFIXES = ("model.diffusion_model.", "cond_stage_model.")


class ConditionLinear(nn.Module):
    """Official ``Video_Feat_Encoder_NoPosembed``: one Linear raw -> cond_dim at ``embedder.0``."""

    def __init__(self, raw_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.embedder = nn.Sequential(nn.Linear(raw_dim, cond_dim))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:  # (B, F, raw) -> (B, F, cond_dim)
        return self.embedder(raw)


class _DiffusionWrapper(nn.Module):
    """Holds the network under the attribute name Lightning's DiffusionWrapper uses."""

    def __init__(self, cfg: VectorFieldConfig) -> None:
        super().__init__()
        self.diffusion_model = ChannelConcatDiT(cfg)


class VectorField(nn.Module):
    """v = net(x_t, t, cond).

    x_t: (B, C, T) latents; t: (B,) or scalar flow time in [0, 1] (0 noise, 1 data); cond: (B, F, raw_cond_dim)
    raw visual features. Keyword options: cond_index (T,) / (B, T) frame per latent (default from the config's
    time mapping), known (B, C, T) latents already emitted and mask (B, 1, T) in {0, 1} marking them (small
    preset only). Returns (B, C, T).
    """

    def __init__(self, cfg: VectorFieldConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = _DiffusionWrapper(cfg)
        self.cond_stage_model = ConditionLinear(cfg.raw_cond_dim, cfg.cond_dim)

    @property
    def net(self) -> ChannelConcatDiT:
        return self.model.diffusion_model

    @classmethod
    def from_preset(cls, name: str, **overrides: object) -> VectorField:
        return cls(preset(name, **overrides))

    @classmethod
    def from_pretrained(cls, path: str | Path, cfg: VectorFieldConfig, *, strict: bool = True) -> VectorField:
        """Load a safetensors file or a Lightning ``.ckpt`` (weights_only) holding the official key names."""
        model = cls(cfg)
        model.load_state_dict(load_vector_field_state(path), strict=strict)
        return model

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor:
        """The CFG null: all-zero raw features shaped like ``cond`` (Frieren's zero-CAVP null)."""
        return torch.zeros_like(cond)

    def timestep_input(self, t: torch.Tensor) -> torch.Tensor:
        """Flow time -> network timestep. Official: long(t * 1000), which truncates (0.2 -> 199)."""
        scaled = t.float() * 1000
        return scaled.long() if self.cfg.timestep_input == "int1000" else scaled

    def cond_index(self, num_latents: int, num_frames: int) -> torch.Tensor:
        """Default length regulation for a window whose frames and latents start together. (T,) long."""
        if self.cfg.time_mapping == "repeat":
            return repeat_index(num_latents, num_frames, self.cfg.repeat_factor)
        fts = frame_times(num_frames, self.cfg.cond_rate)
        return timestamp_index(fts, latent_times(num_latents, self.cfg.latent_rate))

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        cond: torch.Tensor,
        *,
        cond_index: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, c, t_len = x.shape
        t = batch_times(t, x)  # (B,): a graph input under torch.jit.trace, never a constant
        if cond_index is None:
            cond_index = self.cond_index(t_len, cond.shape[1]).to(x.device)
        if self.cfg.known_latents:
            if mask is None:
                mask = x.new_zeros(b, 1, t_len)
            known = x.new_zeros(b, c, t_len) if known is None else known
            x = torch.cat([x, known * mask, mask.to(x.dtype)], dim=1)  # (B, 2C + 1, T)
        elif known is not None or mask is not None:
            raise ValueError("this vector field has no known-latent channels (config.known_latents=False)")
        context = self.cond_stage_model(cond)  # (B, F, cond_dim)
        return self.net(x, self.timestep_input(t), context, cond_index)


def load_vector_field_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The vector-field entries of a safetensors file or a Lightning checkpoint (``state_dict`` key).

    Keys outside ``model.diffusion_model.`` / ``cond_stage_model.`` (the VAE, unused diffusion buffers such as
    ``betas``) are dropped; everything else must match the model strictly.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vector field weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # noqa: PLC0415

        state = load_file(str(path))
    else:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    return {k: v for k, v in state.items() if k.startswith(OFFICIAL_PREFIXES)}
