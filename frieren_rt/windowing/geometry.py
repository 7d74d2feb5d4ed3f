"""Stream geometry: window, hop, crossfade and time math of windowed generation (pure functions).

A session's latent timeline is anchored to the capture time ``t0`` of its first video frame: latent ``j`` covers
``[t0 + j / rate, t0 + (j + 1) / rate)``, so audio sample time is tied to video timestamps and never free-runs
(a 20 ppm clock slips a sample per second at 48 kHz; ../shared/reference/streaming.md, "sync tolerances").
Hop ``k`` writes latents ``[k * hop, (k + 1) * hop)`` from a window ``[(k + 1) * hop - window, (k + 1) * hop)``
that ends with the hop; the window's older latents are the already emitted ones (known, mask 1).

20 ms boundaries: a hop of ``n`` latents lasts ``n * 512 / 22050`` s, a whole number of 20 ms frames only when
441 divides ``n`` (10.24 s), so hops are exact in latents and 22.05 kHz samples, and 20 ms framing happens at
the 48 kHz output, indexed by absolute sample count (no rounding drift). The crossfade is snapped to whole
20 ms frames: 20 ms is exactly 441 samples at 22.05 kHz and 960 at 48 kHz (Opus frames, RFC 7587).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch

CrossfadeLaw = Literal["equal_power", "equal_gain", "adaptive"]

__all__ = ["CrossfadeLaw", "StreamGeometry", "lookahead_latents_for", "window_span", "known_mask", "gather_known", "hops_due"]


@dataclass(frozen=True, kw_only=True)
class StreamGeometry:
    """Sizes of windowed streaming generation; every length is derived here, once.

    window_s / hop_s: requested window and hop (rounded to whole latents). crossfade_s: seam crossfade (snapped
    to whole output frames). context_latents: left context decoded before each hop, sized from the VAE
    decoder's and vocoder's left receptive fields (see :func:`context_latents_for`). frame_rate: nominal video
    rate, used only to size the conditioning slots of a window. crossfade_law: see ``crossfade.py``.
    lookahead_latents: latents generated after the newest one a hop's audio ends on, so the VAE decoder and
    vocoder read real right context at the hop's end instead of zeros (their receptive fields reach 5 latents
    ahead: :func:`lookahead_latents_for`). Each costs a latent (23.2 ms) of latency; the engine's default is 1,
    ``generate``'s 5 (MODEL_CARD.md, "What was tried").
    lookahead_seam: the seam crossfade lies in the look-ahead's audio, so no tail of the hop is held back (see
    ``held_tail_samples``; needs a look-ahead of at least the crossfade, one latent).
    revise_lookahead: the look-ahead latents stay provisional: the next hop's window marks them unknown and
    generates them again, with the video that has arrived since, so the vector field (not only the decoder)
    has ``lookahead_latents`` latents of video after every latent whose audio is emitted. Without it they are
    committed as generated, at the window's end, where the field has seen no video after them: the engine's
    92.9 ms hop found 0.06 fewer onsets (learned detector) than the 0.2 s hop, most of them late by up to a
    hop (MODEL_CARD.md, "What was tried"). The field then fills ``hop + lookahead`` latents per window (the
    0.2 s hop's 9 at the 0.1 s hop with 5); the cost is the look-ahead's latency, not compute.
    """

    window_s: float = 1.6
    hop_s: float = 0.2
    crossfade_s: float = 0.02
    latent_rate: float = 22050 / 512
    model_sample_rate: int = 22050
    output_sample_rate: int = 48000
    output_frame_s: float = 0.02
    frame_rate: float = 30.0
    context_latents: int = 4
    crossfade_law: CrossfadeLaw = "adaptive"
    lookahead_latents: int = 0
    revise_lookahead: bool = False
    lookahead_seam: bool = False

    def __post_init__(self) -> None:
        spl = self.model_sample_rate / self.latent_rate
        if abs(spl - round(spl)) > 1e-9:
            raise ValueError(f"{self.model_sample_rate} Hz / {self.latent_rate} latents/s is not a whole number")
        if not 1 <= self.hop_latents <= self.window_latents:
            raise ValueError(f"hop of {self.hop_latents} latents must lie in [1, window={self.window_latents}]")
        if self.crossfade_samples > self.hop_samples:
            raise ValueError(f"crossfade {self.crossfade_samples} samples exceeds the hop ({self.hop_samples})")
        if self.crossfade_samples > self.context_latents * self.samples_per_latent:
            # The seam's new side is decoded from real left context, so the context must cover the overlap.
            raise ValueError("context_latents must cover the crossfade")
        if self.lookahead_latents < 0:
            raise ValueError(f"lookahead_latents must be >= 0, got {self.lookahead_latents}")
        if self.hop_latents + self.lookahead_latents * self.revise_lookahead > self.window_latents:
            raise ValueError(f"hop + revised look-ahead ({self.hop_latents} + {self.lookahead_latents} latents) "
                             f"exceeds the window ({self.window_latents})")
        if self.lookahead_seam and not 0 < self.crossfade_samples <= self.lookahead_latents * self.samples_per_latent:
            raise ValueError(f"lookahead_seam needs a look-ahead of at least the crossfade ({self.crossfade_samples} "
                             f"samples; 1 latent = {self.samples_per_latent}), got {self.lookahead_latents} latents")

    # --- latents -------------------------------------------------------------------------------------------
    @property
    def samples_per_latent(self) -> int:
        return round(self.model_sample_rate / self.latent_rate)

    @property
    def window_latents(self) -> int:
        return max(1, round(self.window_s * self.latent_rate))

    @property
    def hop_latents(self) -> int:
        return max(1, round(self.hop_s * self.latent_rate))

    @property
    def generated_latents(self) -> int:
        """Latents each hop's window leaves unknown and keeps: the hop, plus the look-ahead when it is revised."""
        return self.hop_latents + (self.lookahead_latents if self.revise_lookahead else 0)

    @property
    def overlap_latents(self) -> int:
        """Latents of a window that were emitted by earlier hops (known, when history exists)."""
        return self.window_latents - self.hop_latents

    @property
    def history_latents(self) -> int:
        """Emitted latents a stream must keep: the window overlap, and what one decode reads (the left context,
        the hop and the look-ahead)."""
        return max(self.overlap_latents, self.context_latents + self.hop_latents + self.lookahead_latents)

    # --- seconds -------------------------------------------------------------------------------------------
    @property
    def hop_duration_s(self) -> float:
        return self.hop_latents / self.latent_rate

    @property
    def window_duration_s(self) -> float:
        return self.window_latents / self.latent_rate

    # --- samples -------------------------------------------------------------------------------------------
    @property
    def hop_samples(self) -> int:
        return self.hop_latents * self.samples_per_latent

    @property
    def output_frame_samples(self) -> int:
        return round(self.output_frame_s * self.output_sample_rate)

    @property
    def crossfade_frames(self) -> int:
        """Crossfade length in whole output frames (20 ms each), at least one."""
        return max(1, round(self.crossfade_s / self.output_frame_s))

    @property
    def crossfade_samples(self) -> int:
        """Crossfade at the model rate; 20 ms frames are exact at 22.05 kHz (441 samples)."""
        return round(self.crossfade_frames * self.output_frame_s * self.model_sample_rate)

    @property
    def held_tail_samples(self) -> int:
        """Samples of each hop's audio held back as the seam's tail: the crossfade, or 0 with ``lookahead_seam``.
        A hop's look-ahead is decoded anyway (as right context) and generated again (or kept) by the next hop, so
        its first ``crossfade_samples`` can be the tail the next decode fades from: the emitted stream then lags
        the newest latent by the look-ahead alone, 20 ms less. The cost, with a revised look-ahead: each seam
        fades from the provisional latents' audio into the revised ones', where the held tail faded between two
        decodes of the same final latents (24 test / 30 validation clips, one revised latent, single-pass: class
        0.421 / 0.402 against 0.441 / 0.420, flux onset F1 -0.01; MODEL_CARD.md)."""
        return 0 if self.lookahead_seam else self.crossfade_samples

    @property
    def cond_slots(self) -> int:
        """Condition frames per window: the frames on screen during it, plus the one at its start and slack."""
        return math.ceil(self.window_duration_s * self.frame_rate) + 2

    def with_(self, **changes: object) -> StreamGeometry:
        return replace(self, **changes)


def context_latents_for(decoder_left_latents: int, vocoder_left_mels: int, mels_per_latent: int = 2) -> int:
    """Left context (latents) covering a decoder's receptive field then a vocoder's (in mel frames)."""
    return decoder_left_latents + math.ceil(vocoder_left_mels / mels_per_latent)


def lookahead_latents_for(decoder_right_latents: int, vocoder_right_mels: int, mels_per_latent: int = 2) -> int:
    """Right context (latents) covering a decoder's receptive field then a vocoder's (in mel frames)."""
    return decoder_right_latents + math.ceil(vocoder_right_mels / mels_per_latent)


def window_span(hop_index: int, geom: StreamGeometry) -> tuple[int, int]:
    """Latent indices [start, end) of hop ``hop_index``'s window; start may be negative (before the stream)."""
    end = (hop_index + 1) * geom.hop_latents
    return end - geom.window_latents, end


def known_mask(start: int, window: int, emitted: int) -> torch.Tensor:
    """(1, window) float mask: 1 where latent ``start + i`` was already emitted (0 <= start + i < emitted)."""
    idx = torch.arange(start, start + window)
    return ((idx >= 0) & (idx < emitted)).float()[None]


def gather_known(history: torch.Tensor, history_start: int, start: int, window: int) -> torch.Tensor:
    """Emitted latents placed on a window: (C, L) history whose first latent is ``history_start`` -> (C, window).

    Positions outside the history are zero (the mask marks them unknown). Returns a new tensor.
    """
    c, length = history.shape
    out = history.new_zeros(c, window)
    lo, hi = max(start, history_start), min(start + window, history_start + length)
    if hi > lo:
        out[:, lo - start : hi - start] = history[:, lo - history_start : hi - history_start]
    return out


def hops_due(next_hop: int, newest_time: float, start_time: float, geom: StreamGeometry) -> int:
    """How many hops from ``next_hop`` on are covered by video: hop k is due once a frame captured at or after
    its end time ``start_time + (k + 1) * hop / rate`` has arrived (its window ends at the newest frame)."""
    covered = math.floor((newest_time - start_time) * geom.latent_rate / geom.hop_latents + 1e-9)
    return max(0, covered - next_hop)
