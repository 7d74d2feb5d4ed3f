"""Fused bidirectional attention forward in Triton (issue 5): FlashAttention-2 online softmax with exp2.

``flash_attention(q, k, v, key_padding_mask=None)`` computes ``softmax(q k^T / sqrt(D)) v`` for q, k, v of
shape (B, H, L, D) without materialising the (L, L) score matrix (Dao 2023, "FlashAttention-2", Alg. 1).
It is what :func:`frieren_rt.kernels.attention` runs for CUDA tensors.

Contract (the parts a caller can rely on):
- Head dims: any D <= 128. ``tl.arange`` needs powers of two, so D is padded to BLOCK_D = next power of two
  (>= 16) inside the kernel and masked on ``d < D``; the official preset's D = 72 runs in a 128-wide tile.
- Lengths: any L, not only multiples of the block (the timestep token makes L = T + 1: 70, 130, 257).
- Key padding: ``key_padding_mask`` (B, L) bool, True = real key. Padded keys get exactly zero weight and
  their K/V memory is never read, so padding may hold garbage (even NaN) and windows of several sessions with
  different lengths share one launch. Padded *query* rows are computed like any other row (attention over
  the real keys of their batch element), exactly what SDPA returns for them; they are finite for finite
  inputs. A batch element with no real key at all gets zeros (SDPA would return NaN there).
- Dtypes: fp16, bf16, fp32. Softmax statistics and the accumulator are fp32; P is cast to the value dtype
  for the second matmul as in FlashAttention-2. fp32 dots use ``input_precision="ieee"`` (no TF32).
- CPU tensors run only under ``TRITON_INTERPRET=1`` (tests); the interpreter computes bf16 wrongly
  (environment.md, "Triton on CPU"), so bf16 is upcast to fp32 right after loading for CPU tensors.
- Output: a new (B, H, L, D) tensor laid out as (B, L, H, D) in memory, so the caller's
  ``out.transpose(1, 2).reshape(B, L, H * D)`` is free; or the ``out=`` tensor, every element written.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

__all__ = ["flash_attention", "attention_reference", "AttentionBlocks", "default_blocks", "MAX_HEAD_DIM"]

MAX_HEAD_DIM = 128
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_LOG2E = 1.4426950408889634  # exp(x) = exp2(x * log2(e)): exp2 is the native instruction (FA-2, Sec. 3.1)


# fmt: off
@triton.jit
def _attn_fwd_kernel(
    # pointers
    Q, K, V, Out, KeyMask,
    # sizes
    seq_len, num_heads, qk_scale,
    # strides (elements)
    stride_qb, stride_qh, stride_ql, stride_kb, stride_kh, stride_kl,
    stride_vb, stride_vh, stride_vl, stride_ob, stride_oh, stride_ol, stride_mb,
    # meta
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_MASK: tl.constexpr, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    # Grid: axis 0 = (batch, head) pairs (up to 2**31), axis 1 = query blocks.
    pid_bh = tl.program_id(0)
    pid_m = tl.program_id(1)
    off_b = (pid_bh // num_heads).to(tl.int64)
    off_h = (pid_bh % num_heads).to(tl.int64)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # query rows of this program
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM  # constant-folded when HEAD_DIM == BLOCK_D
    m_ok = offs_m < seq_len

    q_ptrs = Q + off_b * stride_qb + off_h * stride_qh + offs_m[:, None] * stride_ql + offs_d[None, :]
    q = tl.load(q_ptrs, mask=m_ok[:, None] & d_ok[None, :], other=0.0)  # (BLOCK_M, BLOCK_D)
    if UPCAST:
        q = q.to(tl.float32)
    k_base = K + off_b * stride_kb + off_h * stride_kh
    v_base = V + off_b * stride_vb + off_h * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running row max (log2 domain)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running softmax denominator
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    for start_n in range(0, seq_len, BLOCK_N):
        cols = start_n + offs_n
        key_ok = cols < seq_len
        if HAS_MASK:
            key_ok = key_ok & (tl.load(KeyMask + off_b * stride_mb + cols, mask=key_ok, other=0) != 0)
        kv_mask = key_ok[:, None] & d_ok[None, :]  # padded keys are never read
        k = tl.load(k_base + cols[:, None] * stride_kl + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_base + cols[:, None] * stride_vl + offs_d[None, :], mask=kv_mask, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)

        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
        s = tl.where(key_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        # A row that has seen only padded keys has m_new = -inf; subtracting 0 instead keeps exp2(-inf) = 0
        # rather than exp2(-inf - -inf) = NaN.
        m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_sub[:, None])
        alpha = tl.exp2(m_i - m_sub)  # rescales the old statistics to the new max
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    # l_i == 0 only when the batch element has no real key (then acc == 0 too): define the output as zeros,
    # not 0/0. Test "== 0", not "> 0", so a NaN from the inputs still reaches the output.
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    o_ptrs = Out + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_ol + offs_d[None, :]
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])
# fmt: on


@dataclass(frozen=True)
class AttentionBlocks:
    """Tile sizes and launch options. Blocks stay >= 16: the NVIDIA backend rejects tl.dot with K < 16."""

    block_m: int
    block_n: int
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n"):
            size = getattr(self, name)
            if size < 16 or size & (size - 1):
                raise ValueError(f"{name}={size} must be a power of two >= 16")


def default_blocks(batch_heads: int, seq_len: int, *, on_gpu: bool) -> AttentionBlocks:
    """Explicit tile choice (no autotune: it needs a GPU driver and would break the interpreter path).

    GPU: 64 x 64 tiles (FA-2 tutorial sizes for D <= 128); 32-row query tiles when 64-row tiles would leave
    most of an H100's 132 SMs idle (the small preset at batch 1 has only 2 heads); 4 warps (one Hopper
    warpgroup per 64-row tile). Interpreter: one large tile per program is fastest (each block op is a numpy
    call).
    """
    if not on_gpu:
        size = min(64, max(16, triton.next_power_of_2(seq_len)))
        return AttentionBlocks(size, size)
    block_m = 64 if batch_heads * triton.cdiv(seq_len, 64) >= 132 else 32
    return AttentionBlocks(block_m, 64, num_warps=4, num_stages=2)


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> None:
    if q.dim() != 4:
        raise ValueError(f"q must be (B, H, L, D), got shape {tuple(q.shape)}")
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must share one shape (self-attention): {q.shape}, {k.shape}, {v.shape}")
    if q.dtype not in _DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k, v must share one dtype of {_DTYPES}: {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v on different devices: {q.device}, {k.device}, {v.device}")
    if q.shape[-1] > MAX_HEAD_DIM or q.shape[-1] < 1:
        raise ValueError(f"head dim {q.shape[-1]} outside 1..{MAX_HEAD_DIM}")
    if mask is not None:
        b, _, seq, _ = q.shape
        if mask.dtype != torch.bool or tuple(mask.shape) != (b, seq):
            raise ValueError(
                f"key_padding_mask must be bool (B, L) = {(b, seq)}, got {mask.dtype} {tuple(mask.shape)}"
            )
        if mask.device != q.device:
            raise ValueError(f"key_padding_mask on {mask.device}, q on {q.device}")


def _launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    out: torch.Tensor,
    blocks: AttentionBlocks,
) -> None:
    """Assert the layout the kernel indexes and launch it. All tensors (B, H, L, D), mask (B, L) or None."""
    b, h, seq, d = q.shape
    for name, t in (("q", q), ("k", k), ("v", v), ("out", out)):
        assert t.stride(-1) == 1, (
            f"{name}: the head dim must be contiguous (stride(-1) == 1), got {t.stride()}"
        )
    assert out.shape == q.shape and out.dtype == q.dtype, f"out must be {tuple(q.shape)} {q.dtype}"
    assert q.is_cuda or q.device.type == "cpu", f"unsupported device {q.device}"
    if mask is not None:
        assert mask.stride(-1) == 1, "key_padding_mask rows must be contiguous"
        mask_arg, stride_mb = mask.view(torch.uint8), mask.stride(0)  # bool -> uint8 is a free view
    else:
        mask_arg, stride_mb = q, 0  # never dereferenced: HAS_MASK is False
    block_d = max(16, triton.next_power_of_2(d))
    grid = (b * h, triton.cdiv(seq, blocks.block_m))
    # fmt: off
    _attn_fwd_kernel[grid](
        q, k, v, out, mask_arg,
        seq, h, _LOG2E / d**0.5,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2), stride_mb,
        HEAD_DIM=d, BLOCK_D=block_d, BLOCK_M=blocks.block_m, BLOCK_N=blocks.block_n,
        HAS_MASK=mask is not None,
        # CPU tensors can only be running in the interpreter, which mis-computes bf16 (environment.md).
        UPCAST=q.dtype == torch.bfloat16 and not q.is_cuda,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else None,  # None: the backend default
        num_warps=blocks.num_warps, num_stages=blocks.num_stages,
    )
    # fmt: on


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    out: torch.Tensor | None = None,
    blocks: AttentionBlocks | None = None,
) -> torch.Tensor:
    """Bidirectional attention ``softmax(q k^T / sqrt(D)) v``. q, k, v: (B, H, L, D) -> (B, H, L, D).

    key_padding_mask: (B, L) bool, True where a key is real (see the module docstring for padded rows).
    out: optional (B, H, L, D) tensor to write into (any strides with a contiguous head dim).
    blocks: tile sizes; default from :func:`default_blocks`.
    """
    _check_inputs(q, k, v, key_padding_mask)
    b, h, seq, d = q.shape
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    if key_padding_mask is not None and key_padding_mask.stride(-1) != 1:
        key_padding_mask = key_padding_mask.contiguous()
    if out is None:
        # (B, L, H, D) memory viewed as (B, H, L, D): the model merges heads with a free reshape afterwards.
        out = torch.empty(b, seq, h, d, dtype=q.dtype, device=q.device).transpose(1, 2)
    if seq == 0 or b * h == 0:
        return out
    if blocks is None:
        blocks = default_blocks(b * h, seq, on_gpu=q.is_cuda)
    _launch(q, k, v, key_padding_mask, out, blocks)
    return out


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Pure-PyTorch statement of the kernel's contract, in q's dtype (pass float64 for a reference).

    q, k, v (B, H, L, D) -> (B, H, L, D). Padded keys get zero weight and their values never count; a batch
    element with no real key gets zeros. Materialises the (B, H, L, L) scores: for checks and benchmarks only.
    """
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, H, L, L)
    if key_padding_mask is not None:
        scores = scores.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
        v = v.masked_fill(~key_padding_mask[:, None, :, None], 0.0)
    return torch.softmax(scores, dim=-1).nan_to_num(nan=0.0) @ v
