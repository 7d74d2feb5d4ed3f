"""Custom evaluation rows from the command line (frieren_rt/eval/runner.py parse_row)."""

from __future__ import annotations

import pytest

from frieren_rt.eval.runner import DEFAULT_ROWS, QUICK_ROWS, EvalRow, parse_row, row_geometry


def test_a_row_spec_names_variant_steps_and_guidance():
    assert parse_row("distill:1") == EvalRow("distill, Euler 1", "distill", 1)
    assert parse_row("base:25:2") == EvalRow("base, Euler 25, CFG 2", "base", 25, cfg=2.0)
    assert parse_row("base:25:4.5:1.5") == EvalRow("base, Euler 25, CFG 4.5, tail CFG 1.5", "base", 25, cfg=4.5,
                                                   tail_cfg=1.5)


def test_a_row_spec_can_choose_its_vocoder():
    assert parse_row("distill:1@hifigan") == EvalRow("distill, Euler 1, hifigan", "distill", 1, vocoder="hifigan")
    assert parse_row("single:1:1@student").vocoder == "student"


def test_a_row_spec_can_choose_its_vae_decoder():
    row = parse_row("distill:1@student/offline")  # frieren-rt generate's vocoder and decoder
    assert (row.vocoder, row.decoder, row.name) == ("student", "offline", "distill, Euler 1, student after the "
                                                    "offline decoder")
    assert parse_row("distill:1@hifigan/streaming").decoder == "streaming"
    assert parse_row("distill:1").decoder is None  # the pipeline's "auto"


def test_a_row_spec_can_run_at_a_products_own_hop_and_lookahead():
    from frieren_rt.pipeline import GENERATE_GEOMETRY, HopGeometry
    from frieren_rt.streaming.builders import EngineOptions

    default = HopGeometry(hop_s=0.2, lookahead=0, revise_lookahead=False)  # the evaluation's --hop / --lookahead
    row = parse_row("distill:1@student/offline#generate")
    assert row.geometry == "generate" and row.name.endswith(", as generate runs")
    assert row_geometry(row, default) == GENERATE_GEOMETRY
    engine = row_geometry(parse_row("single:1#engine"), default)
    e = EngineOptions()  # serve's defaults, not a second copy of them
    assert (engine.hop_s, engine.lookahead, engine.revise_lookahead) == (e.hop_s, e.lookahead, e.revise_lookahead)
    assert row_geometry(parse_row("distill:1"), default) == default


def test_a_rows_options_carry_its_choices_and_its_geometry():
    from frieren_rt.eval.runner import row_options
    from frieren_rt.pipeline import GENERATE_GEOMETRY, HopGeometry

    row = parse_row("distill:1:3@student/offline#generate")
    o = row_options(row, row_geometry(row, HopGeometry(hop_s=0.2, lookahead=0, revise_lookahead=False)))
    assert (o.variant, o.steps, o.cfg, o.vocoder, o.decoder, o.event_gate) == ("distill", 1, 3.0, "student", "offline",
                                                                                True)
    assert (o.hop_s, o.lookahead, o.revise_lookahead) == (GENERATE_GEOMETRY.hop_s, GENERATE_GEOMETRY.lookahead,
                                                          GENERATE_GEOMETRY.revise_lookahead)
    plain = row_options(parse_row("base:25"), HopGeometry(hop_s=0.2, lookahead=0, revise_lookahead=False),
                        vocoder="hifigan")  # a row naming no vocoder takes the evaluation's
    assert (plain.vocoder, plain.decoder, plain.hop_s, plain.lookahead) == ("hifigan", "auto", 0.2, 0)


def test_the_reference_rows_can_be_asked_for_by_name():
    assert parse_row("truth") == DEFAULT_ROWS[0] and parse_row("truth").variant is None
    assert parse_row("mismatched") == DEFAULT_ROWS[1] and parse_row("mismatched").variant == "mismatched"


def test_the_tables_product_rows_run_as_the_products_ship():
    by_geometry = {}
    for row in DEFAULT_ROWS:
        by_geometry.setdefault(row.geometry, []).append(row)
    assert {(r.variant, r.vocoder, r.decoder) for r in by_geometry["generate"]} == {
        ("distill", "student", "offline"), ("distill", "hifigan", None)}  # generate's default, then --vocoder hifigan
    assert {r.variant for r in by_geometry["engine"]} == {"single", "distill"}
    assert all(r in QUICK_ROWS for r in by_geometry["engine"] + by_geometry["generate"])


@pytest.mark.parametrize("spec", ["distill", "teacher:1", "base:x", "base:25:a", "base:25:4.5:1.5:9",
                                  "distill:1@griffinlim", "distill:1@student/wide", "distill:1@/offline",
                                  "distill:1#offline", "single:1@student#"])
