"""The published Frieren, end to end: video -> CAVP (4 fps) -> guided rectified flow -> VAE -> BigVGAN 16 kHz.

Official semantics (frieren.md; fixtures/frieren_official/README.md): CAVP on 224 x 224 frames in [0, 1] at
4 fps; the zero-CAVP null through the 512 -> 768 Linear; CFG 4.5 with both branches in one doubled batch;
Euler with torchdyn's accumulated-time rule and the integer timestep long(t * 1000) (frieren_rt.flow.euler,
VectorField "int1000"); 256-latent (8.192 s) windows at 31.25 latents/s; decode z / 0.18215; 16 kHz audio.

Long clips and streams run the project's one windowed loop (frieren_rt.windowing), generalised only by the
geometry (31.25 latents/s, 16 kHz, 4 fps), so the 4 fps grid is mapped to latents by real timestamps
(frames.py): no 0.192 s per window drift as in the official concatenation of independent 8.0 s windows.

Continuity: the official network has no known-latent channels, so each window is told the latents already
emitted by *replacement* along the flow trajectory (Song et al. 2021, "Score-based generative modeling through
SDEs", imputation; Lugmayr et al. 2022, RePaint; Ho et al. 2022, "Video diffusion models", sec. 3.1): at every
step the known positions are put on the straight path x_t = t z + (1 - t) x0 of the emitted latents z, by
giving them the velocity (z - x_t) / (1 - t), while the network's velocity moves the rest. The network thus
sees the emitted audio (noised to the current t) beside the new part. Ho et al. note replacement is weaker
than reconstruction guidance; with one Euler step (the distilled checkpoint) the network evaluates only at
t = 0, sees no emitted audio at all, and continuity rests on the seam crossfade alone.

Seams: the VAE decoder and BigVGAN are non-causal convolution stacks (plus one global attention in the VAE's
mid block). Their one-sided reach is measured by :func:`conv_reach` (gradient support, attention excluded),
and sizes the geometry: the crossfade covers the samples a decode produces without right context, the decode
context covers the crossfade plus the left reach. Latency: :meth:`OfficialPipeline.latency_s`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from frieren_rt.flow import FRIEREN_CFG_SCALE, cfg_velocity, euler
from frieren_rt.model.vector_field import OFFICIAL_PREFIXES, VectorField
from frieren_rt.official.bigvgan import BigVGAN, BigVGANConfig
from frieren_rt.official.cavp import CAVPVideoEncoder
from frieren_rt.official.frames import CAVP_FPS, CAVPFeatures
from frieren_rt.official.loading import load_strict, read_state_dict, select_prefix
from frieren_rt.official.vae import LATENT_SCALE, LIGHTNING_PREFIX, AutoencoderKL1D, VAEConfig
from frieren_rt.official.weights import SIZES, OfficialSizes, check_weights_dir
from frieren_rt.windowing import StreamGeometry, WindowedGenerator, generate_offline

__all__ = ["OfficialOptions", "OfficialPipeline", "ReplacementGuided", "conv_reach", "official_geometry",
           "LATENT_RATE", "SAMPLE_RATE", "WINDOW_LATENTS"]

SAMPLE_RATE = 16000
LATENT_RATE = 31.25  # 16000 / 256 mel hop / 2x VAE downsampling
WINDOW_LATENTS = 256  # 8.192 s, the training crop (frieren.md, "Audio")


@dataclass(frozen=True, kw_only=True)
class OfficialOptions:
    """steps: Euler steps (25: the no-reflow/reflow models as published; 1: the distilled one); cfg: guidance
    scale (both branches in one batch; 1 = conditional only); hop_s: new audio per window (rounded to
    latents; at least the crossfade); sizes: "official" or "reduced" (the parity fixtures' widths)."""

    steps: int = 25
    cfg: float = FRIEREN_CFG_SCALE
    hop_s: float = 1.536
    sizes: str = "official"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.sizes not in SIZES:
            raise ValueError(f"unknown official sizes {self.sizes!r}; choose one of {sorted(SIZES)}")


class ReplacementGuided(nn.Module):
    """The velocity contract of WindowedGenerator over the official field: CFG plus replacement continuity.

    forward(x (B, C, T), t (B,), cond (B, F, 512), *, cond_index (B, T), known (B, C, T), mask (B, 1, T))
    -> (B, C, T): where mask is 1, (known - x) / (1 - t) (the straight path to the emitted latents); elsewhere
    the guided network velocity.
    """

    def __init__(self, field: VectorField, scale: float = FRIEREN_CFG_SCALE) -> None:
        super().__init__()
        self.field, self.scale = field, scale

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, *, cond_index: torch.Tensor,
                known: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.scale == 1.0:
            v = self.field(x, t, cond, cond_index=cond_index)
        else:
            v = cfg_velocity(self.field, cond, None, self.scale, cond_index=cond_index)(x, t)
        if mask is None or known is None:
            return v
        t3 = torch.as_tensor(t, device=x.device, dtype=x.dtype).reshape(-1, 1, 1)
        to_known = (known - x) / (1 - t3).clamp_min(1e-3)  # Euler never evaluates t = 1
        return torch.where(mask > 0.5, to_known, v)


# --- receptive fields --------------------------------------------------------------------------------------
def _grad_support(module: nn.Module, channels: int, length: int, scale: int) -> int:
    """One-sided reach in input frames of the output sample at the middle: gradient support around it."""
    x = torch.randn(1, channels, length, requires_grad=True)
    y = module(x)
    centre = y.shape[-1] // 2
    y[..., centre].sum().backward()
    nz = torch.nonzero(x.grad[0].abs().sum(0)).flatten()
    src = centre / scale  # input position of the probed output sample
    return math.ceil(max(src - nz.min().item(), nz.max().item() - src))


@cache
def conv_reach(vae: VAEConfig, vocoder: BigVGANConfig) -> tuple[int, int]:
    """(VAE decoder reach in latents, BigVGAN reach in mel frames), one-sided, attention excluded.

    Measured on narrow copies (reach depends on kernels, dilations and strides, not widths) by the gradient
    support of one output sample. The decoder's mid-block attention and its GroupNorms (statistics over all
    positions) make every output depend weakly on the whole input; they are replaced by identity here, so the
    reach is that of the convolutions, where the strong local dependence lies.
    """
    torch.manual_seed(0)
    small_vae = AutoencoderKL1D(VAEConfig(**{**vae.__dict__, "ch": 32}))
    small_vae.decoder.mid.attn_1 = nn.Identity()  # type: ignore[assignment]
    for parent in list(small_vae.decoder.modules()):  # GroupNorm statistics span the whole input: pointwise here
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.GroupNorm):
                setattr(parent, name, nn.Identity())
    small_voc = BigVGAN(BigVGANConfig(**{**vocoder.__dict__,
                                         "upsample_initial_channel": 2 ** len(vocoder.upsample_rates)}))
    with torch.enable_grad():
        dec = _grad_support(small_vae.decoder, vae.z_channels, 96, vae.time_downsampling)
        voc = _grad_support(small_voc, vocoder.num_mels, 96, vocoder.hop_length)
    return dec, voc


