"""The windowed generator shared by the streaming engine and offline ``generate``.

Per hop (see geometry.py for the timeline): build the window ending with the hop, tell the vector field the
latents already emitted (known, mask 1) so it continues them instead of re-inventing the overlap (crossfading
two independent generations doubles or smears transients; ../shared/reference/streaming.md), sample with a
callable sampler, keep only the newest hop's latents, then decode ``context + hop`` latents to audio. The
decoder's left context is real emitted latents; the last ``crossfade`` samples of each decode lack right
context, so they are held back as the tail and crossfaded with the next decode of the same span (a seam
overlap decoded from real context, as in Magenta RT). Each hop emits exactly ``hop_samples``; the emitted
stream lags the latent timeline by ``crossfade_samples`` (``stream_delay_samples``). With a look-ahead of at
least a crossfade (StreamGeometry.lookahead_seam) the tail is instead the start of the look-ahead's own audio,
which is decoded anyway and which the next decode covers again from its committed (or revised) latents, so
nothing of the hop is held back and the stream lags by the look-ahead alone.

A vocoder that reads a condition beside the mel (frieren_rt.audio.condition: the event detector's posteriors)
gets it from ``vocoder_condition``, on the decoded mel frames' timeline times, from the same frames the window
was conditioned on.

An offline clip is the same loop over hops (:func:`generate_offline`), so streaming and offline audio agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from frieren_rt.audio.condition import mel_frame_times
from frieren_rt.model.timing import latent_times
from frieren_rt.windowing.conditioning import window_conditioning
from frieren_rt.windowing.crossfade import crossfade
from frieren_rt.windowing.gate import EventGate
from frieren_rt.windowing.geometry import StreamGeometry, gather_known, known_mask, window_span
from frieren_rt.windowing.stages import (
    LatentDecoder,
    Sampler,
    VelocityModel,
    Vocoder,
    euler_sampler,
    stopwatch,
)

__all__ = ["StreamState", "VocoderCondition", "WindowInputs", "WindowedGenerator", "generate_offline"]

# (frame_times (F,) float64, features (F, D), mel_times (M,) float64 seconds) -> (C, M): what a conditioned
# vocoder reads beside each decoded mel frame (frieren_rt.audio.condition.event_condition on the features'
# detector posteriors).
VocoderCondition = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class StreamState:
    """Mutable per-stream state, owned by whoever runs the generator (one thread at a time).

    history: (C, L) the last emitted latents, the first of which is latent ``history_start`` of the timeline.
    tail: (crossfade_samples,) the held-back end of the previous decode. rng: this stream's noise.
    gate_events: ((E,) capture times, (E,) holds) of the event frames the last hop saw (the gate's flush).
    """

    start_time: float
    history: torch.Tensor
    tail: torch.Tensor
    rng: torch.Generator
    next_hop: int = 0
    history_start: int = 0
    emitted_samples: int = field(default=0)
    gate_events: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def emitted_latents(self) -> int:
        return self.history_start + self.history.shape[1]

    def hop_end_time(self, geom: StreamGeometry) -> float:
        """Capture time the video must reach before the next hop is due."""
        return self.start_time + (self.next_hop + 1) * geom.hop_latents / geom.latent_rate


@dataclass(frozen=True)
class WindowInputs:
    """One window's model inputs: noise (C, W), cond (S, D), cond_index (W,), known (C, W), mask (1, W)."""

    noise: torch.Tensor
    cond: torch.Tensor
    cond_index: torch.Tensor
    known: torch.Tensor
    mask: torch.Tensor


class WindowedGenerator:
    """Windowed generation over any vector field, sampler, decoder and vocoder (all injected)."""

    def __init__(
        self,
        *,
        geometry: StreamGeometry,
        velocity: VelocityModel,
        decoder: LatentDecoder,
        vocoder: Vocoder,
        latent_channels: int,
        sampler: Sampler | None = None,
        device: torch.device | str = "cpu",
        continuity: bool = True,
        gate: EventGate | None = None,
        vocoder_condition: VocoderCondition | None = None,
    ) -> None:
        self.geometry = geometry
        self.velocity = velocity
        self.decoder = decoder
        self.vocoder = vocoder
        self.latent_channels = latent_channels
        self.sampler = sampler or euler_sampler(1)
        self.device = torch.device(device)
        self.continuity = continuity  # False only for ablations: windows forget what was emitted
        self.gate = gate  # None: every generated sound passes (frieren_rt/windowing/gate.py)
        self.vocoder_condition = vocoder_condition  # None: the vocoder reads the mel alone

    @property
    def stream_delay_samples(self) -> int:
        """Emitted sample n is timeline sample n - delay: the look-ahead, plus the held-back crossfade tail unless
        the seam lies in the look-ahead (StreamGeometry.held_tail_samples)."""
        g = self.geometry
        return g.held_tail_samples + g.lookahead_latents * g.samples_per_latent

    def new_stream(self, *, start_time: float, seed: int = 0) -> StreamState:
        g = self.geometry
        return StreamState(
            start_time=start_time,
            history=torch.zeros(self.latent_channels, 0),
            tail=torch.zeros(g.crossfade_samples),
            rng=torch.Generator().manual_seed(seed),
        )

    # --- one window ----------------------------------------------------------------------------------------
    def window_inputs(self, state: StreamState, frame_times: torch.Tensor, features: torch.Tensor) -> WindowInputs:
        """Inputs of ``state``'s next hop. frame_times (F,) float64 capture times, features (F, D)."""
        g = self.geometry
        w = g.window_latents
        start, _ = window_span(state.next_hop, g)
        lat_ts = latent_times(w, g.latent_rate, start=state.start_time + start / g.latent_rate)  # (W,)
        cond, index = window_conditioning(frame_times, features, lat_ts, g.cond_slots)
        mask = known_mask(start, w, self.final_latents(state))  # (1, W)
        if not self.continuity:
            mask = torch.zeros_like(mask)
        known = gather_known(state.history, state.history_start, start, w)  # (C, W)
        noise = torch.randn(self.latent_channels, w, generator=state.rng)
        return WindowInputs(noise=noise, cond=cond, cond_index=index, known=known, mask=mask)

    def final_latents(self, state: StreamState) -> int:
        """Latents of ``state``'s timeline that are final (known to the next window): all generated ones but,
        with ``revise_lookahead``, the provisional look-ahead at the end of the history."""
        g = self.geometry
        provisional = min(g.lookahead_latents, state.history.shape[1]) if g.revise_lookahead else 0
        return state.emitted_latents - provisional

    def sample(self, inputs: Sequence[WindowInputs]) -> torch.Tensor:
        """One batched sampling pass over several windows -> the newest ``generated_latents`` of each (the hop,
        and the revised look-ahead if any), (B, C, n) on CPU."""
        dev = self.device

        def stack(name: str) -> torch.Tensor:
            return torch.stack([getattr(i, name) for i in inputs]).to(dev)

        x0, cond, index, known, mask = (stack(n) for n in ("noise", "cond", "cond_index", "known", "mask"))

        def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.velocity(x, t, cond, cond_index=index, known=known, mask=mask)

        with torch.inference_mode():
            x1 = self.sampler(v, x0)  # (B, C, W)
        return x1[:, :, -self.geometry.generated_latents :].float().cpu()

    def commit(self, state: StreamState, hop: torch.Tensor) -> None:
        """Put a window's generated latents (C, generated_latents), which end at the hop's end, on the stream's
        history (a new tensor; ``hop`` is not kept): appended, or with ``revise_lookahead`` replacing the
        provisional look-ahead they were generated again for. Latents before the stream (or before a skip's
        restart) are dropped."""
        g = self.geometry
        new = hop.detach().cpu().float()
        begin = (state.next_hop + 1) * g.hop_latents - new.shape[1]  # timeline index of new[:, 0]
        kept = state.history[:, : max(0, begin - state.history_start)]
        history = torch.cat([kept, new[:, max(0, state.history_start - begin):]], dim=1)
        drop = max(0, history.shape[1] - g.history_latents)
        state.history = history[:, drop:].clone()
        state.history_start += drop
        state.next_hop += 1

    # --- audio ---------------------------------------------------------------------------------------------
    def decode(self, states: Sequence[StreamState], times: dict[str, float] | None = None,
               conditions: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """Batched decode of the ``context + hop`` latents that end ``lookahead`` latents before each stream's
        newest -> (B, (context + hop) * spl + seam), seam = ``crossfade_samples`` when the seam lies in the
        look-ahead, else 0; the look-ahead latents are decoded too, as right context (and that seam).
        ``conditions`` (each stream's frame times and features, as :meth:`step` takes them) are needed when the
        generator has a ``vocoder_condition``."""
        g = self.geometry
        n, ahead = g.context_latents + g.hop_latents, g.lookahead_latents
        z = torch.stack([gather_known(s.history, s.history_start, s.emitted_latents - n - ahead, n + ahead)
                         for s in states])
        times = {} if times is None else times
        with torch.inference_mode():
            with stopwatch(times, "vae_decode", self.device):
                mel = self.decoder(z.to(self.device))  # (B, M, n * mels_per_latent)
            with stopwatch(times, "vocoder", self.device):
                if self.vocoder_condition is not None:
                    mel = torch.cat([mel, self._vocoder_conditions(states, conditions, mel.shape[-1], n + ahead)
                                     .to(mel.device, mel.dtype)], dim=1)  # (B, M + C, frames)
                wave = self.vocoder(mel)
        wave = wave.reshape(wave.shape[0], -1).float().cpu()  # (B, (n + ahead) * spl)
        if wave.shape[1] != (n + ahead) * g.samples_per_latent:
            raise ValueError(f"decoder+vocoder gave {wave.shape[1]} samples for {n + ahead} latents, "
                             f"expected {(n + ahead) * g.samples_per_latent}")
        seam = g.crossfade_samples - g.held_tail_samples  # the look-ahead's share of the seam
        return wave[:, : n * g.samples_per_latent + seam]  # the rest of the look-ahead's samples are not emitted

    def _vocoder_conditions(self, states: Sequence[StreamState],
                            conditions: Sequence[tuple[torch.Tensor, torch.Tensor]] | None, frames: int,
                            latents: int) -> torch.Tensor:
        """(B, C, frames): ``vocoder_condition`` of each stream's frames on the timeline times of the decoded mel
        frames, which begin with latent ``emitted - latents`` (mel frame j of the timeline is centred at
        (j + 1/2) hop after the stream's start, as the cached mels the vocoder trained on are)."""
        assert self.vocoder_condition is not None
        if conditions is None or len(conditions) != len(states):
            raise ValueError("this vocoder reads the picture's events: decode needs each stream's frames")
        per_latent = frames // latents
        return torch.stack([
            self.vocoder_condition(ft, f, s.start_time + mel_frame_times(frames, (s.emitted_latents - latents)
                                                                          * per_latent))
            for s, (ft, f) in zip(states, conditions, strict=True)])

    def stitch(self, states: Sequence[StreamState], wave: torch.Tensor) -> list[torch.Tensor]:
        """Crossfade each decode's seam with the held tail; emit ``hop_samples`` each and hold the new tail.

        The seam starts ``crossfade_samples`` before the previous hop's end (the tail held back from it), or at
        that end when the seam lies in the look-ahead (the tail is the start of its look-ahead's audio)."""
        g = self.geometry
        x, h = g.crossfade_samples, g.hop_samples
        a = g.context_latents * g.samples_per_latent - g.held_tail_samples  # seam start in ``wave``
        tails = torch.stack([s.tail for s in states])  # (B, X)
        seam = crossfade(tails, wave[:, a : a + x], g.crossfade_law)  # (B, X)
        out = torch.cat([seam, wave[:, a + x : a + h]], dim=1)  # (B, hop_samples)
        for s, new_tail in zip(states, wave[:, a + h : a + h + x], strict=True):
            s.tail = new_tail.clone()
            s.emitted_samples += out.shape[1]
        return list(out.unbind(0))

    def step(
        self, states: Sequence[StreamState], conditions: Sequence[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[list[torch.Tensor], dict[str, float]]:
        """One hop for each stream, batched: conditions[i] = (frame_times (F,), features (F, D)).

        Returns each stream's new ``hop_samples`` audio (model rate) and stage seconds
        (``vector_field``, ``vae_decode``, ``vocoder``).
        """
        times: dict[str, float] = {}
        inputs = [self.window_inputs(s, ft, f) for s, (ft, f) in zip(states, conditions, strict=True)]
        with stopwatch(times, "vector_field", self.device):
            hops = self.sample(inputs)
        for s, hop in zip(states, hops, strict=True):
            self.commit(s, hop)
        audio = self.stitch(states, self.decode(states, times, conditions))
        if self.gate is not None:
            audio = [self._gated(s, a, *c) for s, a, c in zip(states, audio, conditions, strict=True)]
        return audio, times

    def _timeline_time(self, state: StreamState, emitted_index: int) -> float:
        """Capture time at which emitted sample ``emitted_index`` of ``state`` plays."""
        g = self.geometry
        return state.start_time + (emitted_index - self.stream_delay_samples) / g.model_sample_rate

    def _gated(self, state: StreamState, audio: torch.Tensor, frame_times: torch.Tensor,
               features: torch.Tensor) -> torch.Tensor:
        assert self.gate is not None
        state.gate_events = self.gate.events(frame_times, features)
        first = self._timeline_time(state, state.emitted_samples - audio.shape[0])
        return self.gate.apply(audio, first, self.geometry.model_sample_rate, state.gate_events)

    def flush(self, state: StreamState) -> torch.Tensor:
        """The held tail, for the end of a finite clip: (crossfade_samples,)."""
        tail, state.tail = state.tail, torch.zeros_like(state.tail)
        if self.gate is not None and state.gate_events is not None:
            first = self._timeline_time(state, state.emitted_samples)
            tail = self.gate.apply(tail, first, self.geometry.model_sample_rate, state.gate_events)
        return tail


def generate_offline(
    generator: WindowedGenerator,
    frame_times: torch.Tensor,
    features: torch.Tensor,
    duration_s: float,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    timings: dict[str, float] | None = None,
) -> torch.Tensor:
    """A whole clip through the streaming loop: (F,) capture times + (F, D) features -> (N,) audio at the model
    rate, sample 0 at ``frame_times[0]``, N = round(duration_s * rate). Same seams and timing as streaming."""
    g = generator.geometry
    state = generator.new_stream(start_time=float(frame_times[0]), seed=seed)
    n = round(duration_s * g.model_sample_rate)
    chunks = []
    # Enough hops that the emitted audio, delayed by the crossfade and the look-ahead, covers the clip.
    hops = math.ceil((n + g.lookahead_latents * g.samples_per_latent) / g.hop_samples)
    for k in range(hops):
        audio, times = generator.step([state], [(frame_times, features)])
        chunks.append(audio[0])
        if timings is not None:  # per-stage seconds summed over hops
            for key, value in times.items():
                timings[key] = timings.get(key, 0.0) + value
        if progress is not None:
            progress(k + 1, hops)
    chunks.append(generator.flush(state))
    delay = generator.stream_delay_samples
    return torch.cat(chunks)[delay : delay + n]
