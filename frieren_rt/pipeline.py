"""The shipped model as one object: visual features -> windowed flow generation -> VAE decode -> vocoder.

``FoleyPipeline.from_dir`` loads the trained weights (``frieren_rt/weights/`` by default) and builds the one
``WindowedGenerator`` that both offline ``generate`` and the streaming engine run, so a long clip has the same
seams, timing and continuity as a live stream (issue 3, "Offline generation").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from frieren_rt.backends import BACKENDS, PRECISIONS, Scripted, apply_backend, resolve_backend
from frieren_rt.flow import cfg_velocity, dopri5, euler
from frieren_rt.model.foley import FoleyModel
from frieren_rt.windowing import StreamGeometry, WindowedGenerator, generate_offline
from frieren_rt.windowing.gate import EventGate, GateConfig, detector_posteriors
from frieren_rt.windowing.generator import VocoderCondition

__all__ = ["GenerationOptions", "HopGeometry", "GENERATE_GEOMETRY", "FoleyPipeline", "GuidedModel", "default_weights_dir", "resolve_weights", "VARIANTS"]

# Shipped model variants (issue 3, "Shipped weights") and the CFG scale each is sampled with by default:
# the base and reflow models use CFG 4.5 (Frieren); the distilled student has CFG inside its guided velocity
# (two passes); "single" folded CFG into its weights (one pass, no guidance at run time).
VARIANTS: dict[str, float] = {"base": 4.5, "reflow": 4.5, "distill": 4.5, "single": 1.0}
DEFAULT_STEPS: dict[str, int] = {"base": 25, "reflow": 1, "distill": 1, "single": 1}


@dataclass(frozen=True, kw_only=True)
class HopGeometry:
    """How a caller cuts the stream into hops (the GenerationOptions fields of the same names): the hop, the
    latents generated past it (None: the whole right context) and whether the next hop generates them again."""

    hop_s: float
    lookahead: int | None
    revise_lookahead: bool
    lookahead_seam: bool = False


# `frieren-rt generate`'s defaults (cli/generate.py; the evaluation's "generate" rows): the 0.1 s hop with 5 revised
# latents, so the field fills the 9 unknown latents it was trained on with video after every latent it commits
# (MODEL_CARD.md, "What was tried": class 0.391 / 0.374 -> 0.446 / 0.413 on 24 test / 30 validation clips
# against the 0.2 s hop with the whole right context).
GENERATE_GEOMETRY = HopGeometry(hop_s=0.1, lookahead=5, revise_lookahead=True)


def default_weights_dir() -> Path:
    return Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True, kw_only=True)
class GenerationOptions:
    """variant: which shipped model ("auto": the best present, single > distill > reflow > base); vocoder:
    "student" (distilled, fits the CPU budget), "hifigan" (universal teacher), "auto" (student when present);
    decoder: which VAE decoder turns latents into mel (:func:`vae_file`): "streaming" (``vae.safetensors``, 5
    latents of look-ahead), "offline" (``vae_offline.safetensors`` when the folder has one: wider, 8 latents of
    look-ahead, too late for the streaming engine's latency) or "auto" (offline with HiFi-GAN universal,
    streaming with the student, as before the option);
    steps: Euler steps (None = the variant's default); sampler: "euler" or "dopri5"; cfg: guidance scale
    (None = the variant's default; 1 = conditional only, one pass); backend / precision: how the guided
    velocity runs (frieren_rt.backends: auto|eager|script|compile|cudagraph|tensorrt, fp32|bf16|fp16; "script",
    and "auto" on CPU, also run the feature networks, VAE decoder and vocoder as frozen graphs); event_gate: pass
    audio only around frames the event detector marks (frieren_rt/windowing/gate.py; models that read detector
    features only); tail_cfg: the guidance scale on sounds' tails for the two-pass variants (None: ``cfg``
    everywhere, as the shipped students were trained; frieren_rt.flow.guidance.tail_guidance_scale);
    lookahead: latents generated past the end of each hop's audio before it is decoded, so the VAE decoder and
    vocoder see real right context (StreamGeometry.lookahead_latents; 23.2 ms of latency each): 0 (streaming),
    or None for their whole right context (offline: decoding then equals decoding the whole clip at once);
    revise_lookahead: the next hop generates the look-ahead latents again with its newer video instead of keeping
    them (StreamGeometry.revise_lookahead), so the vector field too sees video after what it commits.
    lookahead_seam: the seam crossfade lies in the look-ahead, 20 ms less latency for a little class and sync
    (StreamGeometry.lookahead_seam; needs lookahead >= 1)."""

    variant: str = "auto"
    vocoder: Literal["auto", "student", "hifigan"] = "auto"
    decoder: Literal["auto", "streaming", "offline"] = "auto"
    steps: int | None = None
    sampler: Literal["euler", "dopri5"] = "euler"
    cfg: float | None = None
    window_s: float = 1.6
    hop_s: float = 0.2
    backend: str = "eager"
    precision: str = "fp32"
    event_gate: bool = True
    tail_cfg: float | None = None
    lookahead: int | None = 0
    revise_lookahead: bool = False
    lookahead_seam: bool = False

    def __post_init__(self) -> None:
        if self.variant != "auto" and self.variant not in VARIANTS:
            raise ValueError(f"unknown model variant {self.variant!r}; choose one of {list(VARIANTS)}")
        if self.decoder not in ("auto", "streaming", "offline"):
            raise ValueError(f"unknown VAE decoder {self.decoder!r}; choose auto, streaming or offline")
        if self.lookahead is not None and self.lookahead < 0:
            raise ValueError(f"lookahead must be >= 0 latents (or None: the decoder's whole right context), "
                             f"got {self.lookahead}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.backend not in BACKENDS or self.precision not in PRECISIONS:
            raise ValueError(f"backend {self.backend!r} / precision {self.precision!r}: choose from "
                             f"{list(BACKENDS)} / {list(PRECISIONS)}")

    @property
    def scale(self) -> float:
        return VARIANTS.get(self.variant, 4.5) if self.cfg is None else self.cfg

    @property
    def num_steps(self) -> int:
        return DEFAULT_STEPS.get(self.variant, 1) if self.steps is None else self.steps


class GuidedModel(nn.Module):
    """The velocity contract with CFG inside: both branches as one doubled batch (scale 1: one pass).
    tail_scale: the scale on sounds' tails (frieren_rt.flow.guidance.tail_guidance_scale; None = one scale)."""

    def __init__(self, model: FoleyModel, scale: float, tail_scale: float | None = None) -> None:
        super().__init__()
        self.model, self.scale, self.tail_scale = model, scale, tail_scale

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, **kw: torch.Tensor) -> torch.Tensor:
        if self.tail_scale is None and self.scale == 1.0:
            return self.model(x, t, cond, **kw)
        scale = self.model.guidance_scale(cond, kw.get("cond_index"), self.scale, self.tail_scale)
        return cfg_velocity(self.model, cond, None, scale, **kw)(x, t)


