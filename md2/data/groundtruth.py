"""Ground-truth depth maps of a test split (``md2 export-gt``), written and read without unsafe pickles.

md2 writes SPLIT/gt_depths.npz holding one float32 (H, W) array in metres per test line, keyed by the line's
zero-padded position ("0000", "0001", ...; more digits when the split has 10,000 lines or more): a plain npz that
``np.load(allow_pickle=False)`` reads. The reference wrote one object array under "data"; md2 reads that too.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from md2.data.calib import generate_depth_map, one_blas_thread
from md2.data.npz import DeflatedMember, NpzWriter, deflate_npy
from md2.data.convert import ProgressOption, available_cpus, count_progress
from md2.data.splits import RawLine, SplitLine, read_split_file, resolve_split_dir
from md2.errors import DataError, UsageError
from md2.files import atomic_path
from md2.images import UNREADABLE_IMAGE

GT_FILE = "gt_depths.npz"
GT_COMPRESS_LEVEL = 1
"""zlib level of the maps: a sparse lidar map compresses ~3x faster than at zlib's default 6 (which was most of
export-gt's time), into a file ~18% larger; any zip reader and np.load read either."""


def velodyne_path(data_path: Path, line: SplitLine) -> Path:
    """DATA/<folder>/velodyne_points/data/FRAME.bin."""
    return data_path / line.folder / "velodyne_points" / "data" / f"{line.frame:010d}.bin"


def benchmark_png_path(data_path: Path, line: SplitLine) -> Path:
    """DATA/<folder>/proj_depth/groundtruth/image_02/FRAME.png.

    Camera 2 whatever the line's side, as the reference's export (its Eigen test lines are all left images).
    """
    return data_path / line.folder / "proj_depth" / "groundtruth" / "image_02" / f"{line.frame:010d}.png"


def lidar_ground_truth(data_path: Path, line: SplitLine) -> np.ndarray:
    """Eigen ground truth (H, W) float32 metres: the scan projected into camera 2 with the lidar's forward x as
    depth (vel_depth=True), camera 2 whatever the side, as the reference; 0 where no point lands."""
    velodyne = velodyne_path(data_path, line)
    if not velodyne.is_file():
        raise DataError(f"missing velodyne scan {velodyne} (test line '{line}')")
    calib_dir = data_path / line.folder.split("/")[0]
    depth = generate_depth_map(calib_dir, velodyne, cam=2, vel_depth=True, dtype=np.float32)
    if not depth.any():  # an empty or all-NaN scan, or one whose points all miss the image
        raise DataError(f"velodyne scan {velodyne} (test line '{line}') puts no point in the image: no ground "
                        "truth for this frame")
    return depth


def benchmark_ground_truth(data_path: Path, line: SplitLine) -> np.ndarray:
    """Depth-benchmark ground truth (H, W) float32 metres: the uint16 PNG / 256, at its own size (no resize)."""
    path = benchmark_png_path(data_path, line)
    try:
        with Image.open(path) as image:
            depth = np.asarray(image).astype(np.float32) / 256
    except FileNotFoundError:
        raise DataError(f"missing depth ground truth {path} (test line '{line}')") from None
    except UNREADABLE_IMAGE as error:
        raise DataError(f"cannot read depth ground truth {path}: {error}") from None
    if not (np.isfinite(depth) & (depth > 0)).any():
        raise DataError(f"depth ground truth {path} (test line '{line}') has no valid pixel")
    return depth


SOURCES: dict[str, Callable[[Path, SplitLine], np.ndarray]] = {
    "lidar": lidar_ground_truth,
    "benchmark": benchmark_ground_truth,
}
"""Where ground truth comes from: ``--source`` name -> reader (data_path, test line) -> (H, W) float32 depth."""
SOURCE_OF_SPLIT = {"eigen": "lidar", "eigen_benchmark": "benchmark"}
"""The official splits' sources, as the reference's export_gt_depth.py."""


def choose_source(split: str, data_path: Path, first: SplitLine, source: str | None = None) -> str:
    """The source to use: ``source`` when given; eigen -> lidar, eigen_benchmark -> benchmark; any other split
    the lidar, unless the first test frame has no scan but has a depth-benchmark PNG."""
    if source is not None:
        if source not in SOURCES:
            raise UsageError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
        return source
    if split in SOURCE_OF_SPLIT:
        return SOURCE_OF_SPLIT[split]
    if not velodyne_path(data_path, first).is_file() and benchmark_png_path(data_path, first).is_file():
        return "benchmark"
    return "lidar"


def _test_lines(split_dir: Path) -> list[SplitLine]:
    path = split_dir / "test_files.txt"
    lines = read_split_file(path)
    if not lines:
        raise DataError(f"{path} has no test lines")
    for number, line in enumerate(lines, 1):
        if not isinstance(line, RawLine):
            raise DataError(f"{path}, line {number}: ground truth needs KITTI raw lines 'DATE/DRIVE FRAME SIDE', "
                            f"got '{line}'")
    return lines


def frame_keys(count: int) -> list[str]:
    """Archive keys of ``count`` frames: "0000", "0001", ... (width 4, or more digits when needed)."""
    width = max(4, len(str(count - 1)))
    return [f"{index:0{width}d}" for index in range(count)]


