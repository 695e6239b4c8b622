"""md2's options turned into values without importing pydantic, with Typer's results.

Typer (0.29 and later) coerces every parameter, defaults included, through a pydantic TypeAdapter built on first
use; importing pydantic and building ~30 adapters is ~0.1 s of every md2 command (measured: a cached one-photo
``md2 predict`` 0.67 -> 0.58 s, medians of 8 alternated runs). md2's options are plain ``str``, ``Path``, ``list[str]``, ``int``, ``float`` and
``bool``. :func:`plain_coercion` gives such parameters a coercion that returns what Typer's returns for the values
that need no parsing (a string for a string, a path for a path, a default already of its type and within its
bounds) and hands every other value (a number typed on the command line, a path that exists but cannot be read,
anything unusual) to Typer's own, built only then, so Typer's checks and messages stay as they are. Parameters of
any other kind keep Typer's coercion untouched, as does a Typer without this interface.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_TYPERS = object()
"""Returned by :func:`_plain` for a value only Typer's own coercion may decide."""


def plain_coercion(params: list) -> None:
    """Give the plain parameters among ``params`` (a command's) md2's coercion, once."""
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or not hasattr(param, "get_runtime_param") or getattr(param, "_runtime_param", 1):
            continue  # not Typer's parameter, another Typer, or its coercion already chosen
        kind = _kind(descriptor)
        if kind is not None:
            param._runtime_param = PlainCoercion(param, kind)


class PlainCoercion:
    """Typer's runtime-parameter interface (``coerce``) for one plain parameter."""

    def __init__(self, param, kind: str) -> None:
        self.param, self.kind = param, kind
        self._typers = None

    def coerce(self, value: Any, param, ctx) -> Any:
        if value is None:  # as Typer: a missing value
            return () if param.multiple or param.nargs == -1 else None
        result = _plain(self.kind, value, self.param.type_descriptor.parameter_info)
        if result is _TYPERS:
            return self.typers().coerce(value, param=param, ctx=ctx)
        return result

    def typers(self):
        """Typer's own coercion of this parameter (pydantic is imported here, when first needed)."""
        if self._typers is None:
            from typer._coercion import build_runtime_param

            self._typers = build_runtime_param(self.param.type_descriptor)
        return self._typers


def _kind(descriptor) -> str | None:
    """"str", "path", "strings", "int", "float" or "bool" for a parameter md2 can coerce, else None."""
    info = descriptor.parameter_info
    if info.parser is not None or descriptor.file_annotation is not None or getattr(info, "clamp", False):
        return None
    annotation = descriptor.annotation
    if annotation is Path:
        plain_path = (not info.exists and info.file_okay and info.dir_okay and not info.writable and info.readable
                      and not info.resolve_path and not info.allow_dash and info.path_type is None)
        return "path" if plain_path else None
    if annotation == list[str]:
        return "strings"
    for kind in (str, int, float, bool):
        if annotation is kind:
            return kind.__name__
    return None


def _plain(kind: str, value: Any, info) -> Any:
    """``value`` as Typer gives it for a parameter of ``kind``, or :data:`_TYPERS`."""
    if kind == "str":
        return value if type(value) is str else _TYPERS
    if kind == "strings":
        plain = isinstance(value, (list, tuple)) and all(type(item) is str for item in value)
        return list(value) if plain else _TYPERS
    if kind == "path":
        return _readable_path(value)
    if kind in ("int", "float") and type(value).__name__ == kind:  # a default (bool is not an int here)
        inside = (info.min is None or value >= info.min) and (info.max is None or value <= info.max)
        return value if inside else _TYPERS
    return _TYPERS  # a bool's string, a number typed by the user: Typer parses it


def _readable_path(value: Any) -> Any:
    """A string or path as a Path (pydantic's result), where Typer's checks would pass: the path does not exist,
    or it is readable."""
    if not isinstance(value, (str, Path)) or "\0" in str(value):
        return _TYPERS
    path = Path(value)
    try:
        os.stat(path)
    except OSError:
        return path
    except ValueError:
        return _TYPERS
    return path if os.access(path, os.R_OK) else _TYPERS
