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


def status_console(quiet: bool, verbose: bool = False):
    """The stderr console for progress and summaries (silent with --quiet); --quiet with --verbose is refused.

    Lines are never wrapped (soft_wrap): a long path stays on one line, whole, for logs and greps."""
    from rich.console import Console

    if quiet and verbose:
        raise UsageError("give --quiet or --verbose, not both")
    return Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=True)


def print_settings(settings: dict, console) -> None:
    """``--verbose``: every resolved setting, one ``name: value`` line each."""
    from rich.markup import escape

    for name, value in settings.items():
        console.print(f"  {name}: {escape(str(value))}", soft_wrap=True)
