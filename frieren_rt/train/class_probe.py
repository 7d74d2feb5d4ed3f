"""A sound-class probe on VAE latents, and the class loss that lets one-step students use it.

Why (issue 3): the field makes one short, flat burst for every event class (MODEL_CARD.md, "What was
tried"), and the students copy their teacher's samples, whose class accuracy is no better. The students are
trained with a mean-squared error that a class-agnostic burst satisfies nearly as well as the right sound. A
small probe fitted on the VAE latents of TRUE world audio (the first ``max_len`` latents after each event
onset -> its class) gives the student a second signal: its one-step output at an onset the detector reports
must be recognisable as the class the detector reports. This is classifier guidance moved into training
(Dhariwal & Nichol 2021, arXiv 2105.05233, section 4), at no run-time cost. The eval's class accuracy uses a
different classifier on the decoded audio (frieren_rt/eval/classify.py), so the probe cannot flatter it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from frieren_rt.vision.events import feature_posteriors, onset_peaks

__all__ = ["ProbeConfig", "LatentClassProbe", "onset_snippets", "fit_probe", "detected_onsets", "class_loss",
           "window_class_scores"]


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    """channels: latent channels; classes: event class names; max_len / min_len: snippet latents after an
    onset (16 = 0.37 s at 43 latents/s; a window's newest hop can leave fewer); width: conv channels."""

    channels: int
    classes: tuple[str, ...]
    max_len: int = 16
    min_len: int = 4
    width: int = 64


class LatentClassProbe(nn.Module):
    """forward(z (B, C, L), valid (B, L) bool) -> logits (B, K): two convolutions, then mean and max over the
    valid latents (a snippet cut short by the window's end pools only what it has)."""

    def __init__(self, cfg: ProbeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.net = nn.Sequential(nn.Conv1d(cfg.channels, w, 3, padding=1), nn.GELU(),
                                 nn.Conv1d(w, w, 3, padding=1), nn.GELU())
        self.head = nn.Linear(2 * w, len(cfg.classes))

    def forward(self, z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = self.net(z)  # (B, w, L)
        m = valid[:, None, :].to(h.dtype)  # (B, 1, L)
        mean = (h * m).sum(-1) / m.sum(-1).clamp(min=1.0)
        peak = h.masked_fill(m == 0, float("-inf")).amax(-1)
        return self.head(torch.cat([mean, peak], dim=-1))

    def save(self, path: str | Path, **metadata: str) -> None:
        from safetensors.torch import save_file  # noqa: PLC0415

        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path),
                  metadata={"probe_config": json.dumps(asdict(self.cfg)), **metadata})

    @classmethod
    def from_pretrained(cls, path: str | Path) -> LatentClassProbe:
        from safetensors import safe_open  # noqa: PLC0415
        from safetensors.torch import load_file  # noqa: PLC0415

        with safe_open(str(path), "pt") as f:
            d = json.loads((f.metadata() or {})["probe_config"])
        probe = cls(ProbeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}))
        probe.load_state_dict(load_file(str(path)))
        return probe.eval()


