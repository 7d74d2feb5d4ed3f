"""The official weights folder: its layout, the sizes its files must have, and one error listing every problem.

Layout (names of the published files where they have one; frieren.md, "Checkpoint layout"; the Frieren
Google Drive folders do not fix the Lightning checkpoint's name, so it is linked or renamed to ``frieren.ckpt``)::

    DIR/frieren.ckpt            Lightning checkpoint: model.diffusion_model.*, cond_stage_model.*, and
                                first_stage_model.* (the VAE) unless DIR/vae.ckpt is given
    DIR/vae.ckpt                optional: the separately published VAE checkpoint (e.g. epoch=000032.ckpt)
    DIR/vocoder/best_netG.pt    BigVGAN 16 kHz generator (key "generator")
    DIR/vocoder/args.yml        its config
    DIR/cavp_epoch66.ckpt       Diff-Foley's CAVP

Expected sizes are computed, not copied: the bytes of the float32 tensors a file must hold at the configured
widths (module state dicts built on the meta device, so even official sizes cost nothing), ``numel * 4``
summed, BatchNorm step counters left out (they are optional when loading). Tolerance: a file may not be
smaller than that (a torch checkpoint stores every tensor's bytes verbatim, so a smaller file is truncated or
a different, smaller model); it may be larger by any amount, because published checkpoints legitimately hold
more (Lightning optimizer states, CAVP's audio branch, diffusion buffers, pickle and zip overhead).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from frieren_rt.model.config import VectorFieldConfig, preset
from frieren_rt.model.vector_field import VectorField
from frieren_rt.official.bigvgan import ARGS_NAME, CHECKPOINT_NAME, BigVGAN, BigVGANConfig, bigvgan_preset
from frieren_rt.official.cavp import CAVPConfig, CAVPVideoEncoder, cavp_preset
from frieren_rt.official.vae import AutoencoderKL1D, VAEConfig, vae_preset
from frieren_rt.official.yaml_subset import parse_yaml

__all__ = ["OfficialSizes", "SIZES", "ExpectedFile", "WeightsLayout", "OfficialWeightsError", "tensor_bytes",
           "expected_files", "check_weights_dir", "CKPT_NAME", "VAE_NAME", "VOCODER_DIR", "CAVP_NAME"]

CKPT_NAME = "frieren.ckpt"
VAE_NAME = "vae.ckpt"
VOCODER_DIR = "vocoder"
CAVP_NAME = "cavp_epoch66.ckpt"


@dataclass(frozen=True, kw_only=True)
class OfficialSizes:
    """Widths of the four published components (``official``) or of the parity fixtures (``reduced``)."""

    field: VectorFieldConfig
    vae: VAEConfig
    vocoder: BigVGANConfig
    cavp: CAVPConfig


SIZES: dict[str, OfficialSizes] = {
    "official": OfficialSizes(field=preset("official"), vae=vae_preset("official"),
                              vocoder=bigvgan_preset("official"), cavp=cavp_preset("official")),
    # fixtures/frieren_official/*_reduced.json: DiT hidden 64, 8 heads, depth 2, condition 96; VAE ch 32;
    # BigVGAN 128 initial channels; CAVP base width 16. Same classes and key names.
    "reduced": OfficialSizes(field=preset("official", cond_dim=96, hidden=64, depth=2), vae=vae_preset("reduced"),
                             vocoder=bigvgan_preset("reduced"), cavp=cavp_preset("reduced")),
}


class OfficialWeightsError(FileNotFoundError):
    """The weights folder is wrong: the message lists every missing or mismatched file, with name and size."""


@dataclass(frozen=True)
class ExpectedFile:
    """A file of the folder: path relative to it, what it holds, the least bytes it can have (0: not sized)."""

    name: str
    holds: str
    min_bytes: int


@dataclass(frozen=True)
class WeightsLayout:
    """Paths of a checked folder; ``vae`` is None when the VAE comes from the Lightning checkpoint."""

    ckpt: Path
    vae: Path | None
    vocoder: Path
    cavp: Path


def tensor_bytes(module: nn.Module, *, optional: tuple[str, ...] = ("num_batches_tracked",)) -> int:
    """Float32 bytes of ``module``'s state dict (numel * 4), optional entries left out."""
    return sum(4 * t.numel() for k, t in module.state_dict().items() if not k.endswith(optional))


