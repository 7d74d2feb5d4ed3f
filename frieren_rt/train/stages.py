"""The training recipe, stage by stage: cache -> vae -> latents -> flow -> reflow -> distill (-> single pass).

Every stage reads and writes one run folder, checkpoints and resumes (``train_loop``), logs losses and records
its wall time. Stage configs are frozen dataclasses; JSON files in ``frieren_rt/configs/`` override fields.
Frieren's recipe (frieren.md, "Training and sampling"): base flow with CFG dropout 0.2 and logit-normal
weighting; reflow on 25-step Euler CFG-4.5 samples of the base model, training the guided velocity; one-step
distillation at t = 0 from the reflow model. Beyond it: a single-pass student that folds CFG into one network
evaluation (no unconditional branch at inference).
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from frieren_rt.audio.vae import MelVAE, VAEConfig, edge_l1, latent_scale_from, vae_loss
from frieren_rt.audio.vae import preset as vae_preset
from frieren_rt.data import CacheConfig, FeatureCache, build_cache
from frieren_rt.flow import cfg_velocity, draw_t, euler, interpolate, logit_normal_density, prefix_guidance_scale
from frieren_rt.model.foley import FoleyConfig, FoleyModel
from frieren_rt.vision.events import EventDetector, class_traces
from frieren_rt.vision.motion import motion_dim
from frieren_rt.train.class_probe import (LatentClassProbe, ProbeConfig, class_loss, detected_onsets, fit_probe,
                                          onset_snippets, window_class_scores)
from frieren_rt.train.detector import stage_detector
from frieren_rt.train.envelope import envelope_loss
from frieren_rt.train.data import WindowBatch, WindowSampler, mel_segments, segment_origins
from frieren_rt.train.loop import TrainState, train_loop, warmup_cosine
from frieren_rt.windowing import StreamGeometry

__all__ = ["StageConfig", "load_stage_config", "run_stage", "STAGES"]

C = TypeVar("C")


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """One config for all stages; each stage reads the fields it needs."""

    seed: int = 0
    # cache
    train_clips: int = 400
    val_clips: int = 40
    clip_seconds: float = 10.0
    image_resolution: int = 96
    # optimisation (per stage: see STAGE_DEFAULTS)
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-4
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # vae
    vae_preset: str = "small"
    vae_segment_frames: int = 128
    # latent channels (None: the preset's 8; Frieren's VAE keeps 20). Much of a sound's class is lost in the
    # audio stack, so a run can widen the latent from its config (a 16-channel run: MODEL_CARD.md, "What was tried").
    vae_z_channels: int | None = None
    # decoder sizes. In the vae section: the decoder trained jointly with the encoder (the streaming one); in
    # the decoder section: a wider decoder trained on the run's frozen encoder (None: the encoder's sizes)
    vae_decoder_widths: tuple[int, ...] | None = None
    vae_decoder_res_blocks: int | None = None
    # decoder section: extra causal residual blocks per decoder level (VAEConfig.decoder_causal_blocks: depth
    # without look-ahead, for a streaming decoder). None: as vae.safetensors.
    vae_decoder_causal_blocks: int | None = None
    # decoder section only. decoder_init: "fresh" or "run" (start from the run's vae.safetensors decoder, whose
    # sizes must match: a fine-tune). vae_flux_weight: weight of an L1 loss on the mel's frame-to-frame change
    # beside the L1 on the mel itself: the streaming stack loses onsets (0.93 -> 0.79 by the learned onset
    # detector, MODEL_CARD.md), and a decoder that smooths attacks loses most of them.
    decoder_init: str = "fresh"
    vae_flux_weight: float = 0.0
    # decoder section only: weight of frieren_rt.audio.vae.edge_l1 beside the reconstruction, on the mel frames
    # within the decoder's look-ahead of a chunk's end decoded with nothing to their right, as the streaming
    # engine decodes the newest latents of every hop at look-ahead 0 (0: off). On true latents decoded that way
    # the stack keeps class 0.317 against 0.356 for the whole-clip decode (MODEL_CARD.md, "What was tried").
    vae_decoder_edge_weight: float = 0.0
    # decoder section only: a frozen vocoder file ("hifigan": HiFi-GAN universal) that also renders
    # decoder_vocoder_crops crops of vocoder_segment_frames mel frames of each batch's reconstructions, judged
    # against the clips' own audio by the vocoder stage's regression (mel L1, STFT loss and vocoder_peak_weight x
    # the peak-level term) with weight decoder_vocoder_weight. Why: the decoder is trained for the true mel, and
    # the vocoder after it loses class and onsets even from that (MODEL_CARD.md, "Targets"); through the vocoder
    # it can learn the mel that vocoder renders closest to the truth. None: the mel reconstruction alone. Tried
    # through the shipped student (runs/e2e61, runs/se2e63): every product metric within 0.01 on 240 clips, so
    # not shipped (MODEL_CARD.md, "What was tried").
    decoder_vocoder: str | None = None
    decoder_vocoder_weight: float = 1.0
    decoder_vocoder_crops: int = 8
    # flow
    window_s: float = 1.6
    hop_s: float = 0.2
    cfg_dropout: float = 0.2
    # vector-field size (None: the "small" preset's). The students inherit the base model's size. Issue 3's
    # misses point at capacity (MODEL_CARD.md, "What was tried"): these let a run try a larger field from a
    # config file alone.
    field_hidden: int | None = None
    field_heads: int | None = None
    field_depth: int | None = None
    # Probability that a training window's newest hop holds an event onset (train/data.py WindowSampler).
    p_event: float = 0.5
    # Steady-streaming hops (seconds) whose known-prefix masks flow training draws from (None: hop_s only); the
    # streaming engine's default hop is 0.1 s (frieren_rt/cli/serve.py), the offline generator's 0.2 s.
    stream_hops_s: tuple[float, ...] | None = None
    # detector (frieren_rt/vision/events.py): conv widths (None: DetectorConfig's) and the loss weight of the
    # "no event" class (onsets are about 1 frame in 35; a lower weight raises recall and false positives)
    detector_widths: tuple[int, ...] | None = None
    detector_none_weight: float = 0.05
    # Flow loss weight of silent target latents (1: none). Silent hops cost little in latent MSE, and the
    # field puts sounds into half the silent stretches (MODEL_CARD.md, "What was tried").
    silence_weight: float = 1.0
    # Per-frame decays of the event traces the base model adds to its condition (FoleyModel; () = none): the
    # detector's class posteriors held over a sound's tail, so its timbre can follow the class.
    trace_decays: tuple[float, ...] = ()
    # Weight of the latent class probe's cross-entropy in the one-step students' loss (distill, single; 0 =
    # none): frieren_rt/train/class_probe.py.
    class_weight: float = 0.0
    # Weight of the band-envelope L1 against the TRUE audio in the one-step students' loss (distill, single; 0 =
    # none): frieren_rt/train/envelope.py. Guidance shortens sounds and the students learn only the guided
    # teacher's samples; this asks them for the true length per group of mel bands (0.1 shipped; 1.0 restores
    # the length but not the class: MODEL_CARD.md). Needs reflow pairs made with their true latents (make_pairs
    # stores them since this option).
    envelope_weight: float = 0.0
    envelope_bands: int = 8
    # flow: exponential moving average of the field's weights, saved as base.safetensors (0: off, the last
    # iterate is saved; beyond Frieren, which trains without EMA: frieren.md). The last iterate of a batch-24
    # CPU run carries its final steps' gradient noise; an average over the last ~1 / (1 - decay) steps does not
    # (measured at 0.999: no gain for the shipped recipe, MODEL_CARD.md "What was tried").
    ema_decay: float = 0.0
    # flow: a base model file to start from instead of a fresh initialisation (None: fresh), with a fresh
    # optimiser and schedule (a warm restart, Loshchilov & Hutter 2017): continues a finished run past the end of
    # its cosine schedule, e.g. the shipped base whose loss was still falling at its last step (MODEL_CARD.md).
    # Its sizes must be the ones this config builds.
    flow_init: str | None = None
    # Flow loss weight of the latents in the first third of a second after an onset the detector reports
    # (1: none; event_tail_latents): where a sound's class is heard.
    event_weight: float = 1.0
    # The per-frame decay of the event trace that marks those latents (>= 0.1): 0.8 marks 10 frames (0.34 s),
    # 0.93 about 32 (1.05 s), the body of the long classes too (explosion, engine, power-up).
    event_tail_decay: float = 0.8
    # reflow / distill
    # reflow: a field file the reflow student starts from (None: the run's base, as Frieren's reflow does). A
    # field of other width or depth that reads the same inputs (e.g. frieren_rt/weights/base.safetensors, the
    # shipped small base) then learns the run's base's guided samples: the reflow pairs distil a larger
    # teacher into a student whose pass the live engine can afford (MODEL_CARD.md, "What was tried").
    reflow_init: str | None = None
    cfg_scale: float = 4.5
    # Guidance scale on sounds' tails for the teacher's reflow samples and the students' guided velocity (None:
    # cfg_scale everywhere; frieren_rt.flow.guidance.tail_guidance_scale).
    tail_cfg_scale: float | None = None
    # Rescaled guidance for the teacher's reflow samples only (phi of frieren_rt.flow.guidance.rescaled_guidance;
    # 0: plain CFG). The students keep the plain v_u + s (v_c - v_u) and learn to land on those samples, so
    # nothing changes at run time.
    teacher_cfg_rescale: float = 0.0
    # Guidance scale for the teacher's reflow samples on the free latents of windows whose known prefix ends
    # in sound (None: cfg_scale there too; frieren_rt.flow.guidance.prefix_guidance_scale). Teacher only, as
    # teacher_cfg_rescale: the students see the prefix and learn where the teacher eased.
    teacher_prefix_cfg: float | None = None
    # Teacher samples drawn for each reflow window whose free latents hold an onset the detector reports; the
    # pair keeps the one the run's latent class probe (frieren_rt/train/class_probe.py) finds most like the
    # class the detector names there (1: one sample, Frieren's reflow data). Beyond Frieren: the teacher's
    # samples carry the class the picture shows less often than the true audio does (MODEL_CARD.md, "What was
    # tried"), and every student learns from these pairs alone. Choosing among the teacher's own samples keeps
    # them the teacher's, so each pair is still a point of its flow from that pair's noise. Measured with 4
    # (runs/s32): the students' class as heard by the evaluation did not rise; the shipped pairs use 1.
    pair_candidates: int = 1
    teacher_steps: int = 25
    reflow_pairs: int = 4096
    threads: int = 2
    # Where the vector-field stages (flow, reflow, distill, single) compute: "cpu" or "cuda[:N]". Every random
    # draw stays on the CPU generator and batches are assembled on the host, so a GPU run sees the same windows,
    # noise and times as a CPU run of the same config, and checkpoints resume on either.
    device: str = "cpu"
    # student vocoder
    vocoder_preset: str = "v3"
    vocoder_clips: int = 60
    vocoder_segment_frames: int = 32
    # Weight of the spectrogram-discriminator losses (0: regression only) and a student file to start from (a
    # fine-tune; None: a fresh student of vocoder_preset; "hifigan": HiFi-GAN universal from the package, the
    # result then saved as its int8 difference from it): frieren_rt/train/vocoder.py.
    vocoder_adversarial: float = 0.0
    vocoder_init: str | None = None
    # The regression's spectral term: "stft" (per-bin log magnitudes, the shipped student's) or "mel" (multi-scale
    # mel bands, 1.5-23 ms hops: MultiScaleMelLoss in frieren_rt/train/vocoder.py says why).
    vocoder_loss: str = "stft"
    # Weight of the peak-level term (each mel band's loudest level over a crop against the target's: the
    # regression flattens attacks; PeakLevelLoss in frieren_rt/train/vocoder.py). 0: off.
    vocoder_peak_weight: float = 0.0
    # Weight of a per-bin log-magnitude L1 on the band above 8 kHz alone, which the mel does not carry and the
    # student must infer (HighBandLoss in frieren_rt/train/vocoder.py). 0: off.
    vocoder_high_weight: float = 0.0
    # Weight of a term on how fast each band's level rises (AttackRiseLoss in frieren_rt/train/vocoder.py: the
    # onsets the stack loses start under a sound already playing, and the student softens their rise). 0: off.
    vocoder_rise_weight: float = 0.0
    # A VAE file whose reconstructions of the training mels (decoded from a posterior sample, once per clip) feed
    # the student in that fraction of its crops, the targets staying the teacher's audio of the true mel: the
    # student learns to vocode what the engine gives it, not what the VAE hides (HiFi-GAN, Kong et al. 2020,
    # section 4.4, fine-tunes on predicted mels the same way). None: true mels only.
    vocoder_vae: str | None = None
    vocoder_vae_fraction: float = 0.5
    # What the student's audio is compared with: "teacher" (HiFi-GAN universal's audio of the true mel:
    # distillation, the shipped student's) or "world" (the clips' own audio: ordinary vocoder training, so the
    # student can learn this world's sounds past what the universal teacher keeps of them; MODEL_CARD.md, "What
    # was tried"). The mel loss always compares with the true mel.
    vocoder_target: str = "teacher"
    # A weights folder ("" or "shipped": frieren_rt/weights) whose distilled field generates each training clip's
    # mel as the engine would (frieren_rt.train.vocoder.generated_mels, cached in the run as
    # vocoder_generated.safetensors); those mels feed the student in vocoder_generated_fraction of its crops,
    # only crops where they sound where the true mel does (aligned_frames on at least 90 % of the frames; else
    # the crop keeps its other input). The targets stay the clip's. None: no generated mels.
    vocoder_generated: str | None = None
    vocoder_generated_fraction: float = 0.4
    # Generate them teacher-forced (each hop after the clip's TRUE latents, not the field's own: generated_mels),
    # cached as vocoder_generated_forced.safetensors.
    vocoder_generated_forced: bool = False
    # What a generated-mel crop is compared with: "audio" (the clip's own audio at that place, as Tacotron 2
    # fine-tunes; only crops aligned with the truth) or "self" (the generated mel itself: the vocoder renders the
    # mel it is given and the discriminator, vocoder_adversarial > 0, asks that it sound real; every crop
    # qualifies; mixed_regression_loss in frieren_rt/train/vocoder.py says why).
    vocoder_generated_target: str = "audio"
    # Also hand the vocoder the visual event detector's posteriors on each mel frame (beyond Frieren;
    # frieren_rt.audio.condition says why): the run's detector.safetensors names the classes, the cache's frame
    # features carry the posteriors. A vocoder_init that reads the mel alone is extended with a zeroed condition
    # conv, so the fine-tune starts from it exactly.
    vocoder_condition: bool = False


STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "detector": {"steps": 2500, "batch_size": 8, "lr": 2e-3, "warmup": 100, "weight_decay": 1e-2},
    "vae": {"steps": 3000, "batch_size": 16, "lr": 5e-4},
    "decoder": {"steps": 4000, "batch_size": 16, "lr": 5e-4},
    "flow": {"steps": 6000, "batch_size": 32, "lr": 5e-4},
    "reflow": {"steps": 2000, "batch_size": 32, "lr": 1e-4, "warmup": 100},
    "distill": {"steps": 2000, "batch_size": 32, "lr": 1e-4, "warmup": 100},
    "single": {"steps": 1500, "batch_size": 32, "lr": 1e-4, "warmup": 100},
    "vocoder": {"steps": 3000, "batch_size": 16, "lr": 1e-3, "warmup": 100},
}


def load_stage_config(stage: str, path: Path | None = None, **overrides: Any) -> StageConfig:
    """Defaults, then the stage's defaults, then the JSON file, then explicit overrides (None = keep)."""
    cfg = replace(StageConfig(), **STAGE_DEFAULTS.get(stage, {}))
    if path is not None:
        data = json.loads(Path(path).read_text())
        data = {**data.get("common", {}), **data.get(stage, {})}
        unknown = set(data) - {f.name for f in fields(StageConfig)}
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
        cfg = replace(cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def geometry_of(cfg: StageConfig) -> StreamGeometry:
    return StreamGeometry(window_s=cfg.window_s, hop_s=cfg.hop_s)


def sampler_options(cfg: StageConfig, geom: StreamGeometry) -> dict[str, Any]:
    """WindowSampler keywords from the config: the event share and the steady hops in whole latents."""
    hops = None if cfg.stream_hops_s is None else tuple(geom.with_(hop_s=h).hop_latents for h in cfg.stream_hops_s)
    return {"p_event": cfg.p_event, "steady_hops": hops}


# --- stage: cache ------------------------------------------------------------------------------------------
def stage_cache(run: Path, cfg: StageConfig, **_: Any) -> dict[str, Any]:
    from frieren_rt.world.config import SPLITS  # noqa: PLC0415

    # A trained event detector in the run folder (stage "detector") adds its features to every frame's motion.
    detector = None
    if (run / "detector.safetensors").is_file():
        detector = EventDetector.from_pretrained(run / "detector.safetensors")
    cc = CacheConfig(duration=cfg.clip_seconds, image_resolution=cfg.image_resolution,
                     event_detector=detector is not None)
    train = list(SPLITS["train"])[: cfg.train_clips]
    val = list(SPLITS["val"])[: cfg.val_clips]
    build_cache(train, run / "cache_train", cc, detector=detector)
    build_cache(val, run / "cache_val", cc, detector=detector)
    return {"train_clips": len(train), "val_clips": len(val)}


# --- stage: vae --------------------------------------------------------------------------------------------
def _optimizer(params, cfg: StageConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _sgd_step(loss: torch.Tensor, opt: torch.optim.Optimizer, params, cfg: StageConfig, step: int) -> None:
    for group in opt.param_groups:
        group["lr"] = cfg.lr * warmup_cosine(step, total=cfg.steps, warmup=cfg.warmup)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """ema <- d * ema + (1 - d) * model, parameters and float buffers, with d = min(decay, (1 + step) / (10 +
    step)) so the first steps do not average in the random initialisation."""
    d = min(decay, (1 + step) / (10 + step))
    for e, m in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if e.dtype.is_floating_point:
            e.lerp_(m, 1.0 - d)
        else:
            e.copy_(m)


def save_vae(vae: MelVAE, path: Path) -> None:
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(path),
              metadata={"config": json.dumps(asdict(vae.cfg))})


def load_vae(path: Path) -> MelVAE:
    from safetensors import safe_open  # noqa: PLC0415

    if not Path(path).is_file():
        raise FileNotFoundError(f"VAE weights not found: {path}")
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["config"])
    meta = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.items()}
    vae = MelVAE(VAEConfig(**meta))
    vae.load_state_dict(load_file(str(path)), strict=True)
    return vae.eval()


