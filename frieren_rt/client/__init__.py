"""Clients of the frieren-rt server's ``/ws`` game-capture WebSocket protocol (PROTOCOL.md).

``protocol`` holds the wire format (shared with the server, which imports it); ``ws`` the asyncio client,
its blocking wrapper and the clip streamer behind ``frieren-rt capture``.
"""

from frieren_rt.client.protocol import PROTOCOL_VERSION, AudioFormat, CloseCode, ErrorCode, Hello, VideoFormat

__all__ = ["PROTOCOL_VERSION", "AudioFormat", "CloseCode", "ErrorCode", "Hello", "VideoFormat"]
