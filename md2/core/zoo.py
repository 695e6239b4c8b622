"""The pretrained Monodepth2 models: a table of names and URLs, and a cached, verified download."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from md2.errors import DownloadError, UsageError

OFFICIAL_URL = "https://storage.googleapis.com/niantic-lon-static/research/monodepth2"
DEFAULT_MODEL = "mono+stereo_640x192"


@dataclass(frozen=True)
class ModelInfo:
    """One published model: how it was trained and at which resolution."""

    name: str
    modality: str
    height: int
    width: int
    imagenet_pretrained: bool = True
    num_layers: int = 18
    split: str = "eigen_zhou"

    def url(self, base_url: str | None = None) -> str:
        """Download URL of the model's zip ('+' percent-encoded, as in the reference's links)."""
        base = (base_url or os.environ.get("MD2_ZOO_URL") or OFFICIAL_URL).rstrip("/")
        return f"{base}/{quote(self.name, safe='_')}.zip"


def _table() -> dict[str, ModelInfo]:
    entries = []
    for modality in ("mono", "stereo", "mono+stereo"):
        entries += [ModelInfo(f"{modality}_640x192", modality, 192, 640),
                    ModelInfo(f"{modality}_1024x320", modality, 320, 1024),
                    ModelInfo(f"{modality}_no_pt_640x192", modality, 192, 640, imagenet_pretrained=False)]
    entries += [ModelInfo("mono_odom_640x192", "mono", 192, 640, split="odom"),
                ModelInfo("mono+stereo_odom_640x192", "mono+stereo", 192, 640, split="odom"),
                ModelInfo("mono_resnet50_640x192", "mono", 192, 640, num_layers=50),
                ModelInfo("mono_resnet50_no_pt_640x192", "mono", 192, 640, imagenet_pretrained=False, num_layers=50)]
    return {entry.name: entry for entry in entries}


MODELS: dict[str, ModelInfo] = _table()
"""Model name -> ModelInfo, as in the reference README's table and text."""


def cache_dir() -> Path:
    """Where models are kept: $MD2_HOME/models (default ~/.cache/md2/models)."""
    return Path(os.environ.get("MD2_HOME", "~/.cache/md2")).expanduser() / "models"


def _weights_root(folder: Path) -> Path | None:
    """The folder holding encoder.pth and depth.pth: the extraction root or its single sub-folder."""
    for candidate in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        if (candidate / "encoder.pth").is_file() and (candidate / "depth.pth").is_file():
            return candidate
    return None


def fetch_model(name: str, *, cache: Path | None = None, base_url: str | None = None,
                progress: bool = True) -> Path:
    """Weights folder of a pretrained model, downloaded and unpacked on first use.

    The zip is downloaded (resumable) beside the cache, its CRCs checked, extracted with path checks into a
    temporary folder, and that folder renamed into place only when it holds encoder.pth and depth.pth. So the
    cache never holds half a model.
    """
    from md2.data.download import download_file, safe_extract, verify_zip

    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    root = Path(cache) if cache is not None else cache_dir()
    target = root / name
    if target.is_dir() and (target / "encoder.pth").is_file() and (target / "depth.pth").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    url = MODELS[name].url(base_url)
    archive = root / f"{name}.zip"
    with _progress_bar(name, progress) as report:
        download_file(url, archive, progress=report)
    verify_zip(archive)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        safe_extract(archive, staging)
        weights = _weights_root(staging)
        if weights is None:
            raise DownloadError(f"{url} does not contain a weights folder (encoder.pth and depth.pth)")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(weights, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.unlink(missing_ok=True)
    return target


class _progress_bar:
    """A rich progress bar for one download, or nothing."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name, self.enabled, self.bar, self.task = name, enabled, None, None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.bar = Progress(TextColumn(f"downloading {self.name}"), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self.bar.__enter__()
        self.task = self.bar.add_task("download", total=None)
        return lambda done, total: self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
