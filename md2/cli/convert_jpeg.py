"""Placeholder until its issue lands."""

from __future__ import annotations

from md2.errors import UsageError

NAME = "convert-jpeg"


def command() -> None:
    raise UsageError("md2 convert-jpeg is not implemented yet")
