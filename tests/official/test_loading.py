"""Checkpoint reading and strict loading report every problem at once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frieren_rt.official.loading import (
    CheckpointMismatchError,
    check_state_dict,
    load_strict,
    read_state_dict,
    select_prefix,
    strip_substring,
)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)


def test_error_lists_missing_unexpected_and_misshapen_keys_with_shapes():
    state = dict(_Tiny().state_dict())
    del state["lin.bias"]
    state["lin.weight"] = torch.zeros(2, 4)
    state["extra.weight"] = torch.zeros(5)
    with pytest.raises(CheckpointMismatchError) as err:
        check_state_dict(_Tiny(), state, what="tiny")
    msg = str(err.value)
    assert "tiny: checkpoint does not match the module (1 missing, 1 unexpected, 1 wrong shape)" in msg
    assert "missing    lin.bias: expected shape (2,)" in msg
    assert "unexpected extra.weight: shape (5,)" in msg
    assert "shape      lin.weight: expected (2, 3), found (2, 4)" in msg


def test_ignored_prefixes_and_missing_batchnorm_counters_are_tolerated():
    source = _Tiny()
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["audio.weight"] = torch.zeros(1)
    target = _Tiny()
    load_strict(target, state, what="tiny", ignore_prefixes=("audio.",))
    assert torch.equal(target.lin.weight, source.lin.weight)


def test_torch_checkpoints_are_unwrapped_from_lightning_or_a_named_entry(tmp_path):
    torch.save({"state_dict": {"a": torch.ones(1)}, "epoch": 1}, tmp_path / "l.ckpt")
    torch.save({"generator": {"b": torch.ones(1)}}, tmp_path / "g.pt")
    assert list(read_state_dict(tmp_path / "l.ckpt")) == ["a"]
    assert list(read_state_dict(tmp_path / "g.pt", inner_key="generator")) == ["b"]
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_state_dict(tmp_path / "missing.pt")


def test_prefix_selection_and_substring_stripping():
    state = {"first_stage_model.encoder.x": 1, "model.y": 2}
    assert select_prefix(state, "first_stage_model.") == {"encoder.x": 1}
    assert strip_substring({"module.video_encoder.module.conv": 1}, "module.") == {"video_encoder.conv": 1}


class _Opaque:
    pass


def test_checkpoint_with_pickled_objects_is_refused_with_advice(tmp_path):
    torch.save({"state_dict": {"a": torch.ones(1)}, "hyper_parameters": _Opaque()}, tmp_path / "obj.ckpt")
    with pytest.raises(CheckpointMismatchError, match="safetensors"):
        read_state_dict(tmp_path / "obj.ckpt")
