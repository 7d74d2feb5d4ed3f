"""The visual event detector: causal per-frame features, its scoring, persistence, and that it can learn."""

from __future__ import annotations

import torch

from frieren_rt.vision.events import DetectorConfig, EventDetector, detector_loss, onset_peaks, onset_scores

CLASSES = ("flash", "dim")


def _detector(seed: int = 0) -> EventDetector:
    torch.manual_seed(seed)
    return EventDetector(DetectorConfig(height=12, width=16, widths=(4, 8, 8), embed=8, classes=CLASSES))


def test_features_are_causal_and_continue_across_calls():
    det = _detector()
    frames = torch.randint(0, 256, (6, 3, 24, 32), dtype=torch.uint8)
    whole = det.features(frames)
    split = torch.cat([det.features(frames[:2]), det.features(frames[2:], frames[1])])
    torch.testing.assert_close(split, whole)
    changed = frames.clone()
    changed[4:] = 0  # the future must not change earlier frames' features
    torch.testing.assert_close(det.features(changed)[:4], whole[:4])
    assert whole.shape == (6, det.cfg.feature_dim) == (6, 8 + 3)
    torch.testing.assert_close(whole[:, 8:].sum(-1), torch.ones(6))  # posteriors


def test_onset_scores_match_within_one_frame_only():
    labels = torch.tensor([2, 2, 0, 2, 2, 2, 1, 2, 2, 2])  # class 0 at frame 2, class 1 at frame 6 (2 = none)

    def posteriors(shift: int) -> torch.Tensor:
        p = torch.zeros(10, 3)
        p[:, 2] = 1.0
        for frame, cls in ((2, 0), (6, 1)):
            p[frame + shift] = torch.nn.functional.one_hot(torch.tensor(cls), 3).float()
        return p

    exact = onset_scores([posteriors(0)], [labels])
    assert exact["onset_f1"] == 1.0 and exact["class_acc"] == 1.0
    assert onset_scores([posteriors(1)], [labels])["onset_f1"] == 1.0
    assert onset_scores([posteriors(2)], [labels])["onset_f1"] == 0.0
    assert onset_peaks(torch.tensor([0.1, 0.9, 0.9, 0.2]), 0.5) == [2]  # one peak on a plateau


def test_save_and_load_round_trip(tmp_path):
    det = _detector()
    det.save(tmp_path / "d.safetensors")
    back = EventDetector.from_pretrained(tmp_path / "d.safetensors")
    assert back.cfg == det.cfg
    x = torch.randint(0, 256, (3, 3, 12, 16), dtype=torch.uint8)
    torch.testing.assert_close(back.features(x), det.features(x))


