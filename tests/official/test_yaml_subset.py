"""The args.yml reader understands what yaml.dump and hand-written flat configs contain."""

from __future__ import annotations

import pytest

from frieren_rt.official.yaml_subset import parse_yaml


def test_block_style_lists_nested_lists_and_mappings():
    text = ("a: '1'\nrates:\n- 4\n- 2\ndil:\n- - 1\n  - 3\n- - 5\n"
            "sub:\n  url: tcp://h:1  # port\n  n: 2\nflag: true\nnone: null\n")
    assert parse_yaml(text) == {"a": "1", "rates": [4, 2], "dil": [[1, 3], [5]],
                                "sub": {"url": "tcp://h:1", "n": 2}, "flag": True, "none": None}


def test_flow_lists_indented_lists_and_numbers():
    text = ('# header\n---\nk: [[1, 3, 5], [1, 3]]\nlr: 1e-4\nx: 0.8\nname: "snakebeta"\n'
            "items:\n  - a: 1\n    b: [2]\n")
    assert parse_yaml(text) == {"k": [[1, 3, 5], [1, 3]], "lr": 1e-4, "x": 0.8, "name": "snakebeta",
                                "items": [{"a": 1, "b": [2]}]}


@pytest.mark.parametrize("text", ["a: [1, 2\n", "a: &anchor 1\n", "a: 1\n   b: 2\n", "a: |\n  text\n"])
def test_unsupported_or_malformed_input_raises_with_the_line(text):
    with pytest.raises(ValueError, match="line"):
        parse_yaml(text)
