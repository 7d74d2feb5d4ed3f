"""Kernel and vector-field benchmark (issue 5): one script, one H100, under 5 minutes.

Sections, in order:
1. Correctness of every Triton kernel on the device against a float64 reference (max abs error).
2. Attention: Triton fused kernel vs PyTorch SDPA vs eager softmax(QK^T)V on the project's shapes
   (small preset: 2 heads x 64, L in {70, 130}; official: 8 heads x 72, L = 257), fp16 / bf16.
3. gated GELU: Triton vs eager ``value * gelu(gate)`` on the conv feed-forward's shapes.
4. One-step window of the vector field (presets small / official) per batch size: eager (Triton attention),
   eager with SDPA attention, torch.compile, CUDA graph; then sessions per GPU in real time: the largest
   batch whose window time fits one hop (160 ms by default; a one-step sampler makes one call per hop).

Times are medians of CUDA-event-timed single calls after warm-up. ``--cpu-smoke`` runs the same code on CPU
with tiny sizes (Triton through TRITON_INTERPRET=1, perf_counter timing) to sanity-check the script.

    python benchmarks/kernels.py                  # on a GPU machine
    python benchmarks/kernels.py --cpu-smoke      # anywhere, ~1 minute
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch  # the kernel modules are imported only after main() settles TRITON_INTERPRET

BATCHES = (1, 8, 32, 64, 128, 256)


@dataclass(frozen=True)
class AttnShape:
    """One attention geometry of the project: heads x head dim at L = T + 1 tokens."""

    preset: str
    heads: int
    head_dim: int
    seq: int


ATTN_SHAPES = (
    AttnShape("small", 2, 64, 70),
    AttnShape("small", 2, 64, 130),
    AttnShape("official", 8, 72, 257),
)
WINDOW_LATENTS = {"small": 69, "official": 256}  # T per one-step window (L = T + 1 with the timestep token)
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU, Triton via the interpreter")
    p.add_argument("--batches", type=int, nargs="+", default=None, help=f"batch sizes (default {BATCHES})")
    p.add_argument(
        "--presets",
        nargs="+",
        default=None,
        choices=["small", "official"],
        help="vector-field presets to time (default: both; CPU smoke: small)",
    )
    p.add_argument(
        "--dtypes",
        nargs="+",
        default=["fp16", "bf16"],
        choices=["fp16", "bf16", "fp32"],
        help="attention timing dtypes",
    )
    p.add_argument(
        "--model-dtype",
        default="bf16",
        choices=["fp16", "bf16", "fp32"],
        help="autocast dtype of the vector field on GPU (CPU smoke runs fp32)",
    )
    p.add_argument("--hop-ms", type=float, default=160.0, help="real-time budget per window (ms)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (saves its compile time)")
    p.add_argument("--skip-kernels", action="store_true", help="skip sections 1-3")
    p.add_argument("--skip-model", action="store_true", help="skip section 4")
    p.add_argument(
        "--budget-s",
        type=float,
        default=210.0,
        help="wall-clock budget: slow parts still pending after it are skipped and marked so",
    )
    return p.parse_args(argv)


# ---------------------------------------------------------------- timing


class Timer:
    """Median wall time (ms) of single calls: CUDA events on GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device, *, target_ms: float = 150.0, max_iters: int = 200) -> None:
        self.device, self.target_ms, self.max_iters = device, target_ms, max_iters

    def _once(self, fn: Callable[[], object]) -> float:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    def median_ms(self, fn: Callable[[], object], warmup: int = 3) -> float:
        for _ in range(warmup):
            first = self._once(fn)
        iters = max(3, min(self.max_iters, int(self.target_ms / max(first, 1e-3))))
        return statistics.median(self._once(fn) for _ in range(iters))


def fmt_ms(ms: float | str | None) -> str:
    if ms is None:
        return "-"
    if isinstance(ms, str):
        return ms
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def attempt(timer: Timer, fn: Callable[[], object], *, graph: bool = False) -> float | str:
    """The median time of ``fn`` (replayed from a CUDA graph if ``graph``), or a short reason it failed: a
    failed mode must not end the benchmark."""
    try:
        return timer.median_ms(cuda_graph(fn) if graph else fn)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:60] if str(exc) else ''}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


# ---------------------------------------------------------------- kernels


def ragged_mask(batch: int, seq: int, device: torch.device) -> torch.Tensor:
    """(B, L) bool: session i has max(1, L - 7 i mod L) real tokens (mixed lengths in one launch)."""
    lengths = torch.tensor([max(1, seq - (7 * i) % seq) for i in range(batch)], device=device)
    return torch.arange(seq, device=device)[None, :] < lengths[:, None]


