"""A loss on the one-step students' band envelope against the TRUE audio's (beyond Frieren; issue 3, class).

Frieren's students learn only their teacher's guided samples (frieren.md, "Training and sampling"), and guidance
shortens this world's sounds: the 25-step base keeps a sound's length (0.46 s) at scale 1 on its training clips
but gives 0.33 s at the shipped 4.5, and the students inherit it (0.27 s as the engine streams; MODEL_CARD.md,
"What was tried", "sound lengths per class"). The class a listener (or the eval's classifier) hears is in how
long each part of the spectrum keeps sounding. So the students may also be asked to match the true audio's coarse
spectro-temporal envelope over the window's free latents: a few groups of mel bands, per mel frame, after the
run's VAE decoder. Coarse by default (8 groups): the envelope of a sound given its picture is nearly
deterministic (its class, size and distance say it), while its fine detail is not.

Measured (MODEL_CARD.md, "What was tried", runs/env48*, env49*): at weight 1.0 the students' sounds get their
length back (median 0.41 s against the true 0.46 s) but class does not rise and FD grows by a quarter, with 8 bands
or all 80 (a regression gives the mean sound); at 0.1, with the peak-trained vocoder, generate's class rises by
0.03-0.04 (the shipped students).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["band_envelope", "envelope_loss"]


def band_envelope(mel: torch.Tensor, bands: int) -> torch.Tensor:
    """log-mel (B, M, T) -> (B, bands, T): the mean log level of ``bands`` contiguous groups of mel bins."""
    if not 1 <= bands <= mel.shape[1]:
        raise ValueError(f"envelope bands must be 1..{mel.shape[1]} (the mel's bins), got {bands}")
    return F.adaptive_avg_pool1d(mel.transpose(1, 2), bands).transpose(1, 2)


def envelope_loss(decode: Callable[[torch.Tensor], torch.Tensor], x1: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor, bands: int) -> torch.Tensor:
    """Mean L1 between the band envelopes of the student's window and the true one, over the free latents' frames.

    decode: flow latents (B, C, W) -> log-mel (B, M, k W) (the run's VAE decoder, frozen; gradients flow to x1).
    x1 (B, C, W) the student's output; target (B, C, W) the window's true latents; mask (B, 1, W), 1 = known.
    The known latents are the true ones in both decodes, so the decoder reads the same context at the seam.
    """
    known = mask.bool()
    out = band_envelope(decode(torch.where(known, target, x1)), bands)  # (B, bands, k W)
    with torch.no_grad():
        ref = band_envelope(decode(target), bands)
    free = (1.0 - mask).repeat_interleave(out.shape[-1] // x1.shape[-1], dim=-1)  # (B, 1, k W)
    return ((out - ref).abs() * free).sum() / (free.sum() * bands).clamp(min=1.0)
