"""The wire format: header layouts and byte offsets (PROTOCOL.md's tables), checks and handshake codes."""

from __future__ import annotations

import json
import struct

import pytest

from frieren_rt.client.protocol import (
    AUDIO_FLAG_TIMED,
    AUDIO_HEADER,
    FRAME_HEADER,
    AudioFormat,
    AudioHeader,
    CloseCode,
    Config,
    ErrorCode,
    HandshakeError,
    Hello,
    ProtocolError,
    VideoFormat,
    frame_samples,
    pack_audio,
    pack_frame,
    unpack_audio,
    unpack_frame,
)


def test_frame_header_is_24_little_endian_bytes_at_the_documented_offsets() -> None:
    msg = pack_frame(b"\x01\x02", seq=7, timestamp_us=-5, width=640, height=480, fmt=VideoFormat.H264)
    assert FRAME_HEADER.size == 24 and len(msg) == 26
    assert msg[0:2] == b"FV" and msg[2] == 1 and msg[3] == 5
    assert struct.unpack_from("<I", msg, 4)[0] == 7
    assert struct.unpack_from("<q", msg, 8)[0] == -5
    assert struct.unpack_from("<HHI", msg, 16) == (640, 480, 2)
    header, payload = unpack_frame(msg)
    assert (header.seq, header.timestamp_us, header.width, header.height, header.format) == (7, -5, 640, 480, 5)
    assert bytes(payload) == b"\x01\x02"


def test_audio_header_is_32_bytes_and_round_trips() -> None:
    h = AudioHeader(AudioFormat.F32LE, AUDIO_FLAG_TIMED, 2, 960, 1_234_567, 96_000, 48000)
    msg = pack_audio(h, bytes(960 * 2 * 4))
    assert AUDIO_HEADER.size == 32 and msg[0:2] == b"FA" and msg[3] == 2 and msg[4] == AUDIO_FLAG_TIMED
    assert struct.unpack_from("<qQII", msg, 8) == (1_234_567, 96_000, 48000, 960 * 8)
    back, payload = unpack_audio(msg)
    assert back == h and back.timed and not back.silent and len(payload) == 960 * 8
    assert frame_samples(48000) == 960 and frame_samples(16000) == 320


def _frame(**kw: object) -> bytes:
    args = dict(seq=0, timestamp_us=0, width=4, height=2, fmt=VideoFormat.RGB)
    args.update(kw)
    payload = args.pop("payload", bytes(4 * 2 * 3))
    return pack_frame(payload, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("message", "code"), [
    (b"FV\x01", ErrorCode.BAD_HEADER),  # shorter than the header
    (b"XX" + _frame()[2:], ErrorCode.BAD_HEADER),  # wrong magic
    (_frame()[:2] + b"\x09" + _frame()[3:], ErrorCode.BAD_HEADER),  # wrong version
    (_frame() + b"\x00", ErrorCode.BAD_HEADER),  # length field != bytes that follow
    (_frame(fmt=42), ErrorCode.UNKNOWN_FORMAT),
    (_frame(width=5000, height=10, payload=bytes(5000 * 10 * 3)), ErrorCode.FRAME_TOO_LARGE),
    (_frame(width=4000, height=4000, fmt=VideoFormat.JPEG, payload=b"\xff\xd8"), ErrorCode.FRAME_TOO_LARGE),
    (_frame(payload=bytes(5)), ErrorCode.BAD_PAYLOAD),  # raw size mismatch
    (_frame(width=3, height=2, fmt=VideoFormat.I420, payload=bytes(9)), ErrorCode.BAD_PAYLOAD),  # odd 4:2:0
])
def test_bad_frames_raise_the_documented_error_code(message: bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        unpack_frame(message)
    assert info.value.code is code and str(info.value)


def test_compressed_frames_may_leave_their_size_to_the_decoder() -> None:
    header, _ = unpack_frame(_frame(width=0, height=0, fmt=VideoFormat.JPEG, payload=b"jpeg"))
    assert header.format == VideoFormat.JPEG


def test_hello_round_trips_and_defaults_to_s16le_48k_mono() -> None:
    h = Hello(token="t", audio_format="f32le", sample_rate=16000, channels=2, credits=3, seed=9)
    assert Hello.from_json(h.to_json()) == h
    d = Hello.from_json('{"type": "hello", "version": 1}')
    assert (d.audio_format, d.sample_rate, d.channels, d.credits, d.token) == ("s16le", 48000, 1, 2, None)


@pytest.mark.parametrize(("text", "code"), [
    ("not json", CloseCode.BAD_HELLO),
    ('["hello"]', CloseCode.BAD_HELLO),
    ('{"type": "config", "version": 1}', CloseCode.BAD_HELLO),
    ('{"type": "hello", "version": 1, "pad": "' + "x" * 5000 + '"}', CloseCode.BAD_HELLO),
    ('{"type": "hello", "version": 2}', CloseCode.UNSUPPORTED_VERSION),
    ('{"type": "hello", "version": 1, "audio": {"format": "mulaw"}}', CloseCode.UNSUPPORTED_CONFIG),
    ('{"type": "hello", "version": 1, "audio": {"sample_rate": 44100}}', CloseCode.UNSUPPORTED_CONFIG),
    ('{"type": "hello", "version": 1, "audio": {"channels": 6}}', CloseCode.UNSUPPORTED_CONFIG),
    ('{"type": "hello", "version": 1, "credits": 0}', CloseCode.UNSUPPORTED_CONFIG),
    ('{"type": "hello", "version": 1, "credits": "2"}', CloseCode.UNSUPPORTED_CONFIG),
    ('{"type": "hello", "version": 1, "stats_interval_s": 1e9}', CloseCode.UNSUPPORTED_CONFIG),
])
def test_bad_hellos_carry_the_documented_close_code(text: str, code: CloseCode) -> None:
    with pytest.raises(HandshakeError) as info:
        Hello.from_json(text)
    assert info.value.close_code is code


def test_config_round_trips_through_json() -> None:
    c = Config(session="abc", audio_format="s16le", sample_rate=48000, channels=1, frame_samples=960, credits=2,
               max_message_bytes=1 << 20, video_size=(160, 120), latency_s=0.5)
    body = json.loads(c.to_json())
    assert body["type"] == "config" and body["audio"] == {"format": "s16le", "sample_rate": 48000, "channels": 1,
                                                           "frame_samples": 960}
    assert Config.from_json(c.to_json()) == c


def test_protocol_module_does_not_import_the_server() -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = "import sys, frieren_rt.client.protocol, frieren_rt.client.ws; print('frieren_rt.streaming' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