def check_kernels(device: torch.device) -> None:
    from frieren_rt.kernels.triton_attention import attention_reference, flash_attention
    from frieren_rt.kernels.triton_geglu import geglu

    rows = []
    gen = torch.Generator(device="cpu").manual_seed(0)
    for shape in (ATTN_SHAPES[0], ATTN_SHAPES[2]):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            q, k, v = (
                torch.randn(3, shape.heads, shape.seq, shape.head_dim, generator=gen).to(device, dtype)
                for _ in range(3)
            )
            mask = ragged_mask(3, shape.seq, device)
            out = flash_attention(q, k, v, key_padding_mask=mask)
            ref = attention_reference(q.double(), k.double(), v.double(), mask)
            err = (out.double() - ref).abs().max().item()
            rows.append(
                [f"attention {shape.preset} D={shape.head_dim} L={shape.seq}", _dt(dtype), f"{err:.2e}"]
            )
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x = torch.randn(2, 2 * 256, 70, generator=gen).to(device, dtype)
        value, gate = x.double().chunk(2, dim=1)
        err = (geglu(x).double() - value * torch.nn.functional.gelu(gate)).abs().max().item()
        rows.append(["geglu (2, 512, 70)", _dt(dtype), f"{err:.2e}"])
    rows += vector_field_seam_rows(device)
    print("\n## Correctness vs float64 (max abs error; ragged key masks)\n")
    print(markdown_table(["kernel", "dtype", "max abs err"], rows))


def vector_field_seam_rows(device: torch.device) -> list[list[str]]:
    """The whole small vector field through the attention seam's default (Triton on CUDA tensors) against the
    same weights with SDPA attention: relative error ||a - b|| / ||b|| (METHOD.md), fp32 and bf16 autocast.
    On CPU both paths are SDPA, so the row reads 0 there."""
    from frieren_rt.model import VectorField, preset

    torch.manual_seed(0)
    model = VectorField(preset("small", zero_init=False)).to(device).eval()
    inputs = window_inputs(model, WINDOW_LATENTS["small"], 3, device)
    rows = []
    for autocast_dtype in (None, torch.bfloat16):
        if autocast_dtype is not None and device.type != "cuda":
            continue
        step = make_step(model, inputs, autocast_dtype)
        out = step().double()
        with sdpa_attention_in_model():
            ref = step().double()
        rel = ((out - ref).norm() / ref.norm()).item()
        name = "fp32" if autocast_dtype is None else f"{_dt(autocast_dtype)} autocast"
        rows.append(["vector field small, triton vs sdpa seam (rel. L2)", name, f"{rel:.2e}"])
    return rows


