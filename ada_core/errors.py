"""The exception hierarchy. Everything ADA raises on purpose is an :class:`AdaError`.

The CLI turns an ``AdaError`` into a one-paragraph message and exit code 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AdaError",
    "ConfigError",
    "ContractError",
    "DataError",
    "InputError",
    "PluginError",
    "PluginWarning",
    "UnknownComponentError",
    "closest",
    "suggest",
]


class AdaError(Exception):
    """Base class of every error ADA raises deliberately."""


class ConfigError(AdaError, ValueError):
    """A configuration file, an override or a component's parameters are invalid."""


class PluginError(AdaError):
    """A plugin failed to load or registered something invalid."""


class PluginWarning(UserWarning):
    """Plugin loading went on, but something in the user's setup is probably a mistake.

    For example, ``ADA_DISABLE_PLUGINS`` names a plugin that is not installed.
    """


class UnknownComponentError(ConfigError, KeyError):
    """A component name that no loaded plugin registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataError(AdaError):
    """A data file or data set is missing, malformed or inconsistent."""


class InputError(AdaError, ValueError):
    """A tensor handed to a component has the wrong shape, dtype or values."""


class ContractError(AdaError):
    """A component broke its interface's contract (wrong output shape, leftover hooks, ...)."""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice most similar to ``name``, or None when nothing is close.

    A choice that differs only in case comes first, then one that extends ``name`` or that
    ``name`` extends at a separator (``sub-01`` and ``sub-01_run-1``: the same subject, never
    ``sub-02`` that merely looks alike), then difflib's closest match.
    """
    choices = list(choices)
    folded = name.casefold()
    same = [c for c in choices if c.casefold() == folded]
    if same:
        return same[0]

    def extends(long: str, short: str) -> bool:
        # an entity suffix (``_run-1``, ``_ses-2``, ``-r2``) carries a number; a word suffix
        # (``encoder`` + ``_weigths``) is a typo of another name, left to difflib
        return (bool(short) and long.startswith(short) and long[len(short)] in "_-."
                and any(ch.isdigit() for ch in long[len(short) + 1:]))

    related = [c for c in choices if c != name and (extends(c.casefold(), folded) if len(c) > len(name)
               else extends(folded, c.casefold()))]  # fmt: skip
    if related:
        return min(related, key=lambda c: (abs(len(c) - len(name)), c))
    matches = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return matches[0] if matches else None


def suggest(name: str, choices: Iterable[str]) -> str:
    """A sentence listing the valid choices and, when one is close, suggesting it."""
    choices = sorted(choices)
    valid = ", ".join(repr(c) for c in choices) if choices else "(none registered)"
    near = closest(name, choices)
    hint = f" Did you mean {near!r}?" if near else ""
    return f"Valid choices: {valid}.{hint}"
