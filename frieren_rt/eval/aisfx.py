"""aiSFX sound-effects embeddings (Ma & Lerch, ISMIR 2022, "Representation Learning for the Automatic Indexing
of Sound Effects Libraries"; model licence CC BY 4.0), re-implemented in plain torch from the PyPI wheel
``aisfx==0.1.2`` (network: ``aisfx/models/cnn2d.py``, the DCASE cross-task 9-layer CNN of Kong et al. 2018;
front end: ``aisfx/spectrogram/*.py``, ``aisfx/preprocessing.py``).

The package pins numpy 1.23 / librosa 0.9 and is not installed: only its checkpoint is read, from the asset
cache. Front end, for any input rate (see /work/shared/reference/assets.md):
  resample to 44.1 kHz (scipy.signal.resample_poly) -> optional peak normalisation (the package's librosa
  path divides by max |x|) -> STFT n_fft = win = 2048, hop 1024, periodic Hann, centred with zero padding
  (Essentia's FrameCutter, the front end the model was trained on, centres the first frame on sample 0 with
  zeros) -> power -> 96 HTK-mel bands over 0..22050 Hz, each filter scaled to unit sum (librosa ``norm=1``,
  Essentia ``unit_sum``) -> log10(1e4 * S + 1) -> min-max scaled with the training-set range [0, 9.4578].
Frames are cut into blocks of 100 (2.32 s) with a hop of 50 (the paper's 1 s hop); a short input is one block
zero-padded to 100 frames (``preprocessing.blocking``). Each block gives a 512-d embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly
from torch import nn
from torch.nn import functional as F

from frieren_rt.assets.paths import asset_file

__all__ = [
    "AISFX",
    "HEADS",
    "Aisfx",
    "AisfxConfig",
    "AisfxNet",
    "aisfx_features",
    "checkpoint_path",
    "frame_blocks",
    "htk_mel_filterbank",
    "load_checkpoint",
]

ASSET_SOURCE = "pypi/aisfx-0.1.2"
CHECKPOINT = "aisfx/models/checkpoint.pth"

# Classification heads of the checkpoint, in their index order: (training dataset, number of classes).
# The embedding is the metric's feature; the heads give class posteriors for a PaSST-style KL (distances.py).
HEADS: tuple[tuple[str, int], ...] = (
    ("prosfx", 78), ("soundlyTrain", 79), ("ucsMixed", 69), ("soundstormBalanced", 81),
    ("productionelementsBalanced", 10), ("cartoonexpressBalanced", 27), ("hpxdigitalBalanced", 3),
    ("series6000Balanced", 23), ("series9000Balanced", 8),
)


@dataclass(frozen=True, kw_only=True)
class AisfxConfig:
    sample_rate: int = 44100
    n_fft: int = 2048
    hop: int = 1024
    n_mels: int = 96
    f_min: float = 0.0
    f_max: float = 22050.0
    log_scale: float = 1e4  # log10(log_scale * S + 1): Essentia's "shift_scale_log"
    norm_min: float = 0.0
    norm_max: float = 9.457798957824707  # preprocessing.spectrogram_normalize, 'original'
    block: int = 100  # frames per embedding (2.32 s)
    block_hop: int = 50  # the paper's 0.5-block (1.16 s) hop
    peak_normalize: bool = True
    width: int = 64  # channels of the first conv block; doubled per block to 512

    @property
    def embed_dim(self) -> int:
        return self.width * 8


AISFX = AisfxConfig()


def _hz_to_mel_htk(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz_htk(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def htk_mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters, linear in Hz between band edges equally spaced on
    the HTK mel scale (2595 log10(1 + f / 700)), each row scaled to unit sum (L1 norm, librosa ``norm=1``)."""
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)  # (K,)
    edges = _mel_to_hz_htk(np.linspace(_hz_to_mel_htk(f_min), _hz_to_mel_htk(f_max), n_mels + 2))  # (M+2,)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1) each
    rising = (freqs[None, :] - lo) / (mid - lo)
    falling = (hi - freqs[None, :]) / (hi - mid)
    w = np.maximum(0.0, np.minimum(rising, falling))  # (M, K)
    sums = w.sum(axis=1, keepdims=True)
    return (w / np.where(sums > 0, sums, 1.0)).astype(np.float32)


