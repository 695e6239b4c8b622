"""md2.cli.coercion: every md2 option it parses without pydantic gives what Typer's own coercion gives (the same
value and type, or the same error), and a value it cannot decide is handed to Typer's."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from typer._coercion import build_runtime_param
from typer.main import get_command

from md2.cli.app import build_app
from md2.cli.coercion import PlainCoercion, plain_coercion


def _commands():
    root = get_command(build_app())
    yield root
    yield from root.commands.values()


def _parameters() -> list[tuple]:
    found = []
    for command in _commands():
        params = [param for param in command.params if hasattr(param, "type_descriptor")]
        for param in params:
            param._runtime_param = None
        plain_coercion(params)
        found += [(command, param) for param in params if isinstance(param._runtime_param, PlainCoercion)]
    return found


PARAMETERS = _parameters()


def _values(kind: str, default, folder: Path) -> list:
    readable = folder / "readable.txt"
    readable.write_text("x")
    by_kind = {
        "str": ["", "x", "a b", "é", "--x", "1"],
        "path": ["", "x/y", "~/z", str(readable), str(folder), "./a//b/", Path("p"), "a\0b", 3],
        "strings": [("a", "b"), ["c"], (), ("", "d e"), ("a", 1)],
        "int": [0, 1, 5, -3, 3.0, "3", " 4", "+2", "3.0", "abc", "", True, 10**12],
        "float": [0.5, 1.0, 0, -2.5, "0.5", "1e-3", "nan", "inf", "x", math.nan, math.inf, True],
        "bool": [True, False, "yes", "no", "", "maybe"],
    }
    return ([default] if default is not None else []) + by_kind[kind]


def _outcome(coercion, value, param, ctx):
    try:
        result = coercion.coerce(value, param=param, ctx=ctx)
    except Exception as error:  # noqa: BLE001 -- compared with Typer's own below
        return ("error", type(error).__name__, str(error))
    return ("value", type(result), repr(result))


def test_md2_options_are_mostly_plain():
    kinds = {param._runtime_param.kind for _, param in PARAMETERS}
    assert kinds == {"str", "path", "strings", "int", "float", "bool"}
    assert len(PARAMETERS) >= 150  # every option of every command but --help


@pytest.mark.parametrize("command, param", PARAMETERS, ids=[f"{c.name}:{p.name}" for c, p in PARAMETERS])
def test_each_option_gives_what_typers_coercion_gives(command, param, tmp_path):
    ctx = command.context_class(command)
    ours = param._runtime_param
    typers = build_runtime_param(param.type_descriptor)
    for value in _values(ours.kind, param.default, tmp_path):
        assert _outcome(ours, value, param, ctx) == _outcome(typers, value, param, ctx), (value, ours.kind)


def test_an_unreadable_path_is_typers_to_refuse(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    command, param = next((c, p) for c, p in PARAMETERS if p._runtime_param.kind == "path")
    hidden = tmp_path / "hidden"
    hidden.write_text("x")
    hidden.chmod(0)
    ctx = command.context_class(command)
    assert _outcome(param._runtime_param, str(hidden), param, ctx)[0] == "error"
