"""Small, fast vocoder generators to distil from HiFi-GAN universal (training is a later step, issue 3).

The student keeps the teacher's input contract (the same 22.05 kHz log-mel, 256 samples per frame) and its
generator class, only smaller: HiFi-GAN's own V2 and V3 configurations (Kong et al. 2020, table 1: V2 is V1
at a quarter of the width; V3 uses three upsampling stages and single-conv "type 2" residual blocks) and a
``tiny`` setting narrower still. Chunked streaming decode uses :meth:`HifiganGenerator.context_frames`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .hifigan import HifiganConfig, HifiganGenerator

__all__ = ["STUDENT_PRESETS", "build_student", "init_student", "student_config"]

STUDENT_PRESETS: dict[str, HifiganConfig] = {
    "v2": HifiganConfig(upsample_initial_channel=128),
    "v3": HifiganConfig(
        upsample_rates=(8, 8, 4),
        upsample_kernel_sizes=(16, 16, 8),
        upsample_initial_channel=256,
        resblock="2",
        resblock_kernel_sizes=(3, 5, 7),
        resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)),
    ),
    "tiny": HifiganConfig(
        upsample_rates=(8, 8, 4),
        upsample_kernel_sizes=(16, 16, 8),
        upsample_initial_channel=128,
        resblock="2",
        resblock_kernel_sizes=(3, 5),
        resblock_dilation_sizes=((1, 2), (2, 6)),
    ),
}


def student_config(name: str, **overrides) -> HifiganConfig:
    if name not in STUDENT_PRESETS:
        raise KeyError(f"unknown student vocoder {name!r}; choose from {sorted(STUDENT_PRESETS)}")
    return replace(STUDENT_PRESETS[name], **overrides)


def init_student(
    model: HifiganGenerator, *, generator: torch.Generator | None = None, std: float = 0.01
) -> None:
    """HiFi-GAN's initialisation: every conv weight ~ N(0, std^2) (official ``init_weights``), biases zero."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                if module.bias is not None:
                    module.bias.zero_()


def build_student(
    name: str = "v3", *, generator: torch.Generator | None = None, **overrides
) -> HifiganGenerator:
    """A freshly initialised (untrained) student generator with the teacher's mel contract."""
    model = HifiganGenerator(student_config(name, **overrides))
    init_student(model, generator=generator)
    return model
