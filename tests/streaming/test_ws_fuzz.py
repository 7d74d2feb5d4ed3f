"""Fuzzing ``/ws`` (issue 6): random and mutated hellos and frames thrown at a live server; afterwards it still
accepts sessions, and the good session that streamed throughout never missed its 20 ms audio frames."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frieren_rt.client.protocol import FRAME_HEADER, Hello, VideoFormat, pack_frame
from tests.streaming.test_ws import TOKEN, LiveServer, good_frame, h264_units, raw_connect

GOOD = [good_frame(seq=0, ts=0, fmt=f) for f in (VideoFormat.JPEG, VideoFormat.RGB, VideoFormat.I420)]
GOOD += [pack_frame(u, seq=0, timestamp_us=0, width=64, height=48, fmt=VideoFormat.H264) for u in h264_units(2)]


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = LiveServer(token=TOKEN, handshake_timeout_s=0.3, idle_timeout_s=2.0, max_message_bytes=64 * 1024)
    t0 = time.monotonic()
    try:
        yield server
        server.assert_good_session_streamed(t0)  # through the whole fuzz run
    finally:
        server.close()


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """Flip, cut, extend or rewrite header fields of a good message."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "extend", "field"]))
        if op == "flip" and b:
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            b = b[: draw(st.integers(0, len(b)))]
        elif op == "extend":
            b += draw(st.binary(max_size=64))
        elif len(b) >= FRAME_HEADER.size:
            i = draw(st.integers(2, FRAME_HEADER.size - 1))
            b[i] = draw(st.integers(0, 255))
    return bytes(b)


@st.composite
def messages(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "random", "text", "header"]))
    if kind == "mutated":
        return mutate(draw(st.sampled_from(GOOD)), draw)
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=100))
    fields = draw(st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1), st.integers(-(2**63), 2**63 - 1),
                            st.integers(0, 65535), st.integers(0, 65535)))
    payload = draw(st.binary(max_size=200))
    fmt, seq, ts, w, h = fields
    return pack_frame(payload, seq=seq, timestamp_us=ts, width=w, height=h, fmt=fmt)


hellos = st.one_of(st.just(Hello().to_json()), st.text(max_size=80), st.binary(max_size=40),
                   st.builds(lambda v, r, c: f'{{"type": "hello", "version": {v}, "audio": {{"sample_rate": {r}, '
                             f'"channels": {c}}}}}', st.integers(-2, 3), st.sampled_from([48000, 0, -1, 16000]),
                             st.integers(-1, 3)))


async def throw(url: str, hello: str | bytes, batch: list[str | bytes]) -> None:
    ws = await raw_connect(url)
    try:
        await ws.send(hello)
        for m in batch:
            await ws.send(m)
        try:
            async with asyncio.timeout(0.15):  # read what comes back: errors, credits, a close
                while True:
                    await ws.recv()
        except (TimeoutError, Exception):  # noqa: BLE001 - ConnectionClosed is an allowed answer
            pass
    finally:
        await ws.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(hello=hellos, batch=st.lists(messages(), min_size=1, max_size=6))
def test_random_and_mutated_messages_never_disturb_the_server(live: LiveServer, hello: str | bytes,
                                                              batch: list[str | bytes]) -> None:
    # the fuzzer connects from its own event loop, as an outside client would, not from the server's loop whose
    # good session it must leave undisturbed (run alone here, either way the good session's largest gap was
    # 0.03-0.04 s; one clean-clone CI run saw 0.569 s, not reproduced)
    asyncio.run(throw(live.url, hello, batch))
    assert not live.good.closed


def test_server_still_opens_new_sessions_after_the_fuzzing(live: LiveServer) -> None:
    from frieren_rt.client.ws import CaptureClient  # noqa: PLC0415

    async def scenario() -> str:
        client = await CaptureClient.connect(live.url, Hello(), token=TOKEN)
        await client.close()
        return client.config.session

    assert live.run(scenario())
