"""ChannelConcatDiT: Frieren's feed-forward transformer vector field (frieren.md, "Vector field").

Module and attribute names mirror the official code so that published state dicts load with strict=True
(``model.diffusion_model.*`` for this network, ``cond_stage_model.*`` for the condition Linear).
Shapes: B batch, C latent channels, T latent frames, F condition frames, H hidden, L = T + 1 tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from frieren_rt.kernels import attention, gated_gelu
from frieren_rt.model.config import VectorFieldConfig

__all__ = ["ChannelConcatDiT", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding, cos half first (official order). t: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, H)
        return self.mlp(timestep_embedding(t, self.freq_dim))


class ConditionEmbedder(nn.Module):
    """Shallow condition layers: Linear, GELU (tanh), Linear, LayerNorm. (B, F, cond_dim) -> (B, F, H)."""

    def __init__(self, cond_dim: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(cond_dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, hidden), nn.LayerNorm(hidden)
        )

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.mlp(c)


class SelfAttention(nn.Module):
    """Multi-head self-attention with bias-free q/k/v and a biased output (official ``CrossAttention``)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(hidden, hidden, bias=False)
        self.to_k = nn.Linear(hidden, hidden, bias=False)
        self.to_v = nn.Linear(hidden, hidden, bias=False)
        self.to_out = nn.Sequential(nn.Linear(hidden, hidden), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, L, H)
        b, n, h = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, n, self.heads, h // self.heads).transpose(1, 2)  # (B, nh, L, hd)

        out = attention(split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x)))  # (B, nh, L, hd)
        return self.to_out(out.transpose(1, 2).reshape(b, n, h))


class GatedConv(nn.Module):
    """Conv1d to 2 x inner channels, split into value and gate: value * GELU(gate) (exact erf GELU)."""

    def __init__(self, hidden: int, inner: int, kernel: int) -> None:
        super().__init__()
        self.proj = nn.Conv1d(hidden, 2 * inner, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, L) -> (B, inner, L)
        return gated_gelu(self.proj(x))


class ConvFeedForward(nn.Module):
    def __init__(self, hidden: int, inner: int, kernel: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            GatedConv(hidden, inner, kernel), nn.Dropout(dropout), nn.Conv1d(inner, hidden, kernel, padding=kernel // 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, L, H)
        return self.net(x.transpose(1, 2)).transpose(1, 2)


class TransformerBlock(nn.Module):
    """Pre-LN: two self-attentions (Frieren has no cross-attention) and a conv feed-forward, each residual."""

    def __init__(self, cfg: VectorFieldConfig) -> None:
        super().__init__()
        self.attn1 = SelfAttention(cfg.hidden, cfg.heads)
        self.ff = ConvFeedForward(cfg.hidden, cfg.ff_inner, cfg.ff_kernel)
        self.attn2 = SelfAttention(cfg.hidden, cfg.heads)
        self.norm1 = nn.LayerNorm(cfg.hidden)
        self.norm2 = nn.LayerNorm(cfg.hidden)
        self.norm3 = nn.LayerNorm(cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, H)
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x))
        return x + self.ff(self.norm3(x))


class DiTBlock(nn.Module):
    """GroupNorm over (H, L) -> 1x1 conv -> transformer block -> zero-initialised 1x1 conv -> residual."""

    def __init__(self, cfg: VectorFieldConfig) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(cfg.block_groups, cfg.hidden, eps=1e-6)
        self.proj_in = nn.Conv1d(cfg.hidden, cfg.hidden, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(cfg)])
        self.proj_out = nn.Conv1d(cfg.hidden, cfg.hidden, 1)
        if cfg.zero_init:
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, H, L) -> (B, H, L)
        x = self.proj_in(self.norm(h)).transpose(1, 2)  # (B, L, H)
        for block in self.transformer_blocks:
            x = block(x)
        return self.proj_out(x.transpose(1, 2)) + h


class FinalLayer(nn.Module):
    def __init__(self, cfg: VectorFieldConfig) -> None:
        super().__init__()
        self.norm_final = nn.GroupNorm(cfg.final_groups, cfg.hidden, eps=1e-5)
        self.conv1d = nn.Conv1d(cfg.hidden, cfg.latent_channels, 1)
        if cfg.zero_init:
            nn.init.zeros_(self.conv1d.weight)
            nn.init.zeros_(self.conv1d.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, H, T) -> (B, C, T)
        return self.conv1d(self.norm_final(h))


class ChannelConcatDiT(nn.Module):
    """The vector field network on already-embedded conditions.

    forward(x, timesteps, context, cond_index): x (B, C_in, T) with C_in = cfg.in_channels; timesteps (B,)
    in the network's own scale (0..1000); context (B, F, cond_dim); cond_index (T,) or (B, T) long, the
    condition frame each latent reads (length regulation). Returns the velocity (B, C, T).
    """

    def __init__(self, cfg: VectorFieldConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.t_embedder = TimestepEmbedder(h)
        self.c_embedder = ConditionEmbedder(cfg.cond_dim, h)
        self.proj_in = nn.Conv1d(cfg.in_channels, h, cfg.in_kernel, padding=cfg.in_kernel // 2)
        self.x_proj = nn.Linear(h, h // 2)
        self.c_proj = nn.Linear(h, h // 2)
        self.pos_emb = nn.Embedding(cfg.max_len, h)
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.final_layer = FinalLayer(cfg)

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, cond_index: torch.Tensor
    ) -> torch.Tensor:
        b, _, t_len = x.shape
        if t_len + 1 > self.cfg.max_len:
            raise ValueError(f"window of {t_len} latents exceeds max_len - 1 = {self.cfg.max_len - 1}")
        t_emb = self.t_embedder(timesteps)  # (B, H)
        c = self.c_embedder(context)  # (B, F, H)
        if cond_index.dim() == 1:
            c = c[:, cond_index]  # (B, T, H): length regulation to the latent rate
        else:
            c = torch.gather(c, 1, cond_index[..., None].expand(-1, -1, c.shape[-1]))  # (B, T, H)
        a = self.proj_in(x).transpose(1, 2)  # (B, T, H)
        tokens = torch.cat([self.x_proj(a), self.c_proj(c)], dim=-1)  # (B, T, H): [audio | condition]
        tokens = torch.cat([t_emb[:, None], tokens], dim=1)  # (B, L, H): timestep token first
        tokens = tokens + self.pos_emb.weight[: t_len + 1]
        h = tokens.transpose(1, 2)  # (B, H, L)
        for block in self.blocks:
            h = block(h)
        return self.final_layer(h[:, :, 1:])  # drop the timestep token -> (B, C, T)