def eager_attention(q, k, v, mask):
    """The naive baseline: materialised softmax(q k^T / sqrt(D)) v in the input dtype."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, L, L)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def time_attention(device, timer, batches, dtypes) -> None:
    import torch.nn.functional as F

    from frieren_rt.kernels.triton_attention import flash_attention

    shapes = ATTN_SHAPES if device.type == "cuda" else (AttnShape("small", 2, 64, 70),)
    rows = []
    for shape in shapes:
        for dt_name in dtypes:
            dtype = DTYPES[dt_name]
            for b in batches:
                q, k, v = (
                    torch.randn(b, shape.heads, shape.seq, shape.head_dim, device=device, dtype=dtype)
                    for _ in range(3)
                )
                mask = ragged_mask(b, shape.seq, device)
                sdpa_mask = mask[:, None, None, :]
                t_tri = attempt(timer, functools.partial(flash_attention, q, k, v, key_padding_mask=mask))
                t_sdpa = attempt(timer, functools.partial(F.scaled_dot_product_attention, q, k, v, sdpa_mask))
                t_eager = attempt(timer, functools.partial(eager_attention, q, k, v, mask))
                flops = 4 * b * shape.heads * shape.seq**2 * shape.head_dim
                tflops = f"{flops / t_tri / 1e9:.1f}" if isinstance(t_tri, float) else "-"
                speed = (
                    f"{t_sdpa / t_tri:.2f}x"
                    if isinstance(t_tri, float) and isinstance(t_sdpa, float)
                    else "-"
                )
                rows.append(
                    [
                        shape.preset,
                        str(b),
                        str(shape.heads),
                        str(shape.seq),
                        str(shape.head_dim),
                        dt_name,
                        fmt_ms(t_tri),
                        fmt_ms(t_sdpa),
                        fmt_ms(t_eager),
                        speed,
                        tflops,
                    ]
                )
    print("\n## Attention forward (ms, median; ragged key masks)\n")
    header = [
        "preset",
        "B",
        "H",
        "L",
        "D",
        "dtype",
        "triton",
        "sdpa",
        "eager",
        "sdpa/triton",
        "triton TFLOP/s",
    ]
    print(markdown_table(header, rows))


def time_geglu(device, timer, batches) -> None:
    from frieren_rt.kernels.triton_geglu import geglu, geglu_reference

    shapes = {"small": (512, 70), "official": (4608, 257)}  # (2 * ff_mult * hidden, L)
    if device.type != "cuda":
        shapes = {"small": (512, 70)}
    rows = []
    for preset_name, (channels, seq) in shapes.items():
        for b in batches:
            x = torch.randn(
                b, channels, seq, device=device, dtype=torch.bfloat16 if device.type == "cuda" else None
            )
            t_tri = attempt(timer, functools.partial(geglu, x))
            t_eager = attempt(timer, functools.partial(geglu_reference, x))
            gbs = (
                f"{1.5 * x.numel() * x.element_size() / t_tri / 1e6:.0f}" if isinstance(t_tri, float) else "-"
            )
            rows.append([preset_name, str(b), str(tuple(x.shape)), fmt_ms(t_tri), fmt_ms(t_eager), gbs])
    print("\n## Gated GELU value * gelu(gate) (ms, median)\n")
    print(markdown_table(["preset", "B", "input", "triton", "eager", "triton GB/s"], rows))


# ---------------------------------------------------------------- vector field


@contextlib.contextmanager
def sdpa_attention_in_model() -> Iterator[None]:
    """Route the model's attention calls to SDPA for one timing (the model calls the seam with no backend)."""
    import frieren_rt.model.dit as dit

    original = dit.attention
    dit.attention = functools.partial(original, backend="sdpa")
    try:
        yield
    finally:
        dit.attention = original


