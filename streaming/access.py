"""Who may open and drive sessions: one aiohttp middleware in front of every endpoint (issue 6, item 5).

Checks, in order, each answered with ``{"error": ...}`` JSON that says what to change:

1. Origin (403). A browser names the page that made a request in ``Origin`` (RFC 6454; sent on every
   WebSocket handshake, RFC 6455 section 10.2, and on cross-origin fetches). Accepted: no Origin at all
   (non-browser clients: OBS, FFmpeg, Python), the server's own origin (the bundled page), and
   ``allowed_origins`` (``"*"``: any). Allowed cross-origin callers get CORS headers and an answered preflight
   (``OPTIONS``), so a page hosted elsewhere can POST offers and read ``Location``.
2. Token (401). With a token configured, the endpoints that open, end or play a session (``/offer``,
   ``/whip``, ``/whep``, ``/ws``) need it as ``Authorization: Bearer TOKEN`` (RFC 6750;
   what WHIP clients send, RFC 9725 section 4.5), as a ``token`` query parameter (browser WebSockets cannot
   set headers), or as the cookie the page gets: opening ``/?token=TOKEN`` sets an HttpOnly, SameSite=Strict
   cookie, so the unchanged page's same-origin requests carry the token. The page, its static files and the
   read-only statistics (``/stats``, ``/sessions``: nothing there opens, ends or plays a session) stay public.
   Compared in constant time.
3. Body size (413). A declared ``Content-Length`` above ``max_body_bytes`` is refused before reading;
   undeclared (chunked) bodies are cut off by aiohttp's ``client_max_size``, which the app sets to the same
   limit.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["AccessPolicy", "COOKIE", "PROTECTED_PREFIXES", "access_middleware", "is_protected", "origin_of",
           "same_origin", "token_from"]

COOKIE = "frieren_rt_token"
# Everything that opens, ends or plays a session. /ws is the WebSocket transport (streaming/ws.py).
PROTECTED_PREFIXES = ("/offer", "/whip", "/whep", "/ws")
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
_CORS_METHODS = "GET, POST, DELETE, PATCH, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type, If-Match"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, kw_only=True)
class AccessPolicy:
    """token: required on protected paths (None: open). allowed_origins: browser origins besides the server's
    own (``"*"``: any). max_body_bytes: largest request body."""

    token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024

    @classmethod
    def from_config(cls, config: Any) -> AccessPolicy:
        """From a ``ServerConfig`` (token, allowed_origins, max_message_bytes)."""
        return cls(token=config.token, allowed_origins=tuple(config.allowed_origins),
                   max_body_bytes=config.max_message_bytes)

    def origin_allowed(self, origin: str, own: str) -> bool:
        if "*" in self.allowed_origins or same_origin(origin, own):
            return True
        return any(same_origin(origin, o) for o in self.allowed_origins)

    def token_ok(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


# --- pure helpers -------------------------------------------------------------------------------------------
def _normalise(origin: str) -> str:
    """``Scheme://Host:80`` -> ``scheme://host`` (RFC 6454 6.1: default port dropped)."""
    scheme, sep, rest = origin.strip().rstrip("/").partition("://")
    if not sep:
        return origin.strip().lower()  # "null" (sandboxed frames, file://) and other opaque origins
    scheme, rest = scheme.lower(), rest.lower()
    host, colon, port = rest.rpartition(":")
    if colon and port == _DEFAULT_PORTS.get(scheme):  # "[::1]" has no port: its rpartition gives "1]"
        rest = host
    return f"{scheme}://{rest}"


def same_origin(a: str, b: str) -> bool:
    return _normalise(a) == _normalise(b)


def origin_of(request: web.Request) -> str:
    """The origin this server is reached at, from the request's scheme and Host header."""
    return f"{request.scheme}://{request.host}"


def is_protected(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PROTECTED_PREFIXES)


def token_from(request: web.Request) -> str | None:
    """The token the client presented: bearer header, then ``?token=``, then the page's cookie."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token") or request.cookies.get(COOKIE)


def _refuse(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
            "Access-Control-Expose-Headers": "Location", "Vary": "Origin"}


# --- the middleware -----------------------------------------------------------------------------------------
def _check(policy: AccessPolicy, request: web.Request) -> web.Response | None:
    """The refusal for ``request``, or None when it may go on."""
    origin = request.headers.get("Origin")
    if origin is not None and not policy.origin_allowed(origin, origin_of(request)):
        return _refuse(403, f"origin {origin!r} is not allowed: serve the page from this server, or start it "
                       f"with --allow-origin {origin}")
    if is_protected(request.path) and not policy.token_ok(token_from(request)):
        return _refuse(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' (or ?token=TOKEN); "
                       "in a browser open the page as /?token=TOKEN",
                       **{"WWW-Authenticate": 'Bearer realm="frieren-rt"'})
    length = request.content_length
    if length is not None and length > policy.max_body_bytes:
        return _refuse(413, f"request body of {length} bytes is over the limit of {policy.max_body_bytes}")
    return None


def access_middleware(
    policy: AccessPolicy,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware enforcing ``policy`` on every request of the app."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        cross = {} if origin is None or same_origin(origin, origin_of(request)) else _cors(origin)
        refusal = _check(policy, request)
        if refusal is not None:
            refusal.headers.update(cross if refusal.status != 403 else {})
            return refusal
        if cross and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            # CORS preflight (Fetch standard): never carries credentials, so it is answered before any token.
            return web.Response(status=204, headers={**cross, "Access-Control-Allow-Methods": _CORS_METHODS,
                                                     "Access-Control-Allow-Headers": _CORS_HEADERS,
                                                     "Access-Control-Max-Age": "600"})
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # 404, 405, 413 from aiohttp itself: let the caller read them too
            exc.headers.update(cross)
            raise
        if not response.prepared:  # a WebSocket response has already sent its headers
            response.headers.update(cross)
            _remember_token(policy, request, response)
        return response

    return middleware


def _remember_token(policy: AccessPolicy, request: web.Request, response: web.StreamResponse) -> None:
    """``GET /?token=TOKEN`` (the right one): the page's later same-origin requests carry it as a cookie."""
    if policy.token is None or request.path != "/" or request.method != "GET":
        return
    given = request.query.get("token")
    if given is not None and policy.token_ok(given):
        response.set_cookie(COOKIE, given, httponly=True, samesite="Strict", path="/",
                            secure=request.scheme == "https")
