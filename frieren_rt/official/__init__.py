"""The published Frieren stages around the vector field, loadable from the official files with strict=True.

- :class:`AutoencoderKL1D`: Make-An-Audio 2's 1-D KL VAE (log-mel <-> latent; the flow works on
  ``LATENT_SCALE * z``).
- :class:`BigVGAN`: the 16 kHz vocoder (log-mel -> waveform), weight norm kept for loading.
- :class:`CAVPVideoEncoder`: Diff-Foley's CAVP video branch (frames at 4 fps -> unit-norm 512-d features).
- :mod:`keyed_init`: the deterministic weights the parity fixtures were made with.
Forward semantics and key layouts: ../shared/fixtures/frieren_official/README.md.
"""

from frieren_rt.official.bigvgan import BIGVGAN_PRESETS, BigVGAN, BigVGANConfig, bigvgan_preset
from frieren_rt.official.cavp import CAVP_PRESETS, CAVPConfig, CAVPVideoEncoder, cavp_preset
from frieren_rt.official.keyed_init import BIGVGAN_WEIGHT_G_GAIN, apply_keyed_init, keyed_state_dict
from frieren_rt.official.loading import CheckpointMismatchError
from frieren_rt.official.vae import (
    LATENT_SCALE,
    VAE_PRESETS,
    AutoencoderKL1D,
    DiagonalGaussian,
    VAEConfig,
    vae_preset,
)

__all__ = [
    "AutoencoderKL1D",
    "BIGVGAN_PRESETS",
    "BIGVGAN_WEIGHT_G_GAIN",
    "BigVGAN",
    "BigVGANConfig",
    "CAVPConfig",
    "CAVPVideoEncoder",
    "CAVP_PRESETS",
    "CheckpointMismatchError",
    "DiagonalGaussian",
    "LATENT_SCALE",
    "VAEConfig",
    "VAE_PRESETS",
    "apply_keyed_init",
    "bigvgan_preset",
    "cavp_preset",
    "keyed_state_dict",
    "vae_preset",
]
