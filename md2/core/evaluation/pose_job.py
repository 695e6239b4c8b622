"""The ``md2 evaluate-pose`` job: the reference's evaluate_pose.py, plus full-trajectory errors and a plot."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from md2.core.checkpoint import POSE_FILES, load_pose_networks, require_pose_files
from md2.core.evaluation.depth_job import Progress, _stage
from md2.core.evaluation.pose import (
    PoseScores,
    gt_relative_poses,
    predict_relative_poses,
    read_gt_poses,
    score_poses,
)
from md2.errors import CheckpointError, DataError, UsageError
from md2.files import atomic_path, make_folder

POSE_SPLITS = {"odom_9": 9, "odom_10": 10}
"""Evaluation split -> KITTI odometry sequence (test files SPLITS_DIR/odom/test_files_NN.txt)."""


@dataclass(frozen=True)
class PoseEvalSettings:
    """Every option of a pose evaluation (the reference's names)."""

    load_weights_folder: Path | None = None
    eval_split: str = "odom_9"
    data_path: Path = Path("kitti_data")
    splits_dir: Path | None = None
    height: int = 192
    width: int = 640
    png: bool = False
    num_layers: int | None = None
    batch_size: int = 16
    num_workers: int = 0
    device: str = "auto"
    eval_out_dir: Path | None = None
    plot: Path | None = None

    @property
    def sequence(self) -> int:
        if self.eval_split not in POSE_SPLITS:
            raise UsageError(f"--eval-split must be one of {', '.join(POSE_SPLITS)}, got {self.eval_split!r}")
        return POSE_SPLITS[self.eval_split]

    @property
    def out_dir(self) -> Path:
        """Where poses.npy goes: --eval-out-dir, else the weights folder (as the reference)."""
        folder = self.eval_out_dir if self.eval_out_dir is not None else self.load_weights_folder
        return Path(folder if folder is not None else ".").expanduser()

    def as_dict(self) -> dict:
        return {**asdict(self), "sequence": self.sequence, "out_dir": self.out_dir}


@dataclass
class PoseEvaluation:
    """What a run produced: the scores, the saved poses and plot, the model's details."""

    settings: PoseEvalSettings
    scores: PoseScores
    poses_path: Path
    plot_path: Path | None = None
    model: dict = field(default_factory=dict)


def check_pose_settings(settings: PoseEvalSettings) -> None:
    """Usage errors found before any work."""
    settings.sequence  # noqa: B018 - validates the split name
    if settings.load_weights_folder is None:
        raise UsageError("give the weights folder to evaluate: --load-weights-folder DIR")
    if min(settings.height, settings.width) <= 0 or settings.height % 32 or settings.width % 32:
        raise UsageError(f"--height and --width must be positive multiples of 32 (the networks halve the input five "
                         f"times), got {settings.height}x{settings.width}")
    if settings.plot is not None and Path(settings.plot).suffix.lower() != ".png":
        raise UsageError(f"--plot writes a PNG: give a FILE.png, got {settings.plot}")


def run_pose_evaluation(settings: PoseEvalSettings, progress: Progress | None = None) -> PoseEvaluation:
    """Predict the relative pose of every test pair, score it against the sequence's poses, save and plot."""
    from md2.core.evaluation.datasets import pose_test_dataset
    from md2.core.inference import resolve_device
    from md2.data.sample import collate_samples
    from md2.data.splits import resolve_split_dir

    check_pose_settings(settings)
    sequence = settings.sequence
    folder = Path(settings.load_weights_folder).expanduser()
    require_pose_files(folder)  # before any split download or image check: the likelier mistake first
    split_file = resolve_split_dir("odom", settings.splits_dir) / f"test_files_{sequence:02d}.txt"
    gt_path = Path(settings.data_path).expanduser() / "poses" / f"{sequence:02d}.txt"
    gt_local = gt_relative_poses(read_gt_poses(gt_path))
    dataset = pose_test_dataset(split_file, settings.data_path, settings.height, settings.width, settings.png)
    if len(dataset) != len(gt_local):
        raise DataError(f"{split_file} lists {len(dataset)} frame pairs but {gt_path} holds "
                        f"{len(gt_local) + 1} poses ({len(gt_local)} steps): they must match")
    device = resolve_device(settings.device)
    encoder, decoder, num_layers = load_pose_networks(folder, settings.num_layers, device)
    pred = predict_relative_poses(encoder, decoder, dataset, device, settings.batch_size, settings.num_workers,
                                  collate_fn=collate_samples, on_batch=_stage(progress, "predict", len(dataset)))
    scores = score_poses(pred, gt_local)
    poses_path = save_poses(pred, settings.out_dir)
    plot_path = None
    if settings.plot is not None:
        from md2.core.evaluation.report import plot_trajectories

        title = (f"KITTI odometry {sequence:02d}: ATE {scores.trajectory['ate_rmse']:.2f} m "
                 f"(prediction aligned by a similarity)")
        plot_path = plot_trajectories(settings.plot, scores.gt_xyz, scores.pred_xyz, title=title)
    model = {"weights_folder": folder, "num_layers": num_layers, "device": str(device)}
    return PoseEvaluation(settings, scores, poses_path, plot_path, model)


def fetch_pose_model(name: str, progress: bool = True) -> Path:
    """The weights folder of pretrained model ``name`` (downloaded into md2's cache on first use), refused
    with one line when it has no pose network: a stereo-only model before any download, any other after it."""
    from md2.core import zoo

    info = zoo.MODELS.get(name)
    if info is not None and not info.has_pose_network:
        with_pose = [other for other, entry in zoo.MODELS.items() if entry.split == "odom"]
        raise UsageError(f"model {name} has no pose network (trained on stereo pairs only); evaluate-pose needs a "
                         f"mono or mono+stereo model, such as {' or '.join(with_pose)}")
    folder = zoo.fetch_model(name, progress=progress)  # an unknown name is a UsageError listing the models
    missing = [file for file in POSE_FILES if not (folder / file).is_file()]
    if missing:
        raise CheckpointError(f"model {name} has no pose network: its folder {folder} holds no "
                              f"{' or '.join(missing)}")
    return folder


def save_poses(poses: np.ndarray, out_dir: Path) -> Path:
    """Write the predicted relative poses (N, 4, 4) to ``out_dir/poses.npy`` (as the reference)."""
    try:
        make_folder(out_dir)
    except OSError as error:
        raise DataError(f"cannot create folder {out_dir}: {error.strerror or error}") from None
    path = out_dir / "poses.npy"
    with atomic_path(path) as temporary:
        np.save(temporary, poses)
    return path
