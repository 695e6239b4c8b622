"""Placeholder until its issue lands."""

from __future__ import annotations

from md2.errors import UsageError

NAME = "evaluate-pose"


def command() -> None:
    raise UsageError("md2 evaluate-pose is not implemented yet")
