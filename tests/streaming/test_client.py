"""The Python WebRTC client's receive side (issue 4: the smallest audio jitter buffer aiortc allows)."""

import asyncio

from frieren_rt.streaming.webrtc import new_peer_connection
from aiortc.rtp import RtpPacket

from frieren_rt.streaming.client import audio_jitter_prefetch


def _audio_packet(seq: int) -> RtpPacket:
    p = RtpPacket(sequence_number=seq, timestamp=960 * seq, marker=1)
    p._data = bytes([seq])
    return p


def test_prefetch_zero_releases_each_20ms_frame_when_the_next_arrives_instead_of_four_later() -> None:
    async def scenario() -> tuple[int | None, int | None]:
        pc = new_peer_connection()
        try:
            receiver = pc.addTransceiver("audio", direction="recvonly").receiver
            default = receiver._RTCRtpReceiver__jitter_buffer
            assert audio_jitter_prefetch(pc, receiver.track, 0)
            low = receiver._RTCRtpReceiver__jitter_buffer
            assert low is not default and low.capacity == default.capacity

            def first_release(jb) -> int | None:  # noqa: ANN001
                for seq in range(8):
                    if jb.add(_audio_packet(seq))[1] is not None:
                        return seq
                return None

            return first_release(default), first_release(low)
        finally:
            await pc.close()

    aiortc_default, smallest = asyncio.run(scenario())
    assert aiortc_default == 4  # 80 ms held (environment.md)
    assert smallest == 1  # 20 ms: aiortc needs the next packet to see a frame end


def test_prefetch_none_keeps_aiortcs_buffer() -> None:
    async def scenario() -> bool:
        pc = new_peer_connection()
        try:
            return audio_jitter_prefetch(pc, pc.addTransceiver("audio", direction="recvonly").receiver.track, None)
        finally:
            await pc.close()

    assert not asyncio.run(scenario())
