"""Errors a user can act on, each with the exit code the CLI returns for it.

Anything else that escapes is a bug: the CLI reports it as an internal error (exit 1).
"""

from __future__ import annotations

import reprlib
from typing import Any


class ReidMergeError(Exception):
    """Base class: a one-line message for the user and an exit code."""

    exit_code = 1


class UsageError(ReidMergeError):
    """Options or configuration that contradict each other or are out of range."""

    exit_code = 2


class InputError(ReidMergeError):
    """An input file or folder that is missing, unreadable or malformed."""

    exit_code = 3


class ModelError(ReidMergeError):
    """Model weights that are missing, corrupt or of the wrong architecture."""

    exit_code = 4


def excerpt(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for messages about values read from files,
    which may be of any size (containers are abbreviated before they are formatted).

    >>> excerpt("x" * 100, limit=10)
    "'xxxxxxxx…"
    >>> excerpt(list(range(1000)))
    '[0, 1, 2, 3, 4, 5, ...]'
    """
    text = reprlib.repr(value) if isinstance(value, (list, dict, tuple, set)) else repr(value)[: limit + 1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(err: BaseException, limit: int = 120) -> str:
    """An exception as one short line, for messages that must stay one line."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:limit]}" if text else type(err).__name__
