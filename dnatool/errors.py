"""The two kinds of failure every command reports as one line (contracts.md: exit 2 / exit 1)."""

from __future__ import annotations


class BadInput(ValueError):
    """The user gave something unusable (a file, a token, a unit): exit code 2."""


class RunFailure(RuntimeError):
    """A valid request failed while running (missing runtime, diverged training): exit code 1."""