def make_sampler(options: GenerationOptions):
    if options.sampler == "dopri5":
        return lambda v, x0: dopri5(v, x0)
    return lambda v, x0: euler(v, x0, options.num_steps)


def resolve_weights(weights: Path | None, options: GenerationOptions) -> tuple[Path, str, bool]:
    """(folder, model variant, use the student vocoder) for a weights folder; FileNotFoundError naming every
    missing file and how to get it. Cheap: checks files only, loads nothing."""
    folder = Path(weights) if weights is not None else default_weights_dir()
    how = "train them with 'frieren-rt train ...' or point --weights/--model at a folder that has them"
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist; {how}")
    variant = options.variant
    if variant == "auto":
        present = [v for v in ("single", "distill", "reflow", "base") if (folder / f"{v}.safetensors").is_file()]
        if not present:
            raise FileNotFoundError(f"{folder} holds none of single/distill/reflow/base.safetensors; {how}")
        variant = present[0]
    missing = [f for f in (f"{variant}.safetensors", "vae.safetensors") if not (folder / f).is_file()]
    use_student = options.vocoder == "student" or (
        options.vocoder == "auto" and (folder / "vocoder.safetensors").is_file())
    if use_student and not (folder / "vocoder.safetensors").is_file():
        missing.append("vocoder.safetensors")
    if not missing and _reads_event_detector(folder / f"{variant}.safetensors") and not (
            folder / "detector.safetensors").is_file():
        missing.append("detector.safetensors")
    if missing:
        raise FileNotFoundError(f"model files missing in {folder}: {', '.join(missing)}; {how}")
    return folder, variant, use_student


def vae_file(folder: Path, use_student: bool, decoder: str = "auto") -> Path:
    """The VAE a folder's pipeline decodes with: the offline decoder (``vae_offline.safetensors``, from
    ``frieren-rt train decoder``: wider, and reading 8 latents of context each side where the streaming one
    reads 5) when ``decoder`` is "offline", or "auto" with HiFi-GAN universal; otherwise, or when the folder
    has none, ``vae.safetensors`` (the streaming engine's). Both share one encoder, so every flow model's
    latents suit either. The student after the offline decoder is ``frieren-rt generate``'s default: on
    generated audio it keeps more class and sync than either the streaming decoder or HiFi-GAN universal
    (MODEL_CARD.md, "Evaluation")."""
    offline = folder / "vae_offline.safetensors"
    wants_offline = decoder == "offline" or (decoder == "auto" and not use_student)
    return offline if wants_offline and offline.is_file() else folder / "vae.safetensors"


