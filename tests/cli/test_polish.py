"""The finish of the md2 command: examples in every help, --quiet / --verbose everywhere, no colours off a
terminal (and NO_COLOR honoured on one), shell completion, and torch.hub loading of the model zoo."""

from __future__ import annotations

import os
import pty
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.main import get_command

from md2.cli.app import app
from md2.core.zoo import MODELS
from tests.cli.test_app import COMMANDS, run_md2
from tests.core.test_zoo import zip_folder
from tests.httpserver import LocalServer
from tests.model_folders import random_model
from tests.zoo_table import publish_for_paths

REPO = Path(__file__).resolve().parents[2]
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def _click_command(name: str):
    return get_command(app).commands[name]


def help_examples(name: str) -> list[list[str]]:
    """The ``md2 NAME ...`` lines quoted in a command's epilog, each as its arguments after NAME."""
    epilog = _click_command(name).epilog or ""
    pieces = re.split(r"\s+\|\s+|\.\s+(?=[A-Z])", epilog)
    examples = []
    for piece in pieces:
        match = re.search(rf"\bmd2 {re.escape(name)}\b(.*)", piece)
        if match:
            examples.append(shlex.split(match.group(1).strip().rstrip(".")))
    return examples


@pytest.mark.parametrize("name", COMMANDS)
def test_every_help_shows_examples_that_parse(name):
    result = run_md2(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "Examples" in result.stdout
    examples = help_examples(name)
    assert examples, f"no 'md2 {name} ...' example in its help"
    command = _click_command(name)
    for args in examples:
        # Every option of every example exists and takes the values shown (parsing only, nothing runs).
        command.make_context(name, list(args))


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_quiet_and_verbose(name):
    options = {flag for param in _click_command(name).params for flag in getattr(param, "opts", [])}
    assert {"--quiet", "-q", "--verbose", "-v"} <= options


@pytest.mark.parametrize("name", ["synth", "convert-jpeg", "export-gt", "predict", "download-kitti"])
def test_quiet_with_verbose_is_refused_in_one_line(name, tmp_path):
    result = run_md2(name, *(["x"] if name in ("synth", "predict") else []), "--quiet", "--verbose",
                     env={"MD2_HOME": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--quiet or --verbose" in lines[0]


def test_verbose_adds_settings_and_files_quiet_prints_nothing(tmp_path):
    small = ["--drives", "1", "--frames", "3", "--width", "64", "--height", "32", "--jobs", "1"]
    normal = run_md2("synth", str(tmp_path / "a"), *small)
    verbose = run_md2("synth", str(tmp_path / "b"), *small, "-v")
    quiet = run_md2("synth", str(tmp_path / "c"), *small, "-q")
    assert normal.returncode == verbose.returncode == quiet.returncode == 0
    assert len(normal.stderr.strip().splitlines()) == 1 and "wrote 1 drives" in normal.stderr
    assert "seed=0" in verbose.stderr and "2011_09_26_drive_0001_sync" in verbose.stderr
    assert len(verbose.stderr.strip().splitlines()) > len(normal.stderr.strip().splitlines())
    assert quiet.stdout == quiet.stderr == ""


def test_predict_verbose_names_the_model_device_and_every_image(tmp_path):
    from PIL import Image

    weights = random_model(tmp_path / "w", use_stereo=False)
    for name in ("a", "b"):
        Image.new("RGB", (96, 32), (90, 120, 150)).save(tmp_path / f"{name}.jpg")
    result = run_md2("predict", str(tmp_path), "--weights", str(weights), "--device", "cpu", "--verbose")
    assert result.returncode == 0, result.stderr
    assert "2 images;" in result.stderr and "192x64 on cpu" in result.stderr
    assert str(tmp_path / "a.jpg") in result.stderr and str(tmp_path / "b.jpg") in result.stderr
    assert "2 of 2 images" in result.stderr


def colour_codes(text: str) -> list[str]:
    """The colour parameters (30-38, 90-97) of every SGR escape in ``text``."""
    return [code for params in SGR.findall(text) for code in params.split(";")
            if code.isdigit() and (30 <= int(code) <= 38 or 90 <= int(code) <= 97)]


@pytest.mark.parametrize("args", [["predict", "--no-such-option"], ["synth", "out", "--width", "0"],
                                  ["export-gt", "--data-path", "no_such_folder"]], ids=["usage", "range", "runtime"])
def test_errors_off_a_terminal_have_no_escape_codes(args, tmp_path):
    result = run_md2(*args, env={"TERM": "xterm-256color", "MD2_HOME": str(tmp_path)})
    assert result.returncode in (1, 2)
    assert result.stderr.startswith("error: ") and "\x1b[" not in result.stderr + result.stdout


def _on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """Run md2 with stdout and stderr on a pseudo-terminal; returns what it wrote there."""
    controller, terminal = pty.openpty()
    merged = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", **env}
    for name in ("MD2_DEBUG", "FORCE_COLOR", "NO_COLOR"):
        if name not in env:
            merged.pop(name, None)
    executable = os.path.join(os.path.dirname(sys.executable), "md2")
    process = subprocess.run([executable, *args], stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                             env=merged, timeout=120)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the terminal is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert process.returncode == 2
    return b"".join(chunks).decode(errors="replace")


def test_colours_on_a_terminal_and_none_with_no_color():
    coloured = _on_a_terminal("synth", "out", "--width", "0", env={})
    plain = _on_a_terminal("synth", "out", "--width", "0", env={"NO_COLOR": "1"})
    assert "--width" in coloured and "--width" in plain
    assert colour_codes(coloured), repr(coloured)  # red on a terminal: the check below means something
    assert colour_codes(plain) == [], repr(plain)


@pytest.mark.parametrize("how", ["argument", "shell"])
def test_show_completion_prints_a_bash_script(how):
    if how == "argument":
        result = run_md2("--show-completion", "bash")
    else:
        result = run_md2("--show-completion", env={"SHELL": "/bin/bash"})
    assert result.returncode == 0, result.stderr
    assert "_md2_completion" in result.stdout and "complete " in result.stdout


def test_completion_completes_commands_and_options():
    env = {"_MD2_COMPLETE": "complete_bash", "COMP_CWORD": "1", "COMP_WORDS": "md2 pre"}
    assert run_md2(env=env).stdout.split() == ["predict"]
    env.update(COMP_CWORD="2", COMP_WORDS="md2 predict --verb")
    assert run_md2(env=env).stdout.split() == ["--verbose"]


# torch.hub ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo_model(tmp_path_factory) -> tuple[Path, bytes]:
    """One ResNet-18 model at 64 x 192 written by md2 (read-only for the tests) and its zip archive: built once
    for the module (about 3 s), served afresh to every test by ``local_zoo``."""
    folder = random_model(tmp_path_factory.mktemp("zoo_model") / "w", use_stereo=True, seed=0)
    return folder, zip_folder(folder)


@pytest.fixture
def local_zoo(tmp_path, monkeypatch, zoo_model):
    """Every zoo name served from 127.0.0.1 as one tiny ResNet-18 model at 64 x 192; MD2_HOME in tmp_path."""
    folder, archive = zoo_model
    files = {"/" + info.url.rsplit("/", 1)[1]: archive for info in MODELS.values()}
    publish_for_paths(monkeypatch, files)  # the table holds this zip's md5 for the test
    with LocalServer(files) as server:
        monkeypatch.setenv("MD2_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("MD2_ZOO_URL", server.url())
        yield folder, server


def test_hub_lists_one_entry_per_zoo_model():
    # torch.hub.list reads GitHub repositories only; list the local hubconf.py the way it does (public callables).
    import importlib.util

    spec = importlib.util.spec_from_file_location("md2_hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert {"torch", "numpy", "PIL"} <= set(hubconf.dependencies)
    entries = {name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")}
    assert set(MODELS) <= entries
    assert {name.replace("+", "_") for name in MODELS} <= entries
    assert "load_model" in entries


@pytest.mark.parametrize("name", ["mono_640x192", "mono+stereo_640x192", "mono_stereo_640x192"])
def test_hub_load_downloads_into_the_cache_and_returns_a_ready_model(local_zoo, tmp_path, name):
    model = torch.hub.load(str(REPO), name, source="local")
    zoo_name = name if name in MODELS else "mono+stereo_640x192"
    assert (tmp_path / "home" / "models" / zoo_name / "encoder.pth").is_file()
    assert not model.training and (model.height, model.width) == (64, 192)
    with torch.inference_mode():
        disp = model(torch.rand(1, 3, 64, 192))
    assert disp.shape == (1, 1, 64, 192) and 0 <= float(disp.min()) <= float(disp.max()) <= 1
    picture = torch.rand(40, 120, 3).mul(255).byte().numpy()
    depth = model.predict_depth(picture)
    assert depth.shape == (40, 120) and (depth > 0).all()


def test_hub_load_model_takes_a_weights_folder_and_refuses_untrained(local_zoo):
    folder, server = local_zoo
    model = torch.hub.load(str(REPO), "load_model", str(folder), source="local")
    assert model.use_stereo and server.requests == []  # a folder: nothing downloaded
    assert next(model.parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="published weights"):
        torch.hub.load(str(REPO), "mono_640x192", source="local", pretrained=False)