def onset_snippets(latents: dict[int, tuple[torch.Tensor, torch.Tensor]], events: dict[int, list[dict]],
                   classes: tuple[str, ...], latent_rate: float, max_len: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The latents after each true event onset: mean (N, C, max_len), std (N, C, max_len), length (N,) and
    class index (N,). Snippets running past a clip's end are cut (length < max_len, zero-padded)."""
    means, stds, lengths, labels = [], [], [], []
    for seed, (mean, std) in latents.items():
        n = mean.shape[1]
        for e in events.get(seed, []):
            j = int(e["time"] * latent_rate)
            if e["cls"] not in classes or j >= n:
                continue
            length = min(max_len, n - j)
            pad = (0, max_len - length)
            means.append(F.pad(mean[:, j : j + length], pad))
            stds.append(F.pad(std[:, j : j + length], pad))
            lengths.append(length)
            labels.append(classes.index(e["cls"]))
    return torch.stack(means), torch.stack(stds), torch.tensor(lengths), torch.tensor(labels)


def _random_valid(lengths: torch.Tensor, cfg: ProbeConfig, gen: torch.Generator) -> torch.Tensor:
    """(N, max_len) bool: a random prefix of each snippet, min_len..its length latents (as windows cut them)."""
    low = torch.minimum(lengths, torch.tensor(cfg.min_len))
    cut = low + (torch.rand(lengths.shape, generator=gen) * (lengths - low + 1)).long()
    return torch.arange(cfg.max_len)[None, :] < cut[:, None]


def probe_accuracy(probe: LatentClassProbe, z: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        valid = torch.arange(probe.cfg.max_len)[None, :] < lengths[:, None]
        return float((probe(z, valid).argmax(-1) == labels).float().mean())


def fit_probe(train: tuple[torch.Tensor, ...], val: tuple[torch.Tensor, ...], cfg: ProbeConfig, *,
              steps: int = 1500, batch_size: int = 64, lr: float = 2e-3, seed: int = 0
              ) -> tuple[LatentClassProbe, dict[str, float]]:
    """Fit on train snippets (VAE posterior samples, random prefixes); report accuracy on whole val snippets."""
    from tqdm import tqdm  # noqa: PLC0415

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    probe = LatentClassProbe(cfg)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-2)
    mean, std, lengths, labels = train
    for _ in tqdm(range(steps), desc="class probe", unit="step"):
        idx = torch.randint(len(labels), (batch_size,), generator=gen)
        z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)
        loss = F.cross_entropy(probe(z, _random_valid(lengths[idx], cfg, gen)), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    probe.eval()
    return probe, {"train_acc": probe_accuracy(probe, mean, lengths, labels),
                   "val_acc": probe_accuracy(probe, val[0], val[2], val[3]), "val_snippets": float(len(val[3]))}


def detected_onsets(cond: torch.Tensor, cond_index: torch.Tensor, mask: torch.Tensor, *, classes: int,
                    min_len: int, threshold: float = 0.5) -> list[tuple[int, int, int, int]]:
    """Onsets the event detector reports in a batch of windows, where the student has to make the sound.

    cond (B, S, D) raw features whose last classes + 1 entries are the detector's posteriors ("no event"
    last); cond_index (B, W) latent -> slot; mask (B, 1, W), 1 = known. Returns (row, first latent, length,
    class) for each P(event) peak >= threshold whose first latent is unknown and leaves >= min_len latents.
    """
    post = feature_posteriors(cond, classes)  # (B, S, K + 1)
    width = cond_index.shape[-1]
    out = []
    for b in range(cond.shape[0]):
        for s in onset_peaks(1.0 - post[b, :, -1], threshold):
            hits = torch.nonzero(cond_index[b] == s).flatten()
            if not len(hits):
                continue
            j = int(hits[0])
            if mask[b, 0, j] == 0 and width - j >= min_len:
                out.append((b, j, width - j, int(post[b, s, :-1].argmax())))
    return out


def _onset_logits(probe: LatentClassProbe, x1: torch.Tensor, onsets: list[tuple[int, int, int, int]]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe's logits (N, K) on the latents x1 (B, C, W) after each of N onsets, and their classes (N,)."""
    size = probe.cfg.max_len
    snippets, valid, labels = [], [], []
    for b, j, left, cls in onsets:
        length = min(size, left)
        snippets.append(F.pad(x1[b, :, j : j + length], (0, size - length)))
        valid.append(torch.arange(size, device=x1.device) < length)
        labels.append(cls)
    return probe(torch.stack(snippets), torch.stack(valid)), torch.tensor(labels, device=x1.device)


def class_loss(probe: LatentClassProbe, x1: torch.Tensor, onsets: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """Cross-entropy of the probe on the student's latents x1 (B, C, W) after each detected onset (0 if none)."""
    if not onsets:
        return x1.new_zeros(())
    return F.cross_entropy(*_onset_logits(probe, x1, onsets))


@torch.no_grad()
def window_class_scores(probe: LatentClassProbe, x1: torch.Tensor, onsets: list[tuple[int, int, int, int]]
                        ) -> torch.Tensor:
    """(B,) the probe's mean log-probability of the detected class over each window's onsets in x1 (B, C, W);
    0 for a window without one. A score to choose among samples by, not a loss: choosing never moves the
    samples off what the teacher makes, where the probe's loss let the students satisfy it without sounding more
    like the class. Measured, choosing did not raise class either (runs/s32; MODEL_CARD.md, "What was tried")."""
    scores = x1.new_zeros(x1.shape[0])
    if not onsets:
        return scores
    logits, labels = _onset_logits(probe, x1, onsets)
    logp = logits.log_softmax(-1).gather(1, labels[:, None])[:, 0]  # (N,)
    rows = torch.tensor([o[0] for o in onsets], device=x1.device)
    counts = torch.zeros_like(scores).index_add_(0, rows, torch.ones_like(logp))
    return scores.index_add_(0, rows, logp) / counts.clamp(min=1.0)
