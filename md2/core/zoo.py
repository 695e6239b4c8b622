"""The pretrained Monodepth2 models: a table of names and URLs, and a cached, verified download."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from md2.errors import DownloadError, UsageError
from md2.files import give_new_folder_mode

OFFICIAL_URL = "https://storage.googleapis.com/niantic-lon-static/research/monodepth2"
DEFAULT_MODEL = "mono+stereo_640x192"
REQUIRED_FILES = ("encoder.pth", "depth.pth")
"""A weights folder is usable for depth when it holds these two."""


@dataclass(frozen=True)
class ModelInfo:
    """One published model: where it is, and how it was trained (input size in pixels)."""

    name: str
    url: str
    height: int
    width: int
    modality: str
    imagenet_pretrained: bool = True
    num_layers: int = 18
    split: str = "eigen_zhou"
    md5: str | None = None
    """The zip's published md5 (the reference's download code); None where it publishes none (CRC only)."""

    @property
    def has_pose_network(self) -> bool:
        """Stereo-only models were trained on stereo pairs alone (frame ids 0), for which the reference builds no
        pose network; the mono and mono+stereo ones were trained with one."""
        return self.modality != "stereo"

    def mirror_url(self, base_url: str) -> str:
        """The same zip under another base URL (a mirror, or a test server)."""
        return f"{base_url.rstrip('/')}/{self.url.rsplit('/', 1)[1]}"


def _model(name: str, modality: str, size: str, **details) -> ModelInfo:
    width, height = (int(n) for n in size.split("x"))
    # '+' is percent-encoded as %2B, as in the reference README's links.
    return ModelInfo(name, f"{OFFICIAL_URL}/{quote(name, safe='_')}.zip", height, width, modality, **details)


MODELS: dict[str, ModelInfo] = {info.name: info for info in [
    _model("mono_640x192", "mono", "640x192", md5="a964b8356e08a02d009609d9e3928f7c"),
    _model("stereo_640x192", "stereo", "640x192", md5="3dfb76bcff0786e4ec07ac00f658dd07"),
    _model("mono+stereo_640x192", "mono+stereo", "640x192", md5="c024d69012485ed05d7eaa9617a96b81"),
    _model("mono_1024x320", "mono", "1024x320", md5="0ab0766efdfeea89a0d9ea8ba90e1e63"),
    _model("stereo_1024x320", "stereo", "1024x320", md5="afc2f2126d70cf3fdf26b550898b501a"),
    _model("mono+stereo_1024x320", "mono+stereo", "1024x320", md5="cdc5fc9b23513c07d5b19235d9ef08f7"),
    _model("mono_no_pt_640x192", "mono", "640x192", imagenet_pretrained=False,
           md5="9c2f071e35027c895a4728358ffc913a"),
    _model("stereo_no_pt_640x192", "stereo", "640x192", imagenet_pretrained=False,
           md5="41ec2de112905f85541ac33a854742d1"),
    _model("mono+stereo_no_pt_640x192", "mono+stereo", "640x192", imagenet_pretrained=False,
           md5="46c3b824f541d143a45c37df65fbab0a"),
    # The reference publishes no md5 of these four: their zips are checked by CRC (and safe loading) only.
    _model("mono_odom_640x192", "mono", "640x192", split="odom"),
    _model("mono+stereo_odom_640x192", "mono+stereo", "640x192", split="odom"),
    _model("mono_resnet50_640x192", "mono", "640x192", num_layers=50),
    _model("mono_resnet50_no_pt_640x192", "mono", "640x192", imagenet_pretrained=False, num_layers=50),
]}
"""Model name -> ModelInfo: the reference README's table, then the odometry and ResNet-50 models of its text.
The md5 sums are those the reference's test_simple.py checks."""


def md2_home() -> Path:
    """md2's cache: $MD2_HOME, default ~/.cache/md2 (models/ and splits/ live there)."""
    return Path(os.environ.get("MD2_HOME") or "~/.cache/md2").expanduser()


def is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def model_url(name: str, base_url: str | None = None) -> str:
    """Download URL of a model: under ``base_url`` or $MD2_ZOO_URL when set (mirrors, tests), else official."""
    info = MODELS[name]
    mirror = base_url or os.environ.get("MD2_ZOO_URL")
    return info.mirror_url(mirror) if mirror else info.url


