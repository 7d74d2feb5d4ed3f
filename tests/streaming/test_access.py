"""Security and limits of every endpoint (issue 6, item 5): token, Origin, body size, handshake and idle
timeouts, per-session bounds. A live server on 127.0.0.1 with the tiny random engine, short timeouts."""

import asyncio
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import torch

from frieren_rt.streaming import client
from frieren_rt.streaming.access import COOKIE, AccessPolicy, same_origin
from frieren_rt.streaming.builders import random_engine
from frieren_rt.streaming.engine import VideoFrame
from tests.streaming.test_server import open_sessions, running_server
from tests.streaming.test_whip import _offer_sdp

FPS = 30
TOKEN = "s3cret"


async def _status(http: aiohttp.ClientSession, method: str, url: str, **kw: object) -> int:
    async with http.request(method, url, **kw) as r:
        await r.read()
        return r.status


# --- pure policy --------------------------------------------------------------------------------------------
def test_origins_compare_by_scheme_host_and_port_with_default_ports_dropped() -> None:
    assert same_origin("HTTP://Example.com:80", "http://example.com")
    assert same_origin("https://a.example:443/", "https://a.example")
    assert same_origin("http://[::1]:8080", "http://[::1]:8080")
    assert not same_origin("http://a.example", "https://a.example")
    assert not same_origin("http://a.example:8080", "http://a.example")
    assert not same_origin("null", "http://127.0.0.1:8080")
    p = AccessPolicy(allowed_origins=("https://app.example",))
    assert p.origin_allowed("https://app.example", own="http://127.0.0.1:8080")
    assert p.origin_allowed("http://127.0.0.1:8080", own="http://127.0.0.1:8080")  # the bundled page
    assert not p.origin_allowed("https://evil.example", own="http://127.0.0.1:8080")
    assert AccessPolicy(allowed_origins=("*",)).origin_allowed("https://evil.example", own="http://h")
    assert AccessPolicy(token="t").token_ok("t") and not AccessPolicy(token="t").token_ok("T")
    assert not AccessPolicy(token="t").token_ok(None) and AccessPolicy().token_ok(None)


# --- token --------------------------------------------------------------------------------------------------
ENDPOINTS = [
    ("POST", "/offer", {"json": {"sdp": "x", "type": "offer"}}),
    ("POST", "/whip", {"data": "SDP", "headers": {"Content-Type": "application/sdp"}}),
    ("POST", "/whep", {"data": "SDP", "headers": {"Content-Type": "application/sdp"}}),
    ("POST", "/whep/abc", {"data": "SDP", "headers": {"Content-Type": "application/sdp"}}),
    ("DELETE", "/whip/abc", {}),
    ("DELETE", "/whep/abc/def", {}),
    ("PATCH", "/whip/abc", {}),
    ("GET", "/ws", {}),  # the WebSocket upgrade (streaming/ws.py) goes through the same middleware
]


def test_every_session_endpoint_answers_401_without_the_token_and_accepts_it_three_ways() -> None:
    sdp = _offer_sdp()

    async def scenario() -> None:
        async with running_server(token=TOKEN) as (app, base), aiohttp.ClientSession(base) as http:
            for method, path, kw in ENDPOINTS:
                kw = {**kw, "data": sdp} if kw.get("data") == "SDP" else kw
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
                    h = {**kw.get("headers", {}), **headers}
                    async with http.request(method, path, **{**kw, "headers": h}) as r:
                        body = await r.json()
                        assert r.status == 401, (method, path, headers)
                        assert "Bearer" in r.headers["WWW-Authenticate"] and "token" in body["error"]
            # the right token as a header, a query parameter (browser WebSockets) or the page's cookie
            bad = {"json": {"sdp": "hello", "type": "offer"}}
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            assert await _status(http, "POST", "/offer", headers=bearer, **bad) == 400
            assert await _status(http, "POST", f"/offer?token={TOKEN}", **bad) == 400
            assert await _status(http, "POST", "/offer", cookies={COOKIE: TOKEN}, **bad) == 400
            assert open_sessions(app) == 0
            # the page, its script and the statistics stay public
            for path in ("/", "/static/app.js", "/sessions"):
                assert await _status(http, "GET", path) == 200

    asyncio.run(scenario())


