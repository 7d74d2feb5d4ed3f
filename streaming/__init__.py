"""The real-time streaming engine (installed as ``frieren_rt.streaming``; issue 4).

Media stages with explicit buffer policies (video latest-wins, audio a sample-indexed FIFO re-chunked to 20 ms
at 48 kHz with silence on underrun), an injectable monotonic clock, a stateful polyphase resampler, one
inference worker thread that batches due hops of all sessions, and the engine that orchestrates them over
``frieren_rt.windowing.WindowedGenerator``.
"""

from frieren_rt.streaming.buffers import AudioFifo, LatestFrameBuffer
from frieren_rt.streaming.clock import Clock, ManualClock, MonotonicClock
from frieren_rt.streaming.engine import Engine, EngineConfig, EngineSession, SessionStats, VideoFrame
from frieren_rt.streaming.pacer import AudioFrame, AudioPacer
from frieren_rt.streaming.resample import PolyphaseResampler, kaiser_sinc_filter
from frieren_rt.streaming.worker import InferenceWorker, WorkerQueueFull

__all__ = [
    "AudioFifo",
    "AudioFrame",
    "AudioPacer",
    "Clock",
    "Engine",
    "EngineConfig",
    "EngineSession",
    "InferenceWorker",
    "LatestFrameBuffer",
    "ManualClock",
    "MonotonicClock",
    "PolyphaseResampler",
    "SessionStats",
    "VideoFrame",
    "WorkerQueueFull",
    "kaiser_sinc_filter",
]
