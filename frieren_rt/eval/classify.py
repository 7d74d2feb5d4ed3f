"""Sound-class accuracy at the true event times: does the generated sound at each event's onset sound like the
right class?

An :class:`EventClassifier` is fitted on TRUE world audio of train-split clips: for every event, the snippet
of ``snippet_s`` seconds starting at its onset (other sounds playing at that moment included, as in any
evaluated clip) -> a feature vector -> multinomial logistic regression. Evaluated on audio under test at the
same clip's true event times, its accuracy is bounded above by its accuracy on the true test audio (the
ceiling; test clips also use sound variants held out of the train split, see world/sound_pool.py), and audio
from a mismatched clip scores near chance (tests/eval/test_classify.py checks both).

Two feature extractors share one contract, (E, L) snippets at sample_rate -> (E, F) float32:
:class:`LogMelStats` (fast, the default) and :class:`AisfxFeatures` (aiSFX embeddings, aisfx.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from frieren_rt.eval.aisfx import Aisfx, htk_mel_filterbank
from frieren_rt.world.events import EVENT_CLASSES

__all__ = [
    "AisfxFeatures",
    "EventClassifier",
    "LinearClassifier",
    "LogMelStats",
    "SnippetFeatures",
    "class_accuracy",
    "clip_posterior",
    "event_snippets",
    "fit_event_classifier",
]


class SnippetFeatures(Protocol):
    name: str

    def __call__(self, snippets: np.ndarray, sample_rate: int) -> torch.Tensor:
        """(E, L) float32 snippets -> (E, F) float32 features."""
        ...


def event_snippets(audio: np.ndarray, events: Iterable, sample_rate: int, snippet_s: float) -> np.ndarray:
    """(E, L) float32, L = round(snippet_s * sample_rate): audio from each event's onset (``.time``),
    zero-padded past the end of the clip. Events in the given order."""
    x = np.asarray(audio, np.float32).reshape(-1)
    n = round(snippet_s * sample_rate)
    times = [float(e.time) for e in events]
    out = np.zeros((len(times), n), np.float32)
    for i, t in enumerate(times):
        start = min(max(round(t * sample_rate), 0), len(x))
        seg = x[start: start + n]
        out[i, : len(seg)] = seg
    return out


@dataclass(frozen=True, kw_only=True)
class LogMelStats:
    """Per snippet: 48 HTK-mel bands in dB (floor -100 dB) -> mean, std and max over frames, plus the
    band-mean level in 8 equal time slices (the envelope separates e.g. a pistol's crack from a door's
    slow swing). 20 ms windows, 10 ms hop."""

    name: str = "logmel"
    n_mels: int = 48
    n_fft: int = 512
    hop: int = 220
    n_slices: int = 8
    f_max: float | None = None  # top of the bands in Hz; None: the Nyquist frequency (the evaluation's)

    def band_db(self, snippets: np.ndarray, sample_rate: int) -> torch.Tensor:
        """(E, L) snippets -> (E, M, T) mel-band levels in dB per frame (floor -100 dB): what the stats summarise."""
        x = torch.as_tensor(np.asarray(snippets, np.float32))  # (E, L)
        spec = torch.stft(x, self.n_fft, self.hop, window=torch.hann_window(self.n_fft), center=True,
                          pad_mode="constant", return_complex=True).abs().square()  # (E, K, T)
        top = sample_rate / 2 if self.f_max is None else self.f_max
        fb = torch.as_tensor(htk_mel_filterbank(self.n_mels, self.n_fft, sample_rate, 0.0, top))
        return 10 * torch.log10(torch.einsum("mk,ekt->emt", fb, spec) + 1e-10)

    def __call__(self, snippets: np.ndarray, sample_rate: int) -> torch.Tensor:
        if len(snippets) == 0:
            return torch.zeros(0, 3 * self.n_mels + self.n_slices)
        db = self.band_db(snippets, sample_rate)  # (E, M, T)
        slices = torch.stack([s.mean(dim=(1, 2)) for s in db.chunk(self.n_slices, dim=2)], dim=1)  # (E, S')
        if slices.shape[1] < self.n_slices:  # fewer frames than slices: repeat the last
            slices = torch.cat([slices, slices[:, -1:].expand(-1, self.n_slices - slices.shape[1])], dim=1)
        return torch.cat([db.mean(2), db.std(2), db.amax(2), slices], dim=1).float()


class AisfxFeatures:
    """aiSFX embeddings of the snippets (one zero-padded 100-frame block each, as the package does)."""

    name = "aisfx"

    def __init__(self, model: Aisfx | None = None) -> None:
        self.model = model if model is not None else Aisfx.from_pretrained()

    def __call__(self, snippets: np.ndarray, sample_rate: int) -> torch.Tensor:
        return self.model.embed_snippets(snippets, sample_rate)


@dataclass(frozen=True)
class LinearClassifier:
    """Standardised multinomial logistic regression: p = softmax(((f - mean) / std) @ weight.T + bias)."""

    classes: tuple[str, ...]
    mean: torch.Tensor  # (F,)
    std: torch.Tensor  # (F,)
    weight: torch.Tensor  # (C, F)
    bias: torch.Tensor  # (C,)

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], *,
            l2: float = 1e-3, steps: int = 100) -> LinearClassifier:
        """features (N, F), labels (N,) int64 indices into classes; full-batch L-BFGS on the mean
        cross-entropy + l2 * ||W||^2 (convex, so deterministic up to float error)."""
        f = features.double()
        mean, std = f.mean(0), f.std(0).clamp_min(1e-6)
        z = (f - mean) / std
        w = torch.zeros(len(classes), f.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(z @ w.T + b, labels) + l2 * w.square().sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return cls(tuple(classes), mean.float(), std.float(), w.detach().float(), b.detach().float())

    def probs(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F) -> (N, C) class posteriors."""
        z = (features.float() - self.mean) / self.std
        return torch.softmax(z @ self.weight.T + self.bias, dim=-1)

    def state_dict(self) -> dict:
        """Plain tensors and strings: saves with torch.save, loads with torch.load(weights_only=True)."""
        return {"classes": list(self.classes), "mean": self.mean, "std": self.std, "weight": self.weight,
                "bias": self.bias}

    @classmethod
    def from_state_dict(cls, state: dict) -> LinearClassifier:
        return cls(tuple(state["classes"]), state["mean"], state["std"], state["weight"], state["bias"])


