"""aiSFX embedder (frieren_rt/eval/aisfx.py): front end, strict checkpoint load, sensible embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frieren_rt.eval.aisfx import AISFX, AisfxNet, aisfx_features, frame_blocks, htk_mel_filterbank
from frieren_rt.eval.classify import event_snippets
from tests.eval.conftest import requires_aisfx


def test_htk_filterbank_unit_sum_and_centres_on_htk_scale():
    fb = htk_mel_filterbank(96, 2048, 44100, 0.0, 22050.0)
    assert fb.shape == (96, 1025)
    np.testing.assert_allclose(fb.sum(1), 1.0, rtol=1e-5)
    freqs = np.linspace(0, 22050, 1025)
    centres = freqs[fb.argmax(1)]
    expected = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 22050 / 700), 98)[1:-1] / 2595) - 1)
    assert np.all(np.abs(centres - expected) <= 22050 / 1024)  # within one FFT bin of the HTK band centres


def test_features_shape_range_and_peak_band():
    t = np.arange(22050) / 22050  # 1 s of a 1 kHz sine at 22.05 kHz
    feats = aisfx_features(0.3 * np.sin(2 * np.pi * 1000 * t), 22050)
    assert feats.shape == (1 + 44100 // 1024, 96)
    assert 0.0 <= float(feats.min()) and float(feats.max()) <= 1.0
    fb = htk_mel_filterbank(96, 2048, 44100, 0.0, 22050.0)
    band = int(feats[5:-5].mean(0).argmax())
    assert abs(np.linspace(0, 22050, 1025)[fb[band].argmax()] - 1000) < 60


def test_frame_blocks_pad_short_and_hop_long():
    assert frame_blocks(torch.ones(30, 96), 100, 50).shape == (1, 100, 96)
    blocks = frame_blocks(torch.arange(250.0)[:, None].expand(250, 96), 100, 50)
    assert blocks.shape == (4, 100, 96)
    assert blocks[1, 0, 0] == 50 and blocks[3, -1, 0] == 249


def test_net_shapes_without_weights():
    net = AisfxNet().eval()
    with torch.no_grad():
        emb = net(torch.rand(2, 100, 96))
    assert emb.shape == (2, 512)
    assert net.head_logits(emb, "ucsMixed").shape == (2, 69)


@pytest.fixture(scope="module")
def aisfx_model():
    from frieren_rt.eval.aisfx import Aisfx

    return Aisfx.from_pretrained()


@requires_aisfx
def test_checkpoint_loads_strictly(aisfx_model):
    from frieren_rt.eval.aisfx import checkpoint_path, load_checkpoint

    state, _ = load_checkpoint(checkpoint_path())  # weights_only=True with three numpy globals allowed
    assert set(state) == set(aisfx_model.net.state_dict())
    n_params = sum(p.numel() for p in aisfx_model.net.embedding_net.parameters())
    assert 4.5e6 < n_params < 5.0e6  # 4.7 M in the CNN (6.2 M with the nine heads)


@requires_aisfx
def test_embed_clip_shapes(aisfx_model, test_clips):
    audio = test_clips[0].audio  # 10 s at 22.05 kHz -> 431 frames -> blocks at 0, 50, ..., 300
    emb = aisfx_model.embed(audio, 22050)
    assert emb.shape == (7, AISFX.embed_dim)
    assert torch.isfinite(emb).all() and (emb >= 0).all()  # ReLU features, max-pooled
    assert aisfx_model.embed_clip(audio, 22050).shape == (512,)
    probs = aisfx_model.head_probs(emb)
    torch.testing.assert_close(probs.sum(1), torch.ones(7))


@requires_aisfx
def test_same_class_snippets_closer_than_different_class(aisfx_model, test_clips):
    """0.5 s onset snippets of true test audio (dense mixtures): cosine similarity of the centred embeddings
    is higher within a class (measured 0.13) than across classes (-0.02); leave-one-out 1-NN class accuracy
    0.34 against a chance of 0.09."""
    clips = test_clips[:8]
    snippets = np.concatenate([event_snippets(c.audio, c.events, 22050, 0.5) for c in clips])
    labels = np.array([e.cls for c in clips for e in c.events])
    emb = aisfx_model.embed_snippets(snippets, 22050)
    emb = torch.nn.functional.normalize(emb - emb.mean(0), dim=1)  # raw embeddings are all >= 0: centre
    sim = (emb @ emb.T).numpy()
    same = (labels[:, None] == labels[None, :]) & ~np.eye(len(labels), dtype=bool)
    diff = labels[:, None] != labels[None, :]
    assert sim[same].mean() > sim[diff].mean() + 0.08
    np.fill_diagonal(sim, -np.inf)
    assert (labels[sim.argmax(1)] == labels).mean() > 0.2
