"""The HTTP/WebRTC front of the engine: the bundled page, ``POST /offer``, WHIP/WHEP and live statistics.

``create_app(config, engine=...)`` returns an aiohttp application holding all its state (no module globals):
the engine (built at startup from a factory or given ready-made), its ``run`` task, and the open sessions.
Routes:

- ``GET /``: the page (static/index.html); ``GET /clip.mp4?seed=N``: a world clip for the page to send.
- ``POST /offer`` (JSON ``{sdp, type}``): the page's peer connection; the answer carries the generated audio
  back on the same connection. Returns ``{sdp, type, session, latency_s, stream_delay_s, hop_s}``.
- ``POST /whip`` and ``POST /whep[/{session}]``: RFC 9725 ingestion and its playback counterpart (whip.py).
- ``GET /stats/{session}``, ``GET /sessions``: JSON statistics for the page's latency/level/underrun display;
  ``/stats`` adds ``stages``: p50/p95 seconds per engine stage and for the whole hop (``compute``) over the
  session's recent hops.

Every request passes access.py's middleware first (Origin 403, token 401, body size 413); sessions are bounded
by ``max_sessions`` (503) and closed by webrtc.PeerSession's handshake and idle timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from frieren_rt.streaming.access import AccessPolicy, access_middleware
from frieren_rt.streaming.engine import Engine, timing_percentiles
from frieren_rt.streaming.webrtc import PeerSession, VideoSize, ice_host_addresses, new_peer_connection

__all__ = ["ServerConfig", "SessionRegistry", "SessionLimit", "SdpError", "create_app", "negotiate",
           "ENGINE", "SESSIONS", "CONFIG"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_CLIPS = 8  # rendered /clip.mp4 files kept: any client can name any seed, so the disk they take is bounded


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """host/port: where to listen (loopback by default). max_sessions: publishing sessions at once (503 beyond).
    token: required by every session endpoint (access.py; None: open). ice_servers: STUN/TURN URLs (none:
    nothing leaves the host). ice_addresses: host candidates to offer (None: loopback when ``host`` is
    loopback, else aioice's choice). video_size: frames are scaled to this before the feature extractor.
    clip_seed/clip_duration: the world clip served at /clip.mp4 by default."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_sessions: int = 4
    token: str | None = None
    ice_servers: tuple[str, ...] = ()
    ice_addresses: tuple[str, ...] | None = None
    video_size: VideoSize = field(default_factory=VideoSize)
    # Limits shared by every endpoint (/offer, /whip, /whep, /ws; issue 6), enforced by access.py and
    # webrtc.PeerSession. allowed_origins: browser Origins accepted besides the server's own (empty: the
    # bundled page and non-browser clients only; "*": any). handshake_timeout_s: a client must finish its
    # handshake (ICE + DTLS connected / WebSocket hello) within this, or its slot is freed. idle_timeout_s: a
    # publisher that sends no video for this long is closed. max_message_bytes: largest request body /
    # WebSocket message (413 / close 1009). max_players: WHEP players per session (503 beyond).
    allowed_origins: tuple[str, ...] = ()
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_message_bytes: int = 4 * 1024 * 1024
    max_players: int = 4
    clip_seed: int = 200_000
    clip_duration: float = 10.0

    @property
    def host_candidates(self) -> tuple[str, ...] | None:
        if self.ice_addresses is not None:
            return self.ice_addresses
        return ("127.0.0.1",) if self.host in LOOPBACK_HOSTS else None


class SessionLimit(Exception):
    """All session slots are taken (HTTP 503)."""


class SdpError(ValueError):
    """The offer could not be used (HTTP 400); the message says why."""


class SessionRegistry:
    """Open publishing sessions by id, bounded by ``max_sessions``; a closed session leaves at once."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self.sessions: dict[str, PeerSession] = {}
        self._reserved = 0  # slots taken by offers still being negotiated
        self._watchers: set[asyncio.Task[None]] = set()

    def reserve(self) -> None:
        if len(self.sessions) + self._reserved >= self.max_sessions:
            raise SessionLimit(f"all {self.max_sessions} session slots are in use")
        self._reserved += 1

    def release(self) -> None:
        self._reserved -= 1

    def add(self, session: PeerSession) -> None:
        self.sessions[session.id] = session

        async def forget() -> None:
            await session.closed.wait()
            self.sessions.pop(session.id, None)

        task = asyncio.ensure_future(forget())
        self._watchers.add(task)  # hold a reference until done (RUF006)
        task.add_done_callback(self._watchers.discard)

    def get(self, session_id: str | None) -> PeerSession | None:
        """The session ``session_id``, or the newest one when None."""
        if session_id is None:
            return max(self.sessions.values(), key=lambda s: s.created, default=None)
        return self.sessions.get(session_id)

    async def close_all(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self.sessions.values())), return_exceptions=True)


CONFIG = web.AppKey("config", ServerConfig)
ENGINE = web.AppKey("engine", Engine)
SESSIONS = web.AppKey("sessions", SessionRegistry)
_ENGINE_TASK = web.AppKey("engine_task", asyncio.Task)
_CLIPS = web.AppKey("clips", dict)


# --- SDP ------------------------------------------------------------------------------------------------------
def check_offer(sdp: Any, kind: Any = "offer", *, need: str | None = "video") -> RTCSessionDescription:
    """Validate an offer's outline before aiortc sees it; raise :class:`SdpError` with the reason."""
    if kind != "offer":
        raise SdpError(f"expected an SDP offer, got type {kind!r}")
    if not isinstance(sdp, str) or not sdp.lstrip().startswith("v=0"):
        raise SdpError("body is not an SDP session description (it must start with 'v=0')")
    media = [line.split()[0][2:] for line in sdp.splitlines() if line.startswith("m=") and line.split()]
    if not media:
        raise SdpError("the offer has no media section (m=)")
    if need is not None and need not in media:
        raise SdpError(f"the offer has no {need} media section")
    return RTCSessionDescription(sdp=sdp, type="offer")


async def negotiate(pc: RTCPeerConnection, offer: RTCSessionDescription,
                    tracks: Sequence[MediaStreamTrack] = ()) -> str:
    """Apply the offer, send ``tracks`` on the offer's matching transceivers, answer, wait for ICE gathering
    (aiortc gathers inside setLocalDescription: no trickle) and return the answer SDP."""
    try:
        await pc.setRemoteDescription(offer)
        for track in tracks:
            pc.addTrack(track)  # fills the offer's transceiver of that kind (recvonly on the offerer's side)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
    except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError... on malformed SDP
        raise SdpError(f"malformed or unsupported SDP offer: {type(exc).__name__}: {exc}") from exc
    return pc.localDescription.sdp


async def open_publisher(app: web.Application, offer: RTCSessionDescription, *, audio_back: bool,
                         seed: int | None = None) -> tuple[PeerSession, str]:
    """A publishing session: reserve a slot, negotiate, register. Returns the session and the answer SDP.

    audio_back: send the generated audio on the same connection (the page) rather than only to WHEP players.
    """
    cfg, registry = app[CONFIG], app[SESSIONS]
    registry.reserve()
    pc = new_peer_connection(cfg.ice_servers)
    try:
        session = PeerSession(secrets.token_urlsafe(8), pc=pc, engine=app[ENGINE], size=cfg.video_size,
                              seed=seed, handshake_timeout_s=cfg.handshake_timeout_s,
                              idle_timeout_s=cfg.idle_timeout_s, max_players=cfg.max_players)
        try:
            answer = await negotiate(pc, offer, [session.audio_track()] if audio_back else [])
        except SdpError:
            await session.close()
            raise
        registry.add(session)
        return session, answer
    except BaseException:
        await pc.close()
        raise
    finally:
        registry.release()


# --- handlers ---------------------------------------------------------------------------------------------------
async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html")


async def offer(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response({"error": "body must be JSON {sdp, type}"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "body must be JSON {sdp, type}"}, status=400)
    try:
        desc = check_offer(body.get("sdp"), body.get("type"))
        seed = body.get("seed")
        session, answer = await open_publisher(request.app, desc, audio_back=True,
                                               seed=int(seed) if seed is not None else None)
    except SdpError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except SessionLimit as exc:
        return web.json_response({"error": str(exc)}, status=503, headers={"Retry-After": "5"})
    return web.json_response({"sdp": answer, "type": "answer", "session": session.id,
                              "latency_s": session.engine_session.latency_s,
                              "stream_delay_s": session.stream_delay_s,
                              "hop_s": request.app[ENGINE].generator.geometry.hop_duration_s})


async def stats(request: web.Request) -> web.Response:
    session = request.app[SESSIONS].get(request.match_info["session"])
    if session is None:
        return web.json_response({"error": "no such session"}, status=404)
    stages = timing_percentiles(list(session.engine_session.timings))
    return web.json_response(session.stats() | {"stages": stages})


async def sessions(request: web.Request) -> web.Response:
    registry = request.app[SESSIONS]
    return web.json_response({"max_sessions": registry.max_sessions,
                              "sessions": [s.stats() for s in registry.sessions.values()]})


async def clip(request: web.Request) -> web.StreamResponse:
    """A world clip as mp4 for the page's "world clip" source (rendered once per seed, off the event loop)."""
    cfg = request.app[CONFIG]
    try:
        seed = int(request.query.get("seed", cfg.clip_seed))
    except ValueError:
        return web.json_response({"error": "seed must be an integer"}, status=400)
    cache: dict[int, Path] = request.app[_CLIPS]
    if seed not in cache:
        try:
            cache[seed] = await asyncio.get_running_loop().run_in_executor(None, render_clip_mp4, seed,
                                                                           cfg.clip_duration)
        except (FileNotFoundError, ValueError) as exc:
            return web.json_response({"error": f"cannot render world clip {seed}: {exc}"}, status=404)
        while len(cache) > MAX_CLIPS:  # the oldest goes (a response still sending it keeps its open file)
            shutil.rmtree(cache.pop(next(iter(cache))).parent, ignore_errors=True)
    return web.FileResponse(cache[seed], headers={"Content-Type": "video/mp4"})


def render_clip_mp4(seed: int, duration: float) -> Path:
    import tempfile  # noqa: PLC0415

    from frieren_rt.world import render_clip  # noqa: PLC0415
    from frieren_rt.world.mp4 import write_mp4  # noqa: PLC0415

    path = Path(tempfile.mkdtemp(prefix="frieren-rt-clip-")) / f"clip_{seed}.mp4"
    write_mp4(render_clip(seed, duration=duration), path)
    return path


# --- app ------------------------------------------------------------------------------------------------------
def create_app(config: ServerConfig, *, engine: Engine | Callable[[], Engine]) -> web.Application:
    """The web application. ``engine``: a built engine, or a factory called at startup (model loading then
    happens once the server starts, not at import)."""
    from frieren_rt.streaming import whip, ws  # noqa: PLC0415

    app = web.Application(middlewares=[access_middleware(AccessPolicy.from_config(config))],
                          client_max_size=config.max_message_bytes)
    app[CONFIG] = config
    app[SESSIONS] = SessionRegistry(config.max_sessions)
    app[_CLIPS] = {}

    async def lifecycle(app: web.Application):  # noqa: ANN202
        app[ENGINE] = engine if isinstance(engine, Engine) else engine()
        app[_ENGINE_TASK] = asyncio.ensure_future(app[ENGINE].run())
        addresses = config.host_candidates
        with ice_host_addresses(addresses) if addresses is not None else contextlib.nullcontext():
            yield
            await app[SESSIONS].close_all()
        app[_ENGINE_TASK].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app[_ENGINE_TASK]
        app[ENGINE].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    app.router.add_post("/offer", offer)
    app.router.add_get("/stats/{session}", stats)
    app.router.add_get("/sessions", sessions)
    app.router.add_get("/clip.mp4", clip)
    whip.add_routes(app)
    ws.add_routes(app)
    return app


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving ``app`` (port 0: any free port; read it back with :func:`bound_port`)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    return next(iter(runner.addresses))[1]


def serve(config: ServerConfig, *, engine: Engine | Callable[[], Engine]) -> None:
    """Run until interrupted."""
    t0 = time.monotonic()
    log.info("starting on http://%s:%d", config.host, config.port)
    web.run_app(create_app(config, engine=engine), host=config.host, port=config.port, access_log=None,
                print=lambda _: print(f"frieren-rt serve: http://{config.host}:{config.port}/ "
                                      f"(ready in {time.monotonic() - t0:.1f} s; Ctrl-C stops)", flush=True))