def test_a_malformed_row_spec_says_the_format(spec):
    with pytest.raises(ValueError, match="VARIANT:STEPS"):
        parse_row(spec)


def test_eval_hands_its_hop_and_lookahead_to_the_generated_rows_and_refuses_bad_values(monkeypatch, capsys):  # noqa: ANN001
    from frieren_rt.cli import main
    from frieren_rt.eval import runner

    seen = {}

    def fake_evaluate(weights, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.update(kwargs)
        return {"rows": {}}

    monkeypatch.setattr(runner, "evaluate", fake_evaluate)
    monkeypatch.setattr(runner, "markdown_table", lambda report: "")
    assert main(["eval", "--clips", "2", "--hop", "0.1", "--row", "distill:1", "-o", "/dev/null"]) == 0
    assert seen["hop_s"] == 0.1  # the streaming engine's 4-latent hop
    assert main(["eval", "--clips", "2", "--row", "distill:1", "-o", "/dev/null"]) == 0
    assert seen["hop_s"] is None  # offline generation's default
    assert main(["eval", "--clips", "2", "--hop", "0", "-o", "/dev/null"]) != 0
    assert "--hop must be > 0" in capsys.readouterr().err
    assert seen["lookahead"] == 0  # as the streaming engine decodes, by default
    assert main(["eval", "--clips", "2", "--lookahead", "full", "--row", "distill:1", "-o", "/dev/null"]) == 0
    assert seen["lookahead"] is None  # the decoder's and vocoder's whole right context, as generate
    assert main(["eval", "--clips", "2", "--lookahead", "2", "--row", "distill:1", "-o", "/dev/null"]) == 0
    assert seen["lookahead"] == 2 and seen["revise_lookahead"] is False
    assert main(["eval", "--clips", "2", "--lookahead", "5", "--revise-lookahead", "--row", "distill:1",
                 "-o", "/dev/null"]) == 0
    assert seen["lookahead"] == 5 and seen["revise_lookahead"] is True
    assert main(["eval", "--clips", "2", "--lookahead", "-1", "-o", "/dev/null"]) != 0
    assert "--lookahead must be a whole number of latents or 'full'" in capsys.readouterr().err


def test_split_clips_renders_the_first_clips_of_a_split_and_refuses_an_unknown_one() -> None:
    from frieren_rt.eval.runner import split_clips

    assert split_clips("test", 0) == []
    with pytest.raises(ValueError, match="unknown split 'nope'"):
        split_clips("nope", 1)


def test_the_audio_stack_rows_hand_a_conditioned_vocoder_the_clips_events_on_every_mel_frame():
    from types import SimpleNamespace

    import numpy as np
    import torch

    from frieren_rt.audio.condition import detector_condition
    from frieren_rt.eval.runner import clip_condition, reconstruct

    clip = SimpleNamespace(frames=np.zeros((50, 4, 4, 3), np.uint8), fps=25.0, audio=np.zeros(2 * 22050, np.float32))
    features = torch.zeros(50, 6)  # [2 other columns | 3 class posteriors | no event]
    features[:, -1] = 1.0
    features[20, -1], features[20, 3] = 0.0, 1.0  # class 1 on frame 20 (0.8 s)
    assert clip_condition(None, None, clip) is None  # a vocoder that reads the mel alone
    cond = clip_condition(detector_condition(3), features, clip)
    assert cond.shape == (4, 2 * 22050 // 256)  # P(event) + 3 holds on each of the audio's mel frames
    on = torch.nonzero(cond[0]).flatten()
    assert on.min() == int(0.8 * 22050 / 256 - 0.5) + 1 and on.max() == int(0.84 * 22050 / 256 - 0.5)
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, mel):  # noqa: ANN001, ANN202
            seen.append(mel)
            return torch.zeros(mel.shape[0], mel.shape[-1] * 256)

    reconstruct(np.random.default_rng(0).standard_normal(2 * 22050).astype(np.float32) * 0.1, Spy(), None, cond)
    assert seen[0].shape[1] == 80 + 4 and torch.equal(seen[0][0, 80:], cond[:, : seen[0].shape[-1]])


def test_a_spec_runs_at_its_products_geometry_or_the_evaluations_own():
    from frieren_rt.eval.runner import parse_row, row_options, spec_options
    from frieren_rt.pipeline import GENERATE_GEOMETRY, GenerationOptions

    spec = "distill:1@student/offline#generate"
    assert spec_options(spec) == row_options(parse_row(spec), GENERATE_GEOMETRY)
    plain = spec_options("base:25:3")
    assert (plain.variant, plain.steps, plain.cfg) == ("base", 25, 3.0)
    assert (plain.hop_s, plain.lookahead, plain.revise_lookahead) == (GenerationOptions.hop_s, 0, False)
