"""Placeholder until its issue lands."""

from __future__ import annotations

from md2.errors import UsageError

NAME = "export-gt"


def command() -> None:
    raise UsageError("md2 export-gt is not implemented yet")
