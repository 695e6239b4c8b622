"""The README is a user's guide whose claims hold: its length, its commands (every `md2 ...` line parses with
today's options), the tests it says read ../shared, and its performance table (figures from docs/performance.md).
The behaviours it describes are tested where they are implemented (test names in each section's comments)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.main import get_command

from md2.cli.app import app

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
GROUP = get_command(app)


def readme_md2_lines() -> list[list[str]]:
    """Every md2 command line of the README's shell blocks (continuations joined, comments dropped), as the
    arguments after ``md2`` (``torchrun ... -m md2 ...`` included)."""
    lines = []
    for block in re.findall(r"```shell\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "md2" in words and (words[0] == "md2" or words[words.index("md2") - 1] == "-m"):
                lines.append(words[words.index("md2") + 1:])
    return lines


def test_readme_is_a_guide_not_a_lab_notebook():
    assert len(README.splitlines()) <= 450
    assert not re.search(r"Measured on 20\d\d-", README)  # dated measurement logs live in docs/performance.md


def test_readme_has_the_sections_other_guides_are_merged_into():
    for heading in ("## Quick start", "## Prediction", "## Deploying a model", "## Training", "### Reliability",
                    "## Evaluation", "## Try it without KITTI", "## The full KITTI recipe", "## Performance"):
        assert f"\n{heading}\n" in README, heading


def test_readme_installs_the_cpu_build_of_torch_first():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```shell\n(.*?)```", quick, re.S).group(1).splitlines()
    assert block[0].startswith("pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu")
    assert block[1].startswith('pip install -e ".[dev]"')


@pytest.mark.parametrize("args", readme_md2_lines(), ids=lambda args: " ".join(args)[:60])
def test_every_md2_line_of_the_readme_parses(args):
    assert args, "a bare md2 line"
    if args[0].startswith("--"):  # md2 --install-completion and the like: the group's own options
        GROUP.make_context("md2", list(args), resilient_parsing=True)
        return
    assert args[0] in GROUP.commands, args
    GROUP.commands[args[0]].make_context(args[0], list(args[1:]))


def test_readme_names_every_test_file_that_reads_shared():
    readers = {path.relative_to(REPO).as_posix() for path in (REPO / "tests").rglob("test_*.py")
               if path.name != "test_readme.py" and re.search(r"shared_dir|/ \"shared\"", path.read_text())}
    assert readers, "no test reads ../shared any more: update the README's quick start"
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    for path in sorted(readers):
        assert f"`{path}`" in quick, path


def test_readme_performance_figures_are_the_measured_ones():
    table = README.split("## Performance", 1)[1].split("```", 1)[0]
    measured = (REPO / "docs" / "performance.md").read_text()
    ratios = re.findall(r"x\d\.\d\d", table)
    assert len(ratios) >= 6
    for ratio in ratios:
        assert f"**{ratio}**" in measured or f", {ratio} |" in measured or f"| {ratio} |" in measured, ratio


def test_readme_onnx_claim_names_the_precision_it_holds_for():
    deploying = README.split("## Deploying a model", 1)[1].split("\n## ", 1)[0]
    # tests/cli/test_export_cli.py::test_export_onnx_then_predict_gives_the_weights_folders_outputs compares with
    # the folder's --precision fp32 outputs: the README must not claim it for the default precision.
    assert "within 1e-4 when both run `--precision fp32`" in deploying
