"""Reading published checkpoints and loading them strictly, with errors that name every bad key.

The official Frieren code loads its frozen stages with ``strict=False``, silently ignoring what does not fit;
here every key the module needs must be present with its exact shape, and the only keys dropped are those a
caller names as belonging to something else (``ignore_prefixes``): the Lightning checkpoint's diffusion
buffers, a VAE checkpoint's training loss, CAVP's audio branch.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CheckpointMismatchError",
    "read_state_dict",
    "select_prefix",
    "strip_substring",
    "check_state_dict",
    "load_strict",
]


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit a module: the message lists every missing, unexpected or misshapen key."""


def read_state_dict(path: str | Path, *, inner_key: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or a torch checkpoint (always ``weights_only=True``).

    Torch checkpoints are unwrapped from ``inner_key`` when given (BigVGAN's ``best_netG.pt["generator"]``),
    else from a Lightning ``state_dict`` entry when present, else taken as the state dict itself.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # noqa: PLC0415 (optional at import time)

        return load_file(str(path))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # A training checkpoint may pickle objects besides tensors (e.g. an OmegaConf config); they are never
        # unpickled here (arbitrary code). Re-save its state dict as safetensors where it was trusted.
        raise CheckpointMismatchError(
            f"{path}: holds objects that weights_only loading refuses; export its state dict to .safetensors "
            f"with a trusted torch.load and load that instead ({_refused_global(err)})") from None
    if not isinstance(blob, Mapping):
        raise CheckpointMismatchError(f"{path}: expected a dict of tensors, found {type(blob).__name__}")
    if inner_key is not None:
        if inner_key not in blob:
            top = sorted(blob)[:10]
            raise CheckpointMismatchError(f"{path}: no '{inner_key}' entry (top-level keys: {top})")
        blob = blob[inner_key]
    elif "state_dict" in blob and isinstance(blob["state_dict"], Mapping):
        blob = blob["state_dict"]
    return {k: v for k, v in blob.items() if isinstance(v, torch.Tensor)}


def _refused_global(err: Exception) -> str:
    """The line of torch's weights_only error that names the refused class, else its first line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[0] if lines else "")


def select_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries under ``prefix``, prefix removed (``first_stage_model.encoder.x`` -> ``encoder.x``)."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def strip_substring(state: Mapping[str, torch.Tensor], sub: str) -> dict[str, torch.Tensor]:
    """Every occurrence of ``sub`` removed from every key (DataParallel's ``module.``, as Diff-Foley does)."""
    return {k.replace(sub, ""): v for k, v in state.items()}


def check_state_dict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    what: str,
    ignore_prefixes: Iterable[str] = (),
    optional_suffixes: Iterable[str] = ("num_batches_tracked",),
) -> dict[str, torch.Tensor]:
    """The entries of ``state`` that ``module`` takes, after checking that they fit it exactly.

    Keys under ``ignore_prefixes`` are dropped. Missing keys ending in ``optional_suffixes`` (BatchNorm's step
    counter, unused in eval) are filled from the module. Raises CheckpointMismatchError listing every missing
    key with its expected shape, every unexpected key, and every shape mismatch.
    """
    ignore = tuple(ignore_prefixes)
    optional = tuple(optional_suffixes)
    own = module.state_dict()
    given = {k: v for k, v in state.items() if not (ignore and k.startswith(ignore))}
    missing = [k for k in own if k not in given and not k.endswith(optional)]
    unexpected = [k for k in given if k not in own]
    misshapen = [k for k in given if k in own and tuple(given[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or misshapen:
        lines = [f"{what}: checkpoint does not match the module "
                 f"({len(missing)} missing, {len(unexpected)} unexpected, {len(misshapen)} wrong shape)"]
        lines += [f"  missing    {k}: expected shape {tuple(own[k].shape)}" for k in missing]
        lines += [f"  unexpected {k}: shape {tuple(given[k].shape)}" for k in unexpected]
        lines += [f"  shape      {k}: expected {tuple(own[k].shape)}, found {tuple(given[k].shape)}"
                  for k in misshapen]
        raise CheckpointMismatchError("\n".join(lines))
    return {**{k: own[k] for k in own if k not in given}, **given}


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, what: str, **kwargs: object) -> None:
    """``module.load_state_dict(strict=True)`` after :func:`check_state_dict` (same keyword options)."""
    checked = check_state_dict(module, state, what=what, **kwargs)  # type: ignore[arg-type]
    module.load_state_dict(checked, strict=True)
