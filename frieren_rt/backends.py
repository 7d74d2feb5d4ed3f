"""Acceleration backends for the velocity call: eager, torch.compile, CUDA graphs, TensorRT (issue 5).

:func:`apply_backend` turns a module with the velocity contract
``v = module(x (B, C, T), t (B,), cond (B, S, D), **kwargs)`` into a callable with the same signature that
runs it faster, optionally under autocast:

- ``auto``: ``script`` on CPU at fp32, ``eager`` otherwise (the streaming engine's default, :func:`resolve_backend`).
- ``eager``: the module itself (with ``precision="fp32"``).
- ``script``: TorchScript trace + freeze (:class:`Scripted`), fp32. The point is the GIL, not speed alone: an eager
  forward pass is a few hundred Python-level op calls, each of which gives the GIL up and must win it back, so
  when the event loop's thread (WebRTC, Opus, RTP) holds it the inference thread waits at every op. Measured on
  the 2-core AMD EPYC: a hop of 17 ms alone took 69 ms beside a Python thread busy two thirds of the time,
  and the student vocoder 50 ms against 19 ms for its frozen graph, which runs in C++ without the GIL
  (BENCHMARKS.md). The pipeline applies it to every network of the hop (features, field, VAE, vocoder).
- ``compile``: ``torch.compile`` with static shapes; on CPU with inductor freezing (weights folded in as
  constants: measured about 1.2x against 1.0x without it, ../shared/reference/environment.md). A changed
  weight after the first call is not seen: build a new one.
- ``cudagraph``: one CUDA graph per (batch bucket, input shapes), captured on first use after a warm-up on a
  side stream, replayed with the inputs copied into static buffers. CUDA only.
- ``tensorrt``: ``torch_tensorrt.compile`` per (bucket, shapes), through the optional ``tensorrt`` extra.

Static-shape backends pad the batch up to the next bucket (1, 2, 4, 8, 16 by default) so a live engine whose
batch changes with the number of sessions builds at most one graph per bucket, never one per batch size (a
CPU recompile stalls for 6-19 s). The padding rows repeat the last real row: every row is a valid input and
rows never interact (attention and norms are per sample), so the real rows' outputs are unchanged.
"""

from __future__ import annotations

import logging
import types
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import nn

from frieren_rt.flow.samplers import batch_times

__all__ = [
    "BACKENDS", "PRECISIONS", "DEFAULT_BUCKETS", "TENSORRT_EXTRA", "Autocast", "BackendError", "Bucketed",
    "Scripted", "ScriptedVelocity", "apply_backend", "autocast_dtype", "bucket_for", "capture_cuda_graph",
    "check_backend", "import_tensorrt", "input_key", "pad_batch", "pad_inputs", "resolve_backend",
]

BACKENDS: tuple[str, ...] = ("auto", "eager", "script", "compile", "cudagraph", "tensorrt")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
# Up to max_batch 8 sessions, doubled by classifier-free guidance inside the guided velocity.
DEFAULT_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16)
TENSORRT_EXTRA = "pip install 'frieren-rt[tensorrt]'"

Args = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (x, t, cond)
Kwargs = dict[str, Any]
Runner = Callable[[Args, Kwargs], torch.Tensor]

logger = logging.getLogger(__name__)


class BackendError(ValueError):
    """The requested backend or precision cannot run here (missing extra, no CUDA, unknown name).

    A ValueError so the CLI reports it as one line instead of a traceback."""


# --- pure helpers -------------------------------------------------------------------------------------------
def bucket_for(batch: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket >= batch, or None when the batch exceeds every bucket."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return min((b for b in buckets if b >= batch), default=None)


def pad_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, ...) -> (size, ...) repeating the last row; ``x`` itself when B == size, else a new tensor."""
    b = x.shape[0]
    if b > size:
        raise ValueError(f"batch {b} exceeds bucket {size}")
    if b == size:
        return x
    return torch.cat([x, x[-1:].expand(size - b, *x.shape[1:])])  # (size, ...)


def pad_inputs(args: Args, kwargs: Kwargs, size: int) -> tuple[Args, Kwargs]:
    """Pad one velocity call's inputs to batch ``size``.

    x and cond are padded; t (scalar or (B,)) becomes a (size,) tensor; keyword tensors are padded when
    they have >= 2 dims and lead with B (known (B, C, T), mask (B, 1, T), cond_index (B, T)); anything
    else, such as a shared cond_index (T,), passes unchanged."""
    x, t, cond = args
    b = x.shape[0]
    if cond.shape[0] != b:
        raise ValueError(f"cond batch {cond.shape[0]} != x batch {b}")
    t = torch.as_tensor(t, device=x.device)
    t = t.expand(b) if t.dim() == 0 else t  # (B,)
    padded = {k: pad_batch(v, size) if _is_batched(v, b) else v for k, v in kwargs.items()}
    return (pad_batch(x, size), pad_batch(t, size), pad_batch(cond, size)), padded


def _is_batched(v: object, batch: int) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[0] == batch


def input_key(args: Args, kwargs: Kwargs) -> Hashable:
    """What a static-shape runner is specialised on: every tensor's shape, dtype and device; other values."""

    def sig(v: Any) -> Hashable:
        return (tuple(v.shape), v.dtype, str(v.device)) if isinstance(v, torch.Tensor) else v

    return tuple(sig(a) for a in args), tuple((k, sig(kwargs[k])) for k in sorted(kwargs))


