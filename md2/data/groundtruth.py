"""Ground-truth depth maps of a test split (``md2 export-gt``), written and read without unsafe pickles.

md2 writes SPLIT/gt_depths.npz with one array per test line, keyed by its zero-padded position ("0000", ...),
in the dtype the reference produced (float64 from the lidar, float32 from the benchmark PNGs), streamed
into the archive so memory stays flat. It also reads the reference's file: an object array under "data",
whose pickle stream is read by an unpickler that only rebuilds numpy arrays.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from md2.data.calib import generate_depth_map
from md2.data.splits import SplitLine, read_split_file, resolve_split_dir
from md2.errors import DataError, UsageError
from md2.files import atomic_path

SOURCES = ("lidar", "benchmark")


def default_source(split: str) -> str:
    """eigen_benchmark uses the depth benchmark's PNGs; every other split (eigen, custom) the lidar."""
    return "benchmark" if split == "eigen_benchmark" else "lidar"


def lidar_ground_truth(data_path: Path, line: SplitLine) -> np.ndarray:
    """Eigen ground truth: the velodyne scan projected into camera 2 with the lidar's x as depth (float64)."""
    calib_dir = data_path / line.folder.split("/")[0]
    velodyne = data_path / line.folder / "velodyne_points" / "data" / f"{line.frame:010d}.bin"
    if not velodyne.is_file():
        raise DataError(f"missing velodyne scan {velodyne} (test line '{line}')")
    return generate_depth_map(calib_dir, velodyne, cam=2, vel_depth=True)


def benchmark_ground_truth(data_path: Path, line: SplitLine) -> np.ndarray:
    """Depth-benchmark ground truth of camera 2: uint16 PNG / 256 (float32), as the reference."""
    path = data_path / line.folder / "proj_depth" / "groundtruth" / "image_02" / f"{line.frame:010d}.png"
    try:
        with Image.open(path) as image:
            return np.array(image).astype(np.float32) / 256
    except FileNotFoundError:
        raise DataError(f"missing depth ground truth {path} (test line '{line}')") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot read depth ground truth {path}: {error}") from None


READERS: dict[str, Callable[[Path, SplitLine], np.ndarray]] = {"lidar": lidar_ground_truth,
                                                              "benchmark": benchmark_ground_truth}


def export_gt(data_path: Path | str, split: str, *, splits_dir: Path | str | None = None, source: str | None = None,
              jobs: int = 4, on_frame: Callable[[int], None] | None = None) -> tuple[Path, int]:
    """Write SPLIT/gt_depths.npz for the split's test files, in test-file order; returns (path, frames).

    A missing frame raises DataError naming it, and no file is left behind (written to a temporary name).
    """
    data_path = Path(data_path).expanduser()
    if not data_path.is_dir():
        raise DataError(f"data folder not found: {data_path}")
    source = source or default_source(split)
    if source not in READERS:
        raise UsageError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    split_dir = resolve_split_dir(split, splits_dir)
    lines = read_split_file(split_dir / "test_files.txt")
    if not lines:
        raise DataError(f"{split_dir / 'test_files.txt'} is empty")
    reader = READERS[source]
    output = split_dir / "gt_depths.npz"
    width = max(4, len(str(len(lines) - 1)))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, atomic_path(output) as temporary:
        depths = pool.map(lambda line: reader(data_path, line), lines)
        _write_npz(temporary, (f"{i:0{width}d}" for i in range(len(lines))), depths, len(lines), on_frame)
    return output, len(lines)


def _write_npz(path: Path, keys: Iterator[str], arrays: Iterator[np.ndarray], total: int,
               on_frame: Callable[[int], None] | None) -> None:
    """An .npz (zip of .npy files, deflated) written one array at a time."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for key, array in zip(keys, arrays):
            with archive.open(f"{key}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
            if on_frame is not None:
                on_frame(total)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and nothing else: any other global in the stream is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        return super().find_class(module, name)


def _read_object_array(raw: bytes, path: Path) -> list[np.ndarray]:
    stream = io.BytesIO(raw)
    major, _ = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    _, _, dtype = read_header(stream, max_header_size=1 << 20)
    if dtype != object:
        stream.seek(0)
        return list(np.lib.format.read_array(stream, allow_pickle=False))
    try:
        items = _NumpyOnlyUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DataError(f"{path}: not a ground-truth file md2 can read safely ({error})") from None
    return [np.asarray(item) for item in items]


def load_gt_depths(path: Path | str) -> list[np.ndarray]:
    """Ground-truth depth maps from md2's gt_depths.npz or the reference's (object array under "data")."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = sorted(name for name in archive.namelist() if name.endswith(".npy"))
            if names == ["data.npy"]:
                return _read_object_array(archive.read("data.npy"), path)
            return [np.lib.format.read_array(io.BytesIO(archive.read(name)), allow_pickle=False) for name in names]
    except FileNotFoundError:
        raise DataError(f"ground truth not found: {path}") from None
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise DataError(f"cannot read ground truth {path}: {error}") from None
