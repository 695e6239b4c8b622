"""Option parsers shared by several commands (comma-separated lists, devices)."""

from __future__ import annotations

from md2.errors import UsageError


def parse_int_list(text: str, option: str) -> list[int]:
    """``"0,-1,1"`` -> ``[0, -1, 1]``; a clear usage error names the option otherwise."""
    try:
        values = [int(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated integers, got {text!r}") from None
    if not values:
        raise UsageError(f"{option} needs at least one value")
    return values


def parse_str_list(text: str, option: str) -> list[str]:
    """``"encoder,depth"`` -> ``["encoder", "depth"]``."""
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values:
        raise UsageError(f"{option} needs at least one value")
    return values
