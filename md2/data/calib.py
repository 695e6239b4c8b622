"""KITTI calibration files, velodyne scans, and lidar-to-depth-map projection (the Eigen ground truth)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from md2.errors import DataError

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # an image without it (a GPU machine without pip): BLAS keeps its threads, same numbers
    threadpool_limits = None


def read_calib_file(path: Path | str) -> dict[str, np.ndarray]:
    """Parse a KITTI calibration file: ``key: numbers`` per line; non-numeric values (calib_time) are skipped."""
    return _read_calib_entries(Path(path))[0]


def _read_calib_entries(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The numeric entries, and the text of those that are not all numbers (named when one of them is needed)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"calibration file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read calibration file {path}: {error}") from None
    data: dict[str, np.ndarray] = {}
    texts: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        try:
            data[key.strip()] = np.array([float(x) for x in value.split()])
        except ValueError:
            texts[key.strip()] = value.strip()  # e.g. calib_time: 09-Jan-2012 13:57:47
    return data, texts


def _entry(entries: tuple[dict[str, np.ndarray], dict[str, str]], key: str, size: int, path: Path) -> np.ndarray:
    calib, texts = entries
    if key in texts:
        shown = texts[key] if len(texts[key]) <= 60 else texts[key][:57] + "..."
        raise DataError(f"calibration file {path}: {key!r} must be {size} numbers, got {shown!r}")
    if key not in calib:
        raise DataError(f"calibration file {path} has no {key!r}")
    if calib[key].size != size:
        raise DataError(f"calibration file {path}: {key!r} has {calib[key].size} values, expected {size}")
    return calib[key]


def load_velodyne_points(path: Path | str) -> np.ndarray:
    """Read a velodyne scan: (N, 4) float32 rows x, y, z, 1 (the reflectance column set to 1, as the reference)."""
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size  # the file's own size: fromfile drops a partial float
            if size % 16:
                raise DataError(f"velodyne scan {path} has {size} bytes, not a multiple of 16 (corrupt?)")
            raw = np.fromfile(stream, dtype=np.float32)
    except FileNotFoundError:
        raise DataError(f"velodyne scan not found: {path}") from None
    except OSError as error:
        raise DataError(f"cannot read velodyne scan {path}: {error.strerror or error}") from None
    points = raw.reshape(-1, 4)
    points[:, 3] = 1.0
    return points


def velodyne_to_image(calib_dir: Path | str, cam: int = 2) -> tuple[np.ndarray, tuple[int, int]]:
    """(3, 4) projection from lidar to image ``cam`` pixels and the image shape (height, width)."""
    calib_dir = Path(calib_dir)
    cam_file, velo_file = calib_dir / "calib_cam_to_cam.txt", calib_dir / "calib_velo_to_cam.txt"
    # Cached per file contents' identity (path, size, modification time): export-gt projects thousands of
    # scans with a handful of calibrations, and parsing both files cost as much as projecting a scan.
    stamps = tuple(_stamp(path) for path in (cam_file, velo_file))
    projection, shape = _projection(cam_file, velo_file, cam, stamps)
    return projection.copy(), shape


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None  # read_calib_file names the missing or unreadable file
    return status.st_size, status.st_mtime_ns


@lru_cache(maxsize=32)
def _projection(cam_file: Path, velo_file: Path, cam: int,
                stamps: tuple) -> tuple[np.ndarray, tuple[int, int]]:
    cam_to_cam, velo_to_cam = _read_calib_entries(cam_file), _read_calib_entries(velo_file)
    velo2cam = np.eye(4)
    velo2cam[:3, :3] = _entry(velo_to_cam, "R", 9, velo_file).reshape(3, 3)
    velo2cam[:3, 3] = _entry(velo_to_cam, "T", 3, velo_file)
    R_rect = np.eye(4)
    R_rect[:3, :3] = _entry(cam_to_cam, "R_rect_00", 9, cam_file).reshape(3, 3)
    P_rect = _entry(cam_to_cam, f"P_rect_0{cam}", 12, cam_file).reshape(3, 4)
    width, height = _entry(cam_to_cam, "S_rect_02", 2, cam_file).astype(np.int32)
    return P_rect @ R_rect @ velo2cam, (int(height), int(width))


def one_blas_thread() -> threadpool_limits:
    """numpy's BLAS on one thread, as a context manager (or, not exited, for the rest of the process).

    Projecting a scan is a (3, 4) x (4, N) product, which OpenBLAS splits over its whole thread pool: on the
    2-core CI machine that made it several times slower than on one thread, and export-gt's threads (or loader
    workers) projecting side by side stopped scaling (89-114 frames/s with 2 threads against 185 with this).
    One thread computes the same numbers: each output is one kernel's dot product of 4 terms either way.
    Without threadpoolctl installed, a context that changes nothing.
    """
    if threadpool_limits is None:
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def generate_depth_map(calib_dir: Path | str, velo_path: Path | str, cam: int = 2,
                       vel_depth: bool = False, dtype: type = np.float64) -> np.ndarray:
    """Project a velodyne scan into camera ``cam``: (H, W) depth in metres, 0 where no point lands.

    As the reference: points with lidar x < 0 are dropped; pixel = round(u) - 1, round(v) - 1; points outside
    the image are dropped; where several points land on one pixel the smallest depth wins, except at the border
    columns, which the reference's pixel keys join (see :func:`_resolve_border_columns`); negative depths
    become 0. ``vel_depth`` stores the lidar's forward distance x instead of the camera z. The depths are
    computed in float64 and returned as ``dtype`` (export-gt stores float32, as the reference's script).
    """
    P_velo2im, (height, width) = velodyne_to_image(calib_dir, cam)
    velo = load_velodyne_points(velo_path)
    # Behind the lidar (x < 0): dropped first (about half a scan), as the reference does; np.compress copies
    # the kept rows ~10x faster than boolean indexing.
    velo = np.compress(velo[:, 0] >= 0, velo, axis=0)
    # (3, N) as the reference's np.dot(P, velo.T): each coordinate a contiguous row, which the element-wise steps
    # below walk ~2x faster than the columns of an (N, 3) array.
    projected = P_velo2im @ velo.T
    z = velo[:, 0].astype(np.float64) if vel_depth else projected[2]
    with np.errstate(divide="ignore", invalid="ignore"):  # z = 0: inf/nan pixels, dropped below as in the reference
        u, v = projected[0] / projected[2], projected[1] / projected[2]
    for coordinate in (u, v):
        np.round(coordinate, out=coordinate)
        coordinate -= 1
    inside = (u >= 0) & (v >= 0) & (u < width) & (v < height)
    column = np.compress(inside, u).astype(np.int64)
    row = np.compress(inside, v).astype(np.int64)
    pixel = row * width + column
    # Negative depths become 0 at the end in the reference; raising each point's depth to 0 first gives the same
    # map whichever point a pixel keeps. Rounding to ``dtype`` keeps the order, so it is done first too.
    z = np.maximum(np.compress(inside, z), 0.0).astype(dtype)
    # Away from the border columns a pixel keeps its smallest depth. numpy leaves the winner of repeated
    # fancy-index writes unspecified; minimum.at is defined.
    nearest = np.full(height * width, np.inf, dtype=dtype)
    np.minimum.at(nearest, pixel, z)
    depth = np.zeros(height * width, dtype=dtype)  # only the pixels points landed on are copied over
    depth[pixel] = nearest[pixel]
    _resolve_border_columns(depth, row, column, pixel, z, width)
    return depth.reshape(height, width)


def _resolve_border_columns(depth: np.ndarray, row: np.ndarray, column: np.ndarray, pixel: np.ndarray,
                            z: np.ndarray, width: int) -> None:
    """Rewrite the flat ``depth`` where the reference joins border pixels (r, W-1) and (r+1, 0), as it does.

    A quirk of the reference reproduced on purpose (users compare gt_depths.npz files): it finds pixels hit by
    several points through the key ``row * (W - 1) + col - 1``, which pixel (r, W-1) shares with (r+1, 0). Its
    steps, on the in-image points in scan order: (a) depth[row, col] = z for all at once (numpy's fancy
    assignment: a pixel keeps its last point); (b) for each key held by two or more points, the smallest z of
    them is written at the pixel of the first; (c) negative depths become 0 (done by the caller beforehand).
    Where a key joins two pixels, the first point's pixel gets the smallest depth of both and the other keeps
    its own last point. Every other pixel has a key of its own, so (a) and (b) leave it its smallest depth, which
    the caller wrote: only the pairs of pixels that both hold points need the rule (on real scans, a few rows a
    scan at most; most scans none, and then this returns after two passes over the columns).
    ``row``, ``column``, ``pixel`` (row * W + column) and ``z`` are the in-image points in scan order.
    """
    at_right, at_left = column == width - 1, column == 0
    joined = set(row[at_right].tolist()) & {r - 1 for r in row[at_left].tolist()}
    if not joined:
        return
    rows = np.array(sorted(joined))
    points = np.flatnonzero((at_right & np.isin(row, rows)) | (at_left & np.isin(row - 1, rows)))  # scan order
    pixel, z = pixel[points], z[points]
    # (a) the last point of each pixel: a stable sort keeps scan order within a pixel.
    order = np.argsort(pixel, kind="stable")
    ends = np.append(pixel[order][1:] != pixel[order][:-1], True)
    depth[pixel[order[ends]]] = z[order[ends]]
    # (b) keys held by two or more points: the smallest z at the pixel of the key's first point.
    key = row[points] * (width - 1) + column[points] - 1
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.insert(key[order][1:] != key[order][:-1], 0, True))
    shared = np.diff(np.append(starts, order.size)) >= 2
    smallest = np.minimum.reduceat(z[order], starts)
    depth[pixel[order[starts[shared]]]] = smallest[shared]
