"""Custom evaluation rows from the command line (frieren_rt/eval/runner.py parse_row)."""

from __future__ import annotations

import pytest

from frieren_rt.eval.runner import EvalRow, parse_row


def test_a_row_spec_names_variant_steps_and_guidance():
    assert parse_row("distill:1") == EvalRow("distill, Euler 1", "distill", 1)
    assert parse_row("base:25:2") == EvalRow("base, Euler 25, CFG 2", "base", 25, cfg=2.0)
    assert parse_row("base:25:4.5:1.5") == EvalRow("base, Euler 25, CFG 4.5, tail CFG 1.5", "base", 25, cfg=4.5,
                                                   tail_cfg=1.5)


def test_a_row_spec_can_choose_its_vocoder():
    assert parse_row("distill:1@hifigan") == EvalRow("distill, Euler 1, hifigan", "distill", 1, vocoder="hifigan")
    assert parse_row("single:1:1@student").vocoder == "student"


def test_a_row_spec_can_choose_its_vae_decoder():
    row = parse_row("distill:1@student/offline")  # frieren-rt generate's default
    assert (row.vocoder, row.decoder, row.name) == ("student", "offline", "distill, Euler 1, student after the "
                                                    "offline decoder")
    assert parse_row("distill:1@hifigan/streaming").decoder == "streaming"
    assert parse_row("distill:1").decoder is None  # the pipeline's "auto"


@pytest.mark.parametrize("spec", ["distill", "teacher:1", "base:x", "base:25:a", "base:25:4.5:1.5:9",
                                  "distill:1@griffinlim", "distill:1@student/wide", "distill:1@/offline"])
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
