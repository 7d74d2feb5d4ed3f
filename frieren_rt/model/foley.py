"""FoleyModel: the shipped small model = trainable visual projection + the small-preset vector field.

It satisfies the velocity contract ``v = model(x_t, t, cond, *, cond_index, known, mask)`` with ``cond`` the
raw per-frame visual features [MobileNetV2 image (1280) | motion (m)] of a window's frames; the projection
maps them to the vector field's raw condition. The CFG null is all-zero raw features, as Frieren's zero-CAVP
null passes through its condition Linear (frieren.md, "Vector field").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from dataclasses import field as dc_field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from frieren_rt.flow.guidance import tail_guidance_scale
from frieren_rt.model.config import VectorFieldConfig, preset
from frieren_rt.model.vector_field import VectorField
from frieren_rt.vision.align import ProjectionConfig, VisualProjection
from frieren_rt.vision.events import class_traces, tail_presence

__all__ = ["FoleyConfig", "FoleyModel"]


@dataclass(frozen=True, kw_only=True)
class FoleyConfig:
    field: VectorFieldConfig = dc_field(default_factory=lambda: preset("small"))
    projection: ProjectionConfig = dc_field(default_factory=lambda: ProjectionConfig(raw_cond_dim=256))
    # Motion features are mean |luma differences| in [0, 1], mostly 0.001-0.1, beside 1280 LayerNorm-ed image
    # features of unit scale: fed raw, the first trained model barely used them (a conditioned hop was only 7 %
    # closer to the truth than a null-conditioned one). log1p(gain * m) puts them on the image features' scale.
    motion_gain: float = 100.0
    # The last event_dim entries of the motion vector are the event detector's features (embedding and class
    # posteriors, frieren_rt.vision.events): already on a unit scale, so they skip the log1p above.
    event_dim: int = 0
    # Event traces (frieren_rt.vision.events.event_trace): the detector's K class posteriors (the last K + 1
    # event entries are the posteriors, "no event" last) held with a per-frame decay, one set per decay. The
    # posteriors peak on the single onset frame, so without them every latent of a sound's tail read "no event"
    # and the field made one burst for every class (MODEL_CARD.md, "What was tried"). They are computed here,
    # from the window's own frames, so training, offline generation and streaming see the same thing; the
    # projection's motion_dim counts them (motion_dim = raw motion width + trace_dim).
    event_classes: int = 0
    trace_decays: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.projection.raw_cond_dim != self.field.raw_cond_dim:
            raise ValueError(f"projection output {self.projection.raw_cond_dim} != field raw_cond_dim "
                             f"{self.field.raw_cond_dim}")
        if not 0 <= self.event_dim <= self.motion_dim:
            raise ValueError(f"event_dim {self.event_dim} outside the motion vector ({self.motion_dim})")
        if self.trace_decays and not 0 < self.event_classes < self.event_dim:
            raise ValueError(f"event traces need 0 < event_classes ({self.event_classes}) < event_dim "
                             f"({self.event_dim})")
        if not all(0.0 < d < 1.0 for d in self.trace_decays):
            raise ValueError(f"trace decays must lie in (0, 1), got {self.trace_decays}")

    @property
    def trace_dim(self) -> int:
        """Width of the event traces the model adds to the motion vector."""
        return self.event_classes * len(self.trace_decays)

    @property
    def motion_dim(self) -> int:
        """Width of the raw per-frame motion features the model reads (the projection's input less the traces)."""
        return self.projection.motion_dim - self.trace_dim

    @property
    def feature_dim(self) -> int:
        """Width of the raw per-frame features the model reads: image + motion."""
        return self.projection.image_dim + self.motion_dim

    def to_json(self) -> str:
        return json.dumps({"field": asdict(self.field), "projection": asdict(self.projection),
                           "motion_gain": self.motion_gain, "event_dim": self.event_dim,
                           "event_classes": self.event_classes, "trace_decays": list(self.trace_decays)})

    @classmethod
    def from_json(cls, text: str) -> FoleyConfig:
        d = json.loads(text)
        return cls(field=VectorFieldConfig(**d["field"]), projection=ProjectionConfig(**d["projection"]),
                   motion_gain=d.get("motion_gain", 0.0), event_dim=d.get("event_dim", 0),
                   event_classes=d.get("event_classes", 0), trace_decays=tuple(d.get("trace_decays", ())))


class FoleyModel(nn.Module):
    """forward(x (B, C, T), t (B,) in [0, 1], cond (B, S, feature_dim), *, cond_index (B, T) or (T,),
    known (B, C, T), mask (B, 1, T)) -> velocity (B, C, T)."""

    def __init__(self, cfg: FoleyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.projection = VisualProjection(cfg.projection)
        self.field = VectorField(cfg.field)

    @property
    def latent_channels(self) -> int:
        return self.cfg.field.latent_channels

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(cond)

    def guidance_scale(self, cond: torch.Tensor, cond_index: torch.Tensor | None, scale: float,
                       tail_scale: float | None = None) -> float | torch.Tensor:
        """``scale``, or with ``tail_scale`` the per-latent (B, 1, T) CFG scale that eases to it on the tails of
        the sounds the detector features in ``cond`` (B, S, D) report (frieren_rt.flow.tail_guidance_scale);
        cond_index (B, T) or (T,): the frame each latent reads."""
        if tail_scale is None:
            return scale
        if cond_index is None:
            raise ValueError("tail guidance needs cond_index, the frame each latent reads")
        if not self.cfg.event_classes:
            raise ValueError("tail guidance needs a model that reads the event detector's class posteriors "
                             "(trained with trace_decays)")
        tail = tail_presence(cond, cond_index, self.cfg.event_classes)
        return tail_guidance_scale(tail, scale, tail_scale)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        image, motion = cond.split([self.cfg.projection.image_dim, self.cfg.motion_dim], dim=-1)
        cells, events = motion.float().split([motion.shape[-1] - self.cfg.event_dim, self.cfg.event_dim], dim=-1)
        if self.cfg.motion_gain:
            cells = torch.log1p(self.cfg.motion_gain * cells.clamp(min=0))
        traces = [class_traces(events, self.cfg.event_classes, d) for d in self.cfg.trace_decays]  # (B, S, K) each
        motion = torch.cat([cells, events, *traces], dim=-1)
        raw = self.projection(image.float(), motion.float() if self.cfg.projection.motion_dim else None)
        return self.field(x, t, raw, **kwargs)

    def save(self, path: str | Path, **metadata: str) -> None:
        """safetensors with the config (and any provenance strings) in the header metadata."""
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path), metadata={"config": self.cfg.to_json(), **metadata})

    @staticmethod
    def config_of(path: str | Path) -> FoleyConfig:
        """The config in a model file's header, without reading its weights."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model weights not found: {path}")
        from safetensors import safe_open  # noqa: PLC0415

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if "config" not in meta:
            raise ValueError(f"{path} has no frieren-rt model config in its metadata (not a FoleyModel file)")
        return FoleyConfig.from_json(meta["config"])

    @classmethod
    def from_pretrained(cls, path: str | Path) -> FoleyModel:
        model = cls(cls.config_of(path))
        model.load_state_dict(load_file(str(path)), strict=True)
        return model.eval()
