"""The md2 executable: sub-commands, help, version, and one-line errors with the right exit codes.

These tests start the real executable; the other test files run md2 through :func:`run_md2`, forked from a process
that imported torch once (tests/md2_process.py), which gives what the executable gives (assert_run_md2_gives)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import md2
from tests import md2_process

COMMANDS = ["download-kitti", "convert-jpeg", "export-gt", "train", "evaluate-depth", "evaluate-pose", "predict",
            "export", "synth"]


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    merged = {**os.environ, "COLUMNS": "120", **(env or {})}
    merged.pop("MD2_DEBUG", None) if env is None or "MD2_DEBUG" not in env else None
    return merged


def run_md2_executable(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``md2`` console script (the real executable, a fresh interpreter), capturing its output."""
    executable = os.path.join(os.path.dirname(sys.executable), "md2")
    return subprocess.run([executable, *args], capture_output=True, text=True, env=_environment(env), timeout=120)


def run_md2(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``md2`` console script in a process of its own, capturing its output: forked from a
    process that imported torch once (tests/md2_process.py), for the other test files' many runs. This file's
    tests start the real executable (run_md2_executable)."""
    return md2_process.run(args, env=_environment(env), timeout=120)


def assert_run_md2_gives(result: subprocess.CompletedProcess, *args: str, env: dict[str, str] | None = None):
    """run_md2 (forked from a process that imported torch, tests/md2_process.py) gives what the executable gave:
    the same exit code, stdout and stderr, tracebacks included."""
    forked = run_md2(*args, env=env)
    assert (forked.returncode, forked.stdout, forked.stderr) == (result.returncode, result.stdout, result.stderr)


def test_version_prints_package_version():
    result = run_md2_executable("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"md2 {md2.__version__}"


def test_help_lists_every_command():
    result = run_md2_executable("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    result = run_md2_executable(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_unknown_option_is_one_line_with_exit_2():
    result = run_md2_executable("predict", "--no-such-option")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-option" in lines[0]
    assert "Traceback" not in result.stderr
    assert_run_md2_gives(result, "predict", "--no-such-option")


def test_unknown_command_exits_2():
    result = run_md2_executable("no-such-command")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_runtime_error_is_one_line_with_exit_1(tmp_path):
    result = run_md2_executable("predict", str(tmp_path / "missing.jpg"), "--weights", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.jpg" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_traceback(tmp_path, how):
    args = ["predict", str(tmp_path / "missing.jpg"), "--weights", str(tmp_path)]
    if how == "flag":
        args.append("--debug")
    env = {"MD2_DEBUG": "1"} if how == "env" else None
    result = run_md2_executable(*args, env=env)
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert_run_md2_gives(result, *args, env=env)



def _modules_after(*args: str) -> set[str]:
    """The modules imported by a run of ``md2 ARGS`` (what the console script does: md2.cli.app's main)."""
    code = ("import atexit, json, sys\n"
            "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
            f"sys.argv = ['md2', *{list(args)!r}]\n"
            "from md2.cli.app import main\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=_environment(None))
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [["--help"], ["synth", "{tmp}/synth", "--drives", "1", "--frames", "3", "--width",
                                              "64", "--height", "64", "-q"]])
def test_help_and_synth_never_import_torch(tmp_path, args):
    imported = _modules_after(*(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert "md2.cli.app" in imported
    assert not {name for name in imported if name == "torch" or name.startswith(("torch.", "torchvision"))}


def test_a_command_imports_no_other_commands_module():
    commands = {name for name in _modules_after("predict", "--help")
                if name.startswith("md2.cli.")
                and name not in ("md2.cli.app", "md2.cli.errors", "md2.cli.common", "md2.cli.help",
                                 "md2.cli.coercion")}
    assert commands == {"md2.cli.predict"}


def test_predicting_a_photo_imports_neither_the_compiler_nor_torchvision_nor_onnx(tmp_path, weights):
    from PIL import Image

    Image.new("RGB", (96, 32), (90, 120, 150)).save(tmp_path / "photo.jpg")
    imported = _modules_after("predict", str(tmp_path / "photo.jpg"), "--weights", str(weights), "-q", "--engine",
                              "torch")  # onnxruntime's path imports no torch (tests/cli/test_predict_engines.py)
    assert "torch" in imported and (tmp_path / "photo_disp.jpeg").exists()
    assert not {name for name in imported if name.startswith(("torch._dynamo", "torchvision", "onnx"))}


def _run_watching_the_exit(tmp_path, args: list[str], before: str = "") -> tuple[subprocess.CompletedProcess, bool]:
    """Run ``md2 ARGS`` as the console script does, noting whether the process ended through os._exit (after
    the atexit handlers, which write tmp_path/atexit_ran). ``before`` runs first (Python source)."""
    code = ("import atexit, os, sys, threading\n"
            "ended = os._exit\n"
            "def watched(code):\n"
            "    print('os._exit', code, file=sys.stderr, flush=True)\n"
            "    ended(code)\n"
            "os._exit = watched\n"
            f"atexit.register(lambda: open({str(tmp_path / 'atexit_ran')!r}, 'w').close())\n"
            f"{before}\n"
            f"sys.argv = ['md2', *{args!r}]\n"
            "from md2.cli.app import main\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=_environment(None))
    return result, "os._exit 0" in result.stderr


def test_a_successful_command_skips_libtorchs_teardown_after_pythons_exit_work(tmp_path, weights):
    import numpy as np
    from PIL import Image

    Image.new("RGB", (96, 32), (90, 120, 150)).save(tmp_path / "photo.jpg")
    result, fast = _run_watching_the_exit(tmp_path, ["predict", str(tmp_path / "photo.jpg"), "--weights",
                                                     str(weights), "--engine", "torch"])
    assert result.returncode == 0 and fast, result.stderr[-2000:]
    assert (tmp_path / "atexit_ran").exists()  # Python's exit work was done
    assert "1 of 1 image" in result.stderr  # the summary printed just before the end was flushed
    assert np.load(tmp_path / "photo_disp.npy").shape == (1, 1, 64, 192)
    assert Image.open(tmp_path / "photo_disp.jpeg").size == (96, 32)


def test_a_thread_still_running_gets_the_interpreters_usual_exit(tmp_path, weights):
    from PIL import Image

    Image.new("RGB", (96, 32), (90, 120, 150)).save(tmp_path / "photo.jpg")
    late = tmp_path / "late"
    output = tmp_path / "photo_disp.jpeg"
    thread = ("import time\n"  # still running when the command returns: it ends 0.5 s after the last output
              "def late():\n"
              f"    while not os.path.exists({str(output)!r}):\n"
              "        time.sleep(0.01)\n"
              "    time.sleep(0.5)\n"
              f"    open({str(late)!r}, 'w').close()\n"
              "threading.Thread(target=late).start()")
    result, fast = _run_watching_the_exit(tmp_path, ["predict", str(tmp_path / "photo.jpg"), "--weights",
                                                     str(weights), "-q"], before=thread)
    assert result.returncode == 0 and not fast, result.stderr[-2000:]
    assert late.exists() and (tmp_path / "atexit_ran").exists()


def test_a_failed_command_or_one_without_torch_exits_as_usual(tmp_path):
    result, fast = _run_watching_the_exit(tmp_path, ["predict", str(tmp_path / "missing.jpg")])
    assert result.returncode != 0 and not fast
    result, fast = _run_watching_the_exit(tmp_path, ["--version"])
    assert result.returncode == 0 and not fast and (tmp_path / "atexit_ran").exists()