def window_inputs(model, t_len: int, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Inputs of one window: x (B, C, T), t (B,), cond (B, F, raw), cond_index (T,) on the device."""
    cfg = model.cfg
    frames = max(math.ceil(t_len * cfg.cond_rate / cfg.latent_rate), math.ceil(t_len / cfg.repeat_factor)) + 1
    return {
        "x": torch.randn(batch, cfg.latent_channels, t_len, device=device),
        "t": torch.rand(batch, device=device),
        "cond": torch.randn(batch, frames, cfg.raw_cond_dim, device=device),
        "cond_index": model.cond_index(t_len, frames).to(device),  # precomputed: no host copy in a graph
    }


def make_step(model, inputs, autocast_dtype) -> Callable[[], torch.Tensor]:
    device_type = inputs["x"].device.type

    def step() -> torch.Tensor:
        with (
            torch.no_grad(),
            torch.autocast(
                device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None, cache_enabled=False
            ),
        ):
            return model(inputs["x"], inputs["t"], inputs["cond"], cond_index=inputs["cond_index"])

    return step


def cuda_graph(step: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """Capture one call after a side-stream warm-up (kernel JIT and allocator settle outside the capture)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def time_vector_field(device, timer, batches, args, deadline: float) -> None:
    """Eager, eager with SDPA attention and CUDA-graph timings first; torch.compile last, while time is left
    (its cold compiles are the only slow part, so they are what the budget cuts)."""
    from frieren_rt.model import VectorField, preset

    on_gpu = device.type == "cuda"
    autocast_dtype = DTYPES[args.model_dtype] if on_gpu and args.model_dtype != "fp32" else None
    use_compile = not args.no_compile and on_gpu
    modes = (
        ["eager", "eager+sdpa"] + (["cuda graph"] if on_gpu else []) + (["compile"] if use_compile else [])
    )
    times = {(name, m): {} for name in args.presets for m in modes}  # (preset, mode) -> {B: ms or reason}
    models = {}
    for name in args.presets:
        torch.manual_seed(0)
        models[name] = model = VectorField(preset(name, zero_init=False)).to(device).eval()
        for b in batches:
            step = make_step(model, window_inputs(model, WINDOW_LATENTS[name], b, device), autocast_dtype)
            times[name, "eager"][b] = attempt(timer, step)
            with sdpa_attention_in_model():
                times[name, "eager+sdpa"][b] = attempt(timer, step)
            if on_gpu:
                times[name, "cuda graph"][b] = attempt(timer, step, graph=True)
                torch.cuda.empty_cache()
    compile_s = {}
    for name in args.presets if use_compile else ():
        compiled = torch.compile(models[name], dynamic=True)  # one graph for B > 1 instead of one per batch
        for b in batches:
            if time.monotonic() > deadline:
                times[name, "compile"][b] = "skipped (budget)"
                continue
            t0 = time.monotonic()
            step = make_step(
                compiled, window_inputs(models[name], WINDOW_LATENTS[name], b, device), autocast_dtype
            )
            times[name, "compile"][b] = attempt(timer, step)
            compile_s[name] = max(compile_s.get(name, 0.0), time.monotonic() - t0)
        torch.cuda.empty_cache()
    print_vector_field_tables(args, modes, batches, times, compile_s, args.model_dtype if on_gpu else "fp32")


def realtime_sessions(per_batch: dict[int, float | str], hop_ms: float) -> tuple[int, str]:
    """Largest measured batch whose window time fits the hop, and what bounds the true capacity."""
    measured = sorted(per_batch)
    fits = [b for b in measured if isinstance(per_batch[b], float) and per_batch[b] <= hop_ms]
    best = max(fits, default=0)
    if best == measured[-1]:
        return best, "at least (largest batch measured)"
    following = [b for b in measured if b > best]
    return best, f"fewer than {following[0]}" if best else f"none of {measured} fits"


def print_vector_field_tables(args, modes, batches, times, compile_s, dtype_name: str) -> None:
    print(f"\n## Vector field, one-step window (ms, median; autocast {dtype_name}; T = {WINDOW_LATENTS})\n")
    rows = [
        [name, str(b), str(b * (WINDOW_LATENTS[name] + 1))] + [fmt_ms(times[name, m].get(b)) for m in modes]
        for name in args.presets
        for b in batches
    ]
    print(markdown_table(["preset", "B", "tokens"] + modes, rows))
    if dtype_name == "fp32" and "cuda graph" not in modes:
        print(
            "\n(CPU: the attention seam runs SDPA for CPU tensors, so both eager columns are the same path)"
        )
    print(
        f"\n## Sessions per device in real time (one vector-field call per {args.hop_ms:.0f} ms hop; "
        "classifier-free guidance doubles the batch, so halve these with CFG)\n"
    )
    rows = []
    for name in args.presets:
        for mode in modes:
            best, note = realtime_sessions(times[name, mode], args.hop_ms)
            if mode == "compile" and name in compile_s:
                note += f"; slowest first call (compile) {compile_s[name]:.0f} s"
            rows.append([name, mode, str(best), note])
    print(markdown_table(["preset", "mode", "sessions", "note"], rows))


# ---------------------------------------------------------------- main


def _dt(dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpu_smoke:
        # Must precede the kernel modules' import: @triton.jit reads it when decorating (environment.md).
        os.environ["TRITON_INTERPRET"] = "1"
    import triton

    start = time.monotonic()
    on_gpu = torch.cuda.is_available() and not args.cpu_smoke
    if not on_gpu and not args.cpu_smoke:
        print("no CUDA device: run with --cpu-smoke for a CPU sanity check", file=sys.stderr)
        return 2
    device = torch.device("cuda" if on_gpu else "cpu")
    name = (
        torch.cuda.get_device_name(device)
        if on_gpu
        else f"CPU ({platform.processor() or platform.machine()})"
    )
    print(
        "# frieren-rt kernel benchmark\n\n"
        f"device: {name}; torch {torch.__version__}; triton {triton.__version__}; "
        f"python {platform.python_version()}; TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '0')}"
    )
    if on_gpu and os.environ.get("TRITON_INTERPRET") == "1":
        print(
            "warning: TRITON_INTERPRET=1 on a GPU machine: Triton timings are the interpreter's",
            file=sys.stderr,
        )
    batches = args.batches or (BATCHES if on_gpu else (1, 2))
    timer = Timer(device) if on_gpu else Timer(device, target_ms=0.0, max_iters=3)
    if args.presets is None:  # the official model at T = 256 takes seconds per call on a CPU
        args.presets = ["small", "official"] if on_gpu else ["small"]
    if not args.skip_kernels:
        check_kernels(device)
        time_attention(device, timer, batches, args.dtypes if on_gpu else ["fp32"])
        time_geglu(device, timer, batches)
    if not args.skip_model:
        time_vector_field(device, timer, batches, args, deadline=start + args.budget_s)
    print(f"\ntotal wall time: {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
