"""WHIP (RFC 9725) publishing and WHEP playback against the server, with the tiny random engine."""

import asyncio

import aiohttp
import numpy as np
import pytest

from frieren_rt.streaming import client
from tests.streaming.test_server import get_json, open_sessions, running_server

FPS = 30


def test_whip_publish_201_location_media_then_whep_plays_audio_and_delete_ends_both() -> None:
    async def scenario() -> None:
        async with running_server(token="s3cret") as (app, base):
            pub = await client.whip_publish(base, client.synthetic_frames(60), FPS, token="s3cret", codec="video/H264")
            assert pub.location == f"/whip/{pub.session}"
            player = await client.whep_play(base, pub.session, token="s3cret")
            assert player.location.startswith(f"/whep/{pub.session}/")
            await asyncio.sleep(1.5)
            _, stats = await get_json(f"{base}/stats/{pub.session}")
            assert stats["frames_received"] >= 30 and stats["players"] == 1
            audio = player.recorder.received()
            assert len(audio.arrivals) >= 50 and set(player.recorder.frame_sizes) == {960}
            assert np.abs(audio.samples).max() > 0  # the generated audio reached the player
            assert await player.close() == 200
            assert await pub.close() == 200  # DELETE on the Location ends the session
            await client.wait_for(lambda: open_sessions(app) == 0, 1.0)

    asyncio.run(scenario())


def test_whep_without_a_session_id_plays_the_newest_session() -> None:
    async def scenario() -> None:
        async with running_server() as (_, base):
            pub = await client.whip_publish(base, client.synthetic_frames(30), FPS)
            player = await client.whep_play(base)
            assert player.location.startswith(f"/whep/{pub.session}/")
            await player.close()
            await pub.close()

    asyncio.run(scenario())


def _offer_sdp() -> str:
    async def make() -> str:
        pc = client.new_peer_connection()
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


@pytest.mark.parametrize(("headers", "body", "status"), [
    ({"Authorization": "Bearer wrong"}, "offer", 401),
    ({}, "offer", 401),
    ({"Authorization": "Bearer s3cret"}, "v=0\r\nnot an sdp", 400),
    ({"Authorization": "Bearer s3cret", "Content-Type": "application/json"}, "offer", 415),
])
def test_whip_refuses_wrong_token_bad_sdp_and_wrong_content_type(headers: dict, body: str, status: int) -> None:
    sdp = _offer_sdp() if body == "offer" else body

    async def scenario() -> tuple[int, int]:
        async with running_server(token="s3cret") as (app, base), aiohttp.ClientSession() as http:
            h = {"Content-Type": "application/sdp", **headers}
            async with http.post(f"{base}/whip", data=sdp, headers=h) as r:
                return r.status, open_sessions(app)

    assert asyncio.run(scenario()) == (status, 0)


def test_patch_is_405_and_unknown_resources_404() -> None:
    async def scenario() -> list[int]:
        async with running_server() as (_, base):
            pub = await client.whip_publish(base, client.synthetic_frames(30), FPS)
            async with aiohttp.ClientSession(base) as http:
                out = []
                for method, url, ctype in (("PATCH", pub.location, "application/trickle-ice-sdpfrag"),
                                           ("DELETE", "/whip/nope", "text/plain"),
                                           ("POST", "/whep/nope", "application/sdp")):
                    async with http.request(method, url, data="x", headers={"Content-Type": ctype}) as r:
                        out.append(r.status)
            await pub.close()
            return out

    assert asyncio.run(scenario()) == [405, 404, 404]
