"""The one attention seam of the project.

``attention(q, k, v, key_padding_mask=None)`` computes bidirectional softmax attention
``softmax(q k^T / sqrt(D)) v`` for q, k, v of shape (B, H, L, D). It dispatches to the Triton fused kernel
(``frieren_rt.kernels.triton_attention``, issue 5) when the tensors are on CUDA and Triton imports, and to
``torch.nn.functional.scaled_dot_product_attention`` otherwise. The dispatch is decided per call from the
tensors, never from an environment variable read at import time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

Backend = Literal["auto", "sdpa", "triton"]

__all__ = ["attention", "attention_backend", "gated_gelu", "sdpa_attention"]


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference path: PyTorch SDPA. q, k, v (B, H, L, D); key_padding_mask (B, L) bool, True = attend."""
    mask = None
    if key_padding_mask is not None:
        mask = key_padding_mask[:, None, None, :]  # (B, 1, 1, Lk) broadcast over heads and queries
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@functools.cache
def _triton_attention() -> Callable[..., torch.Tensor] | None:
    """The Triton kernel's public function, or None when Triton or the kernel module is unavailable."""
    try:
        from frieren_rt.kernels.triton_attention import flash_attention  # noqa: PLC0415
    except Exception:  # Triton missing or broken: the SDPA path stays correct.
        return None
    return flash_attention


@functools.cache
def _triton_geglu() -> Callable[..., torch.Tensor] | None:
    try:
        from frieren_rt.kernels.triton_geglu import geglu  # noqa: PLC0415
    except Exception:
        return None
    return geglu


def gated_gelu(x: torch.Tensor) -> torch.Tensor:
    """value * GELU(gate) (exact erf GELU) for the conv feed-forward. x (B, 2 * inner, L) -> (B, inner, L).

    The first channel half is the value, the second the gate (Frieren's GEGLU order). On CUDA with Triton the
    fused kernel reads x once and writes the product once; elsewhere eager PyTorch.
    """
    kernel = _triton_geglu() if x.is_cuda and not torch.is_grad_enabled() else None
    if kernel is not None:
        return kernel(x.contiguous())
    value, gate = x.chunk(2, dim=1)
    return value * F.gelu(gate)


def attention_backend(q: torch.Tensor, backend: Backend = "auto") -> str:
    """Name of the implementation :func:`attention` would use for ``q`` ("sdpa" or "triton")."""
    if backend == "sdpa":
        return "sdpa"
    # The Triton kernel is forward-only: training (a graph that needs gradients) stays on SDPA.
    needs_grad = torch.is_grad_enabled() and q.requires_grad
    triton_ok = q.is_cuda and not needs_grad and _triton_attention() is not None
    if backend == "triton" and not triton_ok:
        raise RuntimeError(
            "backend='triton' needs CUDA tensors without autograd and the 'triton' extra "
            "(pip install 'frieren-rt[triton]')"
        )
    return "triton" if triton_ok else "sdpa"


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Bidirectional attention. q, k, v: (B, H, L, D) -> (B, H, L, D).

    key_padding_mask: optional (B, L) bool, True where a key is real; padded keys get no weight, so windows
    of different lengths can share one batch (issue 5).
    """
    if attention_backend(q, backend) == "triton":
        kernel = _triton_attention()
        assert kernel is not None
        return kernel(q, k, v, key_padding_mask=key_padding_mask)
    return sdpa_attention(q, k, v, key_padding_mask)
