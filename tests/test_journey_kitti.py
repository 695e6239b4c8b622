"""The README's full KITTI recipe, read from the README itself and run line by line through the ``md2`` console script
(each line a process of its own), on a synthetic KITTI served by a local mirror of KITTI's server.

The mirror (tests/kitti_mirror.py) holds zips built from md2's synthetic dataset with KITTI's real names and inner
paths (raw drives, data_depth_annotated.zip, data_odometry_*.zip); the model zoo is served from the same server once
the recipe's own trainings have written weights (their zips under the published names). What changes for the test,
as in tests/test_journey.py, is only what a CPU-only CI needs (:func:`adapted`): a splits folder holding synthetic
stand-ins for the official lists (``--splits-dir``), the mirror (``--base-url``), tiny sizes (2 drives x 6 frames at
192 x 64; training at 64 x 64 from scratch for one epoch, hence ``weights_0`` for ``weights_19``), no loader
processes, and ``--json`` files to check. HOME is the test's folder, so ``~/tmp/MODEL_NAME`` lands there.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np

from md2.core.zoo import MODELS
from md2.data.groundtruth import benchmark_ground_truth, load_gt_depths
from md2.data.splits import read_split_file
from md2.data.synth import SynthOptions, generate_dataset
from tests import md2_process
from tests.httpserver import LocalServer
from tests.kitti_mirror import kitti_mirror, zip_members
from tests.test_journey import README

SYNTH = SynthOptions(drives=2, frames=6, width=192, height=64, depth_benchmark=True, odometry=True)
ADDED = {
    "download-kitti": ["--splits-dir", "splits"],
    "export-gt": ["--splits-dir", "splits"],
    "train": ["--splits-dir", "splits", "--height", "64", "--width", "64", "--batch-size", "2", "--num-epochs", "1",
              "--weights-init", "scratch", "--num-workers", "0"],
    "evaluate-depth": ["--splits-dir", "splits", "--num-workers", "0"],
    "evaluate-pose": ["--splits-dir", "splits", "--height", "64", "--width", "64", "--num-workers", "0"],
}


def recipe_commands() -> list[list[str]]:
    """The md2 lines of the shell block of the README's "The full KITTI recipe" (comments dropped)."""
    section = README.read_text().split("## The full KITTI recipe", 1)[1]
    block = re.search(r"```shell\n(.*?)```", section, re.S).group(1)
    lines = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line]


def adapted(command: list[str], number: int, mirror: str) -> list[str]:
    """``command`` with ADDED's options for its sub-command, the mirror, one epoch's weights and a JSON file."""
    args = [arg.replace("weights_19", "weights_0") for arg in command] + ADDED.get(command[1], [])
    if command[1] == "download-kitti":
        args += ["--base-url", f"{mirror}/raw_data"]
    if command[1].startswith("evaluate-"):
        args += ["--json", f"results/{number:02d}.json"]
    return args


def stand_in_splits(source: Path, splits: Path) -> None:
    """The official lists' names holding the synthetic dataset's lines, and the reference's archive list."""
    synth, drives = source / "splits" / "synth", sorted(source.glob("2011_*/*_sync"))
    for name, files in {"eigen": ["test"], "eigen_benchmark": ["test"], "eigen_zhou": ["train", "val"],
                        "eigen_full": ["train", "val"]}.items():
        (splits / name).mkdir(parents=True)
        for which in files:
            shutil.copy(synth / f"{which}_files.txt", splits / name / f"{which}_files.txt")
    shutil.copytree(source / "splits" / "odom", splits / "odom")
    urls = [f"https://example.org/raw_data/{drives[0].parent.name}_calib.zip"]
    urls += [f"https://example.org/raw_data/{d.name.removesuffix('_sync')}/{d.name}.zip" for d in drives]
    (splits / "kitti_archives_to_download.txt").write_text("".join(f"{url}\n" for url in urls))


def run(args: list[str], cwd: Path, env: dict[str, str]):
    result = md2_process.run(args[1:], cwd=cwd, timeout=300, env=env)
    assert result.returncode == 0, f"{shlex.join(args)}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def test_the_readme_kitti_recipe_runs_from_download_to_every_evaluation(tmp_path):
    commands = recipe_commands()
    assert [c[1] for c in commands] == ["download-kitti"] * 2 + ["export-gt"] * 2 + ["train"] * 4 + \
        ["evaluate-depth"] * 6 + ["evaluate-pose"] * 2 + ["evaluate-depth", "evaluate-pose"]
    source = generate_dataset(tmp_path / "source", SYNTH)
    stand_in_splits(source, tmp_path / "splits")
    (tmp_path / "results").mkdir()
    env = {key: value for key, value in os.environ.items() if key != "MD2_DEBUG"}
    env.update(HOME=str(tmp_path), MD2_HOME=str(tmp_path / "md2_home"), MD2_SPLITS_URL="http://127.0.0.1:9",
               COLUMNS="200")
    with LocalServer(kitti_mirror(source)) as server:
        env["MD2_ZOO_URL"] = server.url()
        outputs = {}
        for number, command in enumerate(commands):
            if "--model" in command:  # the zoo: the recipe's own trained weights under the published names
                _serve_trained_models(server, tmp_path)
            outputs[number] = run(adapted(command, number, server.url()), tmp_path, env)
            if number == 0:
                _check_dry_run(outputs[0].stdout, tmp_path)
            if number == 1:
                _check_download(tmp_path / "kitti_data", source)
            if number == 3:
                _check_ground_truth(tmp_path, source)
    _check_results(commands, tmp_path)


