"""A small YAML reader for flat config files such as BigVGAN's ``args.yml`` (no PyYAML dependency).

Covers what ``yaml.dump`` / OmegaConf write for plain configs: block mappings and sequences (indented or not
under their key, compact ``- - 1`` nesting), flow sequences ``[4, 4, 2]``, quoted and plain scalars, ints,
floats, booleans, null, comments. Anything else (anchors, tags, multi-line strings, flow mappings) raises
ValueError with the line number instead of guessing.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_yaml"]

# A mapping line: a quoted or plain key, then ':' followed by a space or the end of the line.
_KEY = re.compile(
    r"""^(?P<key>'[^']*'|"[^"]*"|[^\s'"\[\]{}#&*!|>%@`-][^#]*?|-[^\s#][^#]*?)\s*:(?:\s+(?P<rest>.*))?$""")
_FLOW_ITEM = re.compile(r"[^,\[\]]*")
_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")
_SPECIAL = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False,
            "null": None, "~": None, "": None,
            ".inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}


def parse_yaml(text: str) -> Any:
    """The document in ``text`` as dicts, lists and scalars."""
    lines: list[tuple[int, str, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        content = raw.rstrip()
        stripped = content.lstrip(" ")
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        if "\t" in content[: len(content) - len(stripped)]:
            raise ValueError(f"line {number}: tab in indentation")
        lines.append((len(content) - len(stripped), stripped, number))
    if not lines:
        return None
    value, end = _block(lines, 0, lines[0][0])
    if end != len(lines):
        raise ValueError(f"line {lines[end][2]}: unexpected indentation or content")
    return value


def _is_item(content: str) -> bool:
    return content == "-" or content.startswith("- ")


def _block(lines: list[tuple[int, str, int]], i: int, indent: int) -> tuple[Any, int]:
    return (_sequence if _is_item(lines[i][1]) else _mapping)(lines, i, indent)


def _nested(lines: list[tuple[int, str, int]], i: int, indent: int, *, allow_same: bool) -> tuple[Any, int]:
    """The block value that follows a line ending in ':' or '-' (None if there is none)."""
    if i < len(lines):
        nxt = lines[i][0]
        if nxt > indent or (allow_same and nxt == indent and _is_item(lines[i][1])):
            return _block(lines, i, nxt)
    return None, i


def _mapping(lines: list[tuple[int, str, int]], i: int, indent: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent and not _is_item(lines[i][1]):
        _, content, number = lines[i]
        m = _KEY.match(content)
        if m is None:
            raise ValueError(f"line {number}: expected 'key: value', found {content!r}")
        key = _unquote(m["key"], number)
        rest = m["rest"]
        if rest is None or rest.startswith("#"):
            # yaml.dump writes a list under its key at the key's own indentation.
            out[key], i = _nested(lines, i + 1, indent, allow_same=True)
        else:
            out[key], i = _scalar_or_flow(rest, number), i + 1
    return out, i


def _sequence(lines: list[tuple[int, str, int]], i: int, indent: int) -> tuple[list[Any], int]:
    out: list[Any] = []
    while i < len(lines) and lines[i][0] == indent and _is_item(lines[i][1]):
        _, content, number = lines[i]
        rest = content[1:].lstrip(" ")
        if not rest or rest.startswith("#"):
            item, i = _nested(lines, i + 1, indent, allow_same=False)
        elif _is_item(rest) or _KEY.match(rest):
            # Compact nesting ("- - 1", "- key: v"): the item starts at the column of its first character.
            column = indent + len(content) - len(rest)
            lines[i] = (column, rest, number)
            item, i = _block(lines, i, column)
        else:
            item, i = _scalar_or_flow(rest, number), i + 1
        out.append(item)
    return out, i


def _strip_comment(text: str) -> str:
    return re.split(r"\s+#", text, maxsplit=1)[0].strip()


def _scalar_or_flow(text: str, number: int) -> Any:
    text = text.strip()
    if text.startswith(("&", "*", "!", "|", ">", "{")) and text != "{}":
        raise ValueError(f"line {number}: unsupported YAML construct {text!r}")
    if text == "{}":
        return {}
    if text.startswith("["):
        value, end = _flow(text, 0, number)
        if _strip_comment(text[end:]):
            raise ValueError(f"line {number}: trailing content after flow sequence: {text[end:]!r}")
        return value
    return _scalar(text if text[0] in "'\"" else _strip_comment(text), number)


def _flow(text: str, pos: int, number: int) -> tuple[list[Any], int]:
    """A flow sequence starting at text[pos] == '[', possibly nested; returns the list and the end index."""
    out: list[Any] = []
    pos += 1
    while True:
        pos = _skip_spaces(text, pos, number)
        if text[pos] == "]":  # empty list or trailing comma
            return out, pos + 1
        if text[pos] == "[":
            item, pos = _flow(text, pos, number)
        else:
            m = _FLOW_ITEM.match(text, pos)
            item, pos = _scalar(m.group().strip(), number), m.end()  # type: ignore[union-attr]
        out.append(item)
        pos = _skip_spaces(text, pos, number)
        if text[pos] == "]":
            return out, pos + 1
        if text[pos] != ",":
            raise ValueError(f"line {number}: unexpected {text[pos]!r} in flow sequence")
        pos += 1


def _skip_spaces(text: str, pos: int, number: int) -> int:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos >= len(text):
        raise ValueError(f"line {number}: unterminated flow sequence")
    return pos


def _unquote(text: str, number: int) -> str:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        if "\\" in text:
            raise ValueError(f"line {number}: escapes in double-quoted strings are not supported")
        return text[1:-1]
    if text[:1] in ("'", '"'):
        raise ValueError(f"line {number}: unterminated quoted string {text!r}")
    return text


def _scalar(text: str, number: int) -> Any:
    if text[:1] in ("'", '"'):
        return _unquote(text, number)
    low = text.lower()
    if low in _SPECIAL:
        return _SPECIAL[low]
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text