@dataclass(frozen=True)
class EventClassifier:
    """Features + linear classifier + snippet geometry: classifies each event's onset snippet of a clip."""

    features: SnippetFeatures
    linear: LinearClassifier
    sample_rate: int = 22050
    snippet_s: float = 0.5

    @property
    def classes(self) -> tuple[str, ...]:
        return self.linear.classes

    def posteriors(self, audio: np.ndarray, events: Sequence) -> torch.Tensor:
        """audio (S,) at sample_rate, events (E) -> (E, C) posteriors of their onset snippets."""
        snippets = event_snippets(audio, events, self.sample_rate, self.snippet_s)
        return self.linear.probs(self.features(snippets, self.sample_rate))

    def predict(self, audio: np.ndarray, events: Sequence) -> list[str]:
        return [self.classes[i] for i in self.posteriors(audio, events).argmax(1).tolist()]


def fit_event_classifier(clips: Iterable, features: SnippetFeatures | None = None, *, snippet_s: float = 0.5,
                         classes: Sequence[str] = EVENT_CLASSES, l2: float = 1e-4) -> EventClassifier:
    """Fit on the TRUE audio of clips (world Clips: ``.audio``, ``.events``, ``.sample_rate``), normally
    train-split seeds. All clips must share one sample rate."""
    features = features if features is not None else LogMelStats()
    feats, labels, rate = [], [], None
    for clip in clips:
        rate = clip.sample_rate if rate is None else rate
        if clip.sample_rate != rate:
            raise ValueError(f"clips mix sample rates {rate} and {clip.sample_rate}")
        if clip.events:
            feats.append(features(event_snippets(clip.audio, clip.events, rate, snippet_s), rate))
            labels += [classes.index(e.cls) for e in clip.events]
    if not labels:
        raise ValueError("no events to fit on")
    linear = LinearClassifier.fit(torch.cat(feats), torch.as_tensor(labels), classes, l2=l2)
    return EventClassifier(features, linear, sample_rate=rate, snippet_s=snippet_s)


def class_accuracy(classifier: EventClassifier, audio: np.ndarray, events: Sequence) -> float:
    """Fraction of events whose onset snippet in ``audio`` (S,) is classified as the event's true class;
    NaN for a clip without events (pool over clips by event count, not by clip)."""
    if not events:
        return float("nan")
    pred = classifier.predict(audio, events)
    return float(np.mean([p == e.cls for p, e in zip(pred, events, strict=True)]))


def clip_posterior(classifier: EventClassifier, audio: np.ndarray, events: Sequence) -> torch.Tensor:
    """(C,) the mean of the event-snippet posteriors of one clip: its class distribution as heard at the
    true event times (input to distances.paired_kl). Uniform for a clip without events."""
    if not events:
        return torch.full((len(classifier.classes),), 1.0 / len(classifier.classes))
    return classifier.posteriors(audio, events).mean(0)
