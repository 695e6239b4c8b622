"""The ``md2`` command: wires one Typer sub-command per module and turns users' errors into one line."""

from __future__ import annotations

import atexit
import ctypes
import gc
import importlib
import os
import re
import sys
import threading
from collections.abc import Iterable
from typing import Annotated, NoReturn, Optional

import typer
from typer.main import get_command

from md2 import __version__
from md2.allocator import keep_freed_memory
from md2.cli.errors import debug_enabled, fail
from md2.cli.help import Command, Group
from md2.errors import MD2Error

COMMANDS = {
    "download-kitti": "download_kitti",
    "convert-jpeg": "convert_jpeg",
    "export-gt": "export_gt",
    "train": "train",
    "evaluate-depth": "evaluate_depth",
    "evaluate-pose": "evaluate_pose",
    "predict": "predict",
    "export": "export",
    "synth": "synth",
}
"""Sub-command -> its module in md2.cli, in the order ``md2 --help`` lists them."""


def build_app(names: Iterable[str] = COMMANDS) -> typer.Typer:
    """The ``md2`` Typer app with the sub-commands ``names``. ``main`` builds it with only the command being
    run, so a command imports its own module and nothing of the others (``md2 predict`` never reads the
    training options, ``md2 synth`` never imports torch)."""
    app = typer.Typer(
        name="md2",
        help="Monodepth2: self-supervised monocular depth. Train, evaluate and predict on KITTI or your own data.",
        no_args_is_help=True,
        cls=Group,
        rich_markup_mode=None,  # plain help that never cuts a name or a default (md2.cli.help)
        pretty_exceptions_enable=False,
        add_completion=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    for name in names:
        module = importlib.import_module(f"md2.cli.{COMMANDS[name]}")
        app.command(name=module.NAME, cls=Command, help=module.__doc__,
                    epilog=getattr(module, "EPILOG", None))(module.command)
    return app


def __getattr__(name: str):
    if name == "app":  # ``md2.cli.app.app``: every command (for tools and tests that inspect the whole CLI)
        return build_app()
    raise AttributeError(name)


def _commands_needed(args: list[str]) -> Iterable[str]:
    """Only the sub-command on the line when it names one (before it come only root options, which take no
    value); every command otherwise (``md2``, ``md2 --help``, a misspelt name, shell completion)."""
    for arg in args:
        if not arg.startswith("-"):
            return [arg] if arg in COMMANDS and "_MD2_COMPLETE" not in os.environ else COMMANDS
    return COMMANDS


def _version(value: bool) -> None:
    if value:
        typer.echo(f"md2 {__version__}")
        raise typer.Exit()


def root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print md2's version and exit."),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks (also MD2_DEBUG=1); accepted anywhere on the line.")
    ] = False,
) -> None:
    """Monodepth2, rebuilt: one package, one command."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``md2`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        # Accepted after the sub-command too, so the user can append it to the line that failed.
        args.remove("--debug")
        os.environ["MD2_DEBUG"] = "1"
    keep_freed_memory()  # reuse freed buffers instead of faulting fresh pages in (md2.allocator)
    # At exit the interpreter's last garbage collection walks every object torch created (0.4 s after a
    # prediction, ~0.7 s after training) only to free memory the OS takes back anyway: frozen, they are skipped.
    # Every output is closed and renamed before; objects are still freed by reference counting.
    atexit.unregister(gc.freeze)  # once, however often main runs in one process (tests)
    atexit.register(gc.freeze)
    command = get_command(build_app(_commands_needed(args)))
    try:
        code = command.main(args=args, prog_name="md2", standalone_mode=False)
    except MD2Error as error:
        if debug_enabled():
            raise
        fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as error:
        if _interrupted(error) and not debug_enabled():
            fail("interrupted", 130)
        # Typer's parser errors (its own click or a vendored copy) carry exit_code and format_message.
        if type(error).__name__ == "Abort":
            if isinstance(error.__cause__, EOFError):
                # Typer turns any EOFError into Abort as if stdin had closed at a prompt; md2 has no prompts,
                # so it is a reader's bug: keep its traceback instead of claiming an interruption.
                raise error.__cause__ from None
            fail("interrupted", 130)
        format_message = getattr(error, "format_message", None)
        exit_code = getattr(error, "exit_code", None)
        if debug_enabled() or not callable(format_message) or not isinstance(exit_code, int):
            raise
        if not format_message().strip():
            sys.exit(exit_code)  # e.g. `md2` alone: the help was printed already
        context = getattr(error, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        fail(format_message() + (_list_hint(args, error) or hint), exit_code)
    if code == 130:  # Ctrl-C inside a command: Typer returns the code without raising
        fail("interrupted", 130)
    code = code if isinstance(code, int) else 0
    if argv is None and code == 0 and can_skip_teardown():
        exit_skipping_teardown()
    sys.exit(code)


NUMBER = re.compile(r"-?\d+(\.\d+)?")
EXTRA = re.compile(r"unexpected extra argument(?:s|\(s\))? \(([^\s)]+)")


def _list_hint(args: list[str], error: Exception) -> str:
    """The reference's space-separated lists (``--frame-ids 0 -1 1``, ``--scales 0 1 2 3``,
    ``--models-to-load encoder depth``) make click read ``-1`` as an option or ``1`` as an extra argument: say how
    to write the list (" (a list is one value: write --frame-ids 0,-1,1)") when the option before takes one
    (its help says comma-separated); "" otherwise."""
    name = getattr(error, "option_name", None)
    extra = EXTRA.search(str(getattr(error, "message", "")))
    stray = name if name and NUMBER.fullmatch(name) else extra.group(1) if extra else None
    if stray is None or stray not in args:
        return ""
    def value(token: str) -> bool:
        return not token.startswith("-") or NUMBER.fullmatch(token) is not None
    at = args.index(stray)
    start = at
    while start > 0 and value(args[start - 1]):
        start -= 1
    if start == 0 or start == at or not args[start - 1].startswith("--"):
        return ""
    context = getattr(error, "ctx", None)
    params = getattr(getattr(context, "command", None), "params", [])
    option = next((param for param in params if args[start - 1] in getattr(param, "opts", ())), None)
    if option is None or "comma" not in (getattr(option, "help", "") or ""):
        return ""
    end = at
    while end < len(args) and value(args[end]):
        end += 1
    return f" (a list is one value: write {args[start - 1]} {','.join(args[start:end])})"
def _interrupted(error: BaseException) -> bool:
    """Whether ``error`` was raised while handling a KeyboardInterrupt: native code that calls back into Python
    turns Ctrl-C into its own error (torch.save: "RuntimeError: [enforce fail at inline_container.cc] unexpected
    pos"); it is still the user's Ctrl-C."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def can_skip_teardown() -> bool:
    """Whether the process may end by :func:`exit_skipping_teardown`: it imported torch (else there is nothing
    to skip), Python can run its own exit work here (``atexit._run_exitfuncs``), and no thread but this one is
    left (a thread still running, or an executor not shut down, gets the interpreter's usual exit)."""
    return "torch" in sys.modules and hasattr(atexit, "_run_exitfuncs") and threading.active_count() == 1


def exit_skipping_teardown() -> NoReturn:
    """End a successful command without libtorch's static destructors.

    At exit libtorch deregisters each of its thousands of operators, updating dispatch tables one at a time:
    0.15-0.2 s after every command that imported torch on the 2-core CI machine (perf: c10 OperatorEntry and
    dispatch-table frames under the C library's exit handlers), with nothing to show for it. Here Python's
    exit work runs as usual (atexit handlers: logging, multiprocessing, finalizers, md2's gc.freeze), Python's
    and the C library's output buffers are flushed, then the process ends (os._exit). Every file a command
    writes is closed (and renamed into place) before it returns, so nothing waits for the interpreter's own
    teardown.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed or replaced streams: nothing to flush
            pass
    try:
        ctypes.CDLL(None).fflush(None)  # C stdio buffers (native libraries' messages)
    except (OSError, AttributeError):
        pass
    os._exit(0)