def _serve_trained_models(server: LocalServer, root: Path) -> None:
    """The recipe's own trained weights as the zoo's models: served for mono_odom_640x192 (checked by CRC only)
    and put in the cache for mono+stereo_640x192, whose published md5 no zip of ours can have (a process of its
    own does not see a test's override of the table)."""
    for name, run_name in (("mono+stereo_640x192", "mono+stereo_model"), ("mono_odom_640x192", "odom_split.M")):
        folder = root / "tmp" / run_name / "models" / "weights_0"
        if MODELS[name].md5 is None:
            server.files[f"/{name}.zip"] = zip_members({p.name: p.read_bytes() for p in sorted(folder.iterdir())})
        elif folder.is_dir():
            shutil.copytree(folder, root / "md2_home" / "models" / name, dirs_exist_ok=True)


def _check_dry_run(stdout: str, root: Path) -> None:
    *rows, summary = stdout.strip().splitlines()
    names = [row.split("\t")[0].rsplit("/", 1)[1] for row in rows]
    assert names == ["2011_09_26_calib.zip", "2011_09_26_drive_0001_sync.zip", "2011_09_26_drive_0002_sync.zip",
                     "data_depth_annotated.zip", "data_odometry_color.zip", "data_odometry_calib.zip",
                     "data_odometry_poses.zip"]
    assert summary.startswith("7 archives to download") and not (root / "kitti_data").exists()


def _check_download(data: Path, source: Path) -> None:
    """Raw drives, their maps inside them, odometry beside them; camera images JPEG, maps PNG."""
    for drive in ("2011_09_26_drive_0001", "2011_09_26_drive_0002"):
        folder = data / "2011_09_26" / f"{drive}_sync"
        assert len(list((folder / "image_03" / "data").glob("*.jpg"))) == SYNTH.frames
        assert sorted(p.name for p in (folder / "proj_depth" / "groundtruth" / "image_02").iterdir()) == sorted(
            p.name for p in (source / folder.relative_to(data) / "proj_depth" / "groundtruth" / "image_02").iterdir())
    assert len(list((data / "sequences" / "10" / "image_2").glob("*.jpg"))) == SYNTH.frames
    assert (data / "poses" / "09.txt").read_bytes() == (source / "poses" / "09.txt").read_bytes()
    assert not list(data.rglob("image_0[23]/data/*.png")) and not list(data.glob("*.zip"))


def _check_ground_truth(root: Path, source: Path) -> None:
    lidar = load_gt_depths(root / "splits" / "eigen" / "gt_depths.npz")
    maps = load_gt_depths(root / "splits" / "eigen_benchmark" / "gt_depths.npz")
    lines = read_split_file(root / "splits" / "eigen_benchmark" / "test_files.txt")
    assert len(lidar) == len(maps) == len(lines)
    for depth, line in zip(maps, lines):
        np.testing.assert_array_equal(depth, benchmark_ground_truth(source, line))


def _check_results(commands: list[list[str]], root: Path) -> None:
    """Every evaluation scored; a published model by name scores as the same weights from their folder."""
    results = {number: json.loads((root / "results" / f"{number:02d}.json").read_text())
               for number, command in enumerate(commands) if command[1].startswith("evaluate-")}
    for number, result in results.items():
        metrics = result["metrics"]
        assert all(np.isfinite(value) for value in metrics.values()), (commands[number], metrics)
        if commands[number][1] == "evaluate-pose":
            assert result["num_pairs"] == SYNTH.frames - 1
        else:
            assert 0 < metrics["abs_rel"] and 0 <= metrics["a1"] <= metrics["a3"] <= 1
    depth = [number for number, command in enumerate(commands) if command[1] == "evaluate-depth"]
    pose = [number for number, command in enumerate(commands) if command[1] == "evaluate-pose"]
    assert results[depth[2]]["metrics"] != results[depth[5]]["metrics"]  # eigen and eigen_benchmark differ
    assert results[depth[-1]]["metrics"] == results[depth[2]]["metrics"]  # mono+stereo, by name and by folder
    assert results[pose[-1]]["metrics"] == results[pose[0]]["metrics"]  # odometry model, by name and by folder
    assert results[pose[-1]]["model"]["name"] == "mono_odom_640x192"
