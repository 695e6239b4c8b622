"""Small training configurations, splits and batches from the synthetic fixture."""

from __future__ import annotations

from pathlib import Path

from md2.core.train.config import build_config
from md2.data.kitti import KITTIRawDataset
from md2.data.splits import read_split_file


def tiny_config(data: Path, tmp_path: Path, **options):
    """64x192, batch 2, scratch weights, no workers, one epoch, logs under tmp_path/logs/run."""
    base = {"data_path": str(data), "splits_dir": str(data / "splits"), "split": "synth", "png": True,
            "height": 64, "width": 192, "batch_size": 2, "num_workers": 0, "weights_init": "scratch",
            "log_dir": str(tmp_path / "logs"), "model_name": "run", "num_epochs": 1, "log_frequency": 1000}
    modality = options.pop("modality", "mono")
    base.update(options)
    return build_config(base, modality=modality)


def tiny_split(data: Path, folder: Path, train: int = 2, val: int = 2) -> Path:
    """A splits dir holding split "synth" with the first ``train`` / ``val`` lines of the fixture's lists
    (train=2 with batch 2: one step per epoch). Returns the splits dir."""
    target = folder / "synth"
    target.mkdir(parents=True, exist_ok=True)
    for which, count in (("train", train), ("val", val)):
        lines = (data / "splits" / "synth" / f"{which}_files.txt").read_text().splitlines()[:count]
        (target / f"{which}_files.txt").write_text("\n".join(lines) + "\n")
    return folder


def batch_for(config, data: Path, count: int = 2, is_train: bool = False, lines=None):
    lines = lines or read_split_file(data / "splits" / "synth" / "train_files.txt")[:count]
    dataset = KITTIRawDataset(data, lines, config.data.height, config.data.width, config.data.frame_ids,
                              num_scales=len(config.model.scales), is_train=is_train, img_ext=".png",
                              use_stereo=config.data.use_stereo)
    return dataset.__getitems__(list(range(len(lines))))
