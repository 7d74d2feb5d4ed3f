"""``frieren-rt profile``: the pure statistics, the trace format, and short live sweeps with the random
engine."""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from frieren_rt.streaming.latency import ReceivedAudio
from frieren_rt.streaming.profile import (
    STAGES,
    ProfileConfig,
    frame_glass_to_ear,
    markdown_table,
    pacer_first_index,
    parse_sweep,
    run_profile,
    transport_for,
    write_outputs,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_parse_sweep_reads_session_counts_and_rejects_other_keys() -> None:
    assert parse_sweep("sessions=1,2,4,8") == (1, 2, 4, 8)
    for bad in ("threads=1,2", "sessions=", "sessions=0,1"):
        with pytest.raises(ValueError):
            parse_sweep(bad)


def test_frame_glass_to_ear_follows_the_gap_free_timeline_from_the_first_generated_sample() -> None:
    rate, frame = 48000, 960
    samples = np.zeros(10 * frame, np.float32)
    samples[2 * frame + 480 :] = 0.1  # generated audio starts half-way into frame 2
    arrivals = 100.0 + 0.02 * np.arange(10)
    arrivals[6] += 0.005  # one frame late by 5 ms (jitter)
    audio = ReceivedAudio(samples, arrivals, rate=rate, frame=frame)
    play, g2e = frame_glass_to_ear(audio, first_capture=99.5, stream_delay_s=0.02)
    # first element: frame 2's arrival + 10 ms offset, standing for capture 99.5 - 0.02
    assert play[0] == pytest.approx(100.05) and g2e[0] == pytest.approx(100.05 - 99.48)
    assert len(g2e) == 1 + 7  # frames 3..9
    steady = np.delete(g2e, 4)  # frame 6 is element 4
    np.testing.assert_allclose(steady, g2e[0])  # a steady stream: constant glass-to-ear
    assert g2e[4] == pytest.approx(g2e[0] + 0.005)
    silent = ReceivedAudio(np.zeros(960, np.float32), np.array([1.0]))
    assert all(len(x) == 0 for x in frame_glass_to_ear(silent, 0.0, 0.0))


def test_pacer_anchoring_finds_the_first_capture_even_when_the_first_hops_were_lost() -> None:
    rate, frame = 48000, 960
    samples = np.zeros(20 * frame, np.float32)
    samples[12 * frame :] = 0.1  # pre-roll to sample 4800, then start-up underruns until frame 12
    arrivals = 10.0 + 0.1 + 0.02 * np.arange(20)  # pacer starts at t=10.0, 100 ms downlink
    audio = ReceivedAudio(samples, arrivals, rate=rate, frame=frame)
    first = pacer_first_index(pacer_start=10.0, anchor=10.1, rate=rate)  # FIFO sample 0 plays 100 ms in
    assert first == 4800
    _, g2e = frame_glass_to_ear(audio, first_capture=9.7, stream_delay_s=0.0, first_index=first)
    np.testing.assert_allclose(g2e, 10.1 + 0.1 - 9.7)  # latency 0.4 + downlink 0.1, on every frame
    _, naive = frame_glass_to_ear(audio, first_capture=9.7, stream_delay_s=0.0)
    assert naive[0] == pytest.approx(g2e[0] + 0.14)  # the first generated sample is 7 lost frames later


def test_unknown_transport_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown transport"):
        transport_for("carrier-pigeon")


def check_trace(events: list[dict]) -> None:
    """Trace Event Format: required fields, µs timestamps, properly nested slices per track, b/e pairs."""
    names = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    tracks: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    open_async: dict[str, float] = {}
    for e in events:
        assert e["ph"] in {"X", "M", "b", "e", "i", "C"} and isinstance(e["pid"], int)
        if e["ph"] == "X":
            assert e["dur"] >= 0 and (e["pid"], e["tid"]) in names and e["name"] in STAGES
            tracks[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
        elif e["ph"] == "b":
            open_async[e["id"]] = e["ts"]
        elif e["ph"] == "e":
            assert e["ts"] >= open_async.pop(e["id"])
    assert not open_async
    for slices in tracks.values():  # back to back within a hop, hops in order: no partial overlaps
        slices.sort()
        for (_, end), (start, _) in itertools.pairwise(slices):
            assert start >= end - 1.0  # 1 µs of rounding


def test_profile_sweep_through_the_real_server_writes_json_trace_and_plots(tmp_path: Path) -> None:
    from frieren_rt.streaming.builders import random_engine  # noqa: PLC0415
    from frieren_rt.streaming.client import synthetic_frames  # noqa: PLC0415

    cfg = ProfileConfig(sessions=(1, 2), duration_s=2.5, warmup_hops=1)
    clips = [(synthetic_frames(60), 30.0)]
    report, trace = run_profile(cfg, engine=random_engine, clips=clips, progress=False)
    paths = write_outputs(report, trace, tmp_path)

    assert [r["sessions"] for r in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert run["stage_source"] == "engine" and set(run["stages"]) == set(STAGES) | {"compute"}
        assert run["glass_to_ear_method"] == "server pacer timeline"
        for name in [*STAGES, "compute"]:
            assert {"p50", "p95", "p99"} <= set(run["stages"][name]), name
        latency_ms = 1000 * run["engine_latency_s"]
        # glass-to-ear = the engine's fixed latency + the transport (loopback: well under 0.4 s)
        assert latency_ms < run["glass_to_ear_ms"]["p50"] < latency_ms + 400
        assert run["stages"]["transport"]["p50"] > 0 and 0 < run["real_time_factor"] < 1
        assert run["time_to_first_audio_s"]["p50"] > run["engine_latency_s"]
        assert run["queue_depths"]["audio_fifo_ms"]["n"] > 0 and run["frames_sent"] > 50 * run["sessions"]
        assert len(run["per_session"]) == run["sessions"] and run["underruns"] >= 0
    assert report["runs"][1]["mean_batch"] > 1.0  # two sessions' hops share batches

    assert {p.name for p in paths} == {"profile.json", "trace.json", "latency_cdf.png", "stages.png",
                                       "sessions_p95.png"}
    assert json.loads((tmp_path / "profile.json").read_text())["runs"][1]["sessions"] == 2
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    events = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    check_trace(events)
    engine_tracks = {(e["pid"], e["tid"]) for e in events if e["ph"] == "X"}
    assert len(engine_tracks) == 3  # one per session: 1 + 2
    per_hop = defaultdict(set)
    for e in events:
        if e["ph"] == "X":
            per_hop[(e["pid"], e["tid"], e["args"]["hop"])].add(e["name"])
    assert all(names == set(STAGES) - {"transport"} for names in per_hop.values())
    assert any(e["ph"] == "b" and e["name"].startswith("transport") for e in events)
    table = markdown_table(report)
    assert table.count("\n") == 3 and table.splitlines()[2].startswith("| 1 |")


def test_cli_registers_profile_with_sweep_transport_and_server_options() -> None:
    from frieren_rt.cli import profile  # noqa: PLC0415

    parser = argparse.ArgumentParser()
    profile.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["profile", "--sweep", "sessions=1,2", "--transport", "ws", "--server",
                              "http://127.0.0.1:9", "--duration", "3", "-o", "out"])
    assert args.sweep == "sessions=1,2" and args.transport == "ws" and args.duration == 3.0
    assert args.server == "http://127.0.0.1:9" and args.output == Path("out") and args.func is profile.run
    with pytest.raises(SystemExit):
        parser.parse_args(["profile", "--sweep", "sessions=1", "--sessions", "2"])


def test_tagged_glass_to_ear_is_arrival_minus_the_capture_time_each_ws_frame_carries() -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    from frieren_rt.streaming.profile import chunks_audio, tagged_glass_to_ear  # noqa: PLC0415

    def chunk(arrival: float, ts_us: int, timed: bool) -> SimpleNamespace:
        return SimpleNamespace(arrival=arrival, samples=np.full((960, 2), 0.5, np.float32),
                               header=SimpleNamespace(timed=timed, video_timestamp_us=ts_us))

    chunks = [chunk(5.0, 0, False), chunk(5.02, 4_600_000, True), chunk(5.045, 4_620_000, True)]
    play, g2e = tagged_glass_to_ear(chunks)
    np.testing.assert_allclose(play, [5.02, 5.045])
    np.testing.assert_allclose(g2e, [0.42, 0.425])
    audio = chunks_audio(chunks, 48000)
    assert audio.samples.shape == (3 * 960,) and audio.frame == 960 and audio.samples[0] == 0.5


def test_profile_over_the_ws_transport_measures_glass_to_ear_from_the_audio_tags() -> None:
    pytest.importorskip("frieren_rt.client.ws")
    from frieren_rt.streaming.builders import random_engine  # noqa: PLC0415
    from frieren_rt.streaming.client import synthetic_frames  # noqa: PLC0415

    cfg = ProfileConfig(sessions=(1,), duration_s=2.5, warmup_hops=1, transport="ws")
    clips = [(synthetic_frames(60), 30.0)]
    report, trace = run_profile(cfg, engine=random_engine, clips=clips, progress=False)
    run = report["runs"][0]
    assert run["transport"] == "ws" and run["glass_to_ear_method"] == "audio capture-time tags"
    latency_ms = 1000 * run["engine_latency_s"]
    # no jitter buffer on /ws: glass-to-ear is the engine latency plus a few ms of loopback
    assert latency_ms - 5 < run["glass_to_ear_ms"]["p50"] < latency_ms + 150
    assert run["stages"]["vector_field"]["n"] > 0 and run["frames_sent"] > 50
    check_trace(trace)


def test_cli_profiles_world_clips_with_the_random_model_and_prints_the_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.world.conftest import assets_ready  # noqa: PLC0415

    if not assets_ready():
        pytest.skip("world clips need the asset cache ('frieren-rt assets fetch')")
    from frieren_rt.cli import profile  # noqa: PLC0415

    parser = argparse.ArgumentParser()
    profile.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["profile", "--random-model", "--device", "cpu", "--duration", "2",
                              "--warmup-hops", "1", "--no-plots", "--no-progress",
                              "-o", str(tmp_path / "out")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| sessions |" in out and (tmp_path / "out" / "trace.json").is_file()
    report = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert report["config"]["sessions"] == [1] and report["runs"][0]["frames_sent"] > 40