def autocast_dtype(precision: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on a device type; None for fp32 (no autocast)."""
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "fp16" and device_type == "cpu":
        # The machines' AMX does bf16 tiles (AMX-BF16), not fp16; bf16 also keeps fp32's exponent range.
        raise BackendError("precision 'fp16' is for CUDA; on CPU use 'bf16' (AMX)")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def resolve_backend(backend: str, device: torch.device | str, precision: str = "fp32") -> str:
    """``auto`` -> ``script`` on CPU at fp32 (no GIL stalls beside the event loop), ``eager`` otherwise (bf16
    autocast; a GPU server picks cudagraph or tensorrt itself); any other name unchanged."""
    if backend != "auto":
        return backend
    return "script" if torch.device(device).type == "cpu" and precision == "fp32" else "eager"


def check_backend(backend: str, precision: str, device: torch.device | str) -> None:
    """Raise BackendError if ``backend`` at ``precision`` cannot run on ``device`` (call before loading)."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    device = torch.device(device)
    backend = resolve_backend(backend, device, precision)
    autocast_dtype(precision, device.type)
    if backend == "script" and precision != "fp32":
        raise BackendError(f"backend 'script' runs fp32 only (got {precision!r}); use 'compile' for bf16")
    if backend == "tensorrt":
        import_tensorrt()  # first: a missing extra is the error to report, wherever it runs
    if backend in ("cudagraph", "tensorrt") and device.type != "cuda":
        raise BackendError(f"backend {backend!r} needs a CUDA device (got {str(device)!r}); "
                           "use 'compile' or 'eager' on CPU")
    if backend == "cudagraph" and not torch.cuda.is_available():
        raise BackendError("backend 'cudagraph' needs CUDA, but torch.cuda.is_available() is False")


def import_tensorrt() -> types.ModuleType:
    """torch_tensorrt, or BackendError naming the extra. Its import raises a bare Exception (not ImportError)
    when the TensorRT libraries are missing (environment.md, "torch-tensorrt"), hence the broad except."""
    try:
        import torch_tensorrt  # noqa: PLC0415
    except Exception as exc:  # noqa: BLE001
        raise BackendError(f"backend 'tensorrt' needs torch-tensorrt and its TensorRT libraries: "
                           f"{TENSORRT_EXTRA} (import failed: {type(exc).__name__}: {exc})") from exc
    return torch_tensorrt


# --- wrappers -----------------------------------------------------------------------------------------------
class Autocast(nn.Module):
    """Runs ``module`` under autocast and returns the velocity in x's dtype, so samplers stay in fp32.

    The autocast weight cache is off: it pays only under autograd, and is unsafe inside CUDA graph capture."""

    def __init__(self, module: nn.Module, dtype: torch.dtype, device_type: str) -> None:
        super().__init__()
        self.module, self.dtype, self.device_type = module, dtype, device_type

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=False):
            out = self.module(x, t, cond, **kwargs)
        return out.to(x.dtype)


