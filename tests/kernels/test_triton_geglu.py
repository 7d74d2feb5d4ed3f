"""The fused gated GELU (value * gelu(gate)) under the interpreter against a float64 reference (issue 5)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton decorates the kernel (also when run alone)

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

pytest.importorskip("triton")
if os.environ["TRITON_INTERPRET"] != "1" and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is off and there is no GPU", allow_module_level=True)

from frieren_rt.kernels.triton_geglu import geglu, geglu_reference  # noqa: E402
from tests.kernels.reference import DEVICE, fresh_generator  # noqa: E402

# Relative to the float64 result; 16-bit outputs are one rounding (plus the interpreter's bf16 store) away.
TOLERANCES = {torch.float32: (1e-5, 1e-5), torch.float16: (1e-3, 2e-3), torch.bfloat16: (1e-2, 1.6e-2)}


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=lambda t: str(t).removeprefix("torch."))
@pytest.mark.parametrize(("b", "inner", "seq"), [(2, 256, 70), (3, 24, 17), (1, 5, 1)])
def test_matches_float64_reference(dtype, b, inner, seq):
    gen, seed = fresh_generator()
    x = (3 * torch.randn(b, 2 * inner, seq, generator=gen)).to(DEVICE, dtype)  # wide range: GELU's tails matter
    out = torch.full((b, inner, seq), float("nan"), dtype=dtype, device=DEVICE)  # poison: every element must be written
    assert geglu(x, out=out) is out
    assert torch.isfinite(out).all(), f"seed={seed}: unwritten or non-finite elements"
    value, gate = x.double().chunk(2, dim=1)
    atol, rtol = TOLERANCES[dtype]
    torch.testing.assert_close(
        out.double(), value * F.gelu(gate), atol=atol, rtol=rtol, msg=lambda m: f"seed={seed}: {m}"
    )


def test_is_the_model_gated_conv():
    """The model's GatedConv arithmetic in fp32, on a non-contiguous input and a partial last block."""
    gen, _ = fresh_generator()
    x = torch.randn(2, 70, 2 * 48, generator=gen).to(DEVICE).transpose(1, 2)  # (B, 2I, L) view
    torch.testing.assert_close(geglu(x, block=128), geglu_reference(x), atol=1e-6, rtol=1e-5)


def test_nan_gate_propagates():
    x = torch.ones(1, 4, 3, device=DEVICE)
    x[0, 3, 1] = float("nan")
    out = geglu(x)
    assert torch.isnan(out[0, 1, 1]) and torch.isfinite(out).sum() == out.numel() - 1


def test_rejects_odd_channels():
    with pytest.raises(ValueError, match="even"):
        geglu(torch.zeros(1, 3, 4, device=DEVICE))
