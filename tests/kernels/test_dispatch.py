"""The attention seam picks its backend per call from the tensors (issue 5)."""

from __future__ import annotations

import pytest
import torch

import frieren_rt.kernels.dispatch as dispatch
from frieren_rt.kernels import attention, attention_backend


def test_cpu_tensors_use_sdpa_even_with_triton_installed(monkeypatch):
    calls = []
    real = dispatch.sdpa_attention

    def counting(q, k, v, key_padding_mask=None):
        calls.append(q.device.type)
        return real(q, k, v, key_padding_mask)

    monkeypatch.setattr(dispatch, "sdpa_attention", counting)
    q, k, v = torch.randn(3, 2, 2, 9, 16).unbind(0)
    assert attention_backend(q) == "sdpa"
    out = attention(q, k, v, key_padding_mask=torch.ones(2, 9, dtype=torch.bool))
    assert calls == ["cpu"] and out.shape == q.shape


def test_triton_backend_on_cpu_tensors_is_refused():
    with pytest.raises(RuntimeError, match="CUDA"):
        attention_backend(torch.zeros(1, 1, 2, 16), "triton")


def test_triton_kernel_is_importable_for_the_gpu_path():
    pytest.importorskip("triton")
    assert dispatch._triton_attention() is not None
