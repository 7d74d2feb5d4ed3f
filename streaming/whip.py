"""WHIP ingestion (RFC 9725) and WHEP playback of the generated audio.

WHIP: ``POST /whip`` with ``Content-Type: application/sdp`` (an offer carrying video; audio is accepted and
discarded) -> ``201 Created``, the answer SDP as body and ``Location: /whip/{session}``; ``DELETE`` on that
resource ends the session (200). Trickle ICE is not supported: ``PATCH`` answers 405, which the RFC allows
(section 4.3.1) and OBS, FFmpeg and the npm whip-whep client accept (../shared/reference/environment.md). The
answer is sent once ICE gathering is complete, so it carries literal-IP candidates (FFmpeg's muxer needs them).

WHEP: ``POST /whep/{session}`` (or ``/whep`` for the newest session) with an audio offer -> 201 + Location
``/whep/{session}/{player}``; ``DELETE`` ends the player; beyond the session's ``max_players``: 503. Both
endpoints take an optional bearer token (``Authorization: Bearer TOKEN``; 401 on a missing or wrong one,
RFC 9725 section 4.5), checked with Origin and body size by access.py's middleware for every endpoint.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from frieren_rt.streaming.server import (
    CONFIG,
    SESSIONS,
    SdpError,
    SessionLimit,
    check_offer,
    negotiate,
    open_publisher,
)
from frieren_rt.streaming.webrtc import new_peer_connection

__all__ = ["add_routes", "SDP_TYPE"]

SDP_TYPE = "application/sdp"


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain", headers=headers)


def _guard(request: web.Request) -> web.Response | None:
    """The 415 answer shared by both POST endpoints (401 is access.py's); None: go on."""
    if request.content_type != SDP_TYPE:
        return _error(415, f"Content-Type must be {SDP_TYPE}, got {request.content_type or 'none'}")
    return None


def _created(answer: str, location: str) -> web.Response:
    # Expose Location to browser clients on other origins (the whip-whep npm client reads it).
    return web.Response(status=201, text=answer, content_type=SDP_TYPE,
                        headers={"Location": location, "Access-Control-Expose-Headers": "Location"})


async def whip_post(request: web.Request) -> web.Response:
    if (refused := _guard(request)) is not None:
        return refused
    try:
        desc = check_offer(await request.text(), need="video")
        session, answer = await open_publisher(request.app, desc, audio_back=False)
    except SdpError as exc:
        return _error(400, str(exc))
    except SessionLimit as exc:
        return _error(503, str(exc), **{"Retry-After": "5"})
    return _created(answer, f"/whip/{session.id}")


async def whip_delete(request: web.Request) -> web.Response:
    session = request.app[SESSIONS].get(request.match_info["session"])
    if session is None:
        return _error(404, "no such WHIP session")
    await session.close()
    return web.Response(status=200)


async def not_allowed(request: web.Request) -> web.Response:
    """Trickle ICE / ICE restarts by PATCH are not supported (RFC 9725 section 4.3.1 permits 405)."""
    return _error(405, "trickle ICE is not supported: send all candidates in the offer",
                  Allow="POST, DELETE" if "player" not in request.match_info else "DELETE")


async def whep_post(request: web.Request) -> web.Response:
    if (refused := _guard(request)) is not None:
        return refused
    session = request.app[SESSIONS].get(request.match_info.get("session"))
    if session is None:
        return _error(404, "no such session to play" if "session" in request.match_info else "no session is open")
    if session.players_full:
        return _error(503, f"session {session.id} already has {session.max_players} players",
                      **{"Retry-After": "5"})
    try:
        desc = check_offer(await request.text(), need="audio")
    except SdpError as exc:
        return _error(400, str(exc))
    pc = new_peer_connection(request.app[CONFIG].ice_servers)
    try:
        answer = await negotiate(pc, desc, [session.audio_track()])
    except SdpError as exc:
        await pc.close()
        return _error(400, str(exc))
    player = secrets.token_urlsafe(6)
    if not await session.add_player(player, pc):  # filled (or closed) while this offer was negotiated
        await pc.close()
        return _error(503, f"session {session.id} has no room for another player",
                      **{"Retry-After": "5"})
    return _created(answer, f"/whep/{session.id}/{player}")


async def whep_delete(request: web.Request) -> web.Response:
    session = request.app[SESSIONS].get(request.match_info["session"])
    if session is None or not await session.remove_player(request.match_info["player"]):
        return _error(404, "no such WHEP player")
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/whip", whip_post)
    r.add_delete("/whip/{session}", whip_delete)
    r.add_patch("/whip/{session}", not_allowed)
    r.add_post("/whep", whep_post)
    r.add_post("/whep/{session}", whep_post)
    r.add_delete("/whep/{session}/{player}", whep_delete)
    r.add_patch("/whep/{session}/{player}", not_allowed)
