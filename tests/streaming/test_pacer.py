import asyncio

import numpy as np

from frieren_rt.streaming import AudioFifo, AudioPacer, ManualClock


async def _collect(pacer: AudioPacer, clock: ManualClock, seconds: float, step: float = 0.005) -> list[tuple]:
    got: list[tuple] = []

    async def consume() -> None:
        while True:
            frame = await pacer.recv()
            got.append((round(clock.now(), 9), frame))

    task = asyncio.create_task(consume())
    for _ in range(round(seconds / step)):
        for _ in range(3):
            await asyncio.sleep(0)
        clock.advance(step)
    clock.advance(1e-9)  # the summed float steps may fall a hair short of the last deadline
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    return got


def test_pacer_emits_exactly_one_frame_per_20ms_of_clock() -> None:
    clock = ManualClock(100.0)
    fifo = AudioFifo(capacity=200_000)
    fifo.write(np.ones(48000, dtype=np.float32))
    pacer = AudioPacer(fifo, clock)
    pacer.set_anchor(100.0)
    got = asyncio.run(_collect(pacer, clock, 0.5))
    assert len(got) == 26  # t = 0, 20, ..., 500 ms
    # each frame is released at the first clock step reaching start + n * 20 ms (steps are 5 ms), never earlier
    lags = [t - (100.0 + 0.02 * n) for n, (t, _) in enumerate(got)]
    assert all(-1e-9 <= lag < 0.005 + 1e-9 for lag in lags)
    assert all(f.samples.shape == (960,) and f.samples.all() and not f.silent for _, f in got)
    assert fifo.underruns == 0


def test_pacer_emits_silence_and_counts_underruns_when_generation_is_late() -> None:
    clock = ManualClock(0.0)
    fifo = AudioFifo(capacity=200_000)
    fifo.write(np.ones(960 * 5, dtype=np.float32))  # 100 ms of audio, then nothing
    pacer = AudioPacer(fifo, clock)
    pacer.set_anchor(0.0)
    got = asyncio.run(_collect(pacer, clock, 0.2))
    silent = [f.silent for _, f in got]
    assert silent == [False] * 5 + [True] * 6
    assert fifo.underruns == 6 and len(got) == 11


def test_anchor_places_fifo_sample_zero_at_its_clock_time() -> None:
    clock = ManualClock(0.0, auto_advance=True)
    fifo = AudioFifo(capacity=200_000)
    fifo.write(np.arange(1, 48001, dtype=np.float32))
    pacer = AudioPacer(fifo, clock)
    pacer.set_anchor(0.05)  # 2.5 frames after the pacer's first frame

    async def run() -> list:
        return [await pacer.recv() for _ in range(5)]

    frames = asyncio.run(run())
    assert not frames[0].samples.any() and not frames[1].samples.any()
    assert not frames[2].samples[:480].any() and frames[2].samples[480] == 1.0
    assert frames[3].samples[0] == 481.0 and fifo.underruns == 0


def test_start_is_the_clock_time_of_the_first_recv_and_none_before() -> None:
    clock = ManualClock(7.0)
    pacer = AudioPacer(AudioFifo(capacity=4800), clock)
    assert pacer.start is None
    clock.advance(0.25)
    got = asyncio.run(_collect(pacer, clock, 0.1))
    assert pacer.start == 7.25 and got[0][0] == 7.25
    assert pacer.frames_sent == len(got)