def export_gt(data_path: Path | str, split: str, *, splits_dir: Path | str | None = None, source: str | None = None,
              jobs: int | None = None, progress: ProgressOption = True) -> Path:
    """Write SPLIT_DIR/gt_depths.npz for the split's test_files.txt, in test-file order; returns its path.

    source: "lidar" or "benchmark" (default: see :func:`choose_source`); jobs: frames read in parallel
    (threads; default all cores); progress: True draws a bar on stderr, a callable gets (done, total).
    A missing or unreadable frame raises DataError naming it; the file is written under a temporary name and
    renamed, so no partial gt_depths.npz ever exists and an earlier one stays intact.
    """
    data_path = Path(data_path).expanduser()
    if not data_path.is_dir():
        raise DataError(f"data folder not found: {data_path}")
    split_dir = resolve_split_dir(split, splits_dir)
    lines = _test_lines(split_dir)
    reader = SOURCES[choose_source(split, data_path, lines[0], source)]
    for stale in split_dir.glob(".gt_depths.*.tmp.npz"):  # left by a killed run
        stale.unlink(missing_ok=True)
    output = split_dir / GT_FILE
    jobs = max(1, jobs or available_cpus())
    with one_blas_thread(), ThreadPoolExecutor(max_workers=jobs) as pool, \
            count_progress("export-gt", progress) as advance, atomic_path(output) as temporary:
        # Each worker thread reads, projects and deflates its frame; only the writing is sequential.
        members = _ordered_map(pool, lambda line: deflate_npy(reader(data_path, line), GT_COMPRESS_LEVEL), lines,
                               window=2 * jobs)
        _write_npz(temporary, zip(frame_keys(len(lines)), members), len(lines), advance)
    return output


def _ordered_map(pool: ThreadPoolExecutor, function: Callable, items: Iterable, window: int) -> Iterator:
    """``map(function, items)`` on ``pool`` with at most ``window`` results waiting, so memory stays flat."""
    queued: deque = deque()
    try:
        for item in items:
            queued.append(pool.submit(function, item))
            if len(queued) >= window:
                yield queued.popleft().result()
        while queued:
            yield queued.popleft().result()
    finally:
        for future in queued:
            future.cancel()


def _write_npz(path: Path, members: Iterable[tuple[str, DeflatedMember]], total: int,
               advance: Callable[[int, int], None] | None) -> None:
    """An npz (np.savez_compressed's format) of members deflated beforehand, written in order, then fsynced."""
    with open(path, "wb") as stream:
        archive = NpzWriter(stream)
        for done, (key, member) in enumerate(members, 1):
            archive.add(key, member)
            if advance is not None:
                advance(done, total)
        archive.close()
        stream.flush()
        os.fsync(stream.fileno())


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and nothing else: any other global named in the stream is refused, so a crafted
    file cannot run code (np.load(allow_pickle=True) would call whatever the pickle names)."""

    ALLOWED = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
               for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_reference_data(raw: bytes, path: Path) -> list[np.ndarray]:
    """The reference's "data" entry: an object array of (H, W) maps (or, when all had one size, an (N, H, W)
    array, which needs no pickle)."""
    stream = io.BytesIO(raw)
    major, _ = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    _, _, dtype = read_header(stream)
    if dtype != object:
        stream.seek(0)
        return list(np.lib.format.read_array(stream, allow_pickle=False))
    try:
        # encoding="latin1": files pickled by Python 2 numpy, as the reference's own np.load call allows.
        items = _ArraysOnlyUnpickler(stream, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{path}: not a ground-truth file md2 can read safely ({error})") from None
    return list(items)


def _check_maps(maps: list, path: Path) -> list[np.ndarray]:
    if not maps:
        raise DataError(f"{path} holds no depth maps")
    for index, depth in enumerate(maps):
        if not isinstance(depth, np.ndarray) or depth.ndim != 2 or depth.dtype.kind not in "fiu":
            raise DataError(f"{path}: entry {index} is not an (H, W) depth map")
    return [depth.astype(np.float32, copy=False) for depth in maps]


def load_gt_depths(path: Path | str) -> list[np.ndarray]:
    """Ground-truth depth maps, each (H, W) float32 metres in test-file order, from md2's gt_depths.npz
    (keys "0000", "0001", ...) or the reference's (one array under "data")."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name.removesuffix(".npy") for name in archive.namelist()]
            if names == ["data"]:
                return _check_maps(_read_reference_data(archive.read("data.npy"), path), path)
            if not names or not all(name.isdigit() for name in names):
                raise DataError(f"{path} is not a ground-truth file: expected keys '0000', '0001', ... or 'data', "
                                f"found {', '.join(sorted(names)[:5]) or 'nothing'}")
            maps = [np.lib.format.read_array(io.BytesIO(archive.read(f"{name}.npy")), allow_pickle=False)
                    for name in sorted(names, key=int)]
    except FileNotFoundError:
        raise DataError(f"ground truth not found: {path} (write it with md2 export-gt)") from None
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise DataError(f"cannot read ground truth {path}: {error}") from None
    return _check_maps(maps, path)