def test_the_page_opened_with_the_token_gets_a_cookie_its_own_requests_carry() -> None:
    async def scenario() -> None:
        jar = aiohttp.CookieJar(unsafe=True)  # unsafe: keep cookies of an IP-address host (127.0.0.1)
        async with running_server(token=TOKEN) as (_, base), \
                aiohttp.ClientSession(base, cookie_jar=jar) as http:
            assert await _status(http, "GET", "/?token=wrong") == 200 and len(jar) == 0
            async with http.get(f"/?token={TOKEN}") as r:
                assert r.status == 200
                cookie = r.cookies[COOKIE]
                assert cookie.value == TOKEN and cookie["httponly"] and cookie["samesite"] == "Strict"
            bad = {"sdp": "hello", "type": "offer"}
            assert await _status(http, "POST", "/offer", json=bad) == 400  # past the token check

    asyncio.run(scenario())


def test_whip_and_whep_clients_with_the_bearer_token_still_stream() -> None:
    async def scenario() -> None:
        async with running_server(token=TOKEN) as (app, base):
            pub = await client.whip_publish(base, client.synthetic_frames(30), FPS, token=TOKEN)
            player = await client.whep_play(base, pub.session, token=TOKEN)
            await client.wait_for(lambda: len(player.recorder.chunks) >= 10, 5.0)
            assert await player.close() == 200 and await pub.close() == 200
            await client.wait_for(lambda: open_sessions(app) == 0, 2.0)

    asyncio.run(scenario())


# --- Origin -------------------------------------------------------------------------------------------------
def test_a_foreign_origin_is_refused_403_and_the_own_or_an_allowed_one_passes() -> None:
    async def scenario() -> None:
        bad = {"json": {"sdp": "hello", "type": "offer"}}
        async with running_server() as (_, base), aiohttp.ClientSession(base) as http:
            async with http.post("/offer", headers={"Origin": "https://evil.example"}, **bad) as r:
                assert r.status == 403 and "--allow-origin https://evil.example" in (await r.json())["error"]
            assert await _status(http, "GET", "/ws", headers={"Origin": "https://evil.example"}) == 403
            assert await _status(http, "POST", "/offer", headers={"Origin": "null"}, **bad) == 403
            assert await _status(http, "POST", "/offer", headers={"Origin": base}, **bad) == 400  # the page
            assert await _status(http, "POST", "/offer", **bad) == 400  # no Origin: OBS, FFmpeg, Python
        async with running_server(allowed_origins=("https://app.example",)) as (_, base), \
                aiohttp.ClientSession(base) as http:
            pre = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "authorization, content-type"}
            async with http.options("/whip", headers=pre) as r:  # CORS preflight of a cross-origin client
                assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
                assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
                assert "POST" in r.headers["Access-Control-Allow-Methods"]
            async with http.post("/offer", headers={"Origin": "https://app.example"}, **bad) as r:
                assert r.status == 400 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
            other = {"Origin": "https://other.example"}
            assert await _status(http, "POST", "/offer", headers=other, **bad) == 403
        async with running_server(allowed_origins=("*",)) as (_, base), aiohttp.ClientSession(base) as http:
            anyone = {"Origin": "https://any.example"}
            assert await _status(http, "POST", "/offer", headers=anyone, **bad) == 400

    asyncio.run(scenario())


# --- body size ----------------------------------------------------------------------------------------------
def test_bodies_over_max_message_bytes_get_413_declared_or_chunked() -> None:
    async def chunks():  # noqa: ANN202 - no Content-Length: aiohttp's client_max_size cuts it off
        for _ in range(10):
            yield b"x" * 1000

    async def scenario() -> None:
        async with running_server(max_message_bytes=4000) as (app, base), aiohttp.ClientSession(base) as http:
            big = "v=0\r\n" + "a=x\r\n" * 2000
            async with http.post("/whip", data=big, headers={"Content-Type": "application/sdp"}) as r:
                assert r.status == 413 and "limit of 4000" in (await r.json())["error"]
            assert await _status(http, "POST", "/offer", json={"sdp": big, "type": "offer"}) == 413
            assert await _status(http, "POST", "/offer", data=chunks(),
                                 headers={"Content-Type": "application/json"}) == 413
            small = {"sdp": "hello", "type": "offer"}
            assert await _status(http, "POST", "/offer", json=small) == 400
            assert open_sessions(app) == 0

    asyncio.run(scenario())