def fetch_model(name: str, *, cache_dir: Path | str | None = None, base_url: str | None = None,
                progress: bool = True, retries: int = 5) -> Path:
    """Weights folder of a pretrained model (CACHE/models/NAME), downloaded and unpacked on first use.

    CACHE is ``cache_dir`` or :func:`md2_home`. The zip is downloaded beside it (resumable after an
    interruption), its md5 checked against the published one (where there is one), its CRCs checked, extracted
    with path checks into a temporary folder, every .pth in it read safely (weights_only), and that folder
    renamed to NAME only when it holds encoder.pth and depth.pth, so the cache never holds half a model or a
    refused one. The zip may hold the files at its root or inside one folder. ``retries``: attempts after a
    failed one (see :func:`md2.data.download.download_file`). Unknown names raise UsageError; a refused
    download raises DownloadError saying that nothing was kept.
    """
    from md2.data.download import download_file

    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    models = Path(cache_dir).expanduser() / "models" if cache_dir is not None else md2_home() / "models"
    target = models / name
    if is_complete(target):
        return target
    url = model_url(name, base_url)
    archive = models / f".{name}.zip"  # hidden: never mistaken for a model
    hint = (f"or set MD2_ZOO_URL to a mirror, or download {MODELS[name].url} yourself, unzip it and pass that "
            "folder with --weights FOLDER (--load-weights-folder FOLDER in evaluate-depth and evaluate-pose) "
            "instead of the model name")
    with _progress_bar(name, progress) as report:
        download_file(url, archive, progress=report, retries=retries, mirror_hint=hint)
    try:
        _check_archive(archive, MODELS[name], url)
        _unpack(archive, target, url)
    except DownloadError as error:
        raise DownloadError(f"{error}; nothing was kept in the cache ({models})") from None
    finally:
        archive.unlink(missing_ok=True)  # a refused zip is fetched afresh next time, a good one is unpacked
    return target


def file_md5(path: Path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_archive(archive: Path, info: ModelInfo, url: str) -> None:
    """The published md5 when there is one, then every member's CRC."""
    from md2.data.unzip import verify_zip

    if info.md5 is not None:
        received = file_md5(archive)
        if received != info.md5:
            raise DownloadError(f"model {info.name} from {url}: md5 {received}, expected {info.md5} (the "
                                "published one): a wrong, corrupt or truncated file")
    try:
        verify_zip(archive)
    except DownloadError:
        raise DownloadError(f"model {info.name} from {url} is not a valid zip archive (corrupt or "
                            "truncated)") from None


def _unpack(archive: Path, target: Path, url: str) -> None:
    """Extract into a temporary folder beside ``target``; check its weights; rename the weights folder into place."""
    from md2.data.unzip import safe_extract

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        safe_extract(archive, staging)
        candidates = [staging, staging / target.name, *sorted(p for p in staging.iterdir() if p.is_dir())]
        weights = next((folder for folder in candidates if is_complete(folder)), None)
        if weights is None:
            raise DownloadError(f"{url} holds no weights folder ({' and '.join(REQUIRED_FILES)} missing); check "
                                "the model name and the mirror (MD2_ZOO_URL)")
        _check_weights(weights, target.name, url)
        shutil.rmtree(target, ignore_errors=True)  # an incomplete folder left by hand
        if weights == staging:  # mkdtemp's folder is its owner's only; the cache's models are not
            give_new_folder_mode(weights)
        os.replace(weights, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_weights(folder: Path, name: str, url: str) -> None:
    """Every .pth file of the folder read as md2 will read it (weights_only): a file that would run code, or is
    no state dict, refuses the model before it enters the cache."""
    from md2.core.checkpoint import load_state_dict_file
    from md2.errors import CheckpointError

    for path in sorted(folder.glob("*.pth")):
        try:
            load_state_dict_file(path)
        except CheckpointError as error:
            reason = str(error).replace(str(path), path.name)
            raise DownloadError(f"model {name} from {url} refused: {reason}") from None


@contextmanager
def _progress_bar(name: str, enabled: bool):
    """Yields a (done, total) callback drawing a transient rich bar on stderr, or None."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    with Progress(TextColumn(f"downloading {name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("download", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
