"""Windowed generation: window/hop/crossfade geometry, continuity masks, seams and the windowed generator.

Shared by the streaming engine (frieren_rt.streaming) and the offline ``generate`` (issue 4); it lives in
frieren_rt because frieren_rt never imports streaming.
"""

from frieren_rt.windowing.conditioning import FeatureTrack, select_frames, window_conditioning
from frieren_rt.windowing.crossfade import correlation, crossfade, fade_curves
from frieren_rt.windowing.generator import StreamState, WindowedGenerator, WindowInputs, generate_offline
from frieren_rt.windowing.geometry import (
    CrossfadeLaw,
    StreamGeometry,
    context_latents_for,
    gather_known,
    hops_due,
    known_mask,
    window_span,
)
from frieren_rt.windowing.stages import (
    FeatureExtractor,
    HopTimings,
    LatentDecoder,
    Sampler,
    VelocityFn,
    VelocityModel,
    Vocoder,
    euler_sampler,
    stopwatch,
)

__all__ = [
    "CrossfadeLaw",
    "FeatureExtractor",
    "FeatureTrack",
    "HopTimings",
    "LatentDecoder",
    "Sampler",
    "StreamGeometry",
    "StreamState",
    "VelocityFn",
    "VelocityModel",
    "Vocoder",
    "WindowInputs",
    "WindowedGenerator",
    "context_latents_for",
    "correlation",
    "crossfade",
    "euler_sampler",
    "fade_curves",
    "gather_known",
    "generate_offline",
    "hops_due",
    "known_mask",
    "select_frames",
    "stopwatch",
    "window_conditioning",
    "window_span",
]