# --- timeouts -----------------------------------------------------------------------------------------------
def test_a_peer_that_never_completes_its_handshake_is_closed_and_its_slot_freed() -> None:
    async def scenario() -> None:
        async with running_server(max_sessions=1, handshake_timeout_s=1.0) as (app, base):
            pc = client.new_peer_connection()  # offers, then never applies the answer: ICE/DTLS never finish
            pc.addTrack(client.ClipVideoTrack(client.synthetic_frames(30), FPS))
            pc.addTransceiver("audio", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            async with aiohttp.ClientSession(base) as http:
                t0 = time.monotonic()
                async with http.post("/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as r:
                    assert r.status == 200, await r.text()
            with pytest.raises(ConnectionError, match="503"):  # it holds the only slot...
                await client.publish_offer(base, client.synthetic_frames(30), FPS)
            assert open_sessions(app) == 1
            await client.wait_for(lambda: open_sessions(app) == 0, 3.0)
            assert 0.9 < time.monotonic() - t0 < 2.5  # ...until the handshake timeout
            pub = await client.publish_offer(base, client.synthetic_frames(30), FPS)  # the slot is free again
            await asyncio.sleep(1.5)  # a completed handshake is never timed out
            assert open_sessions(app) == 1
            await pub.close()
            await pc.close()

    asyncio.run(scenario())


def test_a_publisher_whose_video_stops_is_closed_after_the_idle_timeout_others_keep_streaming() -> None:
    async def stalled() -> None:
        await asyncio.Event().wait()  # the sender waits for a frame that never comes: no RTP at all

    async def scenario() -> None:
        async with running_server(idle_timeout_s=1.5) as (app, base):
            quiet = await client.publish_offer(base, client.synthetic_frames(30), FPS)
            busy = await client.publish_offer(base, client.synthetic_frames(30, seed=1), FPS)
            await asyncio.sleep(1.0)
            assert open_sessions(app) == 2  # video flowing: not idle
            quiet.video.recv = stalled  # type: ignore[method-assign]
            t0 = time.monotonic()
            await client.wait_for(lambda: quiet.session not in _ids(app), 4.0)
            assert 1.2 < time.monotonic() - t0 < 3.5
            before = len(busy.recorder.chunks)
            await asyncio.sleep(1.0)
            assert busy.session in _ids(app) and len(busy.recorder.chunks) - before >= 40
            for p in (quiet, busy):
                await p.close()

    asyncio.run(scenario())


def _ids(app: object) -> set[str]:
    from frieren_rt.streaming.server import SESSIONS  # noqa: PLC0415

    return set(app[SESSIONS].sessions)  # type: ignore[index]


# --- per-session bounds -------------------------------------------------------------------------------------
def test_every_per_session_buffer_stays_bounded_under_a_flood() -> None:
    engine = random_engine()
    try:
        s = engine.open_session("flood")
        frame = np.zeros((120, 160, 3), np.uint8)
        for i in range(5000):  # 166 s of video pushed with nobody generating
            s.push_frame(VideoFrame(frame, i / FPS))
        s.fifo.write(np.zeros(60 * 48000, np.float32))  # a minute of audio with nobody playing
        for i in range(5000):
            s.track.append([i / FPS], torch.zeros(1, engine.config.feature_dim))
        assert len(s.frames) <= s.frames._capacity and s.frames.dropped >= 5000 - s.frames._capacity
        assert s.fifo.depth <= s.fifo.capacity == round(engine.config.fifo_s * 48000)
        assert len(s.track) <= 4 * engine.generator.geometry.cond_slots
        assert s.timings.maxlen == engine.config.timing_history
    finally:
        engine.close()


def test_whep_players_per_session_are_capped() -> None:
    async def scenario() -> None:
        async with running_server(max_players=1) as (app, base):
            pub = await client.whip_publish(base, client.synthetic_frames(30), FPS)
            player = await client.whep_play(base, pub.session)
            with pytest.raises(ConnectionError, match="503"):
                await client.whep_play(base, pub.session)
            await player.close()
            await client.wait_for(lambda: not _players(app, pub.session), 2.0)
            again = await client.whep_play(base, pub.session)  # the freed place is reusable
            await again.close()
            await pub.close()

    asyncio.run(scenario())


def _players(app: object, session: str) -> dict:
    from frieren_rt.streaming.server import SESSIONS  # noqa: PLC0415

    return app[SESSIONS].sessions[session].players  # type: ignore[index]


def test_rendered_world_clips_kept_on_disk_are_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from frieren_rt.streaming import server  # noqa: PLC0415

    def fake_render(seed: int, duration: float) -> Path:  # stands in for the world renderer
        path = tmp_path / f"clip{seed}" / "clip.mp4"
        path.parent.mkdir()
        path.write_bytes(b"mp4")
        return path

    monkeypatch.setattr(server, "render_clip_mp4", fake_render)

    async def scenario() -> None:
        async with running_server() as (_, base), aiohttp.ClientSession(base) as http:
            for seed in range(server.MAX_CLIPS + 5):  # any client may ask for any seed
                assert await _status(http, "GET", f"/clip.mp4?seed={seed}") == 200

    asyncio.run(scenario())
    assert len(list(tmp_path.glob("clip*/clip.mp4"))) == server.MAX_CLIPS
