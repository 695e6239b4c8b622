"""Turn users' errors into one red line on stderr and an exit code; tracebacks only when debugging."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True, highlight=False)


def debug_enabled() -> bool:
    """True when the user asked for tracebacks (``--debug`` or ``MD2_DEBUG=1``)."""
    return os.environ.get("MD2_DEBUG", "") not in ("", "0")


def fail(message: str, exit_code: int) -> "NoReturn":  # noqa: F821 - typing only
    """Print ``error: message`` as one red line on stderr and exit."""
    one_line = " ".join(str(message).split())
    err_console.print(f"[bold red]error:[/bold red] {escape(one_line)}", soft_wrap=True)
    sys.exit(exit_code)
