"""Noise temperature, a run-time probe (MODEL_CARD.md, "What was tried"): does drawing each window's starting noise
at a smaller or larger scale make the one-step students' sounds recognised more often?

    python benchmarks/noise_scale.py --row 'distill:1@student/offline#generate' --scale 1 0.6 0.3 --clips 24

For each row and scale s the sampler starts from s x0 instead of x0 ~ N(0, I) (the truncation trick of GANs,
Brock et al. 2019, section 3.1, for a flow: s < 1 moves every sample toward the flow's image of the noise's
centre). No extra network pass; a probe, not a product option. Scored as frieren-rt eval scores: flux and
learned-detector onset F1, false onsets in silence, class accuracy of the classifier fitted on true audio.
"""

from __future__ import annotations

from condition_probe import sweep_parser, sweep_rows  # benchmarks/condition_probe.py, beside this script


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
    args = sweep_parser(__doc__, "scale", [1.0, 0.6, 0.3], "noise scales (default 1 0.6 0.3)").parse_args()
    sweep_rows(args, "noise scale", args.scale, lambda pipe: lambda scale: scaled_noise(pipe, scale))


if __name__ == "__main__":
    main()
