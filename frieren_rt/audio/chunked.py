"""Chunked decoding of convolutional decoders with left/right context (pure functions).

A decoder whose output at time n depends only on inputs in [n - left, n + right] (its receptive field, in
input frames) gives bit-for-bit the same output when each chunk is decoded with at least that much real
context on each side and the context's output is cropped away (Caillon & Esling 2022, arXiv 2204.07064,
discuss the cost of this overlap against cached streaming convolutions). At the ends of the signal the chunk
sees the same zero padding as the full decode, so no special case is needed there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["chunk_bounds", "decode_chunked"]


def chunk_bounds(length: int, chunk: int, left: int, right: int) -> list[tuple[int, int, int, int]]:
    """Per chunk (start, end, ctx_start, ctx_end) in input frames, clipped to [0, length).

    Chunks [start, end) tile [0, length); [ctx_start, ctx_end) adds up to ``left``/``right`` context frames.
    """
    if chunk <= 0 or left < 0 or right < 0:
        raise ValueError(f"chunk={chunk} must be > 0 and context ({left}, {right}) >= 0")
    out = []
    for start in range(0, length, chunk):
        end = min(start + chunk, length)
        out.append((start, end, max(0, start - left), min(length, end + right)))
    return out


def decode_chunked(
    decode: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    chunk: int,
    left: int,
    right: int,
    upsample: int,
) -> torch.Tensor:
    """Decode x (B, C, T) chunk by chunk; ``decode`` maps (B, C, t) -> (B, C', t * upsample).

    Returns (B, C', T * upsample), equal to ``decode(x)`` when left/right cover the decoder's receptive field.
    """
    pieces = []
    for start, end, c0, c1 in chunk_bounds(x.shape[-1], chunk, left, right):
        y = decode(x[..., c0:c1])  # (B, C', (c1 - c0) * upsample)
        lo = (start - c0) * upsample
        pieces.append(y[..., lo : lo + (end - start) * upsample])
    return torch.cat(pieces, dim=-1)
