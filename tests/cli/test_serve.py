"""The engine options shared by serve, demo, live and profile (frieren_rt.cli.serve)."""

import argparse

import pytest

from frieren_rt.cli.serve import add_engine_args, engine_factory


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_engine_args(p)
    return p.parse_args(["--random-model", "--device", "cpu", *argv])


def test_budget_sessions_sets_the_batch_every_sessions_latency_covers() -> None:
    engine = engine_factory(_args("--budget-sessions", "2"))()
    try:
        assert engine.config.budget_sessions == 2
        assert 2 in engine.batch_calibration_s  # the 2-session batch was measured at start-up
        assert engine.latency_s == engine.latency_for(2) >= engine.latency_budget_for(1).hop
    finally:
        engine.close()
    default = engine_factory(_args())()
    try:
        assert default.config.budget_sessions == 1
    finally:
        default.close()


def test_budget_sessions_below_one_is_refused_with_the_option_name() -> None:
    with pytest.raises(ValueError, match="--budget-sessions"):
        engine_factory(_args("--budget-sessions", "0"))


@pytest.mark.parametrize(("argv", "ahead", "revise"), [
    ((), 1, True),  # the default: one latent, generated again by the next hop
    (("--lookahead", "2"), 2, True),
    (("--lookahead", "2", "--no-revise-lookahead"), 2, False),  # the decoder alone reads the look-ahead
    (("--lookahead", "0"), 0, True),  # nothing to revise: the lowest latency
])
def test_lookahead_and_its_revision_reach_the_engine(argv: tuple[str, ...], ahead: int, revise: bool) -> None:
    engine = engine_factory(_args(*argv))()
    try:
        g = engine.generator.geometry
        assert g.lookahead_latents == ahead and g.revise_lookahead is revise
        assert g.generated_latents == g.hop_latents + (ahead if revise else 0)
        if not argv:  # the CLI's defaults are the library's (EngineOptions), not a second choice
            from frieren_rt.streaming.builders import EngineOptions  # noqa: PLC0415

            assert (EngineOptions().lookahead, EngineOptions().revise_lookahead) == (ahead, revise)
            assert not g.lookahead_seam and EngineOptions().lookahead_seam is False
    finally:
        engine.close()


def test_a_seam_in_the_look_ahead_reaches_the_engine_and_needs_a_look_ahead() -> None:
    engine = engine_factory(_args("--seam-in-lookahead"))()
    try:
        assert engine.generator.geometry.lookahead_seam
        assert engine.generator.stream_delay_samples == engine.generator.geometry.samples_per_latent  # 20 ms less
    finally:
        engine.close()
    with pytest.raises(ValueError, match="--seam-in-lookahead needs --lookahead 1 or more"):
        engine_factory(_args("--seam-in-lookahead", "--lookahead", "0"))
