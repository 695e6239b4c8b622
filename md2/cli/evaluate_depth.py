"""Placeholder until its issue lands."""

from __future__ import annotations

from md2.errors import UsageError

NAME = "evaluate-depth"


def command() -> None:
    raise UsageError("md2 evaluate-depth is not implemented yet")
