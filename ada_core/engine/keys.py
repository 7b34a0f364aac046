"""Job keys: a hash over exactly the settings that change a job's result.

The payloads come from the field tags of :mod:`ada_core.fieldtags`; a job folder's
``key.json`` keeps the payload next to the hash, so a changed configuration can be refused with
the difference shown (dotted key, old value, new value).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from ada_core.fieldtags import tagged_settings

if TYPE_CHECKING:
    from ada_core.config import ExperimentConfig

__all__ = ["derive_seed", "describe_diff", "diff", "digest", "flatten", "key_settings",
           "without_standardise"]


def digest(payload: Any) -> str:
    """A short stable hash of JSON data (key order does not matter)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from the run's ``seed`` and a purpose (e.g. ``"shuffle"``).

    Different purposes get independent-looking streams; the same inputs always give the same
    seed, on every machine.
    """
    text = json.dumps([int(seed), *[str(p) for p in parts]])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def flatten(payload: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"train.lr": 0.001, ...}``; lists and scalars are leaves."""
    if isinstance(payload, dict) and payload:
        out: dict[str, Any] = {}
        for k, v in payload.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): payload}


def diff(old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every setting that differs."""
    a, b = flatten(old), flatten(new)
    missing = object()
    rows = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            rows.append((key, None if va is missing else va, None if vb is missing else vb))
    return rows


def describe_diff(rows: list[tuple[str, Any, Any]], limit: int = 12) -> str:
    """The differences as indented ``key: old -> new`` lines."""
    lines = [f"    {k}: {json.dumps(o, default=str)} -> {json.dumps(n, default=str)}" for k, o, n in rows]
    if len(lines) > limit:
        lines = lines[:limit] + [f"    ... and {len(lines) - limit} more"]
    return "\n".join(lines)


def key_settings(config: ExperimentConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings in the standard phases' and the branches' job keys."""
    standard = tagged_settings(config, "standard")
    branch = tagged_settings(config, "branch")
    branch.pop("attributors", None)  # each branch's key holds only its own entry
    if not config.train.ensemble:  # branch-by-branch studies keep the keys from before it
        branch.get("train", {}).pop("ensemble", None)
    return without_standardise(standard), without_standardise(branch)


def without_standardise(settings: Any) -> Any:
    """``settings`` without ``preprocess.standardise`` where it is 'none' and without
    ``histogram_landmarks`` where it is not 'histogram': runs from before those settings keep
    their job keys (their results are the same)."""
    if isinstance(settings, list):
        return [without_standardise(v) for v in settings]
    if not isinstance(settings, dict):
        return settings
    out = {k: without_standardise(v) for k, v in settings.items()}
    if "standardise" in out and out["standardise"] != "histogram":
        out.pop("histogram_landmarks", None)
        if out["standardise"] == "none":
            out.pop("standardise")
    return out
