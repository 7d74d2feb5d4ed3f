"""Noise temperature, a run-time probe (MODEL_CARD.md, "What was tried"): does drawing each window's starting noise
at a smaller or larger scale make the one-step students' sounds recognised more often?

    python benchmarks/noise_scale.py --row 'distill:1@student/offline#generate' --scale 1 0.6 0.3 --clips 24

For each row and scale s the sampler starts from s x0 instead of x0 ~ N(0, I) (the truncation trick of GANs,
Brock et al. 2019, section 3.1, for a flow: s < 1 moves every sample toward the flow's image of the noise's
centre). No extra network pass; a probe, not a product option. Scored as frieren-rt eval scores: flux and
learned-detector onset F1, false onsets in silence, class accuracy of the classifier fitted on true audio.
"""

from __future__ import annotations

import argparse

import torch
from condition_probe import generate_and_judge  # benchmarks/condition_probe.py, beside this script


def scaled_noise(pipe, scale: float) -> None:  # noqa: ANN001
    """Make ``pipe``'s generators start their sampler from ``scale`` times the noise each window draws."""
    build = type(pipe).generator.__get__(pipe)

    def generator():  # noqa: ANN202
        gen = build()
        own = gen.sampler
        gen.sampler = lambda velocity, x0: own(velocity, scale * x0)
        return gen

    pipe.generator = generator


def main() -> None:
    from frieren_rt.eval.runner import eval_tools, parse_row, row_geometry, row_options, split_clips  # noqa: PLC0415
    from frieren_rt.pipeline import FoleyPipeline, GenerationOptions, HopGeometry  # noqa: PLC0415
    from frieren_rt.world.config import SPLITS  # noqa: PLC0415

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--row", action="append", required=True, help="an evaluation row (frieren-rt eval --row)")
    p.add_argument("--scale", type=float, nargs="+", default=[1.0, 0.6, 0.3], help="noise scales (default 1 0.6 0.3)")
    p.add_argument("--clips", type=int, default=24, help="clips (default 24)")
    p.add_argument("--split", default="test", choices=sorted(SPLITS), help="world split (default test)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tools = eval_tools()
    clips = split_clips(args.split, args.clips, progress=False)
    print(f"{args.split}, {args.clips} clips, {sum(len(c.events) for c in clips)} events")
    print("| row | noise scale | flux F1 | learned F1 | false onsets in silence | class acc |\n|---|---|---|---|---|---|")
    for spec in args.row:
        row = parse_row(spec)
        options = row_options(row, row_geometry(row, HopGeometry(hop_s=GenerationOptions.hop_s, lookahead=0,
                                                                 revise_lookahead=False)))
        pipe = FoleyPipeline.from_dir(args.weights, options)
        features = [pipe.frame_features(c.frames) for c in clips]
        for scale in args.scale:
            scaled_noise(pipe, scale)
            judged = generate_and_judge(pipe, clips, features, tools)  # features computed once per clip
            f = judged["flux"]
            print(f"| {spec} | {scale:g} | {f['f1']:.3f} | {judged['learned']['f1']:.3f} | "
                  f"{f['false_onset_rate_in_silence']:.3f} | {judged['class']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
