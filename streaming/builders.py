"""Engines for the server and demo: the real one from a training run's files, or a tiny random debug one.

:func:`build_engine` wires a trained run (``frieren-rt train``'s output folder) into an :class:`Engine`: the
Foley model (``single`` > ``distill`` > ``reflow`` > ``base`` .safetensors), the run's VAE decoder, the cached
HiFi-GAN vocoder and the MobileNetV2 + motion feature extractor. :func:`random_engine` builds the same pipeline
shape from randomly initialised tiny stages: it produces noise, and exists to test the transport.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from frieren_rt.backends import apply_backend
from frieren_rt.streaming.clock import Clock, MonotonicClock
from frieren_rt.streaming.engine import Engine, EngineConfig
from frieren_rt.windowing import StreamGeometry, WindowedGenerator, euler_sampler

__all__ = ["ArrayFeatures", "PooledColourFeatures", "build_engine", "random_engine"]

class ArrayFeatures:
    """Adapts ``fn(frames (N, H, W, 3) uint8) -> (N, D)`` to the engine's list-of-frames extractor contract."""

    def __init__(self, fn: Callable[[np.ndarray], Any]) -> None:
        self.fn = fn

    def __call__(self, frames: Sequence[Any]) -> torch.Tensor:
        out = self.fn(np.stack([np.asarray(f) for f in frames]))  # (N, D)
        return torch.as_tensor(out, dtype=torch.float32)


class PooledColourFeatures:
    """Debug features: mean colour on a ``grid`` x ``grid`` layout through a fixed random projection. (N, D).

    Cheap and deterministic, so the random engine reacts to the picture without a vision model."""

    def __init__(self, dim: int = 16, grid: int = 4, seed: int = 0) -> None:
        self.grid = grid
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(grid * grid * 3, dim, generator=g) / math.sqrt(grid * grid * 3)

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames)).float().div(255.0)  # (N, H, W, 3)
        x = x.permute(0, 3, 1, 2)  # (N, 3, H, W)
        pooled = nn.functional.adaptive_avg_pool2d(x, self.grid).flatten(1)  # (N, 3 * grid^2)
        return (pooled - 0.5) @ self.proj