def official_geometry(sizes: OfficialSizes, *, hop_s: float, window_latents: int = WINDOW_LATENTS) -> StreamGeometry:
    """StreamGeometry for the official stack: 31.25 latents/s, 16 kHz, 4 fps, seams sized from the reach.

    reach = decoder reach + vocoder reach (in latents, 2 mel frames each); crossfade = reach (the samples a
    decode makes without right context), rounded up to 20 ms frames; decode context = crossfade + reach."""
    dec, voc = conv_reach(sizes.vae, sizes.vocoder)
    mels_per_latent = sizes.vae.time_downsampling
    reach = dec + math.ceil(voc / mels_per_latent)
    crossfade_s = math.ceil(reach / LATENT_RATE / 0.02 - 1e-9) * 0.02
    context = math.ceil(crossfade_s * LATENT_RATE - 1e-9) + reach
    hop_latents = max(round(hop_s * LATENT_RATE), math.ceil(crossfade_s * LATENT_RATE - 1e-9))
    return StreamGeometry(window_s=window_latents / LATENT_RATE, hop_s=hop_latents / LATENT_RATE,
                          crossfade_s=crossfade_s, latent_rate=LATENT_RATE, model_sample_rate=SAMPLE_RATE,
                          frame_rate=CAVP_FPS, context_latents=context, crossfade_law="equal_gain")


