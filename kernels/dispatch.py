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

__all__ = ["attention", "attention_backend", "sdpa_attention"]


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


def attention_backend(q: torch.Tensor, backend: Backend = "auto") -> str:
    """Name of the implementation :func:`attention` would use for ``q`` ("sdpa" or "triton")."""
    if backend == "sdpa":
        return "sdpa"
    triton_ok = q.is_cuda and _triton_attention() is not None
    if backend == "triton" and not triton_ok:
        raise RuntimeError(
            "backend='triton' needs CUDA tensors and the 'triton' extra (pip install 'frieren-rt[triton]')"
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
