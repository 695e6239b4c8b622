"""Placeholder until its issue lands."""

from __future__ import annotations

from md2.errors import UsageError

NAME = "download-kitti"


def command() -> None:
    raise UsageError("md2 download-kitti is not implemented yet")
