"""Train on your own data: folders of video frames plus one intrinsics matrix, or a reader of your own.

From the command line: ``md2 train --dataset video --data-path FRAMES --intrinsics fx,fy,cx,cy``
(:func:`md2.core.train.data.build_dataset` holds out one sample in 20 for validation). In Python, a folder of
frames -- no split files needed::

    from md2.data.video import VideoFolderDataset
    K = [[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]]          # pixels, for 1242 x 375 frames
    dataset = VideoFolderDataset("my_drive/frames", K, height=192, width=640, image_size=(1242, 375),
                                 frame_ids=(0, -1, 1), is_train=True)

The frames are the folder's .jpg/.jpeg/.png files in natural order (``frame_2`` before ``frame_10``), all from
one camera at one size; a sample is every frame whose neighbours (``frame_ids``) exist, so with (0, -1, 1) the
first and the last frame are only used as neighbours. Extract frames from a video with, for instance,
``ffmpeg -i drive.mp4 -qscale:v 2 frames/%06d.jpg``. Monodepth2 assumes a camera that moves (forward) between
frames and a scene that mostly does not.

Your own layout: subclass :class:`md2.data.datasets.base.FrameDataset` and implement ``image_path``::

    class MyDataset(FrameDataset):
        def __init__(self, root, lines, **options):
            self.root = Path(root)                 # set before super().__init__ (it may look for ground truth)
            super().__init__(lines, K=MY_NORMALISED_K, **options)

        def image_path(self, ref, frame, camera):  # ref: FrameRef(folder, frame, side) from a split line
            return self.root / ref.folder / f"cam{camera}" / f"{frame:06d}.png"

``lines`` are split lines "FOLDER FRAME SIDE" (side l/r, or omit it for a monocular camera). For ground truth
also implement ``has_depth(ref)`` and ``read_depth(ref) -> (h, w) metres`` and set ``depth_shape``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from md2.data.datasets.base import FrameDataset
from md2.data.datasets.refs import FrameRef
from md2.data.sample import FrameId
from md2.errors import DataError, UsageError
from md2.files import OUTPUT_SUFFIXES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class VideoFolderDataset(FrameDataset):
    """Monocular videos given as folders of frames (see the module's documentation).

    Args:
        folder: the frames, or several folders of frames (one per video; a sample's neighbours come from
            its own video).
        K: 3x3 or 4x4 intrinsics, normalised (row 0 divided by the frame width, row 1 by the height), or in
            pixels when ``image_size`` = (width, height) of the frames is given.
        height, width: training size (multiples of 32 for the networks).
        frame_ids: 0 and neighbour offsets, e.g. (0, -1, 1); no "s" (a video has one camera).
        refs: the samples (FrameRef(folder, frame index, None), as :func:`video_samples` lists them);
            default every frame whose neighbours exist.
        num_scales, is_train, seed, uint8_images: as :class:`FrameDataset`.
    """

    def __init__(self, folder: Path | str | Sequence[Path | str], K: Sequence | np.ndarray, height: int,
                 width: int, frame_ids: Sequence[FrameId] = (0, -1, 1), num_scales: int = 4,
                 is_train: bool = True, image_size: tuple[int, int] | None = None, seed: int = 0,
                 uint8_images: bool = False, refs: Sequence[FrameRef] | None = None) -> None:
        folders = [folder] if isinstance(folder, (str, Path)) else list(folder)
        self.videos = {str(Path(f).expanduser()): list_frames(Path(f).expanduser()) for f in folders}
        if "s" in frame_ids:
            raise UsageError("a video folder has one camera: frame id 's' (stereo) is not available")
        if refs is None:
            refs = [ref for video in self.videos for ref in video_samples(video, len(self.videos[video]), frame_ids)]
        if not refs:
            counts = ", ".join(f"{video}: {len(frames)}" for video, frames in self.videos.items())
            raise DataError(f"too few frames for frame ids {list(frame_ids)} ({counts})")
        super().__init__(refs, height, width, frame_ids, normalise_intrinsics(K, image_size), num_scales=num_scales,
                         is_train=is_train, use_stereo=False, load_depth=False, seed=seed,
                         uint8_images=uint8_images)

    def image_path(self, ref: FrameRef, frame: int, camera: int | None) -> Path:
        frames = self.videos.get(ref.folder)
        if frames is None:
            raise DataError(f"sample '{ref}' names a video that is not one of this dataset's folders")
        if not 0 <= frame < len(frames):
            raise DataError(f"frame {frame} is outside the video in {ref.folder} ({len(frames)} frames)")
        return frames[frame]


def video_samples(folder: str, count: int, frame_ids: Sequence[FrameId]) -> list[FrameRef]:
    """The samples of a video of ``count`` frames: every frame index whose neighbours (``frame_ids``) exist."""
    offsets = [int(f) for f in frame_ids if f != "s"]
    before, after = max(0, -min(offsets, default=0)), max(0, max(offsets, default=0))
    return [FrameRef(folder, i, None) for i in range(before, count - after)]


def video_folders(root: Path | str) -> list[Path]:
    """The videos under ``root``: ``root`` itself when it holds frames, else each of its sub-folders that
    does, in natural order. DataError when there are none."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"no such folder of frames: {root}")
    if any(_frame_files(root)):
        return [root]
    videos = [path for path in sorted(root.iterdir(), key=_natural_key) if path.is_dir() and any(_frame_files(path))]
    if not videos:
        raise DataError(f"no .jpg or .png frames in {root} or in its sub-folders")
    return videos


def frame_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header."""
    from PIL import Image

    from md2.images import UNREADABLE_IMAGE

    try:
        with Image.open(path) as image:
            return image.size
    except UNREADABLE_IMAGE as error:
        raise DataError(f"cannot read frame {path}: {error}") from None


def hold_out(refs: Sequence[FrameRef], every: int) -> tuple[list[FrameRef], list[FrameRef]]:
    """(train, val): every ``every``-th sample (counting from the middle of the first gap) for validation,
    the rest for training."""
    val = set(range(every // 2, len(refs), every))
    return [r for i, r in enumerate(refs) if i not in val], [r for i, r in enumerate(refs) if i in val]


def list_frames(folder: Path) -> list[Path]:
    """The image files of ``folder`` in natural order (digit runs compared as numbers)."""
    if not folder.is_dir():
        raise DataError(f"no such folder of frames: {folder}")
    frames = list(_frame_files(folder))
    if not frames:
        raise DataError(f"no .jpg or .png frames in {folder}")
    return sorted(frames, key=_natural_key)


def _frame_files(folder: Path) -> Iterator[Path]:
    """The image files directly in ``folder``, in directory order; md2 predict's outputs (``*_disp.jpeg``,
    ``*_depth.png``) are not frames."""
    return (path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES
            and not path.name.endswith(OUTPUT_SUFFIXES) and path.is_file())


def _natural_key(path: Path) -> tuple:
    # re.split with a group alternates text and digit runs, so equal positions always hold equal types.
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", path.name)))


def normalise_intrinsics(K: Sequence | np.ndarray, image_size: tuple[int, int] | None) -> np.ndarray:
    """(4, 4) float32 normalised intrinsics from a 3x3/4x4 ``K``: as given, or divided by ``image_size``
    = (width, height) in pixels (row 0 by the width, row 1 by the height)."""
    matrix = np.asarray(K, dtype=np.float64)
    if matrix.shape not in ((3, 3), (4, 4)):
        raise UsageError(f"intrinsics must be 3x3 or 4x4, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():  # NaN would reach the SVD of the inverse; inf would pass the checks below
        raise UsageError(f"intrinsics must be finite numbers, got {matrix.ravel().tolist()}")
    full = np.eye(4)
    full[: matrix.shape[0], : matrix.shape[1]] = matrix
    if image_size is not None:
        image_width, image_height = image_size
        if image_width <= 0 or image_height <= 0:
            raise UsageError(f"image size must be positive, got {image_size}")
        full[0, :] /= image_width
        full[1, :] /= image_height
    elif full[0, 0] > 10 or full[1, 1] > 10:
        raise UsageError("the intrinsics look like pixels (focal length > 10): pass image_size=(width, height)")
    return full.astype(np.float32)