def test_learns_which_frame_shows_the_cause():
    """A square lights up (class 'flash') or goes dark (class 'dim') at random frames over a static scene with
    a moving distractor; after a short training the detector finds those frames and their classes."""
    gen = torch.Generator().manual_seed(0)

    def clip(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
        frames = torch.full((n, 3, 12, 16), 60, dtype=torch.uint8)
        labels = torch.full((n,), 2)
        lit = False
        for t in range(n):
            x = int(t % 12)
            frames[t, :, 1:3, x : x + 2] = 200  # distractor: moves every frame, never an event
            if t > 0 and torch.rand(1, generator=gen) < 0.12:
                lit = not lit
                labels[t] = 0 if lit else 1
            if lit:
                frames[t, :, 7:11, 5:9] = 255
        return frames, labels

    det = _detector()
    opt = torch.optim.Adam(det.parameters(), lr=1e-2)
    for _ in range(150):
        frames, labels = clip()
        loss = detector_loss(det(frames)[0], labels, none_weight=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tests = [clip() for _ in range(4)]
    with torch.no_grad():
        post = [det(f)[0].softmax(-1) for f, _ in tests]
    scores = onset_scores(post, [lab for _, lab in tests])
    assert scores["onset_f1"] > 0.9 and scores["class_acc"] > 0.9, scores


def test_feature_extractor_appends_detector_features_and_streams_them(mobilenet):
    from frieren_rt.data.cache import FeatureExtractor

    det = _detector()
    ext = FeatureExtractor(resolution=64, motion_grid=4, detector=det)
    frames = torch.randint(0, 256, (5, 24, 32, 3), dtype=torch.uint8)
    _, motion = ext(frames)
    assert motion.shape == (5, 17 + det.cfg.feature_dim)
    _, tail = ext(frames[3:], frames[2], phase=3)
    torch.testing.assert_close(tail, motion[3:])  # continuity across calls, as the engine streams


def test_several_streams_in_one_call_match_a_call_each(mobilenet):
    """The engine's batched hop: one network call per stage for every session gives each session what a call
    of its own would (motion and detector see only their own stream's previous frame; image hold per stream)."""
    from frieren_rt.data.cache import FeatureExtractor, StreamChunk

    det = _detector()
    ext = FeatureExtractor(resolution=64, motion_grid=4, image_every=2, detector=det)
    g = torch.Generator().manual_seed(3)
    frames = [torch.randint(0, 256, (n, 24, 32, 3), generator=g, dtype=torch.uint8) for n in (3, 1, 2)]
    chunks = [StreamChunk(frames[0]), StreamChunk(frames[1], frames[0][-1], phase=3, held=torch.randn(1280)),
              StreamChunk(frames[2], frames[1][0], phase=4, held=torch.randn(1280))]
    together = ext.many(chunks)
    for chunk, (image, motion) in zip(chunks, together, strict=True):
        alone_image, alone_motion = ext(chunk.frames, chunk.previous, phase=chunk.phase, held=chunk.held)
        torch.testing.assert_close(image, alone_image)
        torch.testing.assert_close(motion, alone_motion, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[1][0][0], chunks[1].held)  # phase 3 is not encoded: the held features


def test_any_number_of_conv_stages_round_trips(tmp_path):
    """A deeper detector (issue 3: the three-stage one under-fits its own training clips) saves its widths in
    the file's metadata and loads back to the same features."""
    torch.manual_seed(1)
    det = EventDetector(DetectorConfig(height=16, width=16, widths=(4, 8, 8, 12), embed=8, classes=CLASSES))
    assert len([m for m in det.cnn if isinstance(m, torch.nn.Conv2d)]) == 4
    det.save(tmp_path / "d.safetensors")
    back = EventDetector.from_pretrained(tmp_path / "d.safetensors")
    assert back.cfg.widths == (4, 8, 8, 12)
    x = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(back.features(x), det.features(x))


def test_event_trace_holds_a_one_frame_peak_with_its_decay_and_reads_no_later_frame():
    from frieren_rt.vision.events import event_trace  # noqa: PLC0415

    post = torch.zeros(1, 6, 2)
    post[0, 1, 0] = 1.0  # class 0 fires on frame 1 only
    post[0, 3, 1] = 0.5
    trace = event_trace(post, 0.5)
    torch.testing.assert_close(trace[0, :, 0], torch.tensor([0.0, 1.0, 0.5, 0.25, 0.125, 0.0625]))
    torch.testing.assert_close(trace[0, :, 1], torch.tensor([0.0, 0.0, 0.0, 0.5, 0.25, 0.125]))
    later = post.clone()
    later[0, 4:] = 1.0  # the future must not change earlier frames' traces
    torch.testing.assert_close(event_trace(later, 0.5)[:, :4], trace[:, :4])
    post[0, 2, 0] = 0.9  # a fresh peak above the fading one replaces it
    assert abs(float(event_trace(post, 0.5)[0, 2, 0]) - 0.9) < 1e-6


def test_tail_presence_spares_the_attack_and_a_new_onset_and_fades_over_the_tail():
    from frieren_rt.vision.events import tail_presence  # noqa: PLC0415

    k = 2
    feats = torch.zeros(1, 8, 3 + k + 1)  # [other features | class posteriors | "no event"]
    feats[0, :, -1] = 1.0
    feats[0, 1, -(k + 1):] = torch.tensor([1.0, 0.0, 0.0])  # an onset on frame 1
    feats[0, 6, -(k + 1):] = torch.tensor([0.0, 1.0, 0.0])  # a new onset on frame 6
    tail = tail_presence(feats, torch.arange(8), k, decay=0.5, delay=2)[0, 0]
    assert tail[:3].tolist() == [0.0, 0.0, 0.0]  # before the onset, and its attack (frames 1-2)
    torch.testing.assert_close(tail[3:6], torch.tensor([0.25, 0.125, 0.0625]))  # the tail, fading
    assert tail[6:].tolist() == [0.0, 0.0]  # a new onset and its next frame get the attack's full guidance
    index = torch.tensor([[0, 3, 3, 4]])  # latents read the frame nearest their time
    torch.testing.assert_close(tail_presence(feats, index, k, decay=0.5, delay=2)[0, 0],
                               torch.tensor([0.0, 0.25, 0.25, 0.125]))
