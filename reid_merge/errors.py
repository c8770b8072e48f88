"""Errors a user can act on, each with the exit code the CLI returns for it.

Anything else that escapes is a bug: the CLI reports it as an internal error (exit 1).
"""

from __future__ import annotations


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
