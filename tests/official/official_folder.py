"""Writes a weights folder in the official file layout with keyed-init weights at the given widths."""

from __future__ import annotations

from pathlib import Path

import torch

from frieren_rt.model.vector_field import VectorField
from frieren_rt.official import BIGVGAN_WEIGHT_G_GAIN, AutoencoderKL1D, BigVGAN, CAVPVideoEncoder, apply_keyed_init
from frieren_rt.official.weights import OfficialSizes


def args_yml(sizes: OfficialSizes) -> str:
    """args.yml as the vocoder folder holds it (flow lists; training-only keys beside the generator's)."""
    v = sizes.vocoder
    return (f"resblock: '{v.resblock}'\nnum_gpus: 0\nnum_mels: {v.num_mels}\n"
            f"upsample_rates: {list(v.upsample_rates)}\nupsample_kernel_sizes: {list(v.upsample_kernel_sizes)}\n"
            f"upsample_initial_channel: {v.upsample_initial_channel}\n"
            f"resblock_kernel_sizes: {list(v.resblock_kernel_sizes)}\n"
            f"resblock_dilation_sizes: {[list(d) for d in v.resblock_dilation_sizes]}\n"
            f"activation: {v.activation}\nsnake_logscale: {str(v.snake_logscale).lower()}\n")


def write_official_folder(root: Path, sizes: OfficialSizes) -> Path:
    """frieren.ckpt (Lightning: state_dict with model.diffusion_model.* / cond_stage_model.* /
    first_stage_model.* and a diffusion buffer), vocoder/best_netG.pt + args.yml, cavp_epoch66.ckpt."""
    root.mkdir(parents=True, exist_ok=True)
    field = apply_keyed_init(VectorField(sizes.field))
    vae = apply_keyed_init(AutoencoderKL1D(sizes.vae), prefix="first_stage_model.")
    state = {**field.state_dict(), **{f"first_stage_model.{k}": v for k, v in vae.state_dict().items()},
             "betas": torch.linspace(0.00085, 0.012, 1000)}
    torch.save({"state_dict": state, "epoch": 3, "global_step": 100}, root / "frieren.ckpt")
    (root / "vocoder").mkdir(exist_ok=True)
    vocoder = apply_keyed_init(BigVGAN(sizes.vocoder), weight_g_gain=BIGVGAN_WEIGHT_G_GAIN)
    torch.save({"generator": vocoder.state_dict()}, root / "vocoder" / "best_netG.pt")
    (root / "vocoder" / "args.yml").write_text(args_yml(sizes))
    cavp = apply_keyed_init(CAVPVideoEncoder(sizes.cavp))
    torch.save({"state_dict": {f"module.{k}": v for k, v in cavp.state_dict().items()}}, root / "cavp_epoch66.ckpt")
    return root
