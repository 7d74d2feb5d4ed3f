"""``frieren-rt eval``: the paper's Table 2 on the world's test split, plus a ceiling and a floor.

Rows: the base, reflow and reflow + distill models at 1 / 5 / 25 Euler steps and base with Dopri5 (Frieren,
table 2), the single-pass guidance-distilled student (beyond Frieren), the true audio (the ceiling) and true
audio of a mismatched clip (a floor: proof that each metric can fail). Metrics (issue 3, "Evaluation"):
onset sync at +-40 ms (EBU R37) by two detectors (the spectral-flux one of onsets.py and the learned one of
onset_net.py, fitted on true train-split audio), class accuracy from a classifier fitted on true train-split audio, FD and a
paired KL on embeddings of the pretrained aisfx network, and generation time per second of audio by stage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from frieren_rt.pipeline import GENERATE_GEOMETRY, GenerationOptions, HopGeometry

__all__ = ["EvalRow", "DEFAULT_ROWS", "eval_tools", "evaluate", "markdown_table", "row_options", "split_clips"]


@dataclass(frozen=True)
class EvalRow:
    """name: table label; variant: shipped model file (None for the true / mismatched rows); steps; sampler;
    cfg (None = the variant's default); event_gate: the engine's event gate (frieren_rt/windowing/gate.py);
    tail_cfg: the guidance scale on sounds' tails (GenerationOptions.tail_cfg); vocoder: "student" or "hifigan"
    for this row (None: the evaluation's --vocoder); decoder: "streaming" or "offline" VAE decoder
    (GenerationOptions.decoder; None: "auto", the offline one with HiFi-GAN universal); geometry: a product's own
    hop and look-ahead for this row, "engine" (``serve``'s defaults, EngineOptions) or "generate"
    (pipeline.GENERATE_GEOMETRY), so the table shows what each product ships (None: the evaluation's --hop and
    --lookahead)."""

    name: str
    variant: str | None
    steps: int | None = None
    sampler: str = "euler"
    cfg: float | None = None
    event_gate: bool = True
    tail_cfg: float | None = None
    vocoder: str | None = None
    decoder: str | None = None
    geometry: str | None = None


def row_geometry(row: EvalRow, default: HopGeometry) -> HopGeometry:
    """The hop and look-ahead a generated row runs with: its product's (``row.geometry``) or ``default``."""
    if row.geometry is None:
        return default
    if row.geometry == "generate":
        return GENERATE_GEOMETRY
    if row.geometry == "engine":
        from frieren_rt.streaming.builders import EngineOptions  # noqa: PLC0415

        e = EngineOptions()
        return HopGeometry(hop_s=e.hop_s, lookahead=e.lookahead, revise_lookahead=e.revise_lookahead,
                           lookahead_seam=e.lookahead_seam)
    raise ValueError(f"unknown row geometry {row.geometry!r}; choose engine or generate")


def row_options(row: EvalRow, geometry: HopGeometry, *, vocoder: str = "auto") -> GenerationOptions:
    """The GenerationOptions a generated row runs with at ``geometry`` (:func:`row_geometry`); ``vocoder``: the
    evaluation's own, for a row that names none."""
    return GenerationOptions(variant=row.variant, steps=row.steps, sampler=row.sampler, cfg=row.cfg,
                             vocoder=row.vocoder or vocoder, event_gate=row.event_gate, tail_cfg=row.tail_cfg,
                             decoder=row.decoder or "auto", lookahead=geometry.lookahead,
                             revise_lookahead=geometry.revise_lookahead, lookahead_seam=geometry.lookahead_seam,
                             hop_s=geometry.hop_s)


def spec_options(spec: str) -> GenerationOptions:
    """The GenerationOptions of the row ``spec`` (:func:`parse_row`) as ``frieren-rt eval`` runs it by default: its
    product's geometry, or the evaluation's own (the offline 0.2 s hop, no look-ahead). What the benchmarks' row
    probes generate with."""
    row = parse_row(spec)
    return row_options(row, row_geometry(row, HopGeometry(hop_s=GenerationOptions.hop_s, lookahead=0,
                                                          revise_lookahead=False)))


DEFAULT_ROWS: tuple[EvalRow, ...] = (
    EvalRow("ground truth (ceiling)", None),
    EvalRow("mismatched clip (floor)", "mismatched"),
    EvalRow("true audio through VAE + vocoder (audio-stack ceiling)", "reconstruction"),
    # The offline vocoder brings the offline VAE decoder when the folder has one (pipeline.vae_file).
    EvalRow("true audio through VAE (offline decoder) + HiFi-GAN universal (offline audio-stack ceiling)",
            "reconstruction", vocoder="hifigan"),
    EvalRow("true audio through VAE (offline decoder) + student vocoder (generate's audio-stack ceiling)",
            "reconstruction", vocoder="student", decoder="offline"),
    EvalRow("base, Euler 1", "base", 1), EvalRow("base, Euler 5", "base", 5), EvalRow("base, Euler 25", "base", 25),
    EvalRow("base, Dopri5", "base", None, "dopri5"),
    EvalRow("reflow, Euler 1", "reflow", 1), EvalRow("reflow, Euler 5", "reflow", 5),
    EvalRow("reflow, Euler 25", "reflow", 25),
    EvalRow("reflow + distill, Euler 1", "distill", 1),
    EvalRow("single-pass student, Euler 1", "single", 1),
    # The products as they ship: the live engine (serve's hop and revised look-ahead; the single-pass student is
    # its default model) and offline generation (frieren-rt generate: its hop and look-ahead, the student vocoder
    # after the offline decoder), then generate's --vocoder hifigan, the pretrained teacher (too slow to stream).
    EvalRow("single-pass student, Euler 1, as the engine streams (serve's defaults)", "single", 1, geometry="engine"),
    EvalRow("reflow + distill, Euler 1, as the engine streams (serve's defaults)", "distill", 1, geometry="engine"),
    EvalRow("reflow + distill, Euler 1, as generate runs (its defaults: offline decoder + student)", "distill", 1,
            vocoder="student", decoder="offline", geometry="generate"),
    EvalRow("reflow + distill, Euler 1, as generate --vocoder hifigan runs (HiFi-GAN universal)", "distill", 1,
            vocoder="hifigan", geometry="generate"),
    EvalRow("reflow + distill, Euler 1, no event gate", "distill", 1, event_gate=False),
    EvalRow("single-pass student, Euler 1, no event gate", "single", 1, event_gate=False),
)
# The reference rows by their --row names (parse_row).
REFERENCE_ROWS: dict[str, EvalRow] = {"truth": DEFAULT_ROWS[0], "mismatched": DEFAULT_ROWS[1]}
QUICK_ROWS = tuple(r for r in DEFAULT_ROWS if r.name in {
    "ground truth (ceiling)", "mismatched clip (floor)", "true audio through VAE + vocoder (audio-stack ceiling)",
    "true audio through VAE (offline decoder) + HiFi-GAN universal (offline audio-stack ceiling)",
    "true audio through VAE (offline decoder) + student vocoder (generate's audio-stack ceiling)",
    "single-pass student, Euler 1, as the engine streams (serve's defaults)",
    "reflow + distill, Euler 1, as the engine streams (serve's defaults)",
    "reflow + distill, Euler 1, as generate runs (its defaults: offline decoder + student)",
    "reflow + distill, Euler 1, as generate --vocoder hifigan runs (HiFi-GAN universal)", "base, Euler 1", "base, Euler 25", "reflow, Euler 1",
    "reflow + distill, Euler 1", "single-pass student, Euler 1", "reflow + distill, Euler 1, no event gate",
    "single-pass student, Euler 1, no event gate"})


def eval_tools(train_clips: int = 200) -> dict:
    """The judges every row shares: the event classifier fitted on the TRUE audio of the first ``train_clips``
    train-split clips, the pretrained aiSFX network and the shipped learned onset detector."""
    from frieren_rt.eval.aisfx import Aisfx  # noqa: PLC0415
    from frieren_rt.eval.classify import fit_event_classifier  # noqa: PLC0415
    from frieren_rt.eval.onset_net import LearnedOnsetDetector  # noqa: PLC0415
    from frieren_rt.eval.truth import true_audio  # noqa: PLC0415
    from frieren_rt.world.config import SPLITS  # noqa: PLC0415

    train = [true_audio(s) for s in tqdm(list(SPLITS["train"])[:train_clips], desc="classifier data")]
    return {"classifier": fit_event_classifier(train), "aisfx": Aisfx.from_pretrained(),
            "onsets": LearnedOnsetDetector.load()}


def _metrics(audio: np.ndarray, clip, tools) -> dict:
    from frieren_rt.eval.classify import class_accuracy, clip_posterior  # noqa: PLC0415
    from frieren_rt.eval.onsets import detect_onsets, onset_sync  # noqa: PLC0415

    sync = onset_sync(detect_onsets(audio), clip.events, clip.silent_spans)
    learned = onset_sync(tools["onsets"](audio), clip.events, clip.silent_spans)
    acc = class_accuracy(tools["classifier"], audio, clip.events)
    return {"sync": sync, "learned": learned, "acc": acc, "n_events": len(clip.events),
            "emb": tools["aisfx"].embed_clip(audio, clip.sample_rate).numpy(),
            "post": clip_posterior(tools["classifier"], audio, clip.events)}


def true_references(clips: Sequence, tools: dict) -> tuple[list[dict], np.ndarray, torch.Tensor]:
    """The true audio's per-clip metrics, and the two things every row is compared with: its aiSFX embeddings
    (C, E) for FD and its class posteriors (C, K) for KL."""
    truth = [_metrics(c.audio, c, tools) for c in clips]
    return truth, np.stack([t["emb"] for t in truth]), torch.stack([t["post"] for t in truth])


def _summarise(per_clip: list[dict], true_emb: np.ndarray, true_post: torch.Tensor) -> dict:
    from frieren_rt.eval.distances import frechet_distance, paired_kl  # noqa: PLC0415
    from frieren_rt.eval.onsets import pool_sync  # noqa: PLC0415

    sync = pool_sync([c["sync"] for c in per_clip])
    learned = pool_sync([c["learned"] for c in per_clip])
    n = sum(c["n_events"] for c in per_clip)
    acc = sum(c["acc"] * c["n_events"] for c in per_clip if c["n_events"]) / max(n, 1)
    emb = np.stack([c["emb"] for c in per_clip])
    post = torch.stack([c["post"] for c in per_clip])
    return {"onset_f1": sync["f1"], "mean_abs_offset_ms": sync["mean_abs_offset_ms"],
            "false_onsets_in_silence": sync["false_onset_rate_in_silence"], "class_acc": acc,
            "learned_onset_f1": learned["f1"], "learned_mean_abs_offset_ms": learned["mean_abs_offset_ms"],
            "learned_false_onsets_in_silence": learned["false_onset_rate_in_silence"],
            "onset_precision_recall": [sync["precision"], sync["recall"]],
            "learned_onset_precision_recall": [learned["precision"], learned["recall"]],
            "fd": frechet_distance(emb, true_emb), "kl": paired_kl(true_post, post)}


def parse_row(spec: str) -> EvalRow:
    """``VARIANT:STEPS[:CFG[:TAIL_CFG]][@VOCODER[/DECODER]][#GEOMETRY]`` (e.g. ``distill:1``, ``base:25:2``,
    ``base:25:4.5:1.5``, ``distill:1@hifigan``, ``distill:1@student/offline#generate``: generate's default,
    ``single:1#engine``: serve's) -> an Euler row with the event gate on, named after the spec; ``truth`` and
    ``mismatched``: the table's ceiling and floor rows, so a run of chosen rows can carry its own references;
    ValueError saying the format otherwise."""
    from frieren_rt.pipeline import VARIANTS  # noqa: PLC0415

    if spec in REFERENCE_ROWS:
        return REFERENCE_ROWS[spec]
    full = spec
    spec, hash_, geometry = spec.partition("#")
    spec, _, audio = spec.partition("@")
    vocoder, _, decoder = audio.partition("/")
    parts = spec.split(":")
    try:
        if (not 2 <= len(parts) <= 4 or parts[0] not in VARIANTS or vocoder not in ("", "student", "hifigan")
                or decoder not in ("", "streaming", "offline") or (decoder and not vocoder)
                or geometry not in (("engine", "generate") if hash_ else ("",))):
            raise ValueError
        steps = int(parts[1])
        cfg, tail = (float(x) if x else None for x in (parts[2:] + ["", ""])[:2])
    except ValueError:
        raise ValueError(f"row {full!r}: expected "
                         f"VARIANT:STEPS[:CFG[:TAIL_CFG]][@student|@hifigan[/streaming|/offline]][#engine|#generate] "
                         f"with VARIANT one of {list(VARIANTS)}, e.g. distill:1, base:25:4.5:1.5, distill:1@hifigan, "
                         f"single:1#engine or distill:1@student/offline#generate; or one of {list(REFERENCE_ROWS)}"
                         ) from None
    name = f"{parts[0]}, Euler {steps}" + ("" if cfg is None else f", CFG {cfg:g}") + (
        "" if tail is None else f", tail CFG {tail:g}") + (f", {vocoder}" if vocoder else "") + (
        f" after the {decoder} decoder" if decoder else "") + (
        {"engine": ", as the engine streams", "generate": ", as generate runs"}.get(geometry, ""))
    return EvalRow(name, parts[0], steps, cfg=cfg, tail_cfg=tail, vocoder=vocoder or None, decoder=decoder or None,
                   geometry=geometry or None)


def split_clips(split: str, clips: int, *, progress: bool = True) -> list:
    """The first ``clips`` world clips of ``split`` (config.SPLITS), rendered, with a progress bar."""
    from frieren_rt.world import render_clip  # noqa: PLC0415
    from frieren_rt.world.config import SPLITS  # noqa: PLC0415

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    seeds = list(SPLITS[split])[:clips]
    return [render_clip(s) for s in tqdm(seeds, desc=f"{split} clips", disable=not progress)]


def evaluate(weights: Path | None, *, clips: int = 10, rows: Sequence[EvalRow] = DEFAULT_ROWS,
             train_clips: int = 200, vocoder: str = "auto", out: Path | None = None, split: str = "test",
             hop_s: float | None = None, lookahead: int | None = 0, revise_lookahead: bool = False,
             lookahead_seam: bool = False) -> dict:
    """Run ``rows`` on the first ``clips`` world clips of ``split`` (test; train checks fitting rather than
    generalisation); returns (and writes to ``out``) a JSON dict. ``hop_s``: the generated rows' hop (None:
    GenerationOptions' offline 0.2 s; the streaming engine runs 0.1); ``lookahead``: GenerationOptions.lookahead
    (0 as the streaming engine; None as ``frieren-rt generate``); ``revise_lookahead``: the vector field generates
    the look-ahead again at the next hop (GenerationOptions.revise_lookahead); ``lookahead_seam``: the seam
    crossfade in the look-ahead (GenerationOptions.lookahead_seam). Rows with a ``geometry`` use their product's."""
    from frieren_rt.pipeline import FoleyPipeline  # noqa: PLC0415
    from frieren_rt.world.config import SPLITS  # noqa: PLC0415

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    default_geometry = HopGeometry(hop_s=GenerationOptions.hop_s if hop_s is None else hop_s, lookahead=lookahead,
                                   revise_lookahead=revise_lookahead, lookahead_seam=lookahead_seam)
    tools = eval_tools(train_clips)
    test = split_clips(split, clips)
    truth, true_emb, true_post = true_references(test, tools)
    results, pipes = {}, {}
    for row in rows:
        if row.variant is None:
            per_clip, timing = truth, None
        elif row.variant == "mismatched":  # each clip judged with the next clip's true audio
            per_clip = [_metrics(test[(i + 1) % len(test)].audio, c, tools) for i, c in enumerate(test)]
            timing = None
        elif row.variant == "reconstruction":  # what the generated rows could reach with a perfect flow model
            pipe = FoleyPipeline.from_dir(weights, GenerationOptions(vocoder=row.vocoder or vocoder,
                                                                     decoder=row.decoder or "auto"))
            condition = pipe.vocoder_condition()
            per_clip = [_metrics(reconstruct(c.audio, pipe.vocoder, pipe.vae, clip_condition(
                condition, pipe.frame_features(c.frames) if condition else None, c)), c, tools)
                        for c in tqdm(test, desc=row.name)]
            timing = None
        else:
            geom = row_geometry(row, default_geometry)
            options = row_options(row, geom, vocoder=vocoder)
            key = (row.variant, options.vocoder, options.decoder)
            if key not in pipes:
                pipes[key] = FoleyPipeline.from_dir(weights, options)
            pipe = pipes[key].with_options(options)
            per_clip, stages, seconds = [], {}, 0.0
            for clip in tqdm(test, desc=row.name):
                t0 = time.perf_counter()
                audio = pipe.generate(clip.frames, np.arange(len(clip.frames)) / clip.fps, clip.duration,
                                      seed=clip.seed, timings=stages)
                seconds += time.perf_counter() - t0
                per_clip.append(_metrics(audio, clip, tools))
            audio_s = sum(c.duration for c in test)
            timing = {"total_s_per_audio_s": seconds / audio_s,
                      **{f"{k}_s_per_audio_s": v / audio_s for k, v in stages.items()}}
        results[row.name] = {"row": asdict(row), **_summarise(per_clip, true_emb, true_post), "timing": timing}
        if row.variant not in (None, "mismatched", "reconstruction"):
            results[row.name]["geometry"] = asdict(geom)
    report = {"clips": clips, "split": split, "hop_s": hop_s, "lookahead": lookahead, "revise_lookahead": revise_lookahead, "lookahead_seam": lookahead_seam, "test_seeds": [c.seed for c in test], "train_clips_for_classifier": train_clips,
              "vocoder": vocoder, "rows": results}
    if out is not None:
        Path(out).write_text(json.dumps(report, indent=1, default=float))
    return report


@torch.no_grad()
def clip_condition(condition, features: torch.Tensor | None, clip) -> torch.Tensor | None:  # noqa: ANN001
    """What a conditioned vocoder (frieren_rt.audio.condition) reads beside every mel frame of ``clip``'s true
    audio: ``condition`` (a VocoderCondition, None: a vocoder that reads the mel alone, then None) of the clip's
    frame ``features`` at its frame times."""
    from frieren_rt.audio.condition import mel_frame_times  # noqa: PLC0415
    from frieren_rt.audio.mel import num_frames  # noqa: PLC0415

    if condition is None:
        return None
    times = torch.arange(len(clip.frames), dtype=torch.float64) / clip.fps
    return condition(times, features, mel_frame_times(num_frames(len(clip.audio))))


def reconstruct(audio: np.ndarray, vocoder, vae=None, cond: torch.Tensor | None = None) -> np.ndarray:
    """True audio (S,) -> log-mel -> [VAE posterior mean -> decode] -> vocoder -> (S,): the audio stack alone
    (no VAE: the vocoder alone, benchmarks/stack_ceiling.py). ``cond`` (C, >= M): the condition a vocoder with
    ``cond_channels`` reads beside the mel (frieren_rt.audio.condition), on the mel's frames."""
    from frieren_rt.audio import LogMel  # noqa: PLC0415

    mel = LogMel()(torch.from_numpy(audio).float()).unsqueeze(0)  # (1, 80, M)
    mel = mel[..., : mel.shape[-1] // 2 * 2]  # whole latents (2x temporal downsampling)
    if vae is not None:
        mel = vae.decode(vae.encode(mel).mean)
    if cond is not None:
        mel = torch.cat([mel, cond[None, :, : mel.shape[-1]].to(mel.dtype)], dim=1)
    wave = vocoder(mel).reshape(-1)
    out = np.zeros_like(audio)
    n = min(len(out), wave.numel())
    out[:n] = wave[:n].numpy()
    return out


def markdown_table(report: dict) -> str:
    """The report as the MODEL_CARD / README table."""
    head = ("| model | onset F1 (+-40 ms) | mean abs offset (ms) | false onsets in silence | onset F1, learned detector "
            "| false onsets in silence, learned | class acc | FD (aisfx) | KL | gen. s per audio s |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name, r in report["rows"].items():
        t = r["timing"]["total_s_per_audio_s"] if r["timing"] else float("nan")
        lines.append(f"| {name} | {r['onset_f1']:.3f} | {r['mean_abs_offset_ms']:.1f} | "
                     f"{r['false_onsets_in_silence']:.3f} | {r.get('learned_onset_f1', float('nan')):.3f} | "
                     f"{r.get('learned_false_onsets_in_silence', float('nan')):.3f} | {r['class_acc']:.3f} | {r['fd']:.2f} | {r['kl']:.3f} | "
                     + ("-" if r["timing"] is None else f"{t:.3f}") + " |")
    return "\n".join(lines)
