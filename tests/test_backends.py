"""Acceleration backends (frieren_rt/backends.py, issue 5): bucket padding, eager identity, compile, script and
bf16 parity on a tiny FoleyModel, TensorRT glue through a fake module, clear errors for what cannot run here."""

from __future__ import annotations

import sys
import types
from dataclasses import replace

import pytest
import torch

from frieren_rt.backends import (
    TENSORRT_EXTRA,
    Autocast,
    BackendError,
    Bucketed,
    Scripted,
    ScriptedVelocity,
    apply_backend,
    autocast_dtype,
    bucket_for,
    check_backend,
    pad_batch,
    pad_inputs,
    resolve_backend,
)
from frieren_rt.cli import main
from frieren_rt.model.foley import FoleyConfig, FoleyModel

C, T, S = 8, 12, 5  # latent channels, window latents, condition slots of the tiny model


def tiny_model() -> FoleyModel:
    torch.manual_seed(0)
    cfg = FoleyConfig()
    # zero_init off: a zero-initialised output conv would make every backend trivially agree on zeros.
    cfg = replace(cfg, field=replace(cfg.field, hidden=64, depth=1, heads=1, zero_init=False))
    return FoleyModel(cfg).eval()


def inputs(b: int, model: FoleyModel, seed: int = 1) -> tuple[tuple[torch.Tensor, ...], dict]:
    """The generator's call: x (B, C, T), t (B,), cond (B, S, D), cond_index (B, T), known, mask."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, C, T, generator=g)
    t = torch.rand(b, generator=g)
    cond = torch.randn(b, S, model.cfg.feature_dim, generator=g)
    index = torch.randint(0, S, (b, T), generator=g)
    mask = (torch.arange(T) < T // 2).float().expand(b, 1, T)
    known = torch.randn(b, C, T, generator=g)
    return (x, t, cond), {"cond_index": index, "known": known, "mask": mask}


# --- pure bucket logic --------------------------------------------------------------------------------------
def test_bucket_for_picks_smallest_fitting_bucket() -> None:
    assert [bucket_for(b, (1, 2, 4, 8)) for b in (1, 2, 3, 4, 5, 8)] == [1, 2, 4, 4, 8, 8]
    assert bucket_for(9, (1, 2, 4, 8)) is None
    with pytest.raises(ValueError):
        bucket_for(0, (1, 2))


def test_pad_batch_repeats_last_row_and_keeps_real_rows() -> None:
    x = torch.arange(6.0).view(3, 2)
    y = pad_batch(x, 4)
    assert y.shape == (4, 2)
    assert torch.equal(y[:3], x) and torch.equal(y[3], x[2])
    assert pad_batch(x, 3) is x
    with pytest.raises(ValueError):
        pad_batch(x, 2)


def test_pad_inputs_pads_batched_tensors_only() -> None:
    x, cond = torch.randn(3, C, T), torch.randn(3, S, 4)
    shared_index = torch.arange(T)  # (T,): one mapping for all rows, not per sample
    (px, pt, pc), kw = pad_inputs((x, torch.tensor(0.25), cond),
                                  {"cond_index": shared_index, "mask": torch.ones(3, 1, T)}, 4)
    assert px.shape == (4, C, T) and pc.shape == (4, S, 4) and kw["mask"].shape == (4, 1, T)
    assert torch.equal(pt, torch.full((4,), 0.25))  # scalar t -> (bucket,)
    assert kw["cond_index"] is shared_index
    assert x.shape == (3, C, T)  # the caller's tensors are not modified


def test_bucketed_pads_batch_3_to_4_slices_back_and_reuses_runner() -> None:
    built: list[tuple[int, ...]] = []

    def make(args, kwargs):  # a runner that records its build and doubles x
        built.append(tuple(args[0].shape))
        return lambda a, kw: a[0] * 2 + kw["mask"]

    run = Bucketed(make, buckets=(1, 2, 4), fallback=lambda x, t, cond, **kw: x * 0)
    x, cond, mask = torch.randn(3, C, T), torch.randn(3, S, 4), torch.rand(3, 1, T)
    out = run(x, torch.zeros(3), cond, mask=mask)
    assert out.shape == (3, C, T)
    torch.testing.assert_close(out, x * 2 + mask)
    run(torch.randn(4, C, T), torch.zeros(4), torch.randn(4, S, 4), mask=torch.rand(4, 1, T))
    assert built == [(4, C, T)]  # batch 3 and batch 4 share the bucket-4 runner
    big = run(torch.ones(5, C, T), torch.zeros(5), torch.randn(5, S, 4), mask=torch.rand(5, 1, T))
    assert torch.equal(big, torch.zeros(5, C, T))  # beyond every bucket: the unpadded fallback


# --- eager, errors ------------------------------------------------------------------------------------------
def test_eager_fp32_is_the_module_itself() -> None:
    model = tiny_model()
    assert apply_backend(model, "eager") is model


@pytest.mark.parametrize(("backend", "precision", "device", "needle"), [
    ("fast", "fp32", "cpu", "unknown backend 'fast'"),
    ("eager", "fp8", "cpu", "unknown precision 'fp8'"),
    ("eager", "fp16", "cpu", "on CPU use 'bf16'"),
    ("cudagraph", "fp32", "cpu", "needs a CUDA device"),
])
def test_unusable_choices_raise_clear_errors(backend: str, precision: str, device: str, needle: str) -> None:
    with pytest.raises(BackendError, match=needle):
        apply_backend(tiny_model(), backend, device=device, precision=precision)


def test_cudagraph_without_cuda_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendError, match="needs CUDA"):
        check_backend("cudagraph", "fp32", "cuda")


def test_tensorrt_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # None in sys.modules: import raises ImportError
    with pytest.raises(BackendError, match=r"pip install 'frieren-rt\[tensorrt\]'"):
        apply_backend(tiny_model(), "tensorrt", device="cuda")
    assert "frieren-rt[tensorrt]" in TENSORRT_EXTRA


def test_tensorrt_bare_exception_on_import_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.abc
    import importlib.machinery

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "torch_tensorrt":
                return importlib.machinery.ModuleSpec(name, Loader())
            return None

    class Loader(importlib.abc.Loader):
        def create_module(self, spec):
            return None

        def exec_module(self, module):
            raise Exception("TensorRT libraries not found")  # what the placeholder package raises

    monkeypatch.delitem(sys.modules, "torch_tensorrt", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    with pytest.raises(BackendError, match=r"frieren-rt\[tensorrt\].*TensorRT libraries not found"):
        check_backend("tensorrt", "fp32", "cuda")


def test_tensorrt_glue_compiles_per_bucket_and_uses_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    def fake_compile(module, **kw):
        calls.append({"module": module, **kw})
        return lambda x, t, cond, **k: torch.full_like(x, 7.0, dtype=torch.float16)  # the "engine"

    monkeypatch.setitem(sys.modules, "torch_tensorrt", types.SimpleNamespace(compile=fake_compile))
    model = tiny_model()
    run = apply_backend(model, "tensorrt", device="cuda", precision="fp16", buckets=(1, 2, 4))
    (x, t, cond), kw = inputs(3, model)
    out = run(x, t, cond, **kw)
    assert out.dtype == torch.float32 and out.shape == (3, C, T)
    assert torch.equal(out, torch.full((3, C, T), 7.0))  # the engine's result, sliced back to batch 3
    (call,) = calls
    assert call["module"] is model and call["ir"] == "dynamo"
    assert call["enabled_precisions"] == {torch.float32, torch.float16}
    assert [tuple(a.shape) for a in call["arg_inputs"]] == [(4, C, T), (4,), (4, S, model.cfg.feature_dim)]
    assert set(call["kwarg_inputs"]) == {"cond_index", "known", "mask"}
    assert call["kwarg_inputs"]["mask"].shape == (4, 1, T)
    torch.testing.assert_close(call["arg_inputs"][0][:3], x)
    run(*inputs(4, model)[0], **inputs(4, model)[1])
    assert len(calls) == 1  # same bucket and shapes: the engine is reused


# --- numerics on the tiny model -----------------------------------------------------------------------------
def test_bf16_autocast_on_cpu_matches_fp32() -> None:
    model = tiny_model()
    args, kw = inputs(2, model)
    with torch.no_grad():
        ref = model(*args, **kw)
        out = apply_backend(model, "eager", precision="bf16")(*args, **kw)
    assert out.dtype == torch.float32
    # bf16 keeps 8 mantissa bits (relative step 2^-8 = 0.4 %); through a 1-block DiT the error stays within
    # 2 % of the output scale.
    scale = ref.abs().max().item()
    assert (out - ref).abs().max().item() <= 0.02 * scale + 1e-3
    assert isinstance(apply_backend(model, "eager", precision="bf16"), Autocast)
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16 and autocast_dtype("fp16", "cuda") is torch.float16


@pytest.mark.slow
def test_compile_matches_eager_on_tiny_model() -> None:
    # ~10-25 s on the shared 2-core machine: an inductor cold compile (environment.md: 17-19 s for 4 layers).
    model = tiny_model()
    run = apply_backend(model, "compile", device="cpu", buckets=(4,))
    for b in (3, 4):  # batch 3 pads to the bucket; both use the same compiled graph
        args, kw = inputs(b, model, seed=b)
        with torch.no_grad():
            torch.testing.assert_close(run(*args, **kw), model(*args, **kw), atol=1e-4, rtol=1e-4)
    assert len(run.runners) == 1


def test_options_carry_the_backend_to_the_engine_and_reject_unknown_names() -> None:
    from frieren_rt.pipeline import GenerationOptions
    from frieren_rt.streaming.builders import EngineOptions, random_engine

    with pytest.raises(ValueError, match="backend 'fast'"):
        GenerationOptions(backend="fast")
    engine = random_engine(EngineOptions(precision="bf16"))
    assert isinstance(engine.generator.velocity, Autocast)
    with pytest.raises(BackendError, match="needs a CUDA device"):
        random_engine(EngineOptions(backend="cudagraph"))


# --- CLI ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["generate", "serve"])
def test_cli_help_lists_backend_and_precision(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--backend" in out and "cudagraph" in out and "--precision" in out


# --- script (TorchScript trace + freeze) ---------------------------------------------------------------------
def test_auto_is_script_on_cpu_at_fp32_and_eager_otherwise() -> None:
    assert resolve_backend("auto", "cpu") == "script"
    assert resolve_backend("auto", "cpu", "bf16") == "eager"
    assert resolve_backend("auto", "cuda") == "eager"
    assert resolve_backend("compile", "cpu") == "compile"
    assert isinstance(apply_backend(tiny_model(), "auto"), ScriptedVelocity)


def test_script_matches_eager_at_other_batches_and_reads_t() -> None:
    model = tiny_model()
    run = apply_backend(model, "script")
    for b in (1, 3, 2):  # traced at batch 1; the batch is not part of the key
        args, kw = inputs(b, model, seed=b)
        with torch.no_grad():
            torch.testing.assert_close(run(*args, **kw), model(*args, **kw), atol=1e-5, rtol=1e-5)
    (graphs,) = run.by_names.values()
    assert len(graphs.graphs) == 1
    # t is a graph input, not the traced constant (torch.as_tensor inside the model would have frozen it).
    args, kw = inputs(1, model, seed=7)
    x, _, cond = args
    with torch.no_grad():
        for t in (0.0, 0.5, torch.tensor([0.9])):
            torch.testing.assert_close(run(x, t, cond, **kw), model(x, t, cond, **kw), atol=1e-5, rtol=1e-5)


def test_script_retraces_when_a_non_batch_shape_or_the_keywords_change() -> None:
    model = tiny_model()
    run = apply_backend(model, "script")
    (x, t, cond), kw = inputs(2, model)
    with torch.no_grad():
        run(x, t, cond, **kw)
        shorter = {k: v[..., : T - 2] for k, v in kw.items()}
        torch.testing.assert_close(run(x[..., : T - 2], t, cond, **shorter),
                                   model(x[..., : T - 2], t, cond, **shorter), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(run(x, t, cond), model(x, t, cond), atol=1e-5, rtol=1e-5)  # no keywords
    assert sorted(len(s.graphs) for s in run.by_names.values()) == [1, 2]


def test_script_runs_under_inference_mode_and_refuses_bf16_and_non_tensor_keywords() -> None:
    model = tiny_model()
    run = apply_backend(model, "script")
    args, kw = inputs(1, model)
    with torch.inference_mode():  # the generator samples in inference mode: the first call traces there
        out = run(*args, **kw)
    with torch.no_grad():
        torch.testing.assert_close(run(*args, **kw), out)
    with pytest.raises(TypeError, match="tensor keywords only"):
        run(*args, cond_index=[0, 1])
    with pytest.raises(BackendError, match="fp32 only"):
        apply_backend(model, "script", precision="bf16")


def test_scripted_module_matches_eager_on_a_conv_stack() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3, padding=1), torch.nn.BatchNorm1d(8), torch.nn.GELU()).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    frozen = Scripted(net)
    for b in (1, 4):
        x = torch.randn(b, 4, 16)
        with torch.no_grad():
            torch.testing.assert_close(frozen(x), net(x), atol=1e-5, rtol=1e-5)
    assert len(frozen.graphs) == 1


def test_a_module_that_cannot_be_traced_runs_eager_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - as a torch without torch.jit would fail
        raise RuntimeError("tracing is gone")

    monkeypatch.setattr(torch.jit, "trace", broken)
    net = torch.nn.Linear(4, 3).eval()
    frozen = Scripted(net)
    x = torch.randn(2, 4)
    with caplog.at_level("WARNING", logger="frieren_rt.backends"):
        out = frozen(x)
    with torch.no_grad():
        torch.testing.assert_close(out, net(x))
    assert "could not trace Linear" in caplog.text and "running it eager" in caplog.text
    assert list(frozen.graphs.values()) == [net]