def _meta_bytes(build) -> int:  # noqa: ANN001
    with torch.device("meta"):
        return tensor_bytes(build())


def expected_files(sizes: OfficialSizes, *, separate_vae: bool) -> list[ExpectedFile]:
    """The files a folder must hold for ``sizes``; the VAE bytes count in frieren.ckpt unless separate."""
    field = _meta_bytes(lambda: VectorField(sizes.field))
    vae = _meta_bytes(lambda: AutoencoderKL1D(sizes.vae))
    files = [ExpectedFile(CKPT_NAME, "Frieren Lightning checkpoint (model.diffusion_model.*, cond_stage_model.*"
                          + (")" if separate_vae else ", first_stage_model.*)"), field + (0 if separate_vae else vae))]
    if separate_vae:
        files.append(ExpectedFile(VAE_NAME, "VAE checkpoint (encoder.*, decoder.*, quant_conv.*)", vae))
    files += [
        ExpectedFile(f"{VOCODER_DIR}/{CHECKPOINT_NAME}", "BigVGAN 16 kHz generator ('generator' entry)",
                     _meta_bytes(lambda: BigVGAN(sizes.vocoder))),
        ExpectedFile(f"{VOCODER_DIR}/{ARGS_NAME}", "BigVGAN config", 0),
        ExpectedFile(CAVP_NAME, "Diff-Foley CAVP (video_encoder.*, video_project_head.*)",
                     _meta_bytes(lambda: CAVPVideoEncoder(sizes.cavp))),
    ]
    return files


def _mb(n: int) -> str:
    return f"{n:,} bytes ({n / 2**20:.1f} MiB)"


def _args_mismatch(path: Path, want: BigVGANConfig) -> str | None:
    """Why ``args.yml`` does not describe ``want`` (None if it does)."""
    try:
        got = BigVGANConfig.from_args(parse_yaml(path.read_text()))
    except (KeyError, ValueError, TypeError) as err:
        return f"unreadable as a BigVGAN config ({err})"
    diff = [f"{f.name}={getattr(got, f.name)!r} (expected {getattr(want, f.name)!r})"
            for f in fields(BigVGANConfig) if getattr(got, f.name) != getattr(want, f.name)]
    return "; ".join(diff) or None


def check_weights_dir(folder: str | Path, sizes: OfficialSizes = SIZES["official"]) -> WeightsLayout:
    """Check names and sizes (reads no tensors); raise OfficialWeightsError listing every problem at once."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OfficialWeightsError(f"official weights folder {folder} does not exist (layout: see "
                                   "frieren_rt/official/weights.py)")
    separate_vae = (folder / VAE_NAME).is_file()
    problems = []
    for f in expected_files(sizes, separate_vae=separate_vae):
        path = folder / f.name
        if not path.is_file():
            problems.append(f"  missing   {f.name}: {f.holds}" + (f", at least {_mb(f.min_bytes)}"
                                                                   if f.min_bytes else ""))
        elif path.stat().st_size < f.min_bytes:
            problems.append(f"  too small {f.name}: {_mb(path.stat().st_size)}, expected at least "
                            f"{_mb(f.min_bytes)} ({f.holds})")
        elif f.name.endswith(ARGS_NAME) and (why := _args_mismatch(path, sizes.vocoder)):
            problems.append(f"  mismatch  {f.name}: {why}")
    if problems:
        others = sorted(p.name for p in folder.glob("*.ckpt") if p.name not in (CKPT_NAME, VAE_NAME, CAVP_NAME))
        hint = (f"\n  (other .ckpt files here: {', '.join(others)}; link or rename the Frieren one to "
                f"{CKPT_NAME})" if others and not (folder / CKPT_NAME).is_file() else "")
        raise OfficialWeightsError(f"official weights folder {folder} is not usable ({len(problems)} "
                                   f"problem{'s' if len(problems) > 1 else ''}; sizes are float32 tensor bytes, "
                                   "a file may be larger, not smaller):\n" + "\n".join(problems) + hint)
    return WeightsLayout(ckpt=folder / CKPT_NAME, vae=folder / VAE_NAME if separate_vae else None,
                         vocoder=folder / VOCODER_DIR, cavp=folder / CAVP_NAME)

