"""Feature cache: world clips rendered once into what training reads, so epochs never re-render.

Per clip: the log-mel of its true audio (HiFi-GAN front end), MobileNetV2 features and motion features of
every video frame with the frames' presentation times, and the ground-truth events. Clips are written in
shards of ``shard_size`` seeds (safetensors + a JSON sidecar); building skips shards already on disk, so an
interrupted build resumes (issue 3, "Training": features and latents cached).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

if TYPE_CHECKING:
    from frieren_rt.backends import Scripted

__all__ = ["CacheConfig", "ClipRecord", "FeatureCache", "build_cache", "clip_record", "FeatureExtractor", "write_cache",
           "write_shard"]


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    """world: world preset; duration: clip seconds; image_resolution: MobileNetV2 input side (chosen by the
    per-frame cost measured in benchmarks/audio_stack.py); image_every: encode every k-th frame and hold its
    features for the next k - 1 (10 fps of content at 30 fps video: what an object is changes slowly, while
    the per-frame motion features carry event timing); motion_grid: motion cells per side; event_detector: the
    motion vector also holds the trained event detector's per-frame features (frieren_rt.vision.events)."""

    world: str = "small"
    duration: float = 10.0
    image_resolution: int = 96
    image_every: int = 3
    motion_grid: int = 4
    shard_size: int = 50
    event_detector: bool = False


@dataclass(frozen=True)
class ClipRecord:
    """One cached clip. mel (80, M) float32; image (F, 1280) float16; motion (F, m) float32; frame_ts (F,)
    float64 seconds; events: the world's event dicts; silent_spans [(start, end)] seconds."""

    seed: int
    mel: torch.Tensor
    image: torch.Tensor
    motion: torch.Tensor
    frame_ts: torch.Tensor
    events: list[dict]
    silent_spans: list[list[float]]


class FeatureExtractor:
    """Frozen per-frame visual features: MobileNetV2 pooled features + motion (+ the event detector's features,
    appended to the motion vector). frames (N, H, W, 3) uint8. ``device``: where the networks run (a GPU
    server featurises there); inputs and outputs stay CPU tensors."""

    def __init__(self, resolution: int, motion_grid: int, image_every: int = 1, detector: torch.nn.Module | None = None,
                 *, device: str = "cpu") -> None:
        from frieren_rt.vision import ImageEncoder  # noqa: PLC0415

        self.device = torch.device(device)
        self.encoder = ImageEncoder.from_package(resolution=resolution).eval().to(self.device)
        self.motion_grid = motion_grid
        self.image_every = image_every
        self.detector = detector.eval().to(self.device) if detector is not None else None
        self._image: Scripted | None = None  # with_script(): the encoder and detector as frozen graphs
        self._detect: Scripted | None = None

    def with_script(self, on: bool = True) -> FeatureExtractor:
        """A copy sharing the networks whose image encoder and event detector run as frozen TorchScript graphs
        (``on``; the "script" backend, frieren_rt.backends: off the GIL beside the streaming event loop; features
        equal eager's to about 1e-5, folded BatchNorm) or eager. A copy, so pipelines built with other options
        from one extractor never switch each other's backend."""
        import copy  # noqa: PLC0415

        from frieren_rt.backends import Scripted  # noqa: PLC0415

        out = copy.copy(self)
        out._image = Scripted(_PooledImage(self.encoder)) if on else None
        out._detect = Scripted(_DetectorFeatures(self.detector)) if on and self.detector is not None else None
        return out

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(K, 3, H, W) uint8 -> (K, 1280) image features."""
        if self._image is None:
            return self.encoder(frames.unsqueeze(0))[0]
        return torch.cat([self._image(part) for part in frames.split(self.encoder.chunk)])

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, previous: torch.Tensor | None = None, *, phase: int = 0,
                 held: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (N, H, W, 3) uint8 -> image (N, 1280), motion (N, grid^2 + 1 [+ detector features]).

        previous: (H, W, 3) frame shown before frames[0] (motion continuity across calls); phase: index of
        frames[0] in the stream (frames with index % image_every == 0 are encoded, the others hold the last
        encoded features); held: (1280,) features to hold for leading frames before the first encoded one.
        """
        return self.many([StreamChunk(frames, previous, phase, held)])[0]

    @torch.no_grad()
    def many(self, chunks: Sequence[StreamChunk]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The features of several streams' new frames in one call per network (the streaming engine's
        batched hop: one MobileNetV2 and one detector call for every session, not one each). Each chunk is
        computed exactly as a call of its own would be. All frames must share one size."""
        from frieren_rt.vision import motion_features  # noqa: PLC0415

        spans = _spans(chunks)
        frames = torch.cat([c.frames for c in chunks]).to(self.device)  # (N, H, W, 3) all streams' frames
        chw = frames.permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
        before = torch.cat([_before(chw[a:b], c.previous, self.device)
                            for c, (a, b) in zip(chunks, spans, strict=True)])  # (N, 3, H, W)
        # Each frame against the one shown before it: T = 1 per row gives motion_features' streaming result.
        motion = motion_features(chw.unsqueeze(1), grid=self.motion_grid, previous=before)[:, 0]  # (N, M)
        if self.detector is not None:  # causal, per frame: sees frame t and t - 1 only, as in training
            detect = self.detector.features(chw, before=before) if self._detect is None else self._detect(chw, before)
            motion = torch.cat([motion, detect], dim=-1)
        encode = [_encoded_positions(c, self.image_every) for c in chunks]  # per chunk (K_i,) positions
        offsets = [a for a, _ in spans]
        rows = torch.cat([e + o for e, o in zip(encode, offsets, strict=True)])  # (K,) rows of ``chw``
        image = self._encode(chw[rows]).cpu() if len(rows) else torch.zeros(0, 1280)  # (K, 1280)
        motion = motion.cpu()
        out, k = [], 0
        for c, e, (a, b) in zip(chunks, encode, spans, strict=True):
            mine, k = image[k : k + len(e)], k + len(e)
            # Hold: each frame takes the newest encoded frame at or before it (or ``held`` before the first).
            slot = torch.searchsorted(e, torch.arange(b - a), right=True) - 1  # (n,) in [-1, K_i)
            bank = mine if c.held is None else torch.cat([mine, c.held.view(1, -1).to(mine.dtype)])
            out.append((bank[slot], motion[a:b]))  # slot -1 reads ``held`` (last row) when given
        return out


class _PooledImage(torch.nn.Module):
    """(N, 3, H, W) uint8 frames -> (N, 1280): ImageEncoder's per-frame work, as one traceable module."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        from frieren_rt.vision.encoder import preprocess  # noqa: PLC0415

        return self.encoder.backbone.pooled(preprocess(frames, self.encoder.resolution))


