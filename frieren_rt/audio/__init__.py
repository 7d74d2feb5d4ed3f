"""Audio stack: the HiFi-GAN mel front end, the HiFi-GAN vocoder, a small mel KL-VAE, chunked decoding."""

from .chunked import chunk_bounds, decode_chunked
from .hifigan import HifiganConfig, HifiganGenerator
from .mel import HIFIGAN_22K, LogMel, MelConfig, log_mel, slaney_mel_filterbank
from .vae import DiagonalGaussian, MelVAE, VAEConfig, vae_loss

__all__ = [
    "HIFIGAN_22K",
    "DiagonalGaussian",
    "HifiganConfig",
    "HifiganGenerator",
    "LogMel",
    "MelConfig",
    "MelVAE",
    "VAEConfig",
    "chunk_bounds",
    "decode_chunked",
    "log_mel",
    "slaney_mel_filterbank",
    "vae_loss",
]