class _RandomDecoder(nn.Module):
    """Latents (B, C, T) -> mel-like (B, M, 2T): 2x upsampling and a random kernel-3 conv."""

    def __init__(self, channels: int, mels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, mels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(z.repeat_interleave(2, dim=-1))


class _ToneVocoder(nn.Module):
    """Mel-like (B, M, Tm) -> (B, 256 Tm): each band drives a Hann-windowed tone burst (hop 256, overlap-add);
    the output is squashed to [-0.5, 0.5] so random latents cannot clip."""

    def __init__(self, mels: int = 8, rate: int = 22050) -> None:
        super().__init__()
        k = torch.arange(512, dtype=torch.float64)
        freqs = 220.0 * 2 ** (torch.arange(mels, dtype=torch.float64) / 2)
        kern = torch.hann_window(512, periodic=False, dtype=torch.float64) * torch.sin(
            2 * math.pi * freqs[:, None] * k / rate)
        self.up = nn.ConvTranspose1d(mels, 1, 512, stride=256, padding=128, bias=False)
        with torch.no_grad():
            self.up.weight.copy_(kern[:, None].float() / mels)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.tanh(self.up(mel)[:, 0])


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """Shared knobs. window_s/hop_s: generation window and hop; device: torch device; clock: None = real;
    backend / precision: how the velocity runs (frieren_rt.backends)."""

    window_s: float = 1.6
    hop_s: float = 0.1  # 4 latents = 92.9 ms: the measured low-latency default (BENCHMARKS.md)
    device: str = "cpu"
    max_batch: int = 8
    latency_s: float | None = None
    backend: str = "auto"  # script on CPU (no GIL stalls beside the event loop), eager on GPU (frieren_rt.backends)
    precision: str = "fp32"
    budget_sessions: int = 1  # EngineConfig.budget_sessions: the batch every session's latency covers
    event_gate: bool = True  # GenerationOptions.event_gate (frieren_rt/windowing/gate.py)
    # GenerationOptions.lookahead: latents generated past each hop's audio before it is decoded (23.2 ms of
    # latency each; 0: the decoder and vocoder read zeros past the newest latent), and revise_lookahead: the next
    # hop generates them again with its newer video. One revised latent is the default: the vector field then
    # sees video after every latent it commits; on 24 test / 30 validation clips the single-pass student's
    # learned-detector onset F1 rose 0.784 / 0.741 -> 0.831 / 0.809 and class accuracy 0.391 / 0.381 -> 0.441 /
    # 0.420, for 23 ms (2 latents: more on test, 46 ms; issue 4 holds glass-to-ear p50 to 250 ms; MODEL_CARD.md).
    lookahead: int = 1
    revise_lookahead: bool = True
    # GenerationOptions.lookahead_seam: the seam crossfade in the look-ahead's audio instead of held back from the
    # hop's, 20 ms less latency; off by default, as it cost the single-pass student 9 of 488 events' class and
    # 0.01 flux onset F1 (MODEL_CARD.md, "What was tried"). With it, one revised latent is the lowest-latency
    # setting that keeps the look-ahead's sync (--lookahead 0 loses it).
    lookahead_seam: bool = False
    # EngineConfig.budget_margin: the compute budget is this times the p95 of the quietest start-up calibration
    # round. None: EngineConfig's (2.0) for every backend.
    budget_margin: float | None = None


def random_engine(options: EngineOptions = EngineOptions(), *, clock: Clock | None = None,
                  feature_dim: int = 16, seed: int = 0) -> Engine:
    """A tiny randomly initialised engine (noise, for transport tests and debugging; no files needed)."""
    from frieren_rt.model import VectorField, preset  # noqa: PLC0415

    torch.manual_seed(seed)
    channels = 8
    field = VectorField(preset("small", depth=1, hidden=64, heads=1, cond_dim=32, raw_cond_dim=feature_dim,
                               zero_init=False, latent_channels=channels)).eval()
    geometry = StreamGeometry(window_s=options.window_s, hop_s=options.hop_s, lookahead_latents=options.lookahead,
                              revise_lookahead=options.revise_lookahead, lookahead_seam=options.lookahead_seam)
    velocity = apply_backend(field, options.backend, device=options.device, precision=options.precision)
    generator = WindowedGenerator(geometry=geometry, velocity=velocity,
                                  decoder=_RandomDecoder(channels).eval(),
                                  vocoder=_ToneVocoder().eval(), latent_channels=channels,
                                  sampler=euler_sampler(1), device=options.device)
    return Engine(generator=generator, features=ArrayFeatures(PooledColourFeatures(feature_dim)),
                  clock=clock or MonotonicClock(),
                  config=EngineConfig(feature_dim=feature_dim, max_batch=options.max_batch,
                                      latency_s=options.latency_s, budget_sessions=options.budget_sessions))


class MotionAwareFeatures:
    """The shipped extractor (MobileNetV2 image + motion, frieren_rt.data.cache.FeatureExtractor) over frames
    from several sessions in one batch: pixels with ``.key`` and ``.rgb`` (webrtc.StreamFrame); motion and the image-every-k phase continue per
    key across calls, so sessions never see each other's frames as motion."""

    def __init__(self, extractor: Any) -> None:
        self.extractor = extractor
        self._state: dict[Hashable, tuple[torch.Tensor, int, torch.Tensor | None]] = {}

    def forget(self, session_id: Hashable) -> None:
        """Drop a closed session's carried frame (frames are keyed by ``str(session id)``, webrtc.StreamFrame)."""
        self._state.pop(session_id, None)
        self._state.pop(str(session_id), None)

    def __call__(self, frames: Sequence[Any]) -> torch.Tensor:
        from frieren_rt.data.cache import StreamChunk  # noqa: PLC0415

        out: list[torch.Tensor | None] = [None] * len(frames)
        keys: dict[Hashable, list[int]] = {}
        for i, f in enumerate(frames):
            keys.setdefault(f.key, []).append(i)
        chunks = []
        for key, idx in keys.items():
            rgb = torch.from_numpy(np.stack([frames[i].rgb for i in idx]))  # (n, H, W, 3) uint8
            prev, phase, held = self._state.get(key, (None, 0, None))
            chunks.append(StreamChunk(rgb, prev, phase, held))
        # One network call per stage for every session's frames (BENCHMARKS.md: one call per session made
        # features the bound on sessions per GPU).
        for (key, idx), chunk, (image, motion) in zip(keys.items(), chunks, self.extractor.many(chunks), strict=True):
            self._state[key] = (chunk.frames[-1], chunk.phase + len(idx), image[-1])
            for j, i in enumerate(idx):
                out[i] = torch.cat([image[j].float(), motion[j].float()])
        return torch.stack(out)  # type: ignore[arg-type]


def build_engine(model_dir: Path | None, options: EngineOptions = EngineOptions(), *,
                 clock: Clock | None = None) -> Engine:
    """The real engine from a weights folder (the shipped ``frieren_rt/weights`` when ``model_dir`` is None, or a
    ``frieren-rt train`` run folder): the same FoleyPipeline (model, CFG, sampler, VAE, vocoder, geometry) that
    offline ``generate`` runs. Raises FileNotFoundError naming each missing file and how to get it."""
    from frieren_rt.pipeline import FoleyPipeline, GenerationOptions  # noqa: PLC0415

    pipe = FoleyPipeline.from_dir(model_dir, GenerationOptions(window_s=options.window_s, hop_s=options.hop_s,
                                                               backend=options.backend,
                                                               precision=options.precision,
                                                               event_gate=options.event_gate,
                                                               lookahead=options.lookahead,
                                                               revise_lookahead=options.revise_lookahead,
                                                               lookahead_seam=options.lookahead_seam),
                                  device=options.device)
    margin = EngineConfig.budget_margin if options.budget_margin is None else options.budget_margin
    return Engine(generator=pipe.generator(), features=MotionAwareFeatures(pipe.features),
                  clock=clock or MonotonicClock(),
                  config=EngineConfig(feature_dim=pipe.model.cfg.feature_dim, max_batch=options.max_batch,
                                      latency_s=options.latency_s, budget_sessions=options.budget_sessions,
                                      budget_margin=margin))


class StreamingCAVP:
    """CAVP features for live frames (issue 7): each session keeps its last ``clip_frames`` frames, and every
    batch of new frames is encoded with that history in front, as the tail of one clip (CAVP's 3x1x1 temporal
    convs see the past; the newest frames lack the future context the official 40-frame clips give them).
    Frames arrive at the engine's 4 fps-sized latest-wins buffer; the conditioning is mapped to latents by
    their capture timestamps (frieren_rt.windowing), so irregular arrival does not drift."""

    def __init__(self, cavp: Any, *, clip_frames: int = 40, device: str = "cpu") -> None:
        self.cavp, self.clip_frames, self.device = cavp, clip_frames, device
        self._history: dict[Hashable, torch.Tensor] = {}

    def __call__(self, frames: Sequence[Any]) -> torch.Tensor:
        from frieren_rt.official.frames import to_cavp_input  # noqa: PLC0415

        out: list[torch.Tensor | None] = [None] * len(frames)
        keys: dict[Hashable, list[int]] = {}
        for i, f in enumerate(frames):
            keys.setdefault(getattr(f, "key", None), []).append(i)
        for key, idx in keys.items():
            new = to_cavp_input(np.stack([np.asarray(frames[i]) for i in idx]))  # (n, 3, 224, 224)
            clip = torch.cat([self._history.get(key, new[:0]), new])[-max(self.clip_frames, len(idx)):]
            self._history[key] = clip[-(self.clip_frames - 1):] if self.clip_frames > 1 else clip[:0]
            with torch.no_grad():
                feats = self.cavp(clip[None].to(self.device))[0, -len(idx):].float().cpu()  # (n, 512)
            for j, i in enumerate(idx):
                out[i] = feats[j]
        return torch.stack(out)  # type: ignore[arg-type]


def build_official_engine(weights: Path, options: EngineOptions = EngineOptions(), *, sizes: str = "official",
                          steps: int = 1, clock: Clock | None = None) -> Engine:
    """The engine over the published Frieren files (frieren_rt.official.pipeline): CAVP features, CFG 4.5,
    replacement continuity, 16 kHz. ``options.hop_s`` is raised to the seam crossfade if shorter; ``window_s``
    is the official 8.192 s. Raises OfficialWeightsError listing every missing or mismatched file."""
    from frieren_rt.official.pipeline import OfficialOptions, OfficialPipeline  # noqa: PLC0415

    pipe = OfficialPipeline.from_dir(weights, OfficialOptions(steps=steps, hop_s=options.hop_s, sizes=sizes),
                                     device=options.device)
    return Engine(generator=pipe.generator(), features=StreamingCAVP(pipe.cavp, device=options.device),
                  clock=clock or MonotonicClock(),
                  config=EngineConfig(feature_dim=pipe.sizes.cavp.embed_dim, max_batch=options.max_batch,
                                      latency_s=options.latency_s, budget_sessions=options.budget_sessions))
