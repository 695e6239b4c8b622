"""A new user's whole journey (issue 7, section 1): the README's "Try it without KITTI" commands, read from the
README itself and run through the ``md2`` console script, each in a process of its own, every artefact checked.

The README's sizes take minutes on a laptop; to fit CI's budget on a 2-core CPU the test runs the very same
commands with smaller numbers (:data:`SMALLER`): 2 drives x 6 frames at 192 x 64, training at 64 x 64 with batch 2
for 3 epochs (18 steps) instead of 1 epoch at 128 x 416 with batch 4, and the last weights folder (weights_2)
where the README uses weights_0. After 18 steps from scratch the model has only begun to learn (stereo abs_rel
about 0.887 untrained -> 0.885): the test checks it is better than the very networks the run started from; the
real learning check is tests/core/train/test_learning.py (slow).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from md2.core.checkpoint import load_depth_model, load_module, load_state_dict_file, save_weights_folder
from md2.core.evaluation.depth_job import DepthEvalSettings, run_depth_evaluation
from md2.core.train.config import build_config
from md2.core.train.loop import seed_everything
from md2.core.train.models import build_models
from tests import md2_process

README = Path(__file__).resolve().parents[1] / "README.md"
SMALLER = {
    "synth": {"--frames": "6", "--width": "192", "--height": "64"},
    "train": {"--height": "64", "--width": "64", "--batch-size": "2", "--num-epochs": "3"},
    "evaluate-pose": {"--height": "64", "--width": "64"},
}
LAST_WEIGHTS = "weights_2"
"""The last weights folder of the smaller run (3 epochs); the README's 1-epoch run ends with weights_0."""


