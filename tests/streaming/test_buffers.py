import threading

import numpy as np

from frieren_rt.streaming import AudioFifo, LatestFrameBuffer


def test_latest_frame_buffer_keeps_the_newest_and_counts_drops() -> None:
    buf: LatestFrameBuffer[int] = LatestFrameBuffer(3)
    for i in range(10):
        buf.put(i, capture_time=i / 30)
    assert [item for _, item in buf.drain()] == [7, 8, 9]
    assert buf.dropped == 7 and buf.received == 10 and buf.newest_time == 9 / 30
    buf.put(99, capture_time=0.0)  # older than what was seen: stale, dropped
    assert len(buf) == 0 and buf.dropped == 8


def test_latest_frame_buffer_is_safe_across_threads() -> None:
    buf: LatestFrameBuffer[int] = LatestFrameBuffer(4)
    taken: list[int] = []
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            taken.extend(item for _, item in buf.drain())

    t = threading.Thread(target=consume)
    t.start()
    for i in range(5000):
        buf.put(i, capture_time=float(i))
    stop.set()
    t.join()
    taken.extend(item for _, item in buf.drain())
    assert taken == sorted(taken) and len(taken) + buf.dropped == 5000


def test_fifo_reads_fixed_frames_by_absolute_index() -> None:
    fifo = AudioFifo(capacity=10_000)
    fifo.write(np.arange(2000, dtype=np.float32))
    assert np.array_equal(fifo.read(0, 960), np.arange(960))
    assert np.array_equal(fifo.read(960, 960), np.arange(960, 1920))
    assert fifo.underruns == 0 and fifo.depth == 80


def test_fifo_underrun_gives_silence_and_keeps_the_samples() -> None:
    fifo = AudioFifo(capacity=10_000)
    assert not fifo.read(0, 960).any() and fifo.underruns == 0  # pre-roll before any audio is not an underrun
    fifo.write(np.ones(500, dtype=np.float32))
    assert not fifo.read(0, 960).any() and fifo.underruns == 1
    fifo.write(np.ones(500, dtype=np.float32))
    assert fifo.read(0, 960).all()


def test_fifo_drops_late_samples_and_bounds_its_depth() -> None:
    fifo = AudioFifo(capacity=3000)
    fifo.write(np.ones(2000, dtype=np.float32))
    out = fifo.read(1500, 400)  # the reader moved on: samples 0..1499 can never play on time
    assert out.all() and fifo.late_samples == 1500
    fifo.write(np.ones(5000, dtype=np.float32))
    assert fifo.depth == 3000 and fifo.overflow_samples == 100 + 5000 - 3000


def test_fifo_negative_index_is_leading_silence() -> None:
    fifo = AudioFifo(capacity=10_000)
    fifo.write(np.ones(2000, dtype=np.float32))
    out = fifo.read(-100, 960)
    assert not out[:100].any() and out[100:].all() and fifo.underruns == 0
    assert np.array_equal(fifo.read(860, 960), np.ones(960))
