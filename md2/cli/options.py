"""Validation of option values shared by several commands: finite numbers, downloadable URLs."""

from typing import Optional

import typer

from md2.errors import UsageError
from md2.validate import require_finite


def finite(param: typer.CallbackParam, value: Optional[float]) -> Optional[float]:
    """Typer callback for float options: NaN and infinities are usage errors naming the option."""
    return require_finite(value, (param.opts or [f"--{param.name}"])[0])


def check_url_options(options: dict[str, str | None]) -> None:
    """Each given URL option (name -> value) must be one md2 can download from; a usage error otherwise."""
    from md2.data.download import url_problem

    for option, url in options.items():
        problem = url_problem(url) if url is not None else None
        if problem is not None:
            raise UsageError(f"{option}: {problem}")