class Bucketed:
    """Pads each call's batch to a bucket and runs the runner built for its (bucket, shapes) key.

    make_runner(args, kwargs) is called once per new key with that key's padded inputs and returns
    ``runner(args, kwargs) -> (bucket, ...)``. A batch larger than every bucket runs ``fallback`` unpadded.
    ``runners`` maps each key to its runner (inspectable: how many graphs were built)."""

    def __init__(self, make_runner: Callable[[Args, Kwargs], Runner], *, buckets: Sequence[int],
                 fallback: Callable[..., torch.Tensor]) -> None:
        if not buckets or min(buckets) < 1:
            raise ValueError(f"buckets must be positive batch sizes, got {buckets}")
        self.make_runner, self.buckets, self.fallback = make_runner, tuple(sorted(buckets)), fallback
        self.runners: dict[Hashable, Runner] = {}

    def __call__(self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor,
                 **kwargs: Any) -> torch.Tensor:
        b = x.shape[0]
        size = bucket_for(b, self.buckets)
        if size is None:
            return self.fallback(x, t, cond, **kwargs)
        args, padded = pad_inputs((x, t, cond), kwargs, size)  # type: ignore[arg-type]
        return self.run(args, padded)[:b]  # (B, C, T)

    def run(self, args: Args, kwargs: Kwargs) -> torch.Tensor:
        key = input_key(args, kwargs)
        runner = self.runners.get(key)
        if runner is None:
            runner = self.runners[key] = self.make_runner(args, kwargs)
        return runner(args, kwargs)

    def prepare(self, example_inputs_fn: Callable[[int], tuple[Args, Kwargs]]) -> None:
        """Build every bucket's runner now (a live server then never stalls on a first compile or capture).
        example_inputs_fn(bucket) -> (args, kwargs) at that batch size."""
        with torch.no_grad():
            for size in self.buckets:
                self.run(*example_inputs_fn(size))


class Scripted:
    """``module(*tensors)`` run as a frozen TorchScript graph: traced once per input structure (every shape
    but the leading batch dimension, dtype, device), with the weights folded in as constants.

    Tracing records ops, not Python: a branch on a shape is fixed for the structure it was traced at (hence the
    key), and the batch dimension must not steer Python control flow (tests/test_backends.py checks each
    shipped network against eager at other batch sizes). A changed weight after the first call is not seen.
    ``graphs`` maps each key to its graph (inspectable: how many traces were made). A module that cannot be
    traced (or a torch without torch.jit: it is deprecated) runs eager for that key, with one logged warning:
    slower beside the event loop, never a failed stream."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval()
        self.graphs: dict[Hashable, Callable[..., torch.Tensor]] = {}

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        key = tuple((tuple(a.shape[1:]), a.dtype, str(a.device)) for a in args)
        graph = self.graphs.get(key)
        if graph is None:
            graph = self.graphs[key] = self._trace(args)
        with torch.no_grad():
            return graph(*args)

    def _trace(self, args: tuple[torch.Tensor, ...]) -> Callable[..., torch.Tensor]:
        # Outside inference mode: a graph traced on inference tensors could not run on normal ones later.
        example = tuple(a.clone() if a.is_inference() else a for a in args)
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                # Shape branches warn "might not generalize": the key re-traces when a non-batch shape changes.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                # torch.jit is deprecated for torch.compile / torch.export, but a compiled CPU graph is still
                # driven op by op from Python, so it does not get the hop off the GIL; trace + freeze does.
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.freeze(torch.jit.trace(self.module, example, check_trace=False))
        except Exception as exc:  # noqa: BLE001 - any tracing failure: run eager rather than fail the stream
            logger.warning("backend 'script': could not trace %s (%s: %s); running it eager",
                           type(self.module).__name__, type(exc).__name__, exc)
            return self.module


class _Positional(nn.Module):
    """The velocity contract with its keyword tensors positional (tracing takes positional inputs only)."""

    def __init__(self, module: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.module, self.names = module, names

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return self.module(x, t, cond, **dict(zip(self.names, rest, strict=True)))


class ScriptedVelocity:
    """The velocity contract through :class:`Scripted`: t becomes a (B,) tensor (a graph input, never a
    constant); keyword tensors are passed positionally, one graph family per set of keyword names; None
    keywords are dropped (the module's default)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval()
        self.by_names: dict[tuple[str, ...], Scripted] = {}

    def __call__(self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor,
                 **kwargs: torch.Tensor | None) -> torch.Tensor:
        given = {k: v for k, v in kwargs.items() if v is not None}
        if not all(isinstance(v, torch.Tensor) for v in given.values()):
            raise TypeError(f"backend 'script' takes tensor keywords only, got {sorted(given)}")
        names = tuple(sorted(given))
        t = batch_times(t, x).to(x.dtype)  # (B,)
        scripted = self.by_names.get(names)
        if scripted is None:
            scripted = self.by_names[names] = Scripted(_Positional(self.module, names))
        return scripted(x, t, cond, *(given[k] for k in names))


def _compile_runner(module: nn.Module, device: torch.device) -> Callable[[Args, Kwargs], Runner]:
    # Static shapes: the buckets bound the variants. Freezing folds weights into the CPU graph
    # (environment.md: ~1.2x vs ~1.0x); it applies only to graphs compiled without grad, which is how
    # every call here runs.
    options = {"freezing": True} if device.type == "cpu" else None
    compiled = torch.compile(module, dynamic=False, options=options)

    def run(args: Args, kwargs: Kwargs) -> torch.Tensor:
        with torch.no_grad():
            return compiled(*args, **kwargs)

    return lambda args, kwargs: run


def _static_copy(v: Any) -> Any:
    """A buffer the graph reads: a normal (not inference-mode) tensor, so later copies work in any mode."""
    if not isinstance(v, torch.Tensor):
        return v
    with torch.inference_mode(False):
        return v.clone()


def capture_cuda_graph(module: Callable[..., torch.Tensor], args: Args, kwargs: Kwargs, *,
                       warmup: int = 2) -> Runner:
    """Capture ``module(*args, **kwargs)`` as one CUDA graph; the returned runner copies new inputs of the
    same shapes into the static buffers, replays, and returns a copy of the output (the next replay reuses
    its memory)."""
    if not all(v.is_cuda for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)):
        raise BackendError("backend 'cudagraph' needs every input on the CUDA device (got CPU tensors)")
    static_args = tuple(_static_copy(a) for a in args)
    static_kwargs = {k: _static_copy(v) for k, v in kwargs.items()}
    with torch.no_grad():
        # Warm-up on a side stream (the CUDA graph recipe): lazy inits, cuBLAS workspaces and Triton JIT
        # compiles happen here, not inside the capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                module(*static_args, **static_kwargs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the engine captures in its inference worker thread while other threads may run CUDA.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = module(*static_args, **static_kwargs)

    def replay(new_args: Args, new_kwargs: Kwargs) -> torch.Tensor:
        for dst, src in zip(static_args, new_args, strict=True):
            dst.copy_(src)
        for k, v in new_kwargs.items():
            if isinstance(v, torch.Tensor):
                static_kwargs[k].copy_(v)
        graph.replay()
        return static_out.clone()

    return replay


