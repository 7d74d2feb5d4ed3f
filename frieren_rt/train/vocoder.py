"""Student vocoder distilled from HiFi-GAN universal (issue 3, "Audio stack": the universal generator does not
fit the CPU streaming budget: 0.6x real time offline and 1.56x per 160 ms hop on one core, measured in
benchmarks/audio_stack.py).

Targets are the teacher's own waveforms for the training mels (knowledge distillation, not vocoder training
on the original audio), computed once and cached. The loss is HiFi-GAN's mel L1 plus a multi-resolution STFT
loss (spectral convergence + log magnitude; Yamamoto et al. 2020, Parallel WaveGAN) on random crops; no
adversarial term (a CPU budget of minutes, not days).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from frieren_rt.audio.hifigan import HifiganConfig, HifiganGenerator
from frieren_rt.audio.mel import LogMel
from frieren_rt.audio.student_vocoder import build_student

__all__ = ["teacher_targets", "stft_loss", "vocoder_loss", "save_vocoder", "load_vocoder"]

RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256))  # (n_fft, hop, win)


@torch.no_grad()
def teacher_targets(teacher: HifiganGenerator, mels: list[torch.Tensor], chunk: int = 256) -> list[torch.Tensor]:
    """Teacher waveforms (F * 256,) for each mel (80, F), decoded in chunks with 13 frames of context each side
    (the universal generator's receptive field; exact to 4e-6 of a whole decode) under bf16 autocast."""
    ctx = 13
    out = []
    for mel in tqdm(mels, desc="teacher audio", unit="clip"):
        n = mel.shape[1]
        pieces = []
        for s in range(0, n, chunk):
            a, b = max(0, s - ctx), min(n, s + chunk + ctx)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                wav = teacher(mel[None, :, a:b]).float()[0]
            pieces.append(wav[(s - a) * 256 : (s - a + min(chunk, n - s)) * 256])
        out.append(torch.cat(pieces))
    return out


def stft_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + L1 of log magnitudes, averaged. (B, N) each."""
    total = pred.new_zeros(())
    for n_fft, hop, win in RESOLUTIONS:
        window = torch.hann_window(win, device=pred.device)

        def mag(x: torch.Tensor) -> torch.Tensor:
            spec = torch.stft(x, n_fft, hop, win, window, return_complex=True)
            return spec.abs().clamp(min=1e-5)

        p, t = mag(pred), mag(target)
        # Spectral convergence over the whole batch: per-crop norms explode on the world's silent stretches.
        sc = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp(min=1e-3)
        total = total + sc + (p.log() - t.log()).abs().mean()
    return total / len(RESOLUTIONS)


def vocoder_loss(student: HifiganGenerator, logmel: LogMel, mel: torch.Tensor, target: torch.Tensor) -> dict:
    """mel (B, 80, F) -> student audio; L1 of its log-mel against the input + 2.5 x the multi-resolution STFT loss."""
    wav = student(mel)  # (B, F * 256)
    mel_loss = (logmel(wav)[..., : mel.shape[-1]] - mel).abs().mean()
    spec = stft_loss(wav, target)
    return {"loss": mel_loss + 2.5 * spec, "mel_l1": mel_loss, "stft": spec}


def save_vocoder(model: HifiganGenerator, path: Path) -> None:
    cfg = asdict(model.cfg)
    cfg.pop("mel")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"config": json.dumps(cfg)})


def load_vocoder(path: Path) -> HifiganGenerator:
    from safetensors import safe_open  # noqa: PLC0415

    if not Path(path).is_file():
        raise FileNotFoundError(f"vocoder weights not found: {path}")
    with safe_open(str(path), "pt") as f:
        raw = json.loads(f.metadata()["config"])
    cfg = {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
           for k, v in raw.items()}
    model = HifiganGenerator(HifiganConfig(**cfg))
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval().requires_grad_(False)


def cached_targets(run: Path, mels: list[torch.Tensor], seeds: list[int]) -> list[torch.Tensor]:
    path = run / "vocoder_targets.safetensors"
    if not path.is_file():
        wavs = teacher_targets(HifiganGenerator.from_package(), mels)
        save_file({str(s): w.contiguous() for s, w in zip(seeds, wavs)}, str(path))
    flat = load_file(str(path))
    return [flat[str(s)] for s in seeds]


def new_student(name: str, seed: int) -> HifiganGenerator:
    return build_student(name, generator=torch.Generator().manual_seed(seed))
