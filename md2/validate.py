"""Checks of users' numbers shared by the command line and the library: one place that refuses NaN and
infinities (``float("nan")`` parses happily, and then poisons every result downstream)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from md2.errors import UsageError


def require_finite(value: float | None, option: str) -> float | None:
    """``value`` when it is a finite number (or None: not given); a UsageError naming ``option`` otherwise."""
    if value is not None and not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number, got {value}")
    return value


def require_all_finite(values: Iterable[float], option: str) -> None:
    """:func:`require_finite` for each of ``values`` (a comma-separated option such as ``--intrinsics``)."""
    values = list(values)
    if not all(math.isfinite(value) for value in values):
        raise UsageError(f"{option} must be finite numbers, got {','.join(map(str, values))}")
