"""Distribution distances between sets of embeddings and between paired class posteriors.

frechet_distance: the Fréchet (2-Wasserstein) distance between Gaussians fitted to two embedding sets
(Heusel et al. 2017, FID; on audio embeddings: Kilgour et al. 2019, FAD). With aiSFX embeddings
(aisfx.py) this is the project's FAD-style quality metric; unpaired, so any two sets can be compared.

paired_kl: the mean KL divergence KL(p_true || p_gen) over pairs of class distributions of the same clip
(as the PaSST / PANNs KL of V2A papers: Iashin & Rahtu 2021, Frieren Table 1), with two posterior sources:
  - :func:`frieren_rt.eval.classify.clip_posterior`: the world-class posterior of the event classifier at the
    clip's true event times (11 world classes);
  - :meth:`frieren_rt.eval.aisfx.Aisfx.head_probs` of clip embeddings: a classifier trained on professional
    sound-effects libraries (e.g. the 69-class "ucsMixed" head), independent of our world, like PaSST's
    AudioSet head.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

__all__ = ["frechet_distance", "frechet_from_stats", "gaussian_stats", "kl_divergence", "paired_kl"]


def gaussian_stats(emb: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) embeddings -> mean (D,) and unbiased covariance (D, D), float64. Needs N >= 2."""
    x = np.asarray(emb.detach().cpu() if isinstance(emb, torch.Tensor) else emb, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) embeddings, got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_from_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray,
                       eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)).

    The product of two low-rank covariances (fewer samples than dimensions) can make sqrtm singular or give
    a tiny imaginary part: then eps * I is added to both (as the reference FID code does) and the real part
    is taken.
    """
    diff = mu1 - mu2
    covmean = linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(cov1.shape[0])
        covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = np.real(covmean)
    value = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)  # rounding can make identical sets give -1e-10


def frechet_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between embedding sets a (N, D) and b (M, D) (N, M >= 2; D the same). Unit: squared
    embedding units. Sample-size biased upward for small N (Chong & Forsyth 2020): compare values computed on
    sets of equal size only."""
    return frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def kl_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """KL(p || q) in nats along the last axis of (..., C) probability vectors -> (...). Both are smoothed
    as (x + eps) / (1 + C eps), so a class the generated audio misses costs about log(1 / eps), not inf."""
    c = p.shape[-1]
    p = (p.double() + eps) / (1 + c * eps)
    q = (q.double() + eps) / (1 + c * eps)
    return torch.special.xlogy(p, p).sum(-1) - torch.special.xlogy(p, q).sum(-1)  # 0 log 0 = 0


def paired_kl(p_true: torch.Tensor | np.ndarray, p_gen: torch.Tensor | np.ndarray,
              eps: float = 1e-6) -> float:
    """Mean over N pairs of KL(p_true[i] || p_gen[i]), nats; p_true, p_gen (N, C) class distributions of the
    true and generated audio of the same N clips (rows sum to 1)."""
    p, q = torch.as_tensor(p_true), torch.as_tensor(p_gen)
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(f"need two (N, C) arrays of one shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return float(kl_divergence(p, q, eps).mean())
