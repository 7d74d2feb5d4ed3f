"""Fused gated GELU for the conv feed-forward in Triton (issue 5): ``value * gelu(gate)`` in one pass.

The model's ``GatedConv`` computes ``value, gate = conv(x).chunk(2, dim=1); value * F.gelu(gate)``: eager
PyTorch reads the gate, writes GELU(gate), then reads both halves again and writes the product (5 tensor
passes); this kernel reads each half once and writes once (3 passes). GELU is the exact erf form
``0.5 * g * (1 + erf(g / sqrt(2)))`` as in F.gelu's default. ``tl.math.erf`` is used because libdevice
functions fail under the interpreter (environment.md, "Triton on CPU"); math runs in fp32 for every dtype.

``geglu(x)``: x (B, 2 * inner, L) -> (B, inner, L); channels [0, inner) are the value, [inner, 2 inner) the
gate (``chunk(2, dim=1)`` order).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["geglu", "geglu_reference"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


# fmt: off
@triton.jit
def _geglu_kernel(
    # pointers
    X, Out,
    # sizes: half = inner * L elements per batch element and half; total = B * half
    half, total,
    # meta
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # flat index into (B, inner, L)
    ok = offs < total
    b = offs // half
    value_offs = offs + b * half  # row b of x holds [value (half) | gate (half)]
    value = tl.load(X + value_offs, mask=ok, other=0.0).to(tl.float32)
    gate = tl.load(X + value_offs + half, mask=ok, other=0.0).to(tl.float32)
    gelu = 0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476))  # erf(g / sqrt(2))
    tl.store(Out + offs, (value * gelu).to(Out.dtype.element_ty), mask=ok)
# fmt: on


def _launch(x: torch.Tensor, out: torch.Tensor, block: int) -> None:
    """Assert the flat layout the kernel indexes and launch. x (B, 2I, L) and out (B, I, L) contiguous."""
    assert x.is_contiguous(), "x must be contiguous (B, 2 * inner, L)"
    assert out.is_contiguous(), "out must be contiguous (B, inner, L)"
    b, two_inner, seq = x.shape
    assert out.shape == (b, two_inner // 2, seq) and out.dtype == x.dtype, (
        f"out must be {(b, two_inner // 2, seq)}"
    )
    assert block >= 16 and block & (block - 1) == 0, f"block={block} must be a power of two >= 16"
    half = (two_inner // 2) * seq
    total = b * half
    _geglu_kernel[(triton.cdiv(total, block),)](x, out, half, total, BLOCK=block)


def geglu(x: torch.Tensor, *, out: torch.Tensor | None = None, block: int = 1024) -> torch.Tensor:
    """``value * gelu(gate)`` with ``value, gate = x.chunk(2, dim=1)``. x: (B, 2 * inner, L) -> (B, inner, L).

    out: optional contiguous (B, inner, L) tensor to write into. CPU tensors need ``TRITON_INTERPRET=1``.
    """
    if x.dim() != 3 or x.shape[1] % 2:
        raise ValueError(f"x must be (B, 2 * inner, L) with an even channel count, got {tuple(x.shape)}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"x dtype {x.dtype} not one of {_DTYPES}")
    x = x.contiguous()
    b, two_inner, seq = x.shape
    if out is None:
        out = torch.empty(b, two_inner // 2, seq, dtype=x.dtype, device=x.device)
    if out.numel():
        _launch(x, out, block)
    return out


def geglu_reference(x: torch.Tensor) -> torch.Tensor:
    """Pure-PyTorch reference, in x's dtype: exactly what ``GatedConv`` computes. (B, 2I, L) -> (B, I, L)."""
    value, gate = x.chunk(2, dim=1)
    return value * torch.nn.functional.gelu(gate)
