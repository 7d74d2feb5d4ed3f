"""The official weights folder: sizes computed from the key lists, one error naming every bad file."""

from __future__ import annotations

import json

import pytest

from frieren_rt.official.weights import SIZES, OfficialWeightsError, check_weights_dir, expected_files
from tests.official.helpers import fixtures_dir


def test_expected_sizes_are_the_published_tensor_bytes():
    """Official sizes (meta device, no memory): the fixtures' state_dict_fp32_bytes, less BatchNorm counters."""
    root = fixtures_dir()
    want = {c: json.loads((root / f"{c}_official.json").read_text())["state_dict_fp32_bytes"]
            for c in ("dit", "vae", "bigvgan", "cavp")}
    counters = sum(1 for k in json.loads((root / "cavp_official_keys.json").read_text())["keys"]
                   if k.endswith("num_batches_tracked"))
    both = {f.name: f.min_bytes for f in expected_files(SIZES["official"], separate_vae=False)}
    split = {f.name: f.min_bytes for f in expected_files(SIZES["official"], separate_vae=True)}
    assert both["frieren.ckpt"] == want["dit"] + want["vae"] == 1_488_939_616
    assert split["frieren.ckpt"] == want["dit"] and split["vae.ckpt"] == want["vae"]
    assert both["vocoder/best_netG.pt"] == want["bigvgan"]
    assert both["cavp_epoch66.ckpt"] == want["cavp"] - 8 * counters


def test_empty_folder_lists_every_missing_file_with_name_and_size(tmp_path):
    with pytest.raises(OfficialWeightsError) as err:
        check_weights_dir(tmp_path)
    msg = str(err.value)
    assert "4 problems" in msg
    for line in ("missing   frieren.ckpt", "at least 1,488,939,616 bytes", "missing   vocoder/best_netG.pt",
                 "at least 448,935,464 bytes", "missing   vocoder/args.yml", "missing   cavp_epoch66.ckpt",
                 "at least 130,946,816 bytes"):
        assert line in msg, f"{line!r} not in:\n{msg}"


def test_small_files_wrong_vocoder_config_and_a_misnamed_checkpoint_are_reported(tmp_path):
    (tmp_path / "vocoder").mkdir()
    (tmp_path / "vocoder" / "best_netG.pt").write_bytes(b"x" * 1000)
    from tests.official.official_folder import args_yml  # noqa: PLC0415

    (tmp_path / "vocoder" / "args.yml").write_text(args_yml(SIZES["reduced"]))
    (tmp_path / "cavp_epoch66.ckpt").write_bytes(b"x" * 10)
    (tmp_path / "epoch=000123.ckpt").write_bytes(b"x")
    with pytest.raises(OfficialWeightsError) as err:
        check_weights_dir(tmp_path)
    msg = str(err.value)
    assert "too small vocoder/best_netG.pt: 1,000 bytes" in msg
    assert "too small cavp_epoch66.ckpt: 10 bytes" in msg
    assert "mismatch  vocoder/args.yml: upsample_initial_channel=128 (expected 1536)" in msg
    assert "missing   frieren.ckpt" in msg and "epoch=000123.ckpt" in msg


def test_a_complete_reduced_folder_passes_and_a_separate_vae_is_picked_up(tmp_path):
    from tests.official.official_folder import write_official_folder  # noqa: PLC0415

    write_official_folder(tmp_path, SIZES["reduced"])
    layout = check_weights_dir(tmp_path, SIZES["reduced"])
    assert layout.vae is None and layout.ckpt.name == "frieren.ckpt"
    with pytest.raises(OfficialWeightsError, match="too small frieren.ckpt"):
        check_weights_dir(tmp_path)  # official widths expected: the reduced files are far too small
