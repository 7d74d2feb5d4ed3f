"""A server on 127.0.0.1 with the tiny random engine, for the transport tests (ICE offers loopback only)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from frieren_rt.streaming.builders import EngineOptions, random_engine
from frieren_rt.streaming.server import ENGINE, SESSIONS, ServerConfig, bound_port, create_app, start


@contextlib.asynccontextmanager
async def running_server(app: web.Application | None = None, **config: object) -> AsyncIterator[tuple[web.Application, str]]:
    app = app or create_app(ServerConfig(port=0, **config), engine=random_engine)  # type: ignore[arg-type]
    runner = await start(app, "127.0.0.1", 0)
    try:
        yield app, f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


def open_sessions(app: web.Application) -> int:
    return len(app[SESSIONS].sessions)


async def get_json(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, await r.json()


# --- tests ---------------------------------------------------------------------------------------------------
import asyncio  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from frieren_rt.streaming import client  # noqa: E402
from frieren_rt.streaming.latency import first_audio_latency  # noqa: E402
from frieren_rt.streaming.profile import pacer_first_index  # noqa: E402

FPS = 30


@pytest.mark.parametrize("codec", ["video/VP8", "video/H264"])
def test_offer_client_sends_video_and_receives_continuous_20ms_audio_with_reported_latency(codec: str) -> None:
    async def scenario() -> None:
        async with running_server() as (app, base):
            pub = await client.publish_offer(base, client.synthetic_frames(60), FPS, codec=codec)
            await asyncio.sleep(2.0)
            streamed_until = time.monotonic()  # the recorder's clock
            status, stats = await get_json(f"{base}/stats/{pub.session}")
            es = app[SESSIONS].sessions[pub.session].engine_session
            pacer = (es.pacer.start, es.first_frame_anchor)
            await pub.close()
        rec = pub.recorder
        audio = rec.received()
        assert status == 200 and stats["state"] == "connected"
        assert stats["frames_received"] >= 40 and stats["hops"] >= 5
        assert set(rec.frame_sizes) == {960} and rec.sample_rates == {48000}  # 20 ms frames, 48 kHz
        # continuity while streaming; a frame that lands during teardown (seen once 0.39 s after the one before,
        # on a loaded CI machine) says nothing about pacing
        gaps = np.diff(audio.arrivals[5:][audio.arrivals[5:] <= streamed_until])
        assert len(audio.arrivals) >= 80 and gaps.max() < 0.2  # arrives continuously
        assert stats["underruns"] == 0 and stats["level_db"] > -120
        # Glass-to-ear of the audio standing for the first frame, found from the server's pacer as the demo and
        # the profiler find it: the first non-silent sample would read a start-up hop that came too late to play
        # as latency (CI, loaded: 0.61 s against the engine's 0.17 s).
        first = pacer_first_index(*pacer, rate=audio.rate)
        lat = float(audio.play_time(first)) - (pub.video.capture_times[0] - pub.info["stream_delay_s"])
        # engine latency plus transport (video ~40 ms one way, aiortc's 80 ms receive jitter buffer)
        assert stats["latency_s"] < lat < stats["latency_s"] + 0.4
        heard = first_audio_latency(audio, pub.video.capture_times[0], pub.info["stream_delay_s"])
        assert heard is not None and heard >= lat - 0.01  # nothing plays before the first frame's audio
        assert pub.info["latency_s"] == pytest.approx(stats["latency_s"])
        # the profiler's needs: the hop in the reply, per-stage percentiles in /stats (issue 4)
        assert pub.info["hop_s"] == pytest.approx(app[ENGINE].generator.geometry.hop_duration_s)
        stages = stats["stages"]
        assert {"features", "vector_field", "vae_decode", "vocoder", "resample", "compute"} <= set(stages)
        assert all(0 <= v["p50_s"] <= v["p95_s"] for v in stages.values())
        assert stages["compute"]["p95_s"] == pytest.approx(stats["compute_p95_s"])  # one estimator for both

    asyncio.run(scenario())


def test_client_disconnect_frees_its_session_within_one_second() -> None:
    async def scenario() -> float:
        async with running_server() as (app, base):
            pub = await client.publish_offer(base, client.synthetic_frames(30), FPS)
            await client.wait_for(lambda: open_sessions(app) == 1, 2.0)
            await asyncio.sleep(0.5)
            t0 = time.monotonic()
            await pub.pc.close()  # the client goes away without any HTTP call
            await client.wait_for(lambda: open_sessions(app) == 0, 3.0)
            freed = time.monotonic() - t0
            assert not app[SESSIONS].sessions
            assert not app[ENGINE].sessions  # the engine session went with it
            await pub.recorder.stop()
        return freed

    assert asyncio.run(scenario()) < 1.0


@pytest.mark.parametrize("body", [
    {"sdp": "hello", "type": "offer"},
    {"sdp": "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", "type": "offer"},
    {"sdp": "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n"
            "a=rtpmap:96 VP8/90000\r\na=sendonly\r\n", "type": "offer"},
    {"sdp": "v=0", "type": "answer"},
])
def test_malformed_offer_is_refused_with_400_and_a_reason(body: dict) -> None:
    async def scenario() -> tuple[int, dict, int]:
        async with running_server() as (app, base):
            async with aiohttp.ClientSession() as http, http.post(f"{base}/offer", json=body) as r:
                return r.status, await r.json(), open_sessions(app)

    status, reply, left = asyncio.run(scenario())
    assert status == 400 and reply["error"] and left == 0


def test_beyond_max_sessions_503_while_the_others_keep_streaming() -> None:
    # What is under test is admission, so the latency is fixed (0.5 s) rather than calibrated: with client and
    # server in one process on the 2-core CI machine, the first session's batch-1 budget (EngineConfig.
    # budget_sessions) let a hop shared with the second run late (CI: 2 underruns) whenever other work
    # loaded the machine. Budget calibration under load is the engine tests' and the profiler's subject.
    fixed = create_app(ServerConfig(port=0, max_sessions=2),
                       engine=lambda: random_engine(EngineOptions(latency_s=0.5)))

    async def scenario() -> None:
        async with running_server(fixed) as (app, base):
            pubs = [await client.publish_offer(base, client.synthetic_frames(30, seed=i), FPS) for i in range(2)]
            with pytest.raises(ConnectionError, match="503"):
                await client.publish_offer(base, client.synthetic_frames(30), FPS)
            before = [len(p.recorder.chunks) for p in pubs]
            await asyncio.sleep(1.0)
            after = [len(p.recorder.chunks) for p in pubs]
            assert all(a - b >= 40 for a, b in zip(after, before))  # ~50 frames of 20 ms each per second
            for p in pubs:
                _, s = await get_json(f"{base}/stats/{p.session}")
                assert s["state"] == "connected" and s["underruns"] == 0
            await pubs[0].close()
            await client.wait_for(lambda: open_sessions(app) == 1, 2.0)
            third = await client.publish_offer(base, client.synthetic_frames(30), FPS)  # a freed slot is reusable
            for p in (pubs[1], third):
                await p.close()

    asyncio.run(scenario())


def test_page_and_static_script_are_served() -> None:
    async def scenario() -> tuple[int, str, int]:
        async with running_server() as (_, base), aiohttp.ClientSession() as http:
            async with http.get(f"{base}/") as r:
                page = (r.status, await r.text())
            async with http.get(f"{base}/static/app.js") as r:
                return page[0], page[1], r.status

    status, page, js = asyncio.run(scenario())
    assert status == 200 and js == 200 and "/static/app.js" in page and "clip" in page


def test_build_engine_names_the_missing_file_and_how_to_get_it(tmp_path) -> None:  # noqa: ANN001
    from frieren_rt.streaming.builders import build_engine  # noqa: PLC0415

    with pytest.raises(FileNotFoundError, match="does not exist.*frieren-rt train"):
        build_engine(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="single/distill/reflow/base.*frieren-rt train"):
        build_engine(tmp_path)
    (tmp_path / "single.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="vae.safetensors"):
        build_engine(tmp_path)


def test_serve_cli_with_random_model_serves_the_page_on_loopback() -> None:
    import signal  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "frieren_rt.cli", "serve", "--random-model", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/sessions", timeout=1) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
                time.sleep(0.2)
        assert body == {"max_sessions": 4, "sessions": []}
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=10)[0].decode()
    assert "noise" in out and f"127.0.0.1:{port}" in out


def test_demo_sends_a_world_clip_over_webrtc_and_writes_an_mp4_with_latency(tmp_path) -> None:  # noqa: ANN001
    from tests.world.conftest import assets_ready  # noqa: PLC0415

    if not assets_ready():
        pytest.skip("asset cache absent: run 'frieren-rt assets fetch' first")
    import av  # noqa: PLC0415

    from frieren_rt.streaming.builders import random_engine  # noqa: PLC0415
    from frieren_rt.streaming.demo import run_demo  # noqa: PLC0415

    r = run_demo(seed=200_000, duration=2.0, output=tmp_path / "demo.mp4", engine=random_engine, tail_s=0.2)
    assert r.frames_sent == 60 and r.underruns == 0
    assert r.glass_to_ear_s is not None and r.engine_latency_s < r.glass_to_ear_s < r.engine_latency_s + 0.4
    with av.open(str(r.output)) as c:
        kinds = sorted(s.type for s in c.streams)
        assert kinds == ["audio", "video"]
        assert abs(float(c.duration) / 1e6 - 2.0) < 0.15


def test_demo_glass_to_ear_holds_when_the_senders_first_frame_is_late(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """A sender whose first frame leaves 150 ms after its capture (a slow first encode: aiortc's VP8 took 130 ms
    from the CLI) must not add those 150 ms to the reported glass-to-ear: every later frame plays at its
    capture + latency, and that is the latency the stream has (BENCHMARKS.md, the demo's former anomaly)."""
    from tests.world.conftest import assets_ready  # noqa: PLC0415

    if not assets_ready():
        pytest.skip("asset cache absent: run 'frieren-rt assets fetch' first")
    from frieren_rt.streaming import client  # noqa: PLC0415
    from frieren_rt.streaming.builders import random_engine  # noqa: PLC0415
    from frieren_rt.streaming.demo import run_demo  # noqa: PLC0415

    class LateFirstFrame(client.ClipVideoTrack):
        async def recv(self):  # noqa: ANN202
            frame = await super().recv()  # records the capture time
            if len(self.capture_times) == 1:
                await asyncio.sleep(0.15)  # ... and hands frame 0 on 150 ms later
            return frame

    monkeypatch.setattr(client, "ClipVideoTrack", LateFirstFrame)
    r = run_demo(seed=200_000, duration=2.0, output=tmp_path / "demo.mp4", engine=random_engine, tail_s=0.2)
    assert r.glass_to_ear_s is not None
    assert r.engine_latency_s < r.glass_to_ear_s < r.engine_latency_s + 0.1  # transport, not the 150 ms


def test_the_shipped_engine_runs_frozen_graphs_on_cpu_with_the_default_budget_margin() -> None:
    """EngineOptions' default backend "auto" is "script" on CPU (frieren_rt.backends: the hop's networks off the
    GIL); the compute budget takes EngineConfig's margin unless the options name one."""
    from frieren_rt.backends import Scripted, ScriptedVelocity  # noqa: PLC0415
    from frieren_rt.streaming.builders import EngineOptions, build_engine  # noqa: PLC0415
    from frieren_rt.streaming.engine import EngineConfig  # noqa: PLC0415

    try:
        engine = build_engine(None)
    except FileNotFoundError as err:
        pytest.skip(str(err))
    gen = engine.generator
    assert isinstance(gen.velocity, ScriptedVelocity)
    assert isinstance(gen.decoder, Scripted) and isinstance(gen.vocoder, Scripted)
    assert engine.config.budget_margin == EngineConfig.budget_margin
    eager = build_engine(None, EngineOptions(backend="eager", budget_margin=2.5))
    assert not isinstance(eager.generator.vocoder, Scripted)
    assert eager.config.budget_margin == 2.5