def _tensorrt_runner(module: nn.Module, precision: str) -> Callable[[Args, Kwargs], Runner]:
    trt = import_tensorrt()
    enabled = {torch.float32} | ({autocast_dtype(precision, "cuda")} if precision != "fp32" else set())

    def make(args: Args, kwargs: Kwargs) -> Runner:
        # One static-shape engine per bucket: torch.export (ir="dynamo") then TensorRT at these exact shapes.
        engine = trt.compile(module, ir="dynamo", arg_inputs=list(args),
                             kwarg_inputs={k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)},
                             enabled_precisions=enabled)
        return lambda a, kw: engine(*a, **kw).to(a[0].dtype)

    return make


def apply_backend(module: nn.Module, backend: str = "eager", *, device: torch.device | str = "cpu",
                  precision: str = "fp32", buckets: Sequence[int] = DEFAULT_BUCKETS,
                  example_inputs_fn: Callable[[int], tuple[Args, Kwargs]] | None = None,
                  ) -> Callable[..., torch.Tensor]:
    """``module`` (velocity contract: (x (B, C, T), t (B,), cond (B, S, D), **kwargs) -> (B, C, T)) run by
    ``backend`` at ``precision`` on ``device``. Same call signature and output dtype as the module.

    eager + fp32 returns the module itself. example_inputs_fn(bucket) -> ((x, t, cond), kwargs): build every
    bucket's compiled graph / CUDA graph / engine now instead of on first use. Raises BackendError (a
    ValueError) naming the fix when the backend cannot run here."""
    device = torch.device(device)
    check_backend(backend, precision, device)
    backend = resolve_backend(backend, device, precision)
    module = module.eval()
    if backend == "script":
        return ScriptedVelocity(module)
    dtype = autocast_dtype(precision, device.type)
    # TensorRT takes the precision as a build flag (enabled_precisions) rather than as autocast ops.
    inner = Autocast(module, dtype, device.type) if dtype is not None and backend != "tensorrt" else module
    if backend == "eager":
        return inner
    if backend == "compile":
        make = _compile_runner(inner, device)
    elif backend == "cudagraph":
        def make(args: Args, kwargs: Kwargs) -> Runner:
            return capture_cuda_graph(inner, args, kwargs)
    else:
        make = _tensorrt_runner(inner, precision)
    bucketed = Bucketed(make, buckets=buckets, fallback=inner)
    if example_inputs_fn is not None:
        bucketed.prepare(example_inputs_fn)
    return bucketed
