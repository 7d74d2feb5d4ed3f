"""Float64 references and the comparison helper shared by the kernel tests."""

from __future__ import annotations

import os
import secrets

import torch

# The kernels run where Triton compiles them: CPU tensors under TRITON_INTERPRET=1 (CI), else the GPU, so the
# same tests check the compiled kernels on a lent NVIDIA machine (TRITON_INTERPRET=0 pytest tests/kernels).
DEVICE = torch.device(
    "cuda" if os.environ.get("TRITON_INTERPRET") != "1" and torch.cuda.is_available() else "cpu"
)

# Per-dtype tolerances against a float64 reference computed from the same (rounded) inputs. fp32 runs exact
# dots (interpreter; input_precision="ieee" on GPU); fp16/bf16 round the output and the P tile to 16 bits.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {  # dtype -> (atol, rtol)
    torch.float32: (2e-5, 2e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (2e-2, 2e-2),
}


def fresh_generator() -> tuple[torch.Generator, int]:
    """A generator on a fresh random seed each run (FRIEREN_TEST_SEED replays one); report the seed."""
    seed = int(os.environ.get("FRIEREN_TEST_SEED", secrets.randbits(31)))
    return torch.Generator().manual_seed(seed), seed


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v in float64. (B, H, L, D) -> (B, H, L, D).

    Padded keys get zero weight; padded query rows attend to the real keys; a batch element with no real key
    gets zeros (the kernel's documented contract).
    """
    q, k, v = q.double(), k.double(), v.double()
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, H, L, L)
    if key_padding_mask is not None:
        keep = key_padding_mask[:, None, None, :]  # (B, 1, 1, L)
        scores = scores.masked_fill(~keep, float("-inf"))
        v = v.masked_fill(~key_padding_mask[:, None, :, None], 0.0)  # padded values never count, even NaN
    weights = torch.softmax(scores, dim=-1).nan_to_num(nan=0.0)  # all-padded rows: NaN -> 0
    return weights @ v


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    """All finite, within the dtype's tolerance: NaN anywhere in ``actual`` fails, never passes."""
    bad = ~torch.isfinite(actual)
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} non-finite output elements, first at {bad.nonzero()[0].tolist()}"
    )
    atol, rtol = TOLERANCES[dtype]
    torch.testing.assert_close(
        actual.double(), expected.double(), atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}"
    )
