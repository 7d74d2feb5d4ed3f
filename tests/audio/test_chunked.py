"""Chunk tiling and context cropping of decode_chunked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from frieren_rt.audio.chunked import chunk_bounds, decode_chunked


def test_chunks_tile_the_signal_and_context_is_clipped():
    bounds = chunk_bounds(25, 10, 3, 4)
    assert bounds == [(0, 10, 0, 14), (10, 20, 7, 24), (20, 25, 17, 25)]
    with pytest.raises(ValueError):
        chunk_bounds(10, 0, 1, 1)


def test_context_covering_the_receptive_field_reproduces_a_conv_decoder():
    """A 2x upsampling decoder whose receptive field is 2 input frames each side (two kernel-3 convs)."""
    torch.manual_seed(0)
    w1, w2 = torch.randn(4, 3, 3), torch.randn(2, 4, 3)

    def decode(x: torch.Tensor) -> torch.Tensor:  # (B, 3, T) -> (B, 2, 2T)
        h = torch.tanh(F.conv1d(x, w1, padding=1))
        return F.conv1d(h, w2, padding=1).repeat_interleave(2, dim=-1)

    x = torch.randn(2, 3, 23)
    full = decode(x)
    torch.testing.assert_close(decode_chunked(decode, x, chunk=5, left=2, right=2, upsample=2), full)
    short = decode_chunked(decode, x, chunk=5, left=1, right=1, upsample=2)
    assert short.shape == full.shape and (short - full).abs().max() > 1e-3
