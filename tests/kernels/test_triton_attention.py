"""The Triton fused attention forward under the interpreter against a float64 reference (issue 5).

Every run writes into an output poisoned with NaN, so an element the kernel forgets to store fails the test.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton decorates the kernel (also when run alone)

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")
if os.environ["TRITON_INTERPRET"] != "1" and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is off and there is no GPU", allow_module_level=True)

from frieren_rt.kernels.triton_attention import AttentionBlocks, flash_attention  # noqa: E402
from tests.kernels.reference import DEVICE, assert_matches, attention_reference, fresh_generator  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _inputs(b, h, seq, d, dtype, gen, *, lengths=None):
    """q, k, v (B, H, L, D) in ``dtype`` and a (B, L) key mask (None when lengths is None)."""
    q, k, v = (torch.randn(b, h, seq, d, generator=gen).to(DEVICE, dtype) for _ in range(3))
    mask = None if lengths is None else (torch.arange(seq)[None, :] < torch.tensor(lengths)[:, None]).to(DEVICE)
    return q, k, v, mask


def _run(q, k, v, mask, **kw):
    out = torch.full_like(q, float("nan"))  # poison: every element must be written
    result = flash_attention(q, k, v, key_padding_mask=mask, out=out, **kw)
    assert result is out
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: str(t).removeprefix("torch."))
@pytest.mark.parametrize(
    ("d", "seq", "lengths"),
    [
        (64, 70, [70, 41, 1]),  # small preset, T + 1 = 70 tokens, three sessions of different lengths
        (72, 129, [129, 100]),  # official head dim padded to a 128-wide tile, L not a block multiple
        (24, 17, [17, 9, 16]),  # odd head dim, L = 16 + 1
    ],
)
def test_matches_float64_reference_with_ragged_lengths(dtype, d, seq, lengths):
    gen, seed = fresh_generator()
    q, k, v, mask = _inputs(len(lengths), 2, seq, d, dtype, gen, lengths=lengths)
    out = _run(q, k, v, mask)
    assert out.dtype == dtype
    assert_matches(out, attention_reference(q, k, v, mask), dtype, f"seed={seed} D={d} L={seq}")


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.bfloat16], ids=lambda t: str(t).removeprefix("torch.")
)
def test_without_mask_and_small_uneven_tiles(dtype):
    """16 x 32 tiles over L = 70: five query tiles, three key tiles, partial last tiles in both directions."""
    gen, seed = fresh_generator()
    q, k, v, _ = _inputs(2, 3, 70, 64, dtype, gen)
    out = _run(q, k, v, None, blocks=AttentionBlocks(block_m=16, block_n=32))
    assert_matches(out, attention_reference(q, k, v), dtype, f"seed={seed}")


@pytest.mark.parametrize("d", [8, 128])
def test_head_dim_extremes(d):
    gen, seed = fresh_generator()
    q, k, v, mask = _inputs(2, 1, 33, d, torch.float32, gen, lengths=[33, 5])
    assert_matches(
        _run(q, k, v, mask), attention_reference(q, k, v, mask), torch.float32, f"seed={seed} D={d}"
    )


def test_padded_keys_are_never_read():
    """Padding may hold garbage: NaN in padded K and V positions does not reach any output row."""
    gen, seed = fresh_generator()
    q, k, v, mask = _inputs(2, 2, 40, 64, torch.float32, gen, lengths=[25, 40])
    k[0, :, 25:] = float("nan")
    v[0, :, 25:] = float("nan")
    assert_matches(_run(q, k, v, mask), attention_reference(q, k, v, mask), torch.float32, f"seed={seed}")


def test_padded_query_rows_attend_to_real_keys_and_empty_sessions_are_zero():
    gen, _ = fresh_generator()
    q, k, v, mask = _inputs(2, 2, 20, 32, torch.float32, gen, lengths=[7, 0])
    out = _run(q, k, v, mask)
    real_only = attention_reference(q[:1, :, 7:], k[:1, :, :7], v[:1, :, :7])  # padded rows vs 7 real keys
    assert_matches(out[:1, :, 7:], real_only, torch.float32, "padded query rows")
    assert torch.equal(out[1], torch.zeros_like(out[1]))  # no real key at all: zeros, not NaN


def test_matches_sdpa_with_mask():
    """The Triton and SDPA paths of the seam agree, padded query rows included."""
    gen, seed = fresh_generator()
    q, k, v, mask = _inputs(3, 2, 70, 64, torch.float32, gen, lengths=[70, 30, 2])
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    torch.testing.assert_close(
        _run(q, k, v, mask), sdpa, atol=1e-5, rtol=1e-5, msg=lambda m: f"seed={seed}: {m}"
    )


def test_strided_inputs_and_default_output_layout():
    """The model passes head-split views of (B, L, H*D); the default output merges heads with a free view."""
    gen, seed = fresh_generator()
    b, seq, h, d = 2, 17, 2, 24
    qkv = torch.randn(b, seq, 3, h, d, generator=gen).to(DEVICE)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, L, D) views, non-contiguous
    out = flash_attention(q, k, v)
    assert out.shape == (b, h, seq, d) and out.transpose(1, 2).is_contiguous()
    assert_matches(out, attention_reference(q, k, v), torch.float32, f"seed={seed}")


def test_nan_input_is_reported_not_passed():
    """A NaN in a query propagates to its output row and the comparison helper fails on it."""
    gen, _ = fresh_generator()
    q, k, v, mask = _inputs(1, 1, 17, 16, torch.float32, gen, lengths=[17])
    q[0, 0, 3, 5] = float("nan")
    out = _run(q, k, v, mask)
    assert torch.isnan(out[0, 0, 3]).all()
    with pytest.raises(AssertionError, match="non-finite"):
        assert_matches(out, attention_reference(q, k, v, mask), torch.float32)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda q, k, v, m: (q[0], k[0], v[0], None), ValueError),  # 3-D
        (lambda q, k, v, m: (q, k[:, :, :5], v, None), ValueError),  # length mismatch
        (lambda q, k, v, m: (q, k.double(), v, None), TypeError),  # mixed dtypes
        (lambda q, k, v, m: (q.double(), k.double(), v.double(), None), TypeError),  # fp64 unsupported
        (lambda q, k, v, m: (q, k, v, m.int()), ValueError),  # mask not bool
        (lambda q, k, v, m: (q, k, v, m[:, :3]), ValueError),  # mask length
    ],
)
def test_rejects_bad_inputs_with_a_message(change, error):
    q, k, v, mask = _inputs(2, 1, 8, 16, torch.float32, torch.Generator().manual_seed(0), lengths=[8, 4])
    with pytest.raises(error):
        flash_attention(*change(q, k, v, mask)[:3], key_padding_mask=change(q, k, v, mask)[3])


def test_rejects_head_dim_over_128():
    q = torch.zeros(1, 1, 4, 129, device=DEVICE)
    with pytest.raises(ValueError, match="head dim"):
        flash_attention(q, q, q)


def test_rejects_bad_tiles():
    with pytest.raises(ValueError, match="power of two >= 16"):
        AttentionBlocks(block_m=8, block_n=64)
