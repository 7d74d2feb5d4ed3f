"""MobileNetV2: torchvision key layout, strict weight loading, sane ImageNet behaviour, the frozen encoder."""

from __future__ import annotations

import pytest
import torch

from frieren_rt.assets.paths import AssetMissingError, asset_file
from frieren_rt.vision.encoder import ImageEncoder, preprocess
from frieren_rt.vision.mobilenet_v2 import WEIGHTS_PATH, WEIGHTS_SOURCE, MobileNetV2

# ImageNet-1k indices of the geological-formation classes: alp 970, cliff 972, geyser 974, lakeside 975,
# promontory 976, sandbar 977, seashore 978, valley 979, volcano 980.
SEASHORE, CLIFF, ALP = 978, 972, 970
LANDSCAPES = set(range(970, 981))


def test_architecture_has_torchvisions_parameter_count_and_key_names():
    model = MobileNetV2()
    assert sum(p.numel() for p in model.parameters()) == 3_504_872  # torchvision mobilenet_v2
    keys = set(model.state_dict())
    assert {
        "features.0.0.weight",
        "features.1.conv.1.weight",
        "features.2.conv.3.running_var",
        "features.18.1.num_batches_tracked",
        "classifier.1.bias",
    } <= keys


def test_checkpoint_loads_strictly_with_weights_only(mobilenet):
    state = torch.load(asset_file(WEIGHTS_SOURCE, WEIGHTS_PATH), map_location="cpu", weights_only=True)
    assert set(state) == set(mobilenet.state_dict())
    assert not mobilenet.training


def test_constant_image_gives_stable_logits_and_sane_features(mobilenet):
    grey = torch.full((2, 3, 96, 96), 128, dtype=torch.uint8)
    noise = torch.randint(
        0, 256, (1, 3, 96, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        x = preprocess(torch.cat([grey, noise]), 96)
        feats = mobilenet.pooled(x)
        logits = mobilenet.classifier(feats)
    assert torch.isfinite(logits).all() and logits.shape == (3, 1000)
    torch.testing.assert_close(logits[0], logits[1])  # eval-mode BatchNorm: no batch dependence
    assert (feats >= 0).all() and (feats <= 6).all()  # averages of ReLU6 maps
    assert 0.05 < feats.mean() < 2.0 and (feats[0] > 0).float().mean() > 0.2
    assert (feats[0] - feats[2]).abs().mean() > 0.05  # content changes the feature


def _photo(name: str) -> torch.Tensor:
    av = pytest.importorskip("av")
    try:
        path = asset_file("debian/endless-sky-data", f"usr/share/games/endless-sky/images/land/{name}")
    except AssetMissingError as err:
        pytest.skip(f"endless-sky-data landscape photos not in the asset cache: {err}")
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    return torch.from_numpy(frame).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8


@pytest.mark.parametrize(
    ("name", "label"), [("beach3.jpg", SEASHORE), ("canyon2.jpg", CLIFF), ("mountain6.jpg", ALP)]
)
def test_public_domain_landscape_photos_classify_as_landscapes(mobilenet, name, label):
    with torch.inference_mode():
        probs = mobilenet(preprocess(_photo(name), 224)).softmax(-1)[0]
    top5 = set(probs.topk(5).indices.tolist())
    assert label in top5 and int(probs.argmax()) in LANDSCAPES


def test_image_encoder_returns_frozen_per_frame_features(mobilenet):
    encoder = ImageEncoder(mobilenet, resolution=96).train()
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    frames = torch.randint(
        0, 256, (2, 3, 3, 72, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    feats = encoder(frames)
    assert feats.shape == (2, 3, 1280)
    with torch.inference_mode():
        single = mobilenet.pooled(preprocess(frames[1, 2:3], 96))
    torch.testing.assert_close(feats[1, 2:3], single, rtol=1e-4, atol=1e-5)
