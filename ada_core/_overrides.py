"""``--set KEY=VALUE`` overrides: dotted keys that reach into tables and lists.

Grammar of KEY: names separated by dots, each optionally followed by list indices,
``attributors[0].params.layer``, ``evaluate[-1].label``. VALUE is parsed as TOML (``3``,
``false``, ``[64, 64]``, ``["gradcam", "none"]``, ``{name = "vanilla"}``), else taken as a
string (``decoder2``, ``/data/scgm``). Assigning a whole list replaces it:
``--set 'attributors=["gradcam", "none"]'``. ``~KEY`` (Hydra's spelling) removes a key the file
sets, so that it takes its default again: ``--set '~data.split.test_fraction'``.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from ada_core.errors import ConfigError

__all__ = ["apply_overrides", "parse_key", "parse_value"]

_SEGMENT = re.compile(r"([A-Za-z0-9_-]+)((?:\[-?[0-9]+\])*)")
_INDEX = re.compile(r"\[(-?[0-9]+)\]")
_WHOLE_LIST = (
    "to add or remove entries, replace the whole list: --set '{key}=[...]' (a TOML array, "
    "e.g. --set 'attributors=[\"gradcam\", \"none\"]')"
)


def parse_key(key: str) -> list[str | int]:
    """``"attributors[0].params.layer"`` -> ``["attributors", 0, "params", "layer"]``.

    Raises:
        ConfigError: the key is not names joined by dots with optional ``[N]`` indices.
    """
    parts: list[str | int] = []
    for segment in key.strip().split("."):
        m = _SEGMENT.fullmatch(segment)
        if m is None:
            raise ConfigError(
                f"override key {key!r}: {segment!r} is not a key name; expected names joined by "
                "dots, each optionally indexed, e.g. train.cycles or attributors[0].params.layer"
            )
        parts.append(m.group(1))
        parts += [int(i) for i in _INDEX.findall(m.group(2))]
    return parts


def parse_value(text: str) -> Any:
    """TOML value of ``text``, or ``text`` itself when it is no TOML value (a bare word)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _dotted(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _default_at(defaults: dict[str, Any] | None, parts: list[str | int]) -> Any:
    node: Any = defaults
    for p in parts:
        if isinstance(p, int):
            if not isinstance(node, list) or not -len(node) <= p < len(node):
                return None
            node = node[p]
        elif isinstance(node, dict) and p in node:
            node = node[p]
        else:
            return None
    return node


def _child(node: Any, part: str | int, parts: list[str | int], i: int, item: str,
           defaults: dict[str, Any] | None, want_list: bool) -> Any:  # fmt: skip
    """The container at ``parts[: i + 1]`` (created, or copied from the defaults, if absent)."""
    if isinstance(part, int):
        size = len(node)
        if not -size <= part < size:
            valid = f"indices 0..{size - 1} or -{size}..-1" if size else "no index is valid"
            raise ConfigError(
                f"override {item!r}: index {part} is out of range: {_dotted(parts[:i])} has "
                f"{size} entr{'y' if size == 1 else 'ies'} ({valid}); "
                + _WHOLE_LIST.format(key=_dotted(parts[:i]))
            )
        child = node[part]
        if isinstance(child, str) and not want_list:
            child = node[part] = {"name": child}  # a component given by name only
        return child
    if part not in node:
        if not want_list:
            node[part] = {}
        else:
            default = _default_at(defaults, parts[: i + 1])
            # the defaults' own list (e.g. the five attributors), or the value that is no list
            node[part] = [] if default is None else _copy(default)
    return node[part]


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _remove(data: dict[str, Any], item: str) -> None:
    """Apply ``~KEY``: delete the key from ``data`` (the file's settings)."""
    key = item[1:]
    if "=" in key:
        raise ConfigError(f"override {item!r}: ~KEY removes a key and takes no value; use "
                          f"--set '~{key.partition('=')[0]}'")  # fmt: skip
    parts = parse_key(key)
    node: Any = data
    for i, part in enumerate(parts):
        here = _dotted(parts[: i + 1])
        if isinstance(part, int):
            present = isinstance(node, list) and -len(node) <= part < len(node)
        else:
            present = isinstance(node, dict) and part in node
        if not present:
            raise ConfigError(f"override {item!r}: {here} is not set by the config file, so "
                              "there is nothing to remove (it has its default)")  # fmt: skip
        if i == len(parts) - 1:
            del node[part]
        else:
            node = node[part]


def apply_overrides(
    data: dict[str, Any], overrides: list[str], defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (see the module docstring) to a config mapping in place.

    Args:
        data: the mapping read from TOML.
        overrides: ``["train.cycles=3", "attributors[0].params.layer=decoder2", ...]``;
            ``"~KEY"`` removes a KEY that ``data`` sets.
        defaults: the configuration's defaults as JSON data; a list the file does not set
            (e.g. the default ``attributors``) is copied from here before it is indexed.

    Returns:
        ``data``.

    Raises:
        ConfigError: naming the override: no ``=``, a malformed key, an index out of range,
            an index into something that is not a list, a key into a value.
    """
    for item in overrides:
        if item.startswith("~"):
            _remove(data, item)
            continue
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.cycles=3")
        key, _, text = item.partition("=")
        parts = parse_key(key)
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            want_list = isinstance(parts[i + 1], int)
            node = _child(node, part, parts, i, item, defaults, want_list)
            here = _dotted(parts[: i + 1])
            if want_list and not isinstance(node, list):
                what = "a table" if isinstance(node, dict) else f"a value ({node!r})"
                fix = f"use {here}.KEY to set one of its keys" if isinstance(node, dict) else (
                    f"use {here}=VALUE")  # fmt: skip
                raise ConfigError(
                    f"override {item!r}: {here} is {what}, not a list, so it cannot be "
                    f"indexed; {fix}"
                )
            if not want_list and not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {here} is a value, not a table")
        last = parts[-1]
        value = parse_value(text.strip())
        if isinstance(last, int):
            _child(node, last, parts, len(parts) - 1, item, defaults, want_list=True)
            node[last] = value
        else:
            node[last] = value
    return data
