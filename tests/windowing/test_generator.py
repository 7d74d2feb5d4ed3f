"""The windowed generator: continuity, one onset per event, seamless decode, timing tied to video."""

import numpy as np
import pytest
import torch

from frieren_rt.windowing import StreamGeometry, euler_sampler, generate_offline
from tests.windowing.standins import (
    MELS,
    SR,
    BatchSpy,
    JitteryEventModel,
    OlaVocoder,
    envelope_onsets,
    make_generator,
    tiny_vector_field,
)

C = 8
FPS = 30.0


def _event_clip(event_time: float, duration: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """30 fps features (F, C): channel 0 event intensity (one frame), channels 1.. background 0.02."""
    times = torch.arange(int(duration * FPS), dtype=torch.float64) / FPS + 10.0  # capture clock starts at 10 s
    feats = torch.full((len(times), C), 0.02)
    feats[:, 0] = 0.0
    feats[int(round((event_time - 10.0) * FPS)), 0] = 1.0
    return times, feats


def _offline_with_latents(gen, times, feats, duration):  # noqa: ANN001, ANN202
    """generate_offline, plus every emitted latent and their one-shot decode (the seam-free reference)."""
    hops: list[torch.Tensor] = []
    commit = gen.commit
    gen.commit = lambda state, hop: (hops.append(hop.clone()), commit(state, hop))[1]
    audio = generate_offline(gen, times, feats, duration).numpy()
    with torch.no_grad():
        ref = gen.vocoder(gen.decoder(torch.cat(hops, dim=1)[None]))[0].numpy()
    return audio, ref[: len(audio)]


def _seam_event_time(g: StreamGeometry, hop: int) -> float:
    """Capture time of a frame on screen for the last latent before hop ``hop``'s first latent (a seam)."""
    t = 10.0 + (hop * g.hop_latents - 0.5) / g.latent_rate
    return float(np.floor(t * FPS) / FPS)


@pytest.mark.parametrize("continuity", [True, False])
def test_an_event_just_before_a_seam_gives_one_onset_only_with_continuity(continuity: bool) -> None:
    g = StreamGeometry()
    hop = 7  # the event falls in hop 6 (call 6: placed on time); hop 7 (call 7) would place it 3 latents late
    event_time = _seam_event_time(g, hop)
    times, feats = _event_clip(event_time)
    gen = make_generator(JitteryEventModel(C, jitter=3), continuity=continuity)
    audio, ref = _offline_with_latents(gen, times, feats, 2.0)
    onsets = envelope_onsets(audio, threshold=0.05)
    if not continuity:
        assert len(onsets) == 2, "negative control: without known latents the jittery model doubles the event"
        return
    assert len(onsets) == 1
    # Tied to video time: the burst starts within a latent (+ vocoder spread) of the frame's capture time.
    assert abs(onsets[0] / SR - (event_time - 10.0)) < 0.035
    # No click at the seam: the event straddles it, yet sample-to-sample jumps there are those of a one-shot
    # decode of the same latents (which has no seam at all), and the waveform stays close to it.
    near = slice(hop * g.hop_samples - 1000, hop * g.hop_samples + 500)
    assert np.abs(np.diff(audio[near])).max() <= 1.05 * np.abs(np.diff(ref[near])).max()
    assert np.abs(audio[near] - ref[near]).max() < 0.1 * np.abs(ref[near]).max()


def test_streamed_audio_equals_one_shot_decode_away_from_seams_and_stays_close_on_them() -> None:
    g = StreamGeometry()
    gen = make_generator(tiny_vector_field(raw_dim=C))
    times = torch.arange(90, dtype=torch.float64) / FPS
    feats = torch.randn(90, C, generator=torch.Generator().manual_seed(3))
    n_hops = 12
    audio, ref = _offline_with_latents(gen, times, feats, n_hops * g.hop_duration_s)
    n = len(audio)
    peak = np.abs(ref).max()
    seam_mask = np.zeros(n, dtype=bool)
    for k in range(1, n_hops):  # the crossfaded span of each seam, plus the tail's missing right context
        seam_mask[max(0, k * g.hop_samples - g.crossfade_samples) : k * g.hop_samples] = True
    seam_mask[: g.crossfade_samples] = True  # the fade-in at the start
    diff = np.abs(audio - ref[:n])
    assert diff[~seam_mask].max() < 1e-4 * peak
    assert diff[seam_mask].max() < 0.1 * peak
    assert np.abs(np.diff(audio)).max() < 1.2 * np.abs(np.diff(ref)).max()


def test_windows_are_told_exactly_the_latents_already_emitted() -> None:
    g = StreamGeometry()
    spy = BatchSpy(tiny_vector_field(raw_dim=C))
    gen = make_generator(spy)
    state = gen.new_stream(start_time=0.0, seed=0)
    times, feats = torch.arange(60, dtype=torch.float64) / FPS, torch.randn(60, C)
    emitted = []
    for _ in range(10):
        inputs = gen.window_inputs(state, times, feats)
        hop = gen.sample([inputs])[0]
        gen.commit(state, hop)
        emitted.append(hop)
    timeline = torch.cat(emitted, dim=1)  # (C, 90)
    for k, call in enumerate(spy.calls):
        end = (k + 1) * g.hop_latents
        start = end - g.window_latents
        mask = call["mask"][0, 0]
        known_idx = torch.arange(start, end)[mask.bool()]
        assert known_idx.tolist() == list(range(max(0, start), k * g.hop_latents))
        assert torch.allclose(call["known"][0][:, mask.bool()], timeline[:, known_idx])
        assert mask[-g.hop_latents :].sum() == 0  # the newest hop is always written fresh


def test_n_step_sampler_and_one_step_agree_on_a_straight_flow() -> None:
    times, feats = _event_clip(11.0)
    one = generate_offline(make_generator(JitteryEventModel(C, jitter=0)), times, feats, 1.0)
    four = generate_offline(
        make_generator(JitteryEventModel(C, jitter=0), sampler=euler_sampler(4)), times, feats, 1.0
    )
    assert torch.allclose(one, four, atol=1e-5)
    assert one.shape == (SR,)


@pytest.mark.parametrize("lookahead", [0, 2])
def test_with_the_decoders_right_context_generated_ahead_streamed_audio_equals_one_shot_decode(lookahead: int) -> None:
    # The stand-in decoder and vocoder read about a mel frame past each sample; two latents ahead cover both.
    g = StreamGeometry(lookahead_latents=lookahead)
    gen = make_generator(tiny_vector_field(raw_dim=C), geometry=g)
    times = torch.arange(90, dtype=torch.float64) / FPS
    feats = torch.randn(90, C, generator=torch.Generator().manual_seed(3))
    audio, ref = _offline_with_latents(gen, times, feats, 12 * g.hop_duration_s)
    assert len(audio) == round(12 * g.hop_duration_s * SR)  # the look-ahead's extra hops make up the delay
    peak = np.abs(ref).max()
    after_fade_in = slice(g.crossfade_samples, len(audio))
    diff = np.abs(audio[after_fade_in] - ref[after_fade_in]).max()
    if lookahead:
        assert diff < 1e-4 * peak  # every hop decoded from real context both sides: no seam left at all
    else:
        assert diff > 1e-3 * peak  # negative control: each hop's end read zeros past the newest latent


def test_the_look_ahead_delays_the_stream_by_its_latents_and_the_history_keeps_what_a_decode_reads() -> None:
    g0, g3 = StreamGeometry(hop_s=0.1), StreamGeometry(hop_s=0.1, lookahead_latents=3)
    gen0, gen3 = (make_generator(tiny_vector_field(raw_dim=C), geometry=g) for g in (g0, g3))
    assert gen0.stream_delay_samples == g0.crossfade_samples  # the held-back tail
    assert gen3.stream_delay_samples - gen0.stream_delay_samples == 3 * g3.samples_per_latent
    # with the seam in the look-ahead's audio nothing of the hop is held back (20 ms less latency)
    seam = make_generator(tiny_vector_field(raw_dim=C), geometry=g3.with_(lookahead_seam=True))
    assert seam.stream_delay_samples == 3 * g3.samples_per_latent
    assert g3.history_latents >= g3.context_latents + g3.hop_latents + 3
    with pytest.raises(ValueError, match="lookahead_latents"):
        StreamGeometry(lookahead_latents=-1)


@pytest.mark.parametrize("revise", [True, False])
def test_a_seam_in_the_look_ahead_is_click_free(revise: bool) -> None:
    # One look-ahead latent (512 samples) holds the 441-sample crossfade: each seam fades from the previous
    # decode's look-ahead audio into this decode's, so no tail of the hop is held back.
    g = StreamGeometry(hop_s=0.1, lookahead_latents=1, revise_lookahead=revise, lookahead_seam=True)
    gen = make_generator(tiny_vector_field(raw_dim=C), geometry=g)
    state = gen.new_stream(start_time=0.0)
    times = torch.arange(90, dtype=torch.float64) / FPS
    feats = torch.randn(90, C, generator=torch.Generator().manual_seed(3))
    chunks = [gen.step([state], [(times, feats)])[0][0] for _ in range(12)] + [gen.flush(state)]
    audio = torch.cat(chunks).numpy()[gen.stream_delay_samples:]
    with torch.no_grad():  # the final latents decoded in one shot: no seams at all
        ref = gen.vocoder(gen.decoder(state.history[None]))[0].numpy().reshape(-1)
    span = slice(g.crossfade_samples, min(len(audio), len(ref)) - g.hop_samples)  # after the fade-in
    # no click: sample-to-sample jumps no larger than the one-shot decode's (measured 0.93x revised, 1.0x kept)
    assert np.abs(np.diff(audio[span])).max() <= 1.05 * np.abs(np.diff(ref[span])).max()
    if not revise:  # the look-ahead kept: both sides of each seam decode the same latents
        assert np.abs(audio[span] - ref[span]).max() < 0.1 * np.abs(ref[span]).max()


class _NeedsVideoAfter:
    """A "model" that can only make an event's sound once it has seen ``need`` latents of video after the event
    (as the trained field commits a transient better with frames after it): a one-latent burst at the event's
    latent j when j + need < n, nothing otherwise; known latents (mask 1) are copied. One Euler step lands on
    the target."""

    def __init__(self, need: int) -> None:
        self.need = need

    def __call__(self, x, t, cond, *, cond_index, known, mask):  # noqa: ANN001, ANN204
        b, c, n = x.shape
        feat = torch.gather(cond, 1, cond_index[..., None].expand(-1, -1, cond.shape[-1]))  # (B, T, D)
        event = feat[..., 0] > 0.5
        onset = event & ~torch.nn.functional.pad(event, (1, 0))[:, :-1]
        target = feat[..., 1:2].transpose(1, 2).expand(-1, c, -1).clone()  # background (B, C, T)
        for bi, j in onset.nonzero().tolist():
            if j + self.need < n:
                target[bi, :, j] = 1.0
        target = known * mask + target * (1 - mask)
        return (target - x) / (1 - t)[:, None, None].clamp_min(1e-6)


@pytest.mark.parametrize("revise", [True, False])
def test_a_revised_look_ahead_lets_the_field_see_video_after_what_it_commits(revise: bool) -> None:
    g = StreamGeometry(hop_s=0.1, lookahead_latents=5, revise_lookahead=revise)
    assert g.generated_latents == g.hop_latents + (5 if revise else 0)
    times, feats = _event_clip(11.0)
    gen = make_generator(_NeedsVideoAfter(need=4), geometry=g)
    audio = generate_offline(gen, times, feats, 2.0).numpy()
    onsets = envelope_onsets(audio, threshold=0.05)
    if not revise:
        # negative control: the event's latent was committed at the window's end, before any video after it,
        # and was known (copied, silent) to every later window; decode-only look-ahead does not bring it back
        assert onsets == []
        return
    assert len(onsets) == 1
    assert abs(onsets[0] / SR - 1.0) < 2 / g.latent_rate  # on time, on the stream's timeline


def test_a_revised_look_ahead_is_unknown_to_the_next_window_and_replaced_in_the_history() -> None:
    g = StreamGeometry(hop_s=0.1, lookahead_latents=5, revise_lookahead=True)
    spy = BatchSpy(tiny_vector_field(raw_dim=C))
    gen = make_generator(spy, geometry=g)
    state = gen.new_stream(start_time=0.0)
    times = torch.arange(90, dtype=torch.float64) / FPS
    feats = torch.randn(90, C, generator=torch.Generator().manual_seed(3))
    for _ in range(8):
        before, before_start = state.history.clone(), state.history_start
        final = before.shape[1] - min(5, before.shape[1])  # latents of ``before`` that are final
        gen.step([state], [(times, feats)])
        assert state.emitted_latents == state.next_hop * g.hop_latents  # one hop more on the timeline
        lo = max(before_start, state.history_start)  # what both histories still hold of the final latents
        hi = before_start + final
        if hi > lo:
            assert torch.equal(state.history[:, lo - state.history_start : hi - state.history_start],
                               before[:, lo - before_start : hi - before_start])  # final latents never change
    for call in spy.calls[3:]:  # once the stream is longer than the revised span
        mask = call["mask"][0, 0]
        unknown_tail = len(mask) - int(torch.nonzero(mask).max()) - 1
        assert unknown_tail == g.hop_latents + 5  # the hop and the provisional look-ahead are generated anew
    with pytest.raises(ValueError, match="exceeds the window"):
        StreamGeometry(hop_s=0.1, window_s=0.2, lookahead_latents=6, revise_lookahead=True)


class _ConditionedVocoder(OlaVocoder):
    """OlaVocoder on the first MELS channels; records the condition channels after them."""

    def __init__(self) -> None:
        super().__init__()
        self.conditions: list[torch.Tensor] = []

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self.conditions.append(mel[:, MELS:].clone())
        return super().forward(mel[:, :MELS])


def test_a_conditioned_vocoder_reads_its_condition_on_the_decoded_mel_frames_timeline_times() -> None:
    g = StreamGeometry(lookahead_latents=1, revise_lookahead=True)
    times, feats = _event_clip(11.0)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def condition(frame_times: torch.Tensor, features: torch.Tensor, mel_times: torch.Tensor) -> torch.Tensor:
        seen.append((frame_times, features))
        return mel_times[None].float()  # (1, M): each frame's own time, to check where it lies

    plain = make_generator(JitteryEventModel(C, jitter=0), channels=C, geometry=g)
    vocoder = _ConditionedVocoder()
    gen = make_generator(JitteryEventModel(C, jitter=0), channels=C, geometry=g, vocoder_condition=condition)
    gen.vocoder = vocoder
    a, b = plain.new_stream(start_time=10.0), gen.new_stream(start_time=10.0)
    per_mel = 256 / SR
    for _ in range(4):
        expected, _ = plain.step([a], [(times, feats)])
        audio, _ = gen.step([b], [(times, feats)])
        assert torch.equal(audio[0], expected[0])  # the condition reaches the vocoder beside the mel, untouched
        first = (b.emitted_latents - (gen.geometry.context_latents + g.hop_latents + g.lookahead_latents)) * 2
        got = vocoder.conditions[-1][0, 0].double()
        want = 10.0 + (torch.arange(first, first + got.shape[0], dtype=torch.float64) + 0.5) * per_mel
        assert torch.allclose(got, want, atol=1e-5)
    assert all(ft is times and f is feats for ft, f in seen)  # from the frames the window was conditioned on
    with pytest.raises(ValueError, match="needs each stream's frames"):
        gen.decode([b])