def readme_commands() -> list[list[str]]:
    """The md2 command lines of the README's "Try it without KITTI" shell block (continuations joined)."""
    section = README.read_text().split("## Try it without KITTI", 1)[1]
    block = re.search(r"```shell\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def smaller(command: list[str]) -> list[str]:
    """``command`` with SMALLER's values for its sub-command and weights_0 -> LAST_WEIGHTS."""
    sizes, args = SMALLER.get(command[1], {}), list(command)
    for index, arg in enumerate(args[:-1]):
        if arg in sizes:
            args[index + 1] = sizes[arg]
    return [arg.replace("weights_0", LAST_WEIGHTS) for arg in args]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The README's ``md2 ...`` line: the console script in a process of its own (forked from one that imported
    torch once, tests/md2_process.py; tests/cli/test_app.py checks that this gives what the executable gives)."""
    assert command[0] == "md2", command
    env = {key: value for key, value in os.environ.items() if key != "MD2_DEBUG"}
    result = md2_process.run(command[1:], cwd=cwd, timeout=300, env={**env, "COLUMNS": "200"})
    assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_readme_journey_without_kitti_runs_and_every_artefact_checks_out(tmp_path):
    commands = [smaller(command) for command in readme_commands()]
    assert [command[1] for command in commands] == ["synth", "convert-jpeg", "export-gt", "train", "evaluate-depth",
                                                    "evaluate-pose", "predict"]
    synth, convert, export_gt, train, evaluate_depth, evaluate_pose, predict = commands
    data = tmp_path / synth[2]

    run(synth, tmp_path)
    drive = data / "2011_09_26" / "2011_09_26_drive_0001_sync"
    assert (data / "2011_09_26" / "calib_cam_to_cam.txt").is_file() and (data / "poses" / "09.txt").is_file()
    assert len(list((drive / "image_02" / "data").glob("*.png"))) == 6

    run(convert, tmp_path)
    assert not list(data.rglob("image_0[23]/data/*.png"))
    jpegs = sorted((drive / "image_02" / "data").glob("*.jpg"))
    assert len(jpegs) == 6 and len(list(data.rglob("*.jpg"))) >= 2 * 2 * 6
    for jpeg in jpegs:
        with Image.open(jpeg) as image:
            assert image.format == "JPEG" and image.size == (192, 64)

    run(export_gt, tmp_path)
    test_lines = (data / "splits" / "synth" / "test_files.txt").read_text().split("\n")
    test_lines = [line for line in test_lines if line.strip()]
    with np.load(data / "splits" / "synth" / "gt_depths.npz", allow_pickle=False) as gt:
        assert sorted(gt.files) == [f"{i:04d}" for i in range(len(test_lines))]
        depth = gt["0000"]
    assert depth.shape == (64, 192) and depth.dtype.kind == "f" and 0 < depth.max() <= 80.1

    run(train, tmp_path)
    run_dir = tmp_path / option(train, "--log-dir") / option(train, "--model-name")
    options = yaml.safe_load((run_dir / "opt.yaml").read_text())
    assert options["data"]["use_stereo"] is True and options["data"]["frame_ids"] == [0, -1, 1]
    assert options["optim"]["num_epochs"] == 3 and options["data"]["height"] == 64
    config = build_config({name: value for section in options.values() for name, value in section.items()})
    assert sorted(p.name for p in (run_dir / "models").iterdir()) == ["weights_0", "weights_1", LAST_WEIGHTS]
    weights = run_dir / "models" / LAST_WEIGHTS
    for name, module in build_models(config).items():  # strict keys and shapes, weights_only
        load_module(module, weights / f"{name}.pth")
    encoder_file = load_state_dict_file(weights / "encoder.pth")
    assert (encoder_file["height"], encoder_file["width"], encoder_file["use_stereo"]) == (64, 64, True)
    assert "state" in load_state_dict_file(weights / "adam.pth")
    assert list((run_dir / "train").glob("events.out.tfevents.*"))

    results = tmp_path / "depth.json"
    run([*evaluate_depth, "--json", str(results)], tmp_path)
    metrics = json.loads(results.read_text())["metrics"]
    assert 0 < metrics["abs_rel"] < 1.5 and 0 < metrics["rmse"] < 80 and 0 <= metrics["a1"] <= metrics["a3"] <= 1
    untrained = _untrained_abs_rel(config, tmp_path, data, evaluate_depth)
    print(f"stereo abs_rel: untrained {untrained:.4f} -> trained {metrics['abs_rel']:.4f}")
    assert metrics["abs_rel"] < untrained

    poses = tmp_path / "pose.json"
    run([*evaluate_pose, "--json", str(poses)], tmp_path)
    pose = json.loads(poses.read_text())
    frames = int(option(synth, "--frames"))
    assert pose["num_pairs"] == frames - 1
    assert 0 <= pose["metrics"]["snippet_ate_mean"] < 4.0, pose  # metres; a 5-frame snippet spans about 4 m
    assert np.load(tmp_path / pose["poses"]).shape == (frames - 1, 4, 4)

    images = tmp_path / predict[2]
    run(predict, tmp_path)
    for jpeg in jpegs:
        disp = np.load(images / f"{jpeg.stem}_disp.npy")
        assert disp.shape == (1, 1, 64, 64) and disp.dtype == np.float32 and np.isfinite(disp).all()
        assert 0.01 <= disp.min() and disp.max() <= 10.0  # scaled disparity: 1/max_depth .. 1/min_depth
        with Image.open(images / f"{jpeg.stem}_disp.jpeg") as picture:
            assert picture.format == "JPEG" and picture.size == (192, 64)


def _untrained_abs_rel(config, tmp_path: Path, data: Path, evaluate_depth: list[str]) -> float:
    """Stereo abs_rel of the networks the run started from (the same seed builds them in the same order),
    saved as a weights folder and evaluated with the evaluate-depth command's own settings."""
    seed_everything(config.run.seed)
    folder = save_weights_folder(tmp_path / "untrained", dict(build_models(config)), height=config.data.height,
                                 width=config.data.width, use_stereo=True)
    load_depth_model(folder)
    settings = DepthEvalSettings(eval_stereo=True, eval_split=option(evaluate_depth, "--eval-split"),
                                 data_path=data, splits_dir=tmp_path / option(evaluate_depth, "--splits-dir"),
                                 load_weights_folder=folder, device="cpu")
    return run_depth_evaluation(settings).scores.metrics["abs_rel"]