def _reads_event_detector(model_file: Path) -> bool:
    """Whether a FoleyModel file's config (header metadata only: cheap) takes event detector features."""
    import json  # noqa: PLC0415

    from safetensors import safe_open  # noqa: PLC0415

    with safe_open(str(model_file), "pt") as f:
        config = (f.metadata() or {}).get("config")
    return bool(config and json.loads(config).get("event_dim", 0))


def load_gate_config(path: Path, detector) -> GateConfig | None:  # noqa: ANN001
    """The event gate's settings from a weights folder's gate.json ({"classes": [...], "class_hold_s": [...]},
    written by ``frieren-rt train export``, optionally "threshold": the P(event) that opens the gate, chosen for
    the folder's own detector, and "min_class_confidence": GateConfig's, a trade of onset F1 for fewer false
    onsets, MODEL_CARD "The event gate"); None when absent. Refuses holds for another detector's classes."""
    if detector is None or not path.is_file():
        return None
    import json  # noqa: PLC0415

    data = json.loads(path.read_text())
    if tuple(data.get("classes", ())) != tuple(detector.cfg.classes):
        raise ValueError(f"{path}: holds for classes {data.get('classes')}, but the detector has "
                         f"{list(detector.cfg.classes)}; re-run 'frieren-rt train export'")
    return GateConfig(class_hold_s=tuple(float(h) for h in data["class_hold_s"]),
                      threshold=float(data.get("threshold", GateConfig.threshold)),
                      min_class_confidence=float(data.get("min_class_confidence", 0.0)))