def aisfx_features(audio: np.ndarray, sample_rate: int, cfg: AisfxConfig = AISFX) -> torch.Tensor:
    """Scaled log-mel frames (T, n_mels) float32 of mono audio (S,) at sample_rate; T = 1 + S' // hop where
    S' is the length at 44.1 kHz."""
    x = np.asarray(audio, np.float64).reshape(-1)
    if sample_rate != cfg.sample_rate:
        g = math.gcd(int(sample_rate), cfg.sample_rate)
        x = resample_poly(x, cfg.sample_rate // g, int(sample_rate) // g)
    if cfg.peak_normalize:
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        x = x / peak if peak > 0 else x
    wave = torch.as_tensor(x, dtype=torch.float32)
    if wave.numel() < cfg.n_fft // 2 + 1:  # constant padding needs pad < input length
        wave = F.pad(wave, (0, cfg.n_fft // 2 + 1 - wave.numel()))
    spec = torch.stft(wave, cfg.n_fft, cfg.hop, window=torch.hann_window(cfg.n_fft), center=True,
                      pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()  # (K, T)
    fb = torch.as_tensor(htk_mel_filterbank(cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.f_min, cfg.f_max))
    mel = torch.log10(cfg.log_scale * (fb @ power) + 1.0)  # (M, T)
    return ((mel - cfg.norm_min) / (cfg.norm_max - cfg.norm_min)).T.contiguous()  # (T, M)


def frame_blocks(frames: torch.Tensor, block: int, hop: int) -> torch.Tensor:
    """(T, M) -> (N, block, M): windows every ``hop`` frames, only whole ones; an input shorter than one
    block gives one block zero-padded at the end (aisfx ``blocking`` with ``drop_partial_block=True``)."""
    t = frames.shape[0]
    if t <= block:
        return F.pad(frames, (0, 0, 0, block - t))[None]
    return frames.unfold(0, block, hop).transpose(1, 2).contiguous()  # (N, block, M)


class _ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU, then max pooling (the checkpoint's pool type is 'max')."""

    def __init__(self, c_in: int, c_out: int, pool: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, self.pool) if self.pool > 1 else x


class _EmbeddingNet(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        w = width
        self.conv_block1 = _ConvBlock(1, w, 2)
        self.conv_block2 = _ConvBlock(w, 2 * w, 2)
        self.conv_block3 = _ConvBlock(2 * w, 4 * w, 2)
        self.conv_block4 = _ConvBlock(4 * w, 8 * w, 1)

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        """(B, T, M) -> (B, 8 * width): mean over frequency, then max over time."""
        x = blocks[:, None]  # (B, 1, T, M)
        for layer in (self.conv_block1, self.conv_block2, self.conv_block3, self.conv_block4):
            x = layer(x)
        return x.mean(dim=3).amax(dim=2)  # (B, C, T', M') -> (B, C, T') -> (B, C)


class AisfxNet(nn.Module):
    """The checkpoint's CrossNet: the embedding CNN plus one MLP head per training dataset (HEADS)."""

    def __init__(self, width: int = 64, heads: tuple[tuple[str, int], ...] = HEADS) -> None:
        super().__init__()
        d = 8 * width
        self.embedding_net = _EmbeddingNet(width)
        self.fc = nn.ModuleList(
            nn.Sequential(nn.Linear(d, d // 2), nn.ReLU(), nn.Linear(d // 2, d // 4), nn.ReLU(),
                          nn.Linear(d // 4, n)) for _, n in heads)
        self.head_names = tuple(name for name, _ in heads)

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        """(B, 100, 96) scaled log-mel blocks -> (B, 512) embeddings."""
        return self.embedding_net(blocks)

    def head_logits(self, emb: torch.Tensor, head: str) -> torch.Tensor:
        """(B, 512) -> (B, n_classes of ``head``)."""
        return self.fc[self.head_names.index(head)](emb)


def checkpoint_path() -> Path:
    return asset_file(ASSET_SOURCE, CHECKPOINT)


def load_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, ds_dict) of the aisfx checkpoint, loaded with ``weights_only=True``.

    ds_dict ({dataset: (index, n_classes)}) holds numpy int64 scalars pickled under numpy 1.x names, so the
    restricted unpickler is given exactly those three numpy globals and nothing else.
    """
    from numpy._core.multiarray import scalar  # numpy 2 home of numpy.core.multiarray.scalar

    allowed = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype(np.int64))]
    with torch.serialization.safe_globals(allowed):
        state, ds_dict = torch.load(path, map_location="cpu", weights_only=True)
    return state, ds_dict


class Aisfx:
    """Frozen aiSFX embedder: one network in eval mode plus the exact front end."""

    def __init__(self, net: AisfxNet, cfg: AisfxConfig = AISFX) -> None:
        self.net = net.eval().requires_grad_(False)
        self.cfg = cfg

    @classmethod
    def from_pretrained(cls, path: Path | str | None = None, cfg: AisfxConfig = AISFX) -> Aisfx:
        """Strictly loads the packaged checkpoint (default: the asset cache's aisfx 0.1.2 wheel)."""
        state, ds_dict = load_checkpoint(checkpoint_path() if path is None else path)
        heads = tuple(sorted(((str(k), int(n)) for k, (_, n) in ds_dict.items()),
                             key=lambda kv: int(ds_dict[kv[0]][0])))
        if heads != HEADS:
            raise ValueError(f"unexpected aisfx heads {heads}, expected {HEADS}")
        net = AisfxNet(cfg.width, heads)
        net.load_state_dict(state, strict=True)
        return cls(net, cfg)

    def features(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        """(S,) -> (T, 96) scaled log-mel frames."""
        return aisfx_features(audio, sample_rate, self.cfg)

    @torch.inference_mode()
    def embed(self, audio: np.ndarray, sample_rate: int, batch: int = 16) -> torch.Tensor:
        """Block embeddings (N_blocks, 512) float32 of mono audio (S,): N_blocks = 1 for up to 2.32 s, then
        one per 50-frame hop (1.16 s) of whole blocks."""
        blocks = frame_blocks(self.features(audio, sample_rate), self.cfg.block, self.cfg.block_hop)
        return torch.cat([self.net(blocks[i: i + batch]) for i in range(0, len(blocks), batch)])

    def embed_clip(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        """Clip embedding (512,): the mean of the block embeddings."""
        return self.embed(audio, sample_rate).mean(0)

    @torch.inference_mode()
    def embed_snippets(self, snippets: np.ndarray, sample_rate: int, batch: int = 16) -> torch.Tensor:
        """(E, L) short snippets (each at most one block, 2.32 s) -> (E, 512), one padded block each."""
        if len(snippets) == 0:
            return torch.zeros(0, self.cfg.embed_dim)
        c = self.cfg
        blocks = torch.stack([frame_blocks(self.features(s, sample_rate), c.block, c.block_hop)[0]
                              for s in np.asarray(snippets)])  # (E, 100, 96)
        return torch.cat([self.net(blocks[i: i + batch]) for i in range(0, len(blocks), batch)])

    @torch.inference_mode()
    def head_probs(self, emb: torch.Tensor, head: str = "ucsMixed") -> torch.Tensor:
        """(B, 512) embeddings -> (B, n_classes) softmax posteriors of one training dataset's head."""
        return torch.softmax(self.net.head_logits(emb, head), dim=-1)