def stage_vae_config(cfg: StageConfig) -> VAEConfig:
    """The VAE the vae stage trains: the preset with the config's latent channels and decoder sizes."""
    overrides = {"z_channels": cfg.vae_z_channels, "decoder_widths": cfg.vae_decoder_widths,
                 "decoder_res_blocks": cfg.vae_decoder_res_blocks}
    return vae_preset(cfg.vae_preset, **{k: v for k, v in overrides.items() if v is not None})


def stage_vae(run: Path, cfg: StageConfig, time_budget_s: float | None = None) -> dict[str, Any]:
    cache = FeatureCache(run / "cache_train")
    vae = MelVAE(stage_vae_config(cfg))
    params = list(vae.parameters())
    opt = _optimizer(params, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    state = TrainState(step=0, modules={"vae": vae}, optimizers={"opt": opt}, generator=gen)

    def step(i: int) -> dict[str, float]:
        mel = mel_segments(cache, cfg.batch_size, cfg.vae_segment_frames, gen)
        out = vae_loss(vae, mel, generator=gen)
        _sgd_step(out["loss"], opt, params, cfg, i)
        return {k: float(v.detach()) for k, v in out.items()}

    train_loop(step, state, total_steps=cfg.steps, folder=run / "vae", desc="vae", time_budget_s=time_budget_s)
    if state.step < cfg.steps:
        return {"done": False, "step": state.step}
    vae.eval()
    with torch.no_grad():  # latent scale = 1 / std of training latents (LDM convention; Frieren's 0.18215)
        z = vae.encode(mel_segments(cache, 64, cfg.vae_segment_frames, gen)).mean
    vae.cfg = replace(vae.cfg, latent_scale=latent_scale_from(z))
    save_vae(vae, run / "vae.safetensors")
    return {"done": True, "latent_scale": vae.cfg.latent_scale, **evaluate_vae(vae, FeatureCache(run / "cache_val"))}


@torch.no_grad()
def evaluate_vae(vae: MelVAE, cache: FeatureCache) -> dict[str, float]:
    """Reconstruction of whole validation clips through the posterior mean: mel L1 and mel SNR (dB), and the
    mel L1 of the frames a chunk's end decodes with nothing to their right (:func:`edge_l1`, every 7th latent
    as an end: the streaming engine's decode at look-ahead 0; none for a decoder whose norms span the whole
    chunk, which has no finite context)."""
    l1, snr, edge = [], [], []
    span = None if vae.cfg.norm_over_time else sum(vae.decoder.context_latents())
    for rec in cache:
        mel = rec.mel[None, :, : rec.mel.shape[1] // 2 * 2]
        z = vae.encode(mel).mean
        hat = vae.decode(z)
        l1.append(float((hat - mel).abs().mean()))
        snr.append(float(10 * torch.log10(mel.var() / (hat - mel).pow(2).mean())))
        if span is not None and z.shape[-1] >= span:
            edge.append(float(edge_l1(vae.decoder, z, mel, list(range(span, z.shape[-1] + 1, 7)))))
    return {"val_mel_l1": sum(l1) / len(l1), "val_mel_snr_db": sum(snr) / len(snr),
            **({"val_edge_l1": sum(edge) / len(edge)} if edge else {})}


# --- stage: decoder ---------------------------------------------------------------------------------------
def stage_decoder(run: Path, cfg: StageConfig, time_budget_s: float | None = None) -> dict[str, Any]:
    """Train a second, larger VAE decoder on the frozen encoder's posterior samples: ``vae_offline.safetensors``.

    The encoder and latent scale stay bit-identical, so the cached latents and every flow model trained on them
    keep working: only mel quality changes (the small decoder is where most of the audio stack's class identity
    is lost: MODEL_CARD.md, "What was tried"). The streaming ``vae.safetensors`` is left as it is: a wider
    decoder reads more latents of context each side (8 instead of 5 for widths 128/256 with 2 blocks), which
    the streaming engine would pay in look-ahead; offline generation, which has the whole clip, uses this one
    with the offline vocoder (frieren_rt.pipeline.vae_file).
    """
    if not (run / "vae.safetensors").is_file():
        raise FileNotFoundError(f"{run / 'vae.safetensors'} not found: run 'frieren-rt train vae' first")
    frozen = load_vae(run / "vae.safetensors")
    causal = (frozen.cfg.decoder_causal_blocks if cfg.vae_decoder_causal_blocks is None
              else cfg.vae_decoder_causal_blocks)
    vae = MelVAE(replace(frozen.cfg, decoder_widths=cfg.vae_decoder_widths,
                         decoder_res_blocks=cfg.vae_decoder_res_blocks, decoder_causal_blocks=causal))
    vae.encoder.load_state_dict(frozen.encoder.state_dict())
    if cfg.decoder_init == "run":
        if vae.cfg != frozen.cfg:
            raise ValueError("decoder_init 'run' needs the run's decoder sizes: leave vae_decoder_widths / "
                             "vae_decoder_res_blocks unset or equal to vae.safetensors'")
        vae.decoder.load_state_dict(frozen.decoder.state_dict())
    elif cfg.decoder_init != "fresh":
        raise ValueError(f"decoder_init {cfg.decoder_init!r}: expected 'fresh' or 'run'")
    vae.encoder.requires_grad_(False).eval()
    cache = FeatureCache(run / "cache_train")
    params = list(vae.decoder.parameters())
    opt = _optimizer(params, cfg)
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    state = TrainState(step=0, modules={"decoder": vae.decoder}, optimizers={"opt": opt}, generator=gen)

    edge_span = sum(vae.decoder.context_latents()) if cfg.vae_decoder_edge_weight else 0
    latents = cfg.vae_segment_frames // vae.cfg.downsample
    if cfg.vae_decoder_edge_weight and latents < edge_span:
        raise ValueError(f"vae_segment_frames {cfg.vae_segment_frames} holds {latents} latents, fewer than the "
                         f"{edge_span} the edge loss decodes")
    through = _decoder_vocoder_term(run, cfg, cache, vae) if cfg.decoder_vocoder else None

    def step(i: int) -> dict[str, float]:
        origins = segment_origins(cache, cfg.batch_size, cfg.vae_segment_frames, gen)
        mel = mel_segments(cache, cfg.batch_size, cfg.vae_segment_frames, gen, origins)
        # The VAE's own loss through posterior samples (not means: the flow's latents are never exact); the
        # frozen encoder takes no gradient, so only the reconstruction term trains the decoder.
        out = vae_loss(vae, mel, generator=gen, kl_weight=0.0, flux_weight=cfg.vae_flux_weight,
                       with_mel=through is not None)
        loss = out["recon"] + cfg.vae_flux_weight * out["flux"]
        logs = {"recon": float(out["recon"].detach()), "flux": float(out["flux"].detach())}
        if through is not None:
            audio = through(out["mel_hat"], mel, origins, gen)
            loss = loss + cfg.decoder_vocoder_weight * audio["loss"]
            logs |= {f"voc_{k}": float(v.detach()) for k, v in audio.items()}
        if cfg.vae_decoder_edge_weight:  # four chunk ends per segment batch, anywhere in the segment
            with torch.no_grad():
                z = vae.encode(mel).sample(gen)
            ends = torch.randint(edge_span, latents + 1, (4,), generator=gen).tolist()
            edge = edge_l1(vae.decoder, z, mel, ends)
            loss = loss + cfg.vae_decoder_edge_weight * edge
            logs["edge"] = float(edge.detach())
        _sgd_step(loss, opt, params, cfg, i)
        return logs

    train_loop(step, state, total_steps=cfg.steps, folder=run / "decoder", desc="decoder",
               time_budget_s=time_budget_s)
    if state.step < cfg.steps:
        return {"done": False, "step": state.step}
    save_vae(vae.eval(), run / "vae_offline.safetensors")
    val = FeatureCache(run / "cache_val")
    before = {f"streaming_{k}": v for k, v in evaluate_vae(frozen, val).items()}
    return {"done": True, **before, **evaluate_vae(vae, val)}


def _decoder_vocoder_term(run: Path, cfg: StageConfig, cache: FeatureCache, vae: MelVAE
                          ) -> Callable[[torch.Tensor, torch.Tensor, list[tuple[int, int]], torch.Generator],
                                        dict[str, torch.Tensor]]:
    """The decoder stage's loss through a frozen vocoder (StageConfig.decoder_vocoder): a function
    (reconstructions (B, 80, T), true mels (B, 80, T), their segment_origins, generator) -> regression_loss's dict
    over decoder_vocoder_crops crops of vocoder_segment_frames frames, each from another segment and clear of the
    segment's ends by the decoder's context (there it decodes against zero padding, which whole-clip decoding
    never does)."""
    from frieren_rt.audio.mel import LogMel  # noqa: PLC0415
    from frieren_rt.train.vocoder import PeakLevelLoss, load_vocoder, regression_loss  # noqa: PLC0415

    if cfg.decoder_vocoder_weight <= 0 or cfg.decoder_vocoder_crops < 1:
        raise ValueError("decoder_vocoder needs decoder_vocoder_weight > 0 and decoder_vocoder_crops >= 1")
    if cfg.decoder_vocoder_crops > cfg.batch_size:
        raise ValueError(f"decoder_vocoder_crops {cfg.decoder_vocoder_crops} > batch_size {cfg.batch_size}: one "
                         f"crop per segment")
    margin = max(vae.decoder.context_latents()) * vae.cfg.downsample
    seg = cfg.vocoder_segment_frames
    room = cfg.vae_segment_frames - 2 * margin - seg
    if room < 0:
        raise ValueError(f"vae_segment_frames {cfg.vae_segment_frames} cannot hold a {seg}-frame vocoder crop "
                         f"{margin} frames from each end (the decoder's context): raise vae_segment_frames")
    vocoder = load_vocoder(cfg.decoder_vocoder)  # frozen: eval, no gradient to its weights
    seeds = cache.seeds
    audio = dict(zip(seeds, world_targets(run / "cache_train", cache, seeds), strict=True))
    logmel = LogMel()
    terms = {"peak": (PeakLevelLoss(), cfg.vocoder_peak_weight)} if cfg.vocoder_peak_weight > 0 else None

    def term(mel_hat: torch.Tensor, mel: torch.Tensor, origins: list[tuple[int, int]],
             gen: torch.Generator) -> dict[str, torch.Tensor]:
        offsets = [margin + int(torch.randint(room + 1, (1,), generator=gen))
                   for _ in range(cfg.decoder_vocoder_crops)]
        rendered = vocoder(torch.stack([mel_hat[b, :, o : o + seg] for b, o in enumerate(offsets)]))
        true_mel = torch.stack([mel[b, :, o : o + seg] for b, o in enumerate(offsets)])
        target = torch.stack([audio[origins[b][0]][(origins[b][1] + o) * 256 : (origins[b][1] + o + seg) * 256]
                              for b, o in enumerate(offsets)])
        return regression_loss(rendered, logmel, true_mel, target, None, terms)

    return term


def world_targets(folder: Path, cache: FeatureCache, seeds: Sequence[int]) -> list[torch.Tensor]:
    """The clips' own audio (S,) of ``seeds`` of ``cache`` (frieren_rt.train.vocoder.world_audio), checked against
    their cached mels: a loss that compares a rendering with this audio and its mel with the cached one needs both
    from one clip."""
    from frieren_rt.audio.mel import LogMel  # noqa: PLC0415
    from frieren_rt.train.vocoder import world_audio  # noqa: PLC0415

    logmel = LogMel()
    mels = [cache[s].mel for s in seeds]
    targets = world_audio(seeds, cache.config.world, cache.config.duration)
    stale = [s for s, m, t in zip(seeds, mels, targets, strict=True)
             if t.numel() < m.shape[1] * 256 or not torch.allclose(logmel(t)[:, : m.shape[1]], m, atol=1e-3)]
    if stale:
        raise ValueError(f"the world's audio of clips {stale[:5]} does not give their cached mels: the cache in "
                         f"{folder} was built from another version of the world; rebuild it "
                         f"('frieren-rt train cache' into a new run folder)")
    return targets


# --- stage: latents ----------------------------------------------------------------------------------------
@torch.no_grad()
def encode_latents(vae: MelVAE, cache: FeatureCache) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """seed -> (scaled posterior mean (C, N), scaled posterior std (C, N)) of each whole clip."""
    out = {}
    for rec in cache:
        mel = rec.mel[None, :, : rec.mel.shape[1] // 2 * 2]
        post = vae.encode(mel)
        out[rec.seed] = (vae.to_flow(post.mean)[0], vae.to_flow(post.std)[0])
    return out


def latents_of(run: Path, split: str) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Cached clip latents of a split, encoded once with the run's VAE."""
    path = run / f"latents_{split}.safetensors"
    if not path.is_file():
        lat = encode_latents(load_vae(run / "vae.safetensors"), FeatureCache(run / f"cache_{split}"))
        save_file({f"{s}.{n}": t.contiguous() for s, (m, d) in lat.items() for n, t in (("mean", m), ("std", d))},
                  str(path))
    flat = load_file(str(path))
    seeds = sorted({int(k.split(".")[0]) for k in flat})
    return {s: (flat[f"{s}.mean"], flat[f"{s}.std"]) for s in seeds}


# --- stage: flow -------------------------------------------------------------------------------------------
def masked_flow_loss(velocity, batch: WindowBatch, gen: torch.Generator, *, x0: torch.Tensor | None = None,
                     t: torch.Tensor | None = None, weighted: bool = True,
                     latent_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Rectified-flow loss on the unknown (mask 0) latents of each window, logit-normal weighted.

    The known latents are given to the model; asking it to regenerate them would spend capacity on copying.
    latent_weight: optional (B, 1, W) per-latent weight (the mean stays over the free latents).
    """
    x1 = batch.x1
    x0 = torch.randn(x1.shape, generator=gen).to(x1.device) if x0 is None else x0  # host draws: see device
    t = draw_t(x1.shape[0], generator=gen, device=x1.device) if t is None else t
    free = 1.0 - batch.mask  # (B, 1, W)
    w = free if latent_weight is None else free * latent_weight
    err = ((velocity(interpolate(x0, x1, t), t) - (x1 - x0)).pow(2) * w).sum((1, 2))
    err = err / (free.sum((1, 2)) * x1.shape[1]).clamp(min=1.0)  # (B,) mean over free elements
    return (logit_normal_density(t) * err).mean() if weighted else err.mean()


@torch.no_grad()
def silent_latents(vae: MelVAE, tolerance: float = 0.3):
    """A function x1 (B, C, W) flow latents -> (B, 1, W) float, 1 where a latent is within ``tolerance`` (RMS
    over channels, flow scale: latent std about 1) of the VAE's latent of digital silence."""
    from frieren_rt.audio import LogMel  # noqa: PLC0415

    mel = LogMel()(torch.zeros(22050))[None, :, :32]  # (1, 80, 32) the log-mel floor
    z = vae.to_flow(vae.encode(mel).mean)[0, :, 8]  # (C,) a column away from the edges

    def silent(x1: torch.Tensor) -> torch.Tensor:
        return ((x1 - z.to(x1.device).view(1, -1, 1)).pow(2).mean(1, keepdim=True).sqrt() < tolerance).float()

    return silent


def event_tail_latents(batch: WindowBatch, classes: int, *, decay: float = 0.8, floor: float = 0.1) -> torch.Tensor:
    """(B, 1, W) float, 1 on latents whose frame's event trace (frieren_rt.vision.events.class_traces) is
    >= floor in some class: about 10 frames (0.34 s at 30 fps) after a confident onset."""
    trace = class_traces(batch.cond, classes, decay).amax(-1)  # (B, S)
    return (torch.gather(trace, 1, batch.cond_index) >= floor).float()[:, None, :]


def training_device(cfg: StageConfig) -> torch.device:
    """The config's device, refused with what to do when it cannot be used."""
    try:
        device = torch.device(cfg.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {cfg.device!r}: the training stages run on 'cpu' or 'cuda[:N]'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r} asked for, but this torch ({torch.__version__}) sees no CUDA "
                         "device: train with --device cpu, or install a CUDA build of torch")
    return device


def _model_kwargs(batch: WindowBatch) -> dict[str, torch.Tensor]:
    return {"cond_index": batch.cond_index, "known": batch.known, "mask": batch.mask}


def flow_model_config(cfg: StageConfig, *, latent_channels: int, window_latents: int, motion_width: int,
                      motion_grid: int, event_classes: int = 0) -> FoleyConfig:
    """The base model's config: the small preset sized to the VAE, the window and the cached motion features
    (motion cells, then the event detector's features for ``event_classes`` classes), with the config's field
    size and event traces where given."""
    fcfg = FoleyConfig()
    size = {k: v for k, v in (("hidden", cfg.field_hidden), ("heads", cfg.field_heads), ("depth", cfg.field_depth))
            if v is not None}
    traces = tuple(cfg.trace_decays)
    if traces and not event_classes:
        raise ValueError("trace_decays needs the event detector's features: train the 'detector' stage and "
                         "rebuild the cache first")
    return replace(fcfg, field=replace(fcfg.field, latent_channels=latent_channels,
                                       max_len=max(fcfg.field.max_len, window_latents + 1), **size),
                   projection=replace(fcfg.projection, motion_dim=motion_width + event_classes * len(traces)),
                   event_dim=motion_width - motion_dim(motion_grid),
                   event_classes=event_classes if traces else 0, trace_decays=traces)


def init_from(model: FoleyModel, path: Path) -> None:
    """Load ``path``'s weights into ``model`` (load_state_dict casts a float16 export to the model's float32),
    refusing a file of another shape with what to do: a warm restart continues the same model."""
    init = FoleyModel.from_pretrained(path)
    if init.cfg != model.cfg:
        raise ValueError(f"flow_init {path}: its model config differs from the one this config builds; start it "
                         "with the config of the run that trained it (field size, trace decays, detector)")
    model.load_state_dict(init.state_dict())


def stage_flow(run: Path, cfg: StageConfig, time_budget_s: float | None = None) -> dict[str, Any]:
    geom = geometry_of(cfg)
    cache = FeatureCache(run / "cache_train")
    sampler = WindowSampler(cache, latents_of(run, "train"), geom, **sampler_options(cfg, geom))
    vae = load_vae(run / "vae.safetensors")
    motion_width = cache[cache.seeds[0]].motion.shape[-1]  # motion cells (+ event detector features)
    detector_file = run / "detector.safetensors"
    classes = len(EventDetector.from_pretrained(detector_file).cfg.classes) if detector_file.is_file() else 0
    if cfg.event_weight != 1.0 and not classes:
        raise ValueError("event_weight needs the event detector's features: train the 'detector' stage first")
    device = training_device(cfg)
    model = FoleyModel(flow_model_config(cfg, latent_channels=vae.cfg.z_channels, window_latents=geom.window_latents,
                                         motion_width=motion_width, motion_grid=cache.config.motion_grid,
                                         event_classes=classes))
    if cfg.flow_init:
        init_from(model, Path(cfg.flow_init))
    model = model.to(device)
    params = list(model.parameters())
    opt = _optimizer(params, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema_decay else None
    modules = {"model": model} if ema is None else {"model": model, "ema": ema}  # the average resumes too
    state = TrainState(step=0, modules=modules, optimizers={"opt": opt}, generator=gen)

    def step(i: int) -> dict[str, float]:
        batch = sampler.batch(cfg.batch_size, gen).to(device)
        drop = (torch.rand(cfg.batch_size, generator=gen) < cfg.cfg_dropout).view(-1, 1, 1).to(device)
        cond = torch.where(drop, torch.zeros_like(batch.cond), batch.cond)  # CFG dropout to the null
        kw = _model_kwargs(batch)
        weight = None if silent is None else 1.0 + (cfg.silence_weight - 1.0) * silent(batch.x1)
        if cfg.event_weight != 1.0:
            tail = (cfg.event_weight - 1.0) * event_tail_latents(batch, classes, decay=cfg.event_tail_decay)
            weight = 1.0 + tail if weight is None else weight + tail
        loss = masked_flow_loss(lambda x, t: model(x, t, cond, **kw), batch, gen, latent_weight=weight)
        _sgd_step(loss, opt, params, cfg, i)
        if ema is not None:
            ema_update(ema, model, cfg.ema_decay, i)
        return {"loss": float(loss.detach())}

    silent = None if cfg.silence_weight == 1.0 else silent_latents(vae)
    train_loop(step, state, total_steps=cfg.steps, folder=run / "flow", desc="flow", time_budget_s=time_budget_s)
    if state.step < cfg.steps:
        return {"done": False, "step": state.step}
    if ema is not None:  # the average ships; the last iterate stays beside it to compare
        model.eval().cpu().save(run / "base_last.safetensors", stage="base", steps=str(cfg.steps))
        model = ema
    model.eval().cpu().save(run / "base.safetensors", stage="base", steps=str(cfg.steps), ema_decay=str(cfg.ema_decay))
    return {"done": True}


# --- stages: reflow, distill, single-pass ------------------------------------------------------------------
def guided(model: FoleyModel, batch: WindowBatch, scale: float, tail_scale: float | None = None,
           parallel: float = 1.0):
    s = model.guidance_scale(batch.cond, batch.cond_index, scale, tail_scale)
    return cfg_velocity(model, batch.cond, None, s, parallel=parallel, **_model_kwargs(batch))


def prefix_ends_in_sound(known: torch.Tensor, mask: torch.Tensor, silent) -> torch.Tensor:
    """(B,) float, 1 where the window's known prefix (mask (B, 1, T), 1 on its first latents) is non-empty and
    its last latent of known (B, C, T) is not silence by ``silent`` (silent_latents)."""
    n = mask[:, 0].sum(-1).long()  # (B,) known latents
    last = torch.gather(known, 2, (n - 1).clamp(min=0).view(-1, 1, 1).expand(-1, known.shape[1], 1))  # (B, C, 1)
    return (1.0 - silent(last)[:, 0, 0]) * (n > 0).to(known.dtype)


def teacher_velocity(teacher: FoleyModel, batch: WindowBatch, cfg: StageConfig, silent=None):
    """The teacher's guided velocity for reflow samples: CFG at cfg_scale, with the config's tail, prefix and
    rescale rules. ``silent`` (silent_latents of the run's VAE) is needed only for teacher_prefix_cfg."""
    s = teacher.guidance_scale(batch.cond, batch.cond_index, cfg.cfg_scale, cfg.tail_cfg_scale)
    if cfg.teacher_prefix_cfg is not None:
        s = prefix_guidance_scale(batch.mask, prefix_ends_in_sound(batch.known, batch.mask, silent), s,
                                  cfg.teacher_prefix_cfg)
    return cfg_velocity(teacher, batch.cond, None, s, rescale=cfg.teacher_cfg_rescale, **_model_kwargs(batch))


def _teacher_samples(teacher: FoleyModel, batch: WindowBatch, x0: torch.Tensor, cfg: StageConfig,
                     silent=None) -> torch.Tensor:
    """The teacher's samples (B, C, W) from noise x0 on the host; known latents stay the data's: the student
    is asked only for the free part, like its teacher."""
    device = next(teacher.parameters()).device
    x1 = euler(teacher_velocity(teacher, batch.to(device), cfg, silent), x0.to(device), cfg.teacher_steps).cpu()
    return torch.where(batch.mask.bool(), batch.x1, x1)


def best_of_candidates(teacher: FoleyModel, batch: WindowBatch, x0: torch.Tensor, x1: torch.Tensor,
                       cfg: StageConfig, gen: torch.Generator, probe: LatentClassProbe, silent=None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, x1) with each window that holds a detected onset in its free latents given the best of
    ``cfg.pair_candidates`` teacher samples by window_class_scores; x0, x1 (B, C, W), the first candidates."""
    onsets = detected_onsets(batch.cond, batch.cond_index, batch.mask, classes=len(probe.cfg.classes),
                             min_len=probe.cfg.min_len)
    rows = sorted({o[0] for o in onsets})
    if not rows:
        return x0, x1
    where = {b: i for i, b in enumerate(rows)}
    sub_onsets = [(where[b], j, left, c) for b, j, left, c in onsets]
    sub = batch.index(torch.tensor(rows))
    best_x0, best_x1 = x0[rows].clone(), x1[rows].clone()
    best = window_class_scores(probe, best_x1, sub_onsets)
    for _ in range(cfg.pair_candidates - 1):
        c0 = torch.randn(best_x0.shape, generator=gen)
        c1 = _teacher_samples(teacher, sub, c0, cfg, silent)
        score = window_class_scores(probe, c1, sub_onsets)
        better = score > best
        best_x0[better], best_x1[better], best[better] = c0[better], c1[better], score[better]
    x0, x1 = x0.clone(), x1.clone()
    x0[rows], x1[rows] = best_x0, best_x1
    return x0, x1


@torch.no_grad()
def make_pairs(teacher: FoleyModel, sampler: WindowSampler, cfg: StageConfig, gen: torch.Generator,
               silent=None, probe: LatentClassProbe | None = None) -> dict:
    """(noise, teacher sample) pairs: ``teacher_steps`` Euler steps with CFG ``cfg_scale`` (Frieren's reflow data),
    with ``probe`` and ``cfg.pair_candidates`` > 1 the best of that many samples for windows with an onset.
    The teacher runs on its own device; the pairs come back on the host."""
    from tqdm import tqdm  # noqa: PLC0415

    if cfg.pair_candidates > 1 and probe is None:
        raise ValueError("pair_candidates > 1 chooses by the run's latent class probe: pass it")
    chunks = []
    for _ in tqdm(range(0, cfg.reflow_pairs, 64), desc="reflow pairs", unit="x64"):
        batch = sampler.batch(64, gen, sample_posterior=False)
        x0 = torch.randn(batch.x1.shape, generator=gen)
        x1 = _teacher_samples(teacher, batch, x0, cfg, silent)
        if cfg.pair_candidates > 1:
            x0, x1 = best_of_candidates(teacher, batch, x0, x1, cfg, gen, probe, silent)
        chunks.append({"x0": x0, "x1": x1, "cond": batch.cond, "cond_index": batch.cond_index,
                       "known": batch.known, "mask": batch.mask, "target": batch.x1})  # target: the true latents
    return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}


def _pairs(run: Path, cfg: StageConfig, teacher_file: str, name: str) -> dict[str, torch.Tensor]:
    path = run / f"{name}.safetensors"
    if not path.is_file():
        geom = geometry_of(cfg)
        sampler = WindowSampler(FeatureCache(run / "cache_train"), latents_of(run, "train"), geom,
                                **sampler_options(cfg, geom))
        gen = torch.Generator().manual_seed(cfg.seed + 17)
        teacher = FoleyModel.from_pretrained(run / teacher_file).to(training_device(cfg))
        silent = None if cfg.teacher_prefix_cfg is None else silent_latents(load_vae(run / "vae.safetensors"))
        if cfg.pair_candidates < 1:
            raise ValueError(f"pair_candidates must be >= 1 (1: one teacher sample per window), not "
                             f"{cfg.pair_candidates}")
        probe = class_probe_of(run, cfg) if cfg.pair_candidates > 1 else None
        pairs = make_pairs(teacher, sampler, cfg, gen, silent, probe)
        save_file({k: v.contiguous() for k, v in pairs.items()}, str(path))
    return load_file(str(path))


def same_inputs(student: FoleyConfig, teacher: FoleyConfig) -> bool:
    """Whether ``student`` reads the latents and features ``teacher`` reads; its transformer may be narrower or
    shallower (hidden, heads, depth, feed-forward width), so it can learn the teacher's samples."""
    size = {k: getattr(student.field, k) for k in ("hidden", "heads", "depth", "ff_mult", "block_groups",
                                                    "final_groups")}
    return replace(teacher, field=replace(teacher.field, **size)) == student


def _student_stage(run: Path, cfg: StageConfig, name: str, init: Path, out_file: str, loss_fn,
                   time_budget_s: float | None) -> dict[str, Any]:
    pairs = _pairs(run, cfg, "base.safetensors", "reflow_pairs")
    if cfg.envelope_weight and "target" not in pairs:
        raise ValueError(f"envelope_weight needs the windows' true latents, which {run / 'reflow_pairs.safetensors'} "
                         "predates: move it aside and train the stage again to make pairs that keep them")
    device = training_device(cfg)
    model = FoleyModel.from_pretrained(init).to(device).train()
    params = list(model.parameters())
    opt = _optimizer(params, cfg)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    state = TrainState(step=0, modules={"model": model}, optimizers={"opt": opt}, generator=gen)
    n = pairs["x0"].shape[0]

    def step(i: int) -> dict[str, float]:
        idx = torch.randint(n, (cfg.batch_size,), generator=gen)
        batch = WindowBatch(pairs["x1"][idx], pairs["cond"][idx], pairs["cond_index"][idx],
                            pairs["known"][idx], pairs["mask"][idx]).to(device)
        target = pairs["target"][idx].to(device) if cfg.envelope_weight else None  # only the envelope reads it
        loss = loss_fn(model, batch, pairs["x0"][idx].to(device), gen, target)
        _sgd_step(loss, opt, params, cfg, i)
        return {"loss": float(loss.detach())}

    train_loop(step, state, total_steps=cfg.steps, folder=run / name, desc=name, time_budget_s=time_budget_s)
    if state.step < cfg.steps:
        return {"done": False, "step": state.step}
    model.eval().cpu().save(run / out_file, stage=name, steps=str(cfg.steps))
    return {"done": True}


def class_probe_of(run: Path, cfg: StageConfig) -> LatentClassProbe:
    """The run's latent class probe (``class_probe.safetensors``), fitted on its true latents the first time."""
    path = run / "class_probe.safetensors"
    if path.is_file():
        return LatentClassProbe.from_pretrained(path).requires_grad_(False)
    classes = tuple(EventDetector.from_pretrained(run / "detector.safetensors").cfg.classes)
    rate = geometry_of(cfg).latent_rate
    sets = []
    for split in ("train", "val"):
        cache = FeatureCache(run / f"cache_{split}")
        lat = latents_of(run, split)
        sets.append(onset_snippets(lat, {s: cache[s].events for s in lat}, classes, rate, ProbeConfig.max_len))
    pcfg = ProbeConfig(channels=sets[0][0].shape[1], classes=classes)
    probe, scores = fit_probe(sets[0], sets[1], pcfg, seed=cfg.seed)
    print(f"class probe on true latents: train accuracy {scores['train_acc']:.3f}, validation "
          f"{scores['val_acc']:.3f} ({int(scores['val_snippets'])} onsets)", flush=True)
    probe.save(path, **{k: str(v) for k, v in scores.items()})
    return probe.requires_grad_(False)


def _class_term(probe: LatentClassProbe | None, x1: torch.Tensor, batch: WindowBatch) -> torch.Tensor:
    """The probe's cross-entropy at the onsets the detector reports in the batch's unknown latents."""
    if probe is None:
        return x1.new_zeros(())
    onsets = detected_onsets(batch.cond, batch.cond_index, batch.mask, classes=len(probe.cfg.classes),
                             min_len=probe.cfg.min_len)
    return class_loss(probe, x1, onsets)


def _envelope_term(run: Path, cfg: StageConfig):
    """(x1, target, batch) -> envelope_weight x the band-envelope L1 of x1 against the true latents after the
    run's VAE decoder (frieren_rt/train/envelope.py); a zero when the weight is 0."""
    if not cfg.envelope_weight:
        return lambda x1, target, batch: x1.new_zeros(())
    vae = load_vae(run / "vae.safetensors").requires_grad_(False).to(training_device(cfg))

    def decode(x: torch.Tensor) -> torch.Tensor:
        return vae.decode(vae.from_flow(x))

    return lambda x1, target, batch: cfg.envelope_weight * envelope_loss(decode, x1, target, batch.mask,
                                                                         cfg.envelope_bands)


def _masked_mse(pred: torch.Tensor, batch: WindowBatch) -> torch.Tensor:
    free = 1.0 - batch.mask
    return ((pred - batch.x1).pow(2) * free).sum() / (free.sum() * batch.x1.shape[1]).clamp(min=1.0)


def stage_reflow(run: Path, cfg: StageConfig, time_budget_s: float | None = None) -> dict[str, Any]:
    """Reflow: the student's guided velocity toward (sample - noise) on the straight path (no CFG dropout)."""

    def loss(model, batch, x0, gen, target):
        return masked_flow_loss(guided(model, batch, cfg.cfg_scale, cfg.tail_cfg_scale), batch, gen, x0=x0)

    init = run / "base.safetensors"
    if cfg.reflow_init:
        init = Path(cfg.reflow_init)
        if not init.is_file():
            raise FileNotFoundError(f"reflow_init {init}: no such field file (a base.safetensors or "
                                    "reflow.safetensors from a run on the same cache)")
        if not same_inputs(FoleyModel.config_of(init), FoleyModel.config_of(run / "base.safetensors")):
            raise ValueError(f"reflow_init {init}: it reads other inputs than the run's base (latent channels, "
                             "features, trace decays or window); start from a field trained on this run's cache")
    return _student_stage(run, cfg, "reflow", init, "reflow.safetensors", loss, time_budget_s)


def stage_distill(run: Path, cfg: StageConfig, time_budget_s: float | None = None) -> dict[str, Any]:
    """One-step distillation: t = 0, x1_hat = x0 + v_guided(x0, 0), MSE to the stored sample."""

    probe = class_probe_of(run, cfg).to(training_device(cfg)) if cfg.class_weight else None
    envelope = _envelope_term(run, cfg)

    def loss(model, batch, x0, gen, target):
        t0 = torch.zeros(x0.shape[0], device=x0.device)
        x1 = x0 + guided(model, batch, cfg.cfg_scale, cfg.tail_cfg_scale)(x0, t0)
        return (_masked_mse(x1, batch) + cfg.class_weight * _class_term(probe, x1, batch)
                + envelope(x1, target, batch))

    return _student_stage(run, cfg, "distill", run / "reflow.safetensors", "distill.safetensors", loss, time_budget_s)


def stage_single(run: Path, cfg: StageConfig, time_budget_s: float | None = None) -> dict[str, Any]:
    """Beyond Frieren: fold CFG into the one-step student, x1_hat = x0 + v(x0, 0, c): one pass, not two."""

    probe = class_probe_of(run, cfg).to(training_device(cfg)) if cfg.class_weight else None
    envelope = _envelope_term(run, cfg)

    def loss(model, batch, x0, gen, target):
        t0 = torch.zeros(x0.shape[0], device=x0.device)
        x1 = x0 + model(x0, t0, batch.cond, **_model_kwargs(batch))
        return (_masked_mse(x1, batch) + cfg.class_weight * _class_term(probe, x1, batch)
                + envelope(x1, target, batch))

    return _student_stage(run, cfg, "single", run / "distill.safetensors", "single.safetensors", loss, time_budget_s)


# --- stage: student vocoder --------------------------------------------------------------------------------
def stage_vocoder(run: Path, cfg: StageConfig, time_budget_s: float | None = None) -> dict[str, Any]:
    """Distil a small HiFi-GAN-shaped student from the universal generator (see frieren_rt/train/vocoder.py)."""
    from frieren_rt.audio.mel import LogMel  # noqa: PLC0415
    from frieren_rt.train.vocoder import (AttackRiseLoss, HighBandLoss, MultiScaleMelLoss,  # noqa: PLC0415
                                          PeakLevelLoss, SpectrogramDiscriminator, adversarial_losses,
                                          cached_targets, delta_base, discriminator_loss, load_vocoder,
                                          mixed_regression_loss, new_student, regression_loss, save_vocoder)
    from frieren_rt.audio.condition import with_condition  # noqa: PLC0415

    if cfg.vocoder_loss not in ("stft", "mel"):
        raise ValueError(f"vocoder_loss must be 'stft' or 'mel', not {cfg.vocoder_loss!r}")
    if cfg.vocoder_peak_weight < 0:
        raise ValueError(f"vocoder_peak_weight must be >= 0 (0: no peak-level term), not {cfg.vocoder_peak_weight}")
    if cfg.vocoder_high_weight < 0:
        raise ValueError(f"vocoder_high_weight must be >= 0 (0: no high-band term), not {cfg.vocoder_high_weight}")
    if cfg.vocoder_rise_weight < 0:
        raise ValueError(f"vocoder_rise_weight must be >= 0 (0: no attack-rise term), not {cfg.vocoder_rise_weight}")
    if cfg.vocoder_target not in ("teacher", "world"):
        raise ValueError(f"vocoder_target must be 'teacher' or 'world', not {cfg.vocoder_target!r}")
    if cfg.vocoder_generated_target not in ("audio", "self"):
        raise ValueError(f"vocoder_generated_target must be 'audio' or 'self', not {cfg.vocoder_generated_target!r}")
    own = cfg.vocoder_generated_target == "self"
    cache = FeatureCache(run / "cache_train")
    seeds = cache.seeds[: cfg.vocoder_clips]
    mels = [cache[s].mel for s in seeds]
    logmel = LogMel()
    if cfg.vocoder_target == "teacher":
        targets = cached_targets(run, mels, seeds)
    else:  # the mel loss compares with the cached mel and the spectral loss with this audio
        targets = world_targets(run / "cache_train", cache, seeds)
    inputs = vae_reconstructions(load_vae(Path(cfg.vocoder_vae)), mels, cfg.seed) if cfg.vocoder_vae else None
    generated = (cached_generated_mels(run, cfg.vocoder_generated, seeds, mels, cache.config,
                                       teacher_forced=cfg.vocoder_generated_forced)
                 if cfg.vocoder_generated is not None else None)
    student = load_vocoder(cfg.vocoder_init) if cfg.vocoder_init else new_student(cfg.vocoder_preset, cfg.seed)
    conds = None
    if cfg.vocoder_condition:
        conds, channels = clip_conditions(run, cache, seeds, mels)
        if student.cfg.cond_channels == 0:
            student = with_condition(student, channels)
        elif student.cfg.cond_channels != channels:
            raise ValueError(f"vocoder_init reads {student.cfg.cond_channels} condition channels, the run's detector "
                             f"gives {channels}")
    elif student.cfg.cond_channels:
        raise ValueError("vocoder_init reads a condition: set vocoder_condition to train it")
    spectral = MultiScaleMelLoss() if cfg.vocoder_loss == "mel" else None
    terms = {name: (make(), weight) for name, make, weight in (
        ("peak", PeakLevelLoss, cfg.vocoder_peak_weight), ("high", HighBandLoss, cfg.vocoder_high_weight),
        ("rise", AttackRiseLoss, cfg.vocoder_rise_weight)) if weight > 0}
    student.requires_grad_(True).train()
    params = list(student.parameters())
    opt = _optimizer(params, cfg)
    gen = torch.Generator().manual_seed(cfg.seed + 5)
    modules, optimizers = {"vocoder": student}, {"opt": opt}
    if cfg.vocoder_adversarial > 0:
        disc = SpectrogramDiscriminator()
        d_params = list(disc.parameters())
        modules["discriminator"], optimizers["opt_d"] = disc, _optimizer(d_params, cfg)
    state = TrainState(step=0, modules=modules, optimizers=optimizers, generator=gen)
    seg = cfg.vocoder_segment_frames

    def step(i: int) -> dict[str, float]:
        mel, student_in, target, own_mel = vocoder_crops(mels, targets, inputs, cfg.batch_size, seg,
                                                         cfg.vocoder_vae_fraction, gen, generated=generated,
                                                         generated_fraction=cfg.vocoder_generated_fraction,
                                                         generated_self=own, conds=conds)
        wav = student(student_in)
        out = (mixed_regression_loss(wav, logmel, mel, target, own_mel, spectral, terms) if own
               else regression_loss(wav, logmel, mel, target, spectral, terms))  # the loss logs as before
        if cfg.vocoder_adversarial > 0:  # HiFi-GAN's order: the discriminator's step, then the generator's
            out["d"] = discriminator_loss(disc, target, wav)
            _sgd_step(out["d"], optimizers["opt_d"], d_params, cfg, i)
            disc.requires_grad_(False)
            out |= adversarial_losses(disc, target, wav)
            disc.requires_grad_(True)
            out["loss"] = out["loss"] + cfg.vocoder_adversarial * (out["adv"] + 2.0 * out["fm"])
        _sgd_step(out["loss"], opt, params, cfg, i)
        return {k: float(v.detach()) for k, v in out.items()}

    train_loop(step, state, total_steps=cfg.steps, folder=run / "vocoder", desc="vocoder",
               time_budget_s=time_budget_s)
    if state.step < cfg.steps:
        return {"done": False, "step": state.step}
    save_vocoder(student.eval(), run / "vocoder.safetensors", delta_of=delta_base(cfg.vocoder_init))
    return {"done": True}


def vocoder_crops(mels: list[torch.Tensor], targets: list[torch.Tensor], inputs: list[torch.Tensor] | None,
                  batch: int, frames: int, input_fraction: float, gen: torch.Generator, *,
                  generated: list[tuple[torch.Tensor, torch.Tensor]] | None = None, generated_fraction: float = 0.0,
                  min_aligned: float = 0.9, generated_self: bool = False, conds: list[torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crops of ``frames`` mel frames: (the mel loss's mel (B, 80, frames), the student's input (B, 80,
    frames), the teacher's audio (B, frames * 256), which crops are their own mel target (B,) bool). The input is
    the crop of ``generated`` (the field's mels with their (F,) aligned-frame masks) with probability
    ``generated_fraction`` when at least ``min_aligned`` of the crop's frames are aligned, else the crop of
    ``inputs`` (the mels through the VAE) with probability ``input_fraction``, else the true mel; the mel loss's
    mel and the target stay the true ones, except with ``generated_self``: then every generated crop qualifies,
    is its own mel loss's mel and is marked in the fourth tensor (its audio has no pair: mixed_regression_loss).
    Without ``inputs`` / ``generated`` no extra random number is drawn for them, so such runs repeat the crops of
    runs before the options. ``conds`` (each clip's vocoder condition (C, F)): the same crop of it is appended to
    the student's input, (B, 80 + C, frames), drawing nothing."""
    mel_b, in_b, wav_b, own_b, origins = [], [], [], [], []
    for _ in range(batch):
        k = int(torch.randint(len(mels), (1,), generator=gen))
        s = int(torch.randint(0, mels[k].shape[1] - frames + 1, (1,), generator=gen))
        origins.append((k, s))
        wav_b.append(targets[k][s * 256 : (s + frames) * 256])
        if generated is not None and float(torch.rand((), generator=gen)) < generated_fraction:
            g_mel, g_ok = generated[k]
            if generated_self or float(g_ok[s : s + frames].float().mean()) >= min_aligned:
                in_b.append(g_mel[:, s : s + frames])
                mel_b.append(in_b[-1] if generated_self else mels[k][:, s : s + frames])
                own_b.append(generated_self)
                continue
        use_input = inputs is not None and float(torch.rand((), generator=gen)) < input_fraction
        in_b.append((inputs if use_input else mels)[k][:, s : s + frames])
        mel_b.append(mels[k][:, s : s + frames])
        own_b.append(False)
    if conds is not None:
        in_b = [torch.cat([x, conds[k][:, s : s + frames]]) for x, (k, s) in zip(in_b, origins, strict=True)]
    return torch.stack(mel_b), torch.stack(in_b), torch.stack(wav_b), torch.tensor(own_b)


def cached_generated_mels(run: Path, weights: str, seeds: Sequence[int], mels: list[torch.Tensor],
                          cache_cfg: CacheConfig, *, teacher_forced: bool = False
                          ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(generated mel (80, F), aligned-frame mask (F,)) per training clip: ``generated_mels`` of the ``weights``
    folder ("" / "shipped": the shipped one), computed for the clips missing from
    ``run/vocoder_generated.safetensors`` (``_forced`` before the suffix when ``teacher_forced``) and stored
    there (keyed by seed; delete the file after changing ``weights``)."""
    from frieren_rt.train.vocoder import aligned_frames, generated_mels  # noqa: PLC0415

    path = run / f"vocoder_generated{'_forced' if teacher_forced else ''}.safetensors"
    stored = load_file(str(path)) if path.is_file() else {}
    missing = [(s, m.shape[1]) for s, m in zip(seeds, mels, strict=True) if str(s) not in stored]
    if missing:
        folder = None if weights in ("", "shipped") else Path(weights)
        new = generated_mels(folder, [s for s, _ in missing], cache_cfg.world, cache_cfg.duration,
                             [n for _, n in missing], teacher_forced=teacher_forced)
        stored |= {str(s): m for (s, _), m in zip(missing, new, strict=True)}
        save_file(stored, str(path))
    out = []
    for s, m in zip(seeds, mels, strict=True):
        g = stored[str(s)]
        if g.shape != m.shape:
            raise ValueError(f"{path} holds clip {s}'s generated mel at {tuple(g.shape)}, its cached mel is "
                             f"{tuple(m.shape)}: delete the file so it is generated again")
        out.append((g, aligned_frames(m, g)))
    return out


def clip_conditions(run: Path, cache: FeatureCache, seeds: Sequence[int], mels: list[torch.Tensor]
                    ) -> tuple[list[torch.Tensor], int]:
    """Each cached clip's vocoder condition (C, F) on its mel's frames (frieren_rt.audio.condition.event_condition
    of the detector posteriors its frame features end with), and C. The run's detector.safetensors names the
    classes, as the flow stage's traces read them."""
    from frieren_rt.audio.condition import condition_channels, detector_condition, mel_frame_times  # noqa: PLC0415

    detector = run / "detector.safetensors"
    if not detector.is_file():
        raise FileNotFoundError(f"vocoder_condition needs the run's event detector ({detector}): its cache's frame "
                                "features must carry the detector's posteriors ('frieren-rt train detector', then cache)")
    k = len(EventDetector.from_pretrained(detector).cfg.classes)
    condition = detector_condition(k)  # the cache's motion block ends with the posteriors, as the engine's features
    return ([condition(cache[s].frame_ts, cache[s].motion, mel_frame_times(m.shape[1])) for s, m in
             zip(seeds, mels, strict=True)], condition_channels(k))


@torch.no_grad()
def vae_reconstructions(vae: MelVAE, mels: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """Each (80, F) mel through the VAE (one posterior sample, whole clip, as the flow's latents are never
    exact) -> (80, F); an odd last frame keeps its true value (the VAE works on whole latents)."""
    gen = torch.Generator().manual_seed(seed + 11)
    out = []
    for mel in mels:
        n = mel.shape[1] // 2 * 2
        rec = vae.decode(vae.encode(mel[None, :, :n]).sample(gen))[0]
        out.append(torch.cat([rec, mel[:, n:]], dim=1))
    return out


# --- stage: export -----------------------------------------------------------------------------------------
EXPORT_FILES = ("base", "reflow", "distill", "single", "vae", "vocoder")
# Runs trained without the event detector have none; the offline decoder is an optional stage.
OPTIONAL_EXPORT_FILES = ("detector", "vae_offline")


# The P(event) that opens the gate, written into gate.json beside the detector it was chosen for. For the
# 12000-step detector (runs/small14) 0.9 keeps 3 of its 8 false peaks on 30 validation clips at onset F1 0.913
# vs 0.917, and the gated model's false onsets in silence fall from 8.6 % to 4.9 % there at the same F1 (test:
# unchanged, 4.2 %); MODEL_CARD "The event gate". (With runs/small11's detector, 0.3-0.7 had moved F1 by <= 0.005
# and silence by <= 0.012; 0.9 was not tried on the detectors before runs/small14.)
GATE_THRESHOLD = 0.9


def write_gate_file(folder: Path, detector_file: Path) -> Path:
    """``folder/gate.json``: the event gate's hold per detector class, the median of how long that class's
    training-split sounds stay within 30 dB of their peak (frieren_rt/windowing/gate.py; the median scored
    better than the 75th percentile and than one 0.4 s hold on validation clips, MODEL_CARD.md), and the
    P(event) that opens it (GATE_THRESHOLD)."""
    from frieren_rt.windowing.gate import class_hold_times  # noqa: PLC0415
    from frieren_rt.world.sound_pool import load_pool, sound_durations  # noqa: PLC0415

    classes = tuple(EventDetector.from_pretrained(detector_file).cfg.classes)
    holds = class_hold_times(sound_durations(load_pool(), "train"), classes, quantile=0.5)
    path = folder / "gate.json"
    path.write_text(json.dumps({"classes": list(classes), "class_hold_s": list(holds), "threshold": GATE_THRESHOLD,
                                "rule": "median of the train-split sounds' length within 30 dB of their "
                                        "peak"}, indent=1))
    return path


def stage_export(run: Path, cfg: StageConfig, time_budget_s: float | None = None, *,
                 dest: Path | None = None) -> dict[str, Any]:
    """Copy the run's trained files into the package's shipped weights folder, stored as float16 (loaded back
    into float32 modules: the < 50 MB budget of issue 3), with each file's header metadata kept."""
    from safetensors import safe_open  # noqa: PLC0415

    from frieren_rt.pipeline import default_weights_dir  # noqa: PLC0415

    dest = Path(dest) if dest is not None else default_weights_dir()
    dest.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name in OPTIONAL_EXPORT_FILES:  # one from an earlier export would not match these models
        stale = dest / f"{name}.safetensors"
        if stale.is_file() and not (run / f"{name}.safetensors").is_file():
            stale.unlink()
    for name in EXPORT_FILES + tuple(n for n in OPTIONAL_EXPORT_FILES if (run / f"{n}.safetensors").is_file()):
        src = run / f"{name}.safetensors"
        if not src.is_file():
            raise FileNotFoundError(f"{src} is missing: run 'frieren-rt train {name if name != 'base' else 'flow'}'")
        with safe_open(str(src), "pt") as f:
            meta = f.metadata() or {}
        state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(src)).items()}
        save_file(state, str(dest / src.name), metadata={**meta, "stored_dtype": "float16"})
        sizes[src.name] = (dest / src.name).stat().st_size
    history = json.loads((run / "stages.json").read_text()) if (run / "stages.json").is_file() else []
    (dest / "training.json").write_text(json.dumps(history, indent=1))
    stale_gate = dest / "gate.json"
    if (run / "detector.safetensors").is_file():
        write_gate_file(dest, run / "detector.safetensors")
    elif stale_gate.is_file():
        stale_gate.unlink()
    return {"dest": str(dest), "bytes": sizes, "total_mb": round(sum(sizes.values()) / 1e6, 2)}


STAGES = {"detector": stage_detector, "cache": stage_cache, "vae": stage_vae, "decoder": stage_decoder, "flow": stage_flow, "reflow": stage_reflow,
          "distill": stage_distill, "single": stage_single,
          "vocoder": stage_vocoder, "export": stage_export}


DEVICE_STAGES = ("flow", "reflow", "distill", "single")  # the stages that honour StageConfig.device


def run_stage(stage: str, run: Path, cfg: StageConfig, *, time_budget_s: float | None = None) -> dict[str, Any]:
    """Run one stage in ``run`` and append its result to ``run/stages.json``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {list(STAGES)}")
    if stage in DEVICE_STAGES:
        training_device(cfg)  # refuse an unusable device before any data is loaded
    elif cfg.device != "cpu":
        print(f"note: stage {stage!r} runs on the CPU; device {cfg.device!r} applies to {', '.join(DEVICE_STAGES)}",
              file=sys.stderr)
    torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)  # ReLU6/GELU nets on real images produce denormals: 1.4x on this CPU
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    result = STAGES[stage](run, cfg, time_budget_s=time_budget_s)
    log = run / "stages.json"
    history = json.loads(log.read_text()) if log.is_file() else []
    history.append({"stage": stage, "config": asdict(cfg), "result": result})
    log.write_text(json.dumps(history, indent=1))
    return result
