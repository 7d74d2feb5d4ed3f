"""What does decoding a hop without its right context cost? The TRUE audio's latents (the VAE's posterior mean)
through the streaming engine's own decode path (frieren_rt.windowing: each hop decoded with its left context and
``--lookahead`` latents past its end, seams crossfaded), against one decode of the whole clip, scored by the
evaluation's metrics (onset F1 by both detectors, class accuracy, FD; frieren_rt/eval).

The VAE decoder and the student vocoder read about 5 + 3 latents to the right of each sample; a hop decoded with
zeros there (lookahead 0, the engine's default) is not the whole-clip decode. MODEL_CARD.md, "What was tried".

    python benchmarks/decode_lookahead.py --clips 24 --hop 0.1 --lookahead 0 1 2 3 5 8

Needs the asset cache (``frieren-rt assets fetch``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from frieren_rt.audio import LogMel
from frieren_rt.eval.runner import _metrics, _summarise, eval_tools, reconstruct, split_clips, true_references
from frieren_rt.pipeline import FoleyPipeline, GenerationOptions
from frieren_rt.world.config import SPLITS


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--split", choices=list(SPLITS), default="test")
    p.add_argument("--clips", type=int, default=24, help="clips of the split (10 s each; default 24)")
    p.add_argument("--hop", type=float, default=0.1, help="hop seconds (default 0.1: the streaming engine's)")
    p.add_argument("--lookahead", type=int, nargs="+", default=[0, 1, 2, 3, 5, 8], help="latents ahead")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


@torch.no_grad()
def chunked_decode(pipe: FoleyPipeline, audio: np.ndarray, duration_s: float) -> np.ndarray:
    """True audio -> mel -> posterior-mean latents, committed hop by hop into the pipeline's generator and
    decoded as the engine decodes them -> (round(duration_s * rate),) audio on the clip's timeline."""
    gen = pipe.generator()
    g = gen.geometry
    mel = LogMel()(torch.from_numpy(audio).float())[None]
    mel = mel[..., : mel.shape[-1] // 2 * 2]  # whole latents (2x temporal downsampling)
    z = pipe.vae.to_flow(pipe.vae.encode(mel).mean)[0]  # (C, L)
    z = torch.cat([z, z[:, -1:].expand(-1, g.lookahead_latents + g.hop_latents)], dim=1)  # past the clip's end
    state = gen.new_stream(start_time=0.0, seed=0)
    n = round(duration_s * g.model_sample_rate)
    out = []
    for _ in range(math.ceil((n + g.lookahead_latents * g.samples_per_latent) / g.hop_samples)):
        at = state.emitted_latents
        gen.commit(state, z[:, at : at + g.hop_latents])
        out += gen.stitch([state], gen.decode([state]))
    out.append(gen.flush(state))
    delay = gen.stream_delay_samples
    return torch.cat(out)[delay : delay + n].numpy()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    tools = eval_tools()
    clips = split_clips(args.split, args.clips)
    _, true_emb, true_post = true_references(clips, tools)
    base = FoleyPipeline.from_dir(args.weights, GenerationOptions(vocoder="student", decoder="streaming"))
    rows = {"whole-clip decode": [_metrics(reconstruct(c.audio, base.vocoder, base.vae), c, tools)
                                  for c in tqdm(clips, desc="whole")]}
    for ahead in args.lookahead:
        pipe = base.with_options(GenerationOptions(vocoder="student", decoder="streaming", hop_s=args.hop,
                                                   lookahead=ahead))
        rows[f"hop {args.hop:g} s, lookahead {ahead}"] = [_metrics(chunked_decode(pipe, c.audio, c.duration), c, tools)
                                                        for c in tqdm(clips, desc=f"lookahead {ahead}")]
    print(f"\n{args.split}, {len(clips)} clips, true latents through the streaming decoder and student vocoder\n"
          "| decode | onset F1 | onset F1, learned | class acc | FD |\n|---|---|---|---|---|")
    for name, per_clip in rows.items():
        r = _summarise(per_clip, true_emb, true_post)
        print(f"| {name} | {r['onset_f1']:.3f} | {r['learned_onset_f1']:.3f} | {r['class_acc']:.3f} | {r['fd']:.1f} |")


if __name__ == "__main__":
    main()
