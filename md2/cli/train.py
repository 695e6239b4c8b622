"""Placeholder until its issue lands."""

from __future__ import annotations

from md2.errors import UsageError

NAME = "train"


def command() -> None:
    raise UsageError("md2 train is not implemented yet")
