"""How ``md2 ... --help`` is laid out: plain text that wraps at spaces only, as wide as the terminal.

Typer's rich tables give every option six columns (long and short names, their negative forms, the type, the
help) and shrink them to fit, so at 80 columns option names and defaults were cut with an ellipsis
(``--weights,--load…``). Here click's plain layout is used instead (one column of names, one of descriptions; a
name longer than the first column gets a line of its own), with two changes: lines break at spaces only, never
inside a word or at a hyphen (an option name or a default is always whole), and the text uses the terminal's
whole width (``COLUMNS`` when set), so descriptions get their room on a wide terminal. An epilog of
``Examples:  md2 a  |  md2 b`` lists one example a line.
"""

from __future__ import annotations

import re
import shutil
import textwrap

from typer.core import TyperCommand, TyperGroup

from md2.cli.coercion import plain_coercion

# Typer parses with a copy of click of its own (typer._click in recent versions): the context and formatter
# classes are taken from its command class, so md2's derive from the ones it really uses.
_Context = TyperCommand.context_class
_Formatter = _Context.formatter_class

MIN_WIDTH = 50
"""Narrower terminals are laid out at this width (as click does)."""
EXAMPLE_SEPARATOR = re.compile(r"\s+\|\s+")
SENTENCE_END = re.compile(r"\.\s+(?=[A-Z])")


def wrap_words(text: str, width: int, indent: str = "", subsequent_indent: str | None = None) -> list[str]:
    """``text`` as lines of at most ``width`` characters broken at spaces only (a word longer than the line stays
    whole on a line of its own). Paragraphs (blank-line separated) are wrapped apart; one whose first line is
    ``\\b`` keeps its lines as written (click's convention)."""
    wrapper = textwrap.TextWrapper(width=max(width, 1), initial_indent=indent,
                                   subsequent_indent=indent if subsequent_indent is None else subsequent_indent,
                                   break_on_hyphens=False, break_long_words=False)
    lines: list[str] = []
    for number, paragraph in enumerate(re.split(r"\n\s*\n", text.strip())):
        if number:
            lines.append("")
        if paragraph.startswith("\b"):
            lines.extend(indent + line for line in paragraph.splitlines()[1:])
        else:
            lines.extend(wrapper.wrap(" ".join(paragraph.split())) or [""])
    return lines


def split_epilog(epilog: str) -> tuple[str, list[str], str]:
    """``"prose  Examples:  md2 a  |  md2 b. More prose."`` -> ``("prose", ["md2 a", "md2 b"], "More prose.")``
    (a sentence after an example, wherever it is, goes to the prose after); without ``Examples:``, all prose."""
    before, marker, rest = epilog.partition("Examples:")
    if not marker:
        return epilog.strip(), [], ""
    examples, notes = [], []
    for piece in EXAMPLE_SEPARATOR.split(rest.strip()):
        # "md2 a --png.  Ground truth first: ..." : the example, then a note shown after the list
        example, *note = SENTENCE_END.split(piece.strip(), maxsplit=1)
        examples.append(example.strip())
        notes.extend(part.strip() for part in note)
    return before.strip(), [example for example in examples if example], " ".join(notes)


class HelpFormatter(_Formatter):
    """click's formatter, breaking lines at spaces only and as wide as the terminal (see the module's doc)."""

    def __init__(self, indent_increment: int = 2, width: int | None = None, max_width: int | None = None) -> None:
        super().__init__(indent_increment=indent_increment, width=width, max_width=max_width)
        if width is None:  # click caps the width at 80 columns: the whole terminal here
            self.width = max(shutil.get_terminal_size().columns - 2, MIN_WIDTH)

    def write_text(self, text: str) -> None:
        indent = " " * self.current_indent
        self.write("\n".join(wrap_words(text, self.width, indent)) + "\n")

    def write_dl(self, rows, col_max: int = 30, col_spacing: int = 2) -> None:
        rows = list(rows)
        first_width = min(max((len(first) for first, _ in rows), default=0), col_max) + col_spacing
        indent = " " * self.current_indent
        text_width = max(self.width - first_width - self.current_indent, 10)
        for first, second in rows:
            self.write(f"{indent}{first}")
            if not second:
                self.write("\n")
                continue
            if len(first) <= first_width - col_spacing:
                self.write(" " * (first_width - len(first)))
            else:
                self.write("\n" + " " * (first_width + self.current_indent))
            lines = wrap_words(second, text_width)
            pad = " " * (first_width + self.current_indent)
            self.write("\n".join([lines[0], *(pad + line if line else "" for line in lines[1:])]) + "\n")

    def write_epilog(self, epilog: str) -> None:
        """The epilog's prose wrapped, its examples one a line (a long one continued, indented, on the next)."""
        before, examples, after = split_epilog(epilog)
        indent = " " * self.current_indent
        if before:
            self.write_text(before)
        if examples:
            if before:
                self.write("\n")
            self.write(f"{indent}Examples:\n")
            for example in examples:
                self.write("\n".join(wrap_words(example, self.width, indent + "  ", indent + "      ")) + "\n")
        if after:
            self.write("\n")
            self.write_text(after)


class HelpContext(_Context):
    formatter_class = HelpFormatter


class Command(TyperCommand):
    """A sub-command whose help is laid out by :class:`HelpFormatter`, its options in the groups the command
    gives them (``rich_help_panel``: "Data options", "Evaluation", ...) after the ungrouped ones."""

    context_class = HelpContext

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        plain_coercion(self.get_params(ctx))  # no pydantic for md2's plain options (md2.cli.coercion)
        return super().parse_args(ctx, args)

    def format_options(self, ctx, formatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            panel = getattr(param, "rich_help_panel", None)
            name = "Arguments" if param.param_type_name == "argument" else (panel[:1].upper() + panel[1:]
                                                                          if panel else "Options")
            sections.setdefault(name, []).append(record)
        for name, rows in sections.items():
            if rows:
                with formatter.section(name):
                    formatter.write_dl(rows)

    def format_epilog(self, ctx, formatter) -> None:
        if not self.epilog:
            return
        formatter.write_paragraph()
        with formatter.indentation():
            if isinstance(formatter, HelpFormatter):
                formatter.write_epilog(self.epilog)
            else:
                formatter.write_text(self.epilog)


class Group(TyperGroup):
    """The ``md2`` group, its help laid out by :class:`HelpFormatter`; each command's first sentence whole (click
    cuts it to the line with ``...``)."""

    context_class = HelpContext

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        plain_coercion(self.get_params(ctx))
        return super().parse_args(ctx, args)

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