class _DetectorFeatures(torch.nn.Module):
    """(frames, before) (N, 3, H, W) each -> (N, embed + K + 1): EventDetector.features as a traceable module."""

    def __init__(self, detector: torch.nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, frames: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
        return self.detector.features(frames, before=before)


@dataclass(frozen=True)
class StreamChunk:
    """New frames of one stream for :meth:`FeatureExtractor.many`: frames (n, H, W, 3) uint8; previous
    (H, W, 3) or None; phase: stream index of frames[0]; held: (1280,) image features held from before."""

    frames: torch.Tensor
    previous: torch.Tensor | None = None
    phase: int = 0
    held: torch.Tensor | None = None


def _spans(chunks: Sequence[StreamChunk]) -> list[tuple[int, int]]:
    """[start, end) rows of each chunk in the concatenated frames."""
    ends = torch.tensor([len(c.frames) for c in chunks]).cumsum(0).tolist()
    return [(e - len(c.frames), e) for c, e in zip(chunks, ends, strict=True)]


def _before(chw: torch.Tensor, previous: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """(n, 3, H, W) the frame shown before each of ``chw``: ``previous`` then chw[:-1]; without ``previous``
    the first frame stands for itself (no motion), as motion_features and the detector take it."""
    first = chw[:1] if previous is None else previous.to(device).permute(2, 0, 1).unsqueeze(0)
    return torch.cat([first, chw[:-1]])


def _encoded_positions(chunk: StreamChunk, image_every: int) -> torch.Tensor:
    """(K,) positions in the chunk whose frame the image encoder sees (stream index % image_every == 0); the
    first frame when none is and nothing is held."""
    index = torch.arange(chunk.phase, chunk.phase + len(chunk.frames))
    encode = torch.nonzero(index % image_every == 0).flatten()
    if len(encode) == 0 and chunk.held is None:
        encode = torch.tensor([0])
    return encode


def clip_record(seed: int, cfg: CacheConfig, extractor: FeatureExtractor, logmel: torch.nn.Module) -> ClipRecord:
    from frieren_rt.world import render_clip  # noqa: PLC0415

    clip = render_clip(seed, duration=cfg.duration, config=cfg.world)
    frames = torch.from_numpy(clip.frames)
    image, motion = extractor(frames)
    with torch.no_grad():
        mel = logmel(torch.from_numpy(clip.audio))
    frame_ts = torch.arange(frames.shape[0], dtype=torch.float64) / clip.fps
    return ClipRecord(seed=seed, mel=mel, image=image.half(), motion=motion.float(), frame_ts=frame_ts,
                      events=[e.to_dict() for e in clip.events], silent_spans=[list(s) for s in clip.silent_spans])


def _shard_paths(folder: Path, index: int) -> tuple[Path, Path]:
    return folder / f"shard_{index:05d}.safetensors", folder / f"shard_{index:05d}.json"


def write_shard(folder: Path, index: int, records: Sequence[ClipRecord]) -> None:
    """Write one shard: the records' tensors (safetensors), then their events (the JSON sidecar, last: its
    presence marks the shard complete)."""
    tensors, side = {}, {}
    for rec in records:
        for name in ("mel", "image", "motion", "frame_ts"):
            tensors[f"{rec.seed}.{name}"] = getattr(rec, name).contiguous()
        side[str(rec.seed)] = {"events": rec.events, "silent_spans": rec.silent_spans}
    st, js = _shard_paths(Path(folder), index)
    save_file(tensors, str(st))
    js.write_text(json.dumps(side))


def write_cache(folder: Path, records: Sequence[ClipRecord], cfg: CacheConfig = CacheConfig()) -> Path:
    """A cache of records made elsewhere (synthetic features for tests and benchmarks), in one shard, readable
    by FeatureCache exactly like a built one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cache.json").write_text(json.dumps({"config": asdict(cfg), "seeds": [r.seed for r in records]},
                                                  indent=1))
    write_shard(folder, 0, records)
    return folder


def build_cache(seeds: Sequence[int], folder: Path, cfg: CacheConfig = CacheConfig(), *, progress: bool = True,
                detector: torch.nn.Module | None = None) -> Path:
    """Render and featurise ``seeds`` into ``folder`` (resumable: finished shards are skipped). ``detector``: the
    trained event detector, required exactly when ``cfg.event_detector``."""
    if cfg.event_detector != (detector is not None):
        raise ValueError("CacheConfig.event_detector and the detector argument disagree")
    from frieren_rt.audio import LogMel  # noqa: PLC0415

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "cache.json"
    if meta.is_file() and json.loads(meta.read_text())["config"] != asdict(cfg):
        raise ValueError(f"{folder} holds a cache built with another config; use a new folder")
    meta.write_text(json.dumps({"config": asdict(cfg), "seeds": list(seeds)}, indent=1))
    shards = [seeds[i : i + cfg.shard_size] for i in range(0, len(seeds), cfg.shard_size)]
    todo = [i for i in range(len(shards)) if not _shard_paths(folder, i)[1].is_file()]
    if not todo:
        return folder
    extractor = FeatureExtractor(cfg.image_resolution, cfg.motion_grid, cfg.image_every, detector)
    logmel = LogMel()
    bar = tqdm(total=sum(len(shards[i]) for i in todo), desc=f"cache {folder.name}", unit="clip", disable=not progress)
    for i in todo:
        records = []
        for seed in shards[i]:
            records.append(clip_record(int(seed), cfg, extractor, logmel))
            bar.update(1)
        write_shard(folder, i, records)
    bar.close()
    return folder


class FeatureCache:
    """Read-only view of a built cache: ``cache[seed] -> ClipRecord``, ``cache.seeds``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        meta = self.folder / "cache.json"
        if not meta.is_file():
            raise FileNotFoundError(f"no feature cache in {self.folder}; build it with 'frieren-rt train cache'")
        info = json.loads(meta.read_text())
        self.config = CacheConfig(**info["config"])
        self.records: dict[int, ClipRecord] = {}
        for js in sorted(self.folder.glob("shard_*.json")):
            tensors = load_file(str(js.with_suffix(".safetensors")))
            for seed, side in json.loads(js.read_text()).items():
                self.records[int(seed)] = ClipRecord(
                    seed=int(seed), mel=tensors[f"{seed}.mel"], image=tensors[f"{seed}.image"],
                    motion=tensors[f"{seed}.motion"], frame_ts=tensors[f"{seed}.frame_ts"],
                    events=side["events"], silent_spans=side["silent_spans"])

    @property
    def seeds(self) -> list[int]:
        return sorted(self.records)

    def __getitem__(self, seed: int) -> ClipRecord:
        return self.records[seed]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterable[ClipRecord]:
        return iter(self.records[s] for s in self.seeds)
