"""Attention and fused kernels (installed as ``frieren_rt.kernels``).

Every attention call of the project goes through :func:`attention`; it runs PyTorch's SDPA on any device and a
Triton kernel on CUDA once one is registered (issue 5), so model code never changes for a backend.
"""

from frieren_rt.kernels.dispatch import attention, attention_backend, gated_gelu

__all__ = ["attention", "attention_backend", "gated_gelu"]