# --- the pipeline ------------------------------------------------------------------------------------------
def load_components(folder: str | Path, sizes: OfficialSizes) -> tuple[VectorField, AutoencoderKL1D, BigVGAN,
                                                                        CAVPVideoEncoder]:
    """The four published components from a checked folder, each loaded with strict key and shape checks."""
    layout = check_weights_dir(folder, sizes)
    state = read_state_dict(layout.ckpt)  # the Lightning checkpoint, read once
    field = VectorField(sizes.field)
    load_strict(field, {k: v for k, v in state.items() if k.startswith(OFFICIAL_PREFIXES)},
                what=f"vector field {layout.ckpt}")
    if layout.vae is not None:
        vae = AutoencoderKL1D.from_pretrained(layout.vae, sizes.vae)
    else:
        vae = AutoencoderKL1D(sizes.vae)
        own = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
        vae_state = {k: v for k, v in select_prefix(state, LIGHTNING_PREFIX).items() if k.startswith(own)}
        load_strict(vae, vae_state, what=f"VAE (first_stage_model.*) {layout.ckpt}")
    del state
    vocoder = BigVGAN.from_pretrained(layout.vocoder).remove_weight_norm()  # config from args.yml
    cavp = CAVPVideoEncoder.from_pretrained(layout.cavp, sizes.cavp)
    return field.eval(), vae.eval(), vocoder.eval(), cavp.eval()


class OfficialPipeline:
    """Loaded official stages plus the windowed generator that offline generate and the engine both run."""

    def __init__(self, *, field: VectorField, vae: AutoencoderKL1D, vocoder: BigVGAN, cavp: CAVPVideoEncoder,
                 sizes: OfficialSizes, options: OfficialOptions = OfficialOptions(),
                 device: str = "cpu") -> None:
        self.device = device
        self.field, self.vae = field.to(device).eval(), vae.to(device).eval()
        self.vocoder, self.cavp = vocoder.to(device).eval(), cavp.to(device).eval()
        self.sizes, self.options = sizes, options
        self.geometry = official_geometry(sizes, hop_s=options.hop_s)
        self.velocity = ReplacementGuided(self.field, options.cfg)
        self.features = CAVPFeatures(self.cavp, device=device)

    @classmethod
    def from_dir(cls, folder: str | Path, options: OfficialOptions = OfficialOptions(), *,
                 device: str = "cpu") -> OfficialPipeline:
        """Check the folder (OfficialWeightsError listing every bad file) and load it."""
        sizes = SIZES[options.sizes]
        field, vae, vocoder, cavp = load_components(folder, sizes)
        return cls(field=field, vae=vae, vocoder=vocoder, cavp=cavp, sizes=sizes, options=options, device=device)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, 20, T) -> log10 mel (B, 80, 2T): the VAE decodes z / 0.18215."""
        return self.vae.decode(z / LATENT_SCALE)

    def generator(self) -> WindowedGenerator:
        steps = self.options.steps
        return WindowedGenerator(geometry=self.geometry, velocity=self.velocity, decoder=self.decode,
                                 vocoder=self.vocoder, latent_channels=self.sizes.field.latent_channels,
                                 sampler=lambda v, x0: euler(v, x0, steps), device=self.device)

    def latency_s(self, compute_s: float = 0.0) -> float:
        """Video capture -> audio out: one hop of video must arrive, then compute, and the emitted stream lags
        by the held-back crossfade."""
        g = self.geometry
        return g.hop_duration_s + compute_s + g.crossfade_samples / g.model_sample_rate

    @torch.no_grad()
    def generate(self, frames: np.ndarray, times: np.ndarray, duration: float, *, seed: int = 0,
                 progress=None, timings: dict[str, float] | None = None) -> np.ndarray:  # noqa: ANN001
        """16 kHz audio (round(duration * 16000),) float32 for frames (N, H, W, 3) uint8 shown at ``times``."""
        start = time.perf_counter()
        slot_times, feats = self.features(frames, times, duration)  # (K,), (K, 512) on the 4 fps grid
        if timings is not None:
            timings["features"] = timings.get("features", 0.0) + time.perf_counter() - start
        audio = generate_offline(self.generator(), slot_times, feats, duration, seed=seed, progress=progress,
                                 timings=timings)
        return audio.numpy().astype(np.float32)
