"""``frieren-rt info``: presets with their sizes, and which attention backend this machine would use."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="list the vector-field presets (sizes, parameter counts) and the attention backend",
        description="List the vector-field presets with their sizes and parameter counts, and report which "
        "attention implementation (SDPA or the Triton kernel) runs on this machine.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415

    from frieren_rt.kernels import attention_backend  # noqa: PLC0415
    from frieren_rt.model import PRESETS, VectorField  # noqa: PLC0415

    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"attention backend on {device}: {attention_backend(torch.empty(1, device=device))}")
    print(f"{'preset':<10} {'hidden':>6} {'heads':>5} {'depth':>5} {'latent C':>8} {'params':>13}  time map")
    with torch.device("meta"):
        for name, cfg in PRESETS.items():
            n = sum(p.numel() for p in VectorField(cfg).parameters())
            print(f"{name:<10} {cfg.hidden:>6} {cfg.heads:>5} {cfg.depth:>5} {cfg.latent_channels:>8} {n:>13,}"
                  f"  {cfg.time_mapping}")
    return 0
