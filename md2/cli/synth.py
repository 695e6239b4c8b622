"""Placeholder until its issue lands."""

from __future__ import annotations

from md2.errors import UsageError

NAME = "synth"


def command() -> None:
    raise UsageError("md2 synth is not implemented yet")