class DecodeFlow(nn.Module):
    """Flow-space latents (B, C, T') -> mel (B, M, 2 T'): the VAE decoder as the generator calls it."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(self.vae.from_flow(z))


class FoleyPipeline:
    """features (frames -> per-frame features), model, VAE, vocoder and geometry, joined for generation."""

    def __init__(self, *, model: FoleyModel, vae: nn.Module, vocoder: nn.Module, features, options: GenerationOptions,
                 device: str = "cpu", gate: GateConfig | None = None) -> None:
        self.model, self.vae, self.vocoder, self.features = model.eval(), vae.eval(), vocoder.eval(), features
        self.options = options
        self.gate = gate or GateConfig()  # the folder's gate.json (per-class holds) when it has one
        self.geometry = StreamGeometry(window_s=options.window_s, hop_s=options.hop_s)
        self.device = device
        # Built once, so compiled graphs / CUDA graphs / engines survive across generate() calls (issue 5).
        self.velocity = apply_backend(GuidedModel(self.model, options.scale, options.tail_cfg), options.backend,
                                      device=device, precision=options.precision)
        self.decode_flow: nn.Module | Scripted = DecodeFlow(self.vae)
        self.run_vocoder: nn.Module | Scripted = self.vocoder
        scripted = resolve_backend(options.backend, device, options.precision) == "script"
        if scripted:  # the whole hop off the GIL (backends.py)
            self.decode_flow, self.run_vocoder = Scripted(self.decode_flow), Scripted(self.vocoder)
        if hasattr(self.features, "with_script"):  # FeatureExtractor; other extractors run as they are
            self.features = self.features.with_script(scripted)
        self.vocoder_condition()  # a vocoder that reads a detector this folder lacks is refused at load

    def vocoder_condition(self) -> VocoderCondition | None:
        """What a vocoder that reads the picture's events gets beside each mel frame (frieren_rt.audio.condition:
        the event detector's posteriors in the frame features); None for a vocoder that reads the mel alone."""
        from frieren_rt.audio.condition import condition_channels, detector_condition  # noqa: PLC0415

        channels = getattr(getattr(self.vocoder, "cfg", None), "cond_channels", 0)
        if not channels:
            return None
        detector = getattr(self.features, "detector", None)
        if detector is None or condition_channels(len(detector.cfg.classes)) != channels:
            have = "no event detector" if detector is None else f"a detector of {len(detector.cfg.classes)} classes"
            raise ValueError(f"the vocoder reads {channels} channels of the event detector's posteriors beside the "
                             f"mel, and this weights folder has {have}: use the vocoder trained with its detector")
        return detector_condition(len(detector.cfg.classes))

    @classmethod
    def from_dir(cls, weights: Path | None = None, options: GenerationOptions = GenerationOptions(), *,
                 device: str = "cpu") -> FoleyPipeline:
        """Load a weights folder (the shipped ``frieren_rt/weights`` or a ``frieren-rt train`` run folder).

        Raises FileNotFoundError naming every missing file and how to get it."""
        from frieren_rt.data.cache import CacheConfig, FeatureExtractor  # noqa: PLC0415
        from frieren_rt.train.stages import load_vae  # noqa: PLC0415
        from frieren_rt.train.vocoder import UNIVERSAL, load_vocoder  # noqa: PLC0415

        folder, variant, use_student = resolve_weights(weights, options)
        vocoder = load_vocoder(folder / "vocoder.safetensors" if use_student else UNIVERSAL)
        cc = CacheConfig()
        meta = folder / "cache_train" / "cache.json"  # a run folder records the feature settings it trained on
        if meta.is_file():
            import json  # noqa: PLC0415

            cc = CacheConfig(**json.loads(meta.read_text())["config"])
        model = FoleyModel.from_pretrained(folder / f"{variant}.safetensors").to(device)
        detector = None
        if model.cfg.event_dim:  # the model reads the event detector's features (frieren_rt.vision.events)
            from frieren_rt.vision.events import EventDetector  # noqa: PLC0415

            detector = EventDetector.from_pretrained(folder / "detector.safetensors")
        features = FeatureExtractor(cc.image_resolution, cc.motion_grid, cc.image_every, detector, device=device)
        return cls(model=model, vae=load_vae(vae_file(folder, use_student, options.decoder)).to(device), vocoder=vocoder.to(device),
                   features=features, options=replace(options, variant=variant), device=device,
                   gate=load_gate_config(folder / "gate.json", detector))

    def with_options(self, options: GenerationOptions) -> FoleyPipeline:
        """The same loaded stages with other sampling options (steps, sampler, CFG, backend)."""
        return FoleyPipeline(model=self.model, vae=self.vae, vocoder=self.vocoder, features=self.features,
                             options=replace(options, variant=self.options.variant), device=self.device,
                             gate=self.gate)

    def geometry_with_context(self) -> StreamGeometry:
        """The geometry with the decode context sized from the VAE decoder's and vocoder's receptive fields (the
        left one always; the right one when ``options.lookahead`` is None)."""
        from frieren_rt.windowing import context_latents_for  # noqa: PLC0415
        from frieren_rt.windowing.geometry import lookahead_latents_for  # noqa: PLC0415

        left_latents, right_latents = self.vae.decoder.context_latents()
        left_mels, right_mels = self.vocoder.context_frames()
        ahead = (lookahead_latents_for(right_latents, right_mels) if self.options.lookahead is None
                 else self.options.lookahead)
        return self.geometry.with_(context_latents=context_latents_for(left_latents, left_mels),
                                   lookahead_latents=ahead, revise_lookahead=self.options.revise_lookahead,
                                   lookahead_seam=self.options.lookahead_seam)

    def generator(self) -> WindowedGenerator:
        return WindowedGenerator(
            geometry=self.geometry_with_context(), velocity=self.velocity,
            decoder=self.decode_flow, vocoder=self.run_vocoder,
            latent_channels=self.model.latent_channels, sampler=make_sampler(self.options), device=self.device,
            gate=self.event_gate(), vocoder_condition=self.vocoder_condition())

    def event_gate(self) -> EventGate | None:
        """The event gate when the options ask for it and the model reads the detector's posteriors."""
        detector = getattr(self.features, "detector", None)
        if not (self.options.event_gate and self.model.cfg.event_dim and detector is not None):
            return None
        return EventGate(self.gate, detector_posteriors(len(detector.cfg.classes)))

    @torch.no_grad()
    def frame_features(self, frames: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, feature_dim) [image | motion] features."""
        image, motion = self.features(torch.from_numpy(np.ascontiguousarray(frames)))
        return torch.cat([image.float(), motion.float()], dim=-1)

    @torch.no_grad()
    def generate(self, frames: np.ndarray, times: np.ndarray, duration: float, *, seed: int = 0,
                 progress=None, timings: dict[str, float] | None = None) -> np.ndarray:
        """Audio (round(duration * 22050),) float32 for frames (N, H, W, 3) shown at ``times`` (N,) seconds.
        progress: optional callable(done_hops, total_hops); timings: a dict that receives seconds per stage
        ("features", and the generator's "vector_field", "vae_decode", "vocoder", ...)."""
        import time  # noqa: PLC0415

        start = time.perf_counter()
        feats = self.frame_features(frames)
        if timings is not None:
            timings["features"] = timings.get("features", 0.0) + time.perf_counter() - start
        audio = generate_offline(self.generator(), torch.as_tensor(times, dtype=torch.float64), feats, duration,
                                 seed=seed, progress=progress, timings=timings)
        return audio.cpu().numpy().astype(np.float32)

    @property
    def sample_rate(self) -> int:
        return self.geometry.model_sample_rate
