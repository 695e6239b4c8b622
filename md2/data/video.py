"""Train on your own data: a folder of video frames plus one intrinsics matrix, or a reader of your own.

A folder of frames -- no split files needed::

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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from md2.data.datasets.base import FrameDataset
from md2.data.datasets.refs import FrameRef
from md2.data.sample import FrameId
from md2.errors import DataError, UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class VideoFolderDataset(FrameDataset):
    """A monocular video given as a folder of frames (see the module's documentation).

    Args:
        folder: the frames.
        K: 3x3 or 4x4 intrinsics, normalised (row 0 divided by the frame width, row 1 by the height), or in
            pixels when ``image_size`` = (width, height) of the frames is given.
        height, width: training size (multiples of 32 for the networks).
        frame_ids: 0 and neighbour offsets, e.g. (0, -1, 1); no "s" (a video has one camera).
        num_scales, is_train, seed, uint8_images: as :class:`FrameDataset`.
    """

    def __init__(self, folder: Path | str, K: Sequence | np.ndarray, height: int, width: int,
                 frame_ids: Sequence[FrameId] = (0, -1, 1), num_scales: int = 4, is_train: bool = True,
                 image_size: tuple[int, int] | None = None, seed: int = 0, uint8_images: bool = False) -> None:
        self.folder = Path(folder).expanduser()
        self.frames = list_frames(self.folder)
        if "s" in frame_ids:
            raise UsageError("a video folder has one camera: frame id 's' (stereo) is not available")
        offsets = [int(f) for f in frame_ids]
        before, after = max(0, -min(offsets, default=0)), max(0, max(offsets, default=0))
        refs = [FrameRef(str(self.folder), i, None) for i in range(before, len(self.frames) - after)]
        if not refs:
            raise DataError(f"{self.folder} has {len(self.frames)} frames: too few for frame ids {list(frame_ids)}")
        super().__init__(refs, height, width, frame_ids, normalise_intrinsics(K, image_size), num_scales=num_scales,
                         is_train=is_train, use_stereo=False, load_depth=False, seed=seed,
                         uint8_images=uint8_images)

    def image_path(self, ref: FrameRef, frame: int, camera: int | None) -> Path:
        if not 0 <= frame < len(self.frames):
            raise DataError(f"frame {frame} is outside the video in {self.folder} ({len(self.frames)} frames)")
        return self.frames[frame]


def list_frames(folder: Path) -> list[Path]:
    """The image files of ``folder`` in natural order (digit runs compared as numbers)."""
    if not folder.is_dir():
        raise DataError(f"no such folder of frames: {folder}")
    frames = [path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()]
    if not frames:
        raise DataError(f"no .jpg or .png frames in {folder}")
    return sorted(frames, key=_natural_key)


def _natural_key(path: Path) -> tuple:
    # re.split with a group alternates text and digit runs, so equal positions always hold equal types.
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", path.name)))


def normalise_intrinsics(K: Sequence | np.ndarray, image_size: tuple[int, int] | None) -> np.ndarray:
    """(4, 4) float32 normalised intrinsics from a 3x3/4x4 ``K``: as given, or divided by ``image_size``
    = (width, height) in pixels (row 0 by the width, row 1 by the height)."""
    matrix = np.asarray(K, dtype=np.float64)
    if matrix.shape not in ((3, 3), (4, 4)):
        raise UsageError(f"intrinsics must be 3x3 or 4x4, got shape {matrix.shape}")
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
