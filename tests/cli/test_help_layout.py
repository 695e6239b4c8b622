"""``--help`` reads whole at 80 columns and uses the room of a wide terminal: every command and every option,
listed from the app itself, so commands and options added later are checked too."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command

from md2.cli.app import app
from md2.cli.help import split_epilog, wrap_words
from tests.cli.test_app import run_md2

GROUP = get_command(app)
NAMES = sorted(GROUP.commands)


def render_help(name: str | None, columns: int, monkeypatch) -> tuple[str, list[tuple[str, str]]]:
    """The help of ``md2 NAME`` (of ``md2`` with None) at ``columns``, and the (names, description) record of
    each of its parameters as click builds them."""
    monkeypatch.setenv("COLUMNS", str(columns))
    root = GROUP.make_context("md2", [], resilient_parsing=True)
    command = GROUP if name is None else GROUP.commands[name]
    context = root if name is None else command.make_context(name, [], parent=root, resilient_parsing=True)
    records = [record for param in command.get_params(context)
               if (record := param.get_help_record(context)) is not None]
    return command.get_help(context), records


def contains_in_order(tokens: list[str], words: list[str]) -> bool:
    return any(tokens[start:start + len(words)] == words for start in range(len(tokens) - len(words) + 1))


def test_every_command_is_checked():
    assert {"predict", "train", "evaluate-depth", "export", "synth", "download-kitti"} <= set(NAMES)


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("name", [None, *NAMES])
def test_help_never_cuts_an_option_name_or_default(name, columns, monkeypatch):
    text, records = render_help(name, columns, monkeypatch)
    lines = text.splitlines()
    assert "…" not in text
    # No sentence cut short with "..." (click's short help): only an argument's "NAME..." and the usage line.
    arguments = {names.split()[0] for names, _ in records if names.split()[0].endswith("...")}
    body = [line for line in lines if not line.startswith("Usage:")]
    words = [" ".join(word for word in line.split() if word not in arguments) for line in body]
    assert not [line for line in words if re.search(r"\w\.\.\.", line)]
    assert max(len(line) for line in lines) <= columns
    tokens = text.split()
    for names, description in records:
        # The names and metavar on one line, whole; the description's words in order, none broken.
        assert any(line.strip().startswith(names) for line in lines), names
        assert contains_in_order(tokens, description.split()), (names, description)


@pytest.mark.parametrize("name", NAMES)
def test_help_at_120_columns_gives_descriptions_their_room(name, monkeypatch):
    narrow, _ = render_help(name, 80, monkeypatch)
    wide, _ = render_help(name, 120, monkeypatch)
    assert len(wide.splitlines()) < len(narrow.splitlines())
    assert max(len(line) for line in wide.splitlines()) > 100


@pytest.mark.parametrize("name", NAMES)
def test_help_lists_each_example_on_a_line_of_its_own(name, monkeypatch):
    text, _ = render_help(name, 120, monkeypatch)
    _, examples, _ = split_epilog(GROUP.commands[name].epilog or "")
    lines = [line.strip() for line in text.splitlines()]
    for example in examples:
        if len(example) < 100:
            assert example in lines


def test_predict_help_from_the_executable_at_80_columns_keeps_every_name():
    result = run_md2("predict", "--help", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert "--weights, --load-weights-folder" in result.stdout
    assert "--pred-metric-depth / --no-pred-metric-depth" in result.stdout
    assert "mono+stereo_640x192" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


@pytest.mark.parametrize("text, width", [("--pred-metric-depth and --no-save-depth-png", 12),
                                         ("a " * 30 + "mono+stereo_640x192", 10)])
def test_wrapping_breaks_at_spaces_only(text, width):
    lines = wrap_words(text, width)
    assert " ".join(lines).split() == text.split()


def test_help_keeps_each_commands_option_groups(monkeypatch):
    text, _ = render_help("train", 80, monkeypatch)
    headings = [line for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == ["Options:", "Data options:", "Model options:", "Loss options:", "Optim options:",
                        "Run options:"]
    data = text.split("Data options:", 1)[1].split("Model options:", 1)[0]
    assert "--data-path" in data and "--learning-rate" not in data
