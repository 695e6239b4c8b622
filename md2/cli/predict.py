"""Placeholder until its issue lands."""

from __future__ import annotations

from md2.errors import UsageError

NAME = "predict"


def command() -> None:
    raise UsageError("md2 predict is not implemented yet")
