"""The base of md2's datasets: turns "frame N of sequence X, camera C" into a training :class:`Sample`.

A reader (KITTI raw, odometry, depth benchmark, a folder of video frames, your own) only says where files are;
this class decodes each image once, builds the LANCZOS pyramid, applies the sample's flip and colour jitter,
and adds the intrinsics per scale, the stereo transform and the ground-truth depth. With ``uint8_images`` it
stops before the float conversion and the jitter, which the trainer then does on its device
(:func:`md2.data.device_augment.finish_batch`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from md2.core.geometry import intrinsics_pyramid
from md2.data.augment import Augmentation, ColorJitterParams, color_jitter_hwc, draw_augmentation
from md2.data.augment import lanczos_levels, nearest_resize, to_float
from md2.data.calib import one_blas_thread
from md2.data.datasets.images import read_rgb
from md2.data.datasets.refs import FrameRef, as_frame_ref
from md2.data.resize_cache import ResizeCache
from md2.data.sample import Batch, FrameId, Sample
from md2.errors import DataError, UsageError

CAMERAS = {"l": 2, "r": 3, "2": 2, "3": 3}
"""Split-line side -> KITTI camera number (2 left colour, 3 right colour)."""
OTHER_CAMERA = {2: 3, 3: 2}
STEREO_BASELINE = 0.1
"""tx of ``stereo_T``: the reference's fixed, scale-free stand-in for KITTI's 0.54 m baseline."""


class FrameDataset(Dataset, ABC):
    """Samples for the frames listed in ``refs``; ``dataset[i]`` is a :class:`md2.data.sample.Sample`.

    A subclass implements :meth:`image_path` (where frame N of a ref's sequence is, for a camera) and passes
    its normalised intrinsics ``K`` (4x4: row 0 divided by the image width, row 1 by the height). For ground
    truth it also implements :meth:`has_depth` and :meth:`read_depth`. Everything else is shared.

    A DataLoader (``collate_fn=md2.data.sample.collate_samples``) gets whole batches from
    :meth:`__getitems__`, written straight into their final (shared-memory) tensors.

    Args:
        refs: the samples' target frames (:class:`FrameRef`, or split lines "FOLDER FRAME SIDE").
        height, width: training size in pixels (scale 0).
        frame_ids: frames of a sample: 0 the target, other ints the neighbours (offsets), "s" the other
            stereo camera. A neighbour outside its sequence is a missing file: DataError naming the path.
        K: (4, 4) or (3, 3) normalised intrinsics, the same for every frame.
        num_scales: pyramid levels (scale s is H/2^s x W/2^s). Evaluation needs 1.
        is_train: draw a flip and a colour jitter per sample (p = 0.5 each); else neither.
        use_stereo: add "s" to ``frame_ids``.
        load_depth: add ``depth_gt`` when the first ref has ground truth (as the reference checked).
        seed: with the epoch (:meth:`set_epoch`) and the index, decides each sample's augmentation.
        uint8_images: images stay the uint8 pyramid (``color``; ``color_aug`` the same tensors) and ``jitter``
            is left to apply: finish batches with :func:`md2.data.device_augment.finish_batch` on the training
            device. A quarter of the bytes per image and no jittered copy; the pyramid is the same LANCZOS one.
    """

    depth_shape: tuple[int, int] = (375, 1242)
    """(height, width) that ``depth_gt`` is resized to (nearest neighbour)."""
    resize_cache: ResizeCache | None = None
    """Set to a :class:`md2.data.resize_cache.ResizeCache` of this dataset's size and scales to build each frame's
    pyramid once and read it back afterwards (``--resize-cache``); the samples are the same."""

    def __init__(self, refs: Sequence, height: int, width: int, frame_ids: Sequence[FrameId],
                 K: np.ndarray, num_scales: int = 4, is_train: bool = False, use_stereo: bool = False,
                 load_depth: bool = True, seed: int = 0, uint8_images: bool = False) -> None:
        self.refs = [as_frame_ref(ref) for ref in refs]
        self.height, self.width, self.num_scales = _check_sizes(height, width, num_scales)
        self.frame_ids = _check_frame_ids(frame_ids, use_stereo)
        self.is_train = is_train
        self.seed = int(seed)
        self.epoch = 0
        self.uint8_images = bool(uint8_images)
        K_list, inv_K_list = intrinsics_pyramid(_as_4x4(K), width, height, num_scales)
        self.K = [torch.as_tensor(np.asarray(k), dtype=torch.float32) for k in K_list]
        self.inv_K = [torch.as_tensor(np.asarray(k), dtype=torch.float32) for k in inv_K_list]
        self.load_depth = bool(load_depth and self.refs and self.has_depth(self.refs[0]))

    # -- what a reader implements ------------------------------------------------------------------
    @abstractmethod
    def image_path(self, ref: FrameRef, frame: int, camera: int | None) -> Path:
        """Path of frame number ``frame`` of ``ref``'s sequence seen by ``camera`` (2, 3, or None for a
        monocular reader). Need not exist: a missing file becomes a DataError naming it."""

    def has_depth(self, ref: FrameRef) -> bool:
        """Whether ground-truth depth exists for ``ref`` (default: never)."""
        return False

    def read_depth(self, ref: FrameRef) -> np.ndarray:
        """Ground-truth depth (h, w) in metres for ``ref``'s target frame, any size (0 = unknown)."""
        raise DataError(f"{type(self).__name__} has no ground-truth depth (split line '{ref}')")

    # -- the dataset -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.refs)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation ``dataset[i]`` draws. DataLoader workers copy the dataset when
        they start, so call it before iterating (the default, non-persistent workers restart every epoch);
        with persistent workers, index the dataset with ``(epoch, index)`` keys instead."""
        self.epoch = int(epoch)

    def augmentation(self, index: int, epoch: int | None = None) -> Augmentation:
        """The flip and jitter of sample ``index`` in ``epoch`` (default: the current one)."""
        if not self.is_train:
            return Augmentation(False, None)
        return draw_augmentation(self.seed, self.epoch if epoch is None else epoch, index)

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        """``dataset[index]`` for the current epoch, or ``dataset[epoch, index]``."""
        _limit_worker_threads()
        index, (flip, jitter) = self._resolve(key)
        return self.load_sample(index, flip=flip, jitter=jitter)

    def __getitems__(self, keys: list) -> Batch:
        """A whole batch, loaded straight into its final tensors: what a DataLoader calls (with
        ``collate_fn=collate_samples``, which passes the batch through). Equal to collating ``dataset[key]``
        for each key, minus one sample-sized allocation and one copy per sample; in a DataLoader worker the
        batch is written into shared memory, so it reaches the training process without another copy."""
        _limit_worker_threads()
        items = [self._resolve(key) for key in keys]
        count, empty = len(items), _shared_empty if get_worker_info() is not None else torch.empty
        plain = [empty((len(self.frame_ids), count, 3, h, w), dtype=self._dtype) for h, w in self._sizes]
        any_jitter = not self.uint8_images and any(jitter is not None for _, (_, jitter) in items)
        jittered = [empty(stack.shape, dtype=torch.float32) for stack in plain] if any_jitter else None
        depth = empty((count, 1, *self.depth_shape), dtype=torch.float32) if self.load_depth else None

        def load(b: int) -> None:
            index, (flip, jitter) = items[b]
            self._fill_images(self.refs[index], flip, jitter, [stack[:, b] for stack in plain],
                              None if jittered is None else [stack[:, b] for stack in jittered])
            if depth is not None:
                depth[b].numpy()[...] = self.load_depth_gt(index, flip).numpy()

        _for_each_sample(load, count)
        color = {f: [stack[i] for stack in plain] for i, f in enumerate(self.frame_ids)}
        color_aug = color if jittered is None else {f: [stack[i] for stack in jittered]
                                                    for i, f in enumerate(self.frame_ids)}
        stereo_T = None
        if "s" in self.frame_ids:
            stereo_T = torch.stack([self._stereo_T(self.refs[index], flip) for index, (flip, _) in items])
        return Batch(color=color, color_aug=color_aug, K=[k.expand(count, 4, 4).clone() for k in self.K],
                     inv_K=[k.expand(count, 4, 4).clone() for k in self.inv_K],
                     index=torch.tensor([index for index, _ in items], dtype=torch.int64),
                     flipped=torch.tensor([flip for _, (flip, _) in items], dtype=torch.bool),
                     stereo_T=stereo_T, depth_gt=depth, jitter=[jitter for _, (_, jitter) in items])

    def load_sample(self, index: int, flip: bool = False, jitter: ColorJitterParams | None = None) -> Sample:
        """Sample ``index`` with the given augmentation (no randomness)."""
        ref = self.refs[index]
        plain = [torch.empty(len(self.frame_ids), 3, h, w, dtype=self._dtype) for h, w in self._sizes]
        jittered = [torch.empty_like(stack) for stack in plain] if jitter is not None and not self.uint8_images \
            else None
        self._fill_images(ref, flip, jitter, plain, jittered)
        color = {f: [stack[i] for stack in plain] for i, f in enumerate(self.frame_ids)}
        color_aug = color if jittered is None else {f: [stack[i] for stack in jittered]
                                                    for i, f in enumerate(self.frame_ids)}
        return Sample(color=color, color_aug=color_aug, K=self.K, inv_K=self.inv_K, index=index, flipped=flip,
                      stereo_T=self._stereo_T(ref, flip) if "s" in self.frame_ids else None,
                      depth_gt=self.load_depth_gt(index, flip) if self.load_depth else None, jitter=jitter)

    def load_depth_gt(self, index: int, flipped: bool = False) -> torch.Tensor:
        """Ground truth (1, *depth_shape) float32 metres of sample ``index`` -- for a training loop that only
        needs it on logging steps (build the dataset with ``load_depth=False`` and call this then)."""
        depth = nearest_resize(self.read_depth(self.refs[index]), *self.depth_shape, flip=flipped)
        return torch.from_numpy(depth.astype(np.float32, copy=False)[None])

    # -- the work ----------------------------------------------------------------------------------
    @property
    def _dtype(self) -> torch.dtype:
        return torch.uint8 if self.uint8_images else torch.float32

    @property
    def _sizes(self) -> list[tuple[int, int]]:
        return [(self.height // 2**s, self.width // 2**s) for s in range(self.num_scales)]

    def _resolve(self, key: int | tuple[int, int]) -> tuple[int, Augmentation]:
        epoch, index = key if isinstance(key, tuple) else (None, key)
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of a dataset of {len(self)}")
        index %= len(self)
        return index, self.augmentation(index, epoch)

    def _fill_images(self, ref: FrameRef, flip: bool, jitter: ColorJitterParams | None,
                     plain: list[torch.Tensor], jittered: list[torch.Tensor] | None) -> None:
        """Decode each frame once, build its pyramid and write it into ``plain[scale][frame]`` (3, h, w; float
        in [0, 1], or the uint8 pixels when ``plain`` is uint8), and its jittered version (or, without a
        jitter, a copy) into ``jittered`` when given."""
        for i, frame_id in enumerate(self.frame_ids):
            for scale, level in enumerate(self._pyramid(ref, frame_id, flip)):
                if plain[scale].dtype == torch.uint8:
                    plain[scale][i].numpy()[...] = np.asarray(level).transpose(2, 0, 1)
                    continue
                pixels = to_float(level)
                plain[scale][i].numpy()[...] = pixels.transpose(2, 0, 1)
                if jittered is not None:
                    source = pixels if jitter is None else color_jitter_hwc(pixels, jitter)
                    jittered[scale][i].numpy()[...] = source.transpose(2, 0, 1)

    def _pyramid(self, ref: FrameRef, frame_id: FrameId, flip: bool) -> list[np.ndarray]:
        """The (flipped) frame's uint8 LANCZOS pyramid (h, w, 3) per scale, from the resize cache if there is one."""
        path, context = self._frame_source(ref, frame_id)
        if self.resize_cache is not None:
            return self.resize_cache.pyramid(path, flip, lambda: read_rgb(path, context))
        return lanczos_levels(read_rgb(path, context), self.width, self.height, self.num_scales, flip)

    def _frame_source(self, ref: FrameRef, frame_id: FrameId) -> tuple[Path, str]:
        """(image path, which frame of which sample it is, for error messages)."""
        camera = CAMERAS.get(ref.side) if ref.side is not None else None
        if ref.side is not None and camera is None:
            raise DataError(f"split line '{ref}': side must be one of l, r, 2, 3, got {ref.side!r}")
        if frame_id == "s":
            if camera is None:
                raise DataError(f"split line '{ref}': stereo needs a side (l or r)")
            return self.image_path(ref, ref.frame, OTHER_CAMERA[camera]), f"other stereo camera of split line '{ref}'"
        return self.image_path(ref, ref.frame + frame_id, camera), f"frame {frame_id:+d} of split line '{ref}'"

    @staticmethod
    def _stereo_T(ref: FrameRef, flip: bool) -> torch.Tensor:
        side_sign = -1.0 if CAMERAS.get(ref.side) == 2 else 1.0
        flip_sign = -1.0 if flip else 1.0
        T = torch.eye(4)
        T[0, 3] = side_sign * flip_sign * STEREO_BASELINE
        return T


def _check_sizes(height: int, width: int, num_scales: int) -> tuple[int, int, int]:
    if num_scales < 1:
        raise UsageError(f"num_scales must be at least 1, got {num_scales}")
    if height < 2 ** (num_scales - 1) or width < 2 ** (num_scales - 1):
        raise UsageError(f"image size {width}x{height} is too small for {num_scales} scales")
    return int(height), int(width), int(num_scales)


def _check_frame_ids(frame_ids: Sequence[FrameId], use_stereo: bool) -> tuple[FrameId, ...]:
    ids = tuple(frame_ids)
    for frame_id in ids:
        if frame_id != "s" and (isinstance(frame_id, bool) or not isinstance(frame_id, int)):
            raise UsageError(f"frame ids are integers or 's', got {frame_id!r}")
    if 0 not in ids:
        raise UsageError(f"frame ids must include the target frame 0, got {list(ids)}")
    if len(set(ids)) != len(ids):
        raise UsageError(f"frame ids repeat: {list(ids)}")
    if use_stereo and "s" not in ids:
        ids += ("s",)
    return ids


def _as_4x4(K: np.ndarray) -> np.ndarray:
    K = np.asarray(K, dtype=np.float32)
    if K.shape == (3, 3):
        full = np.eye(4, dtype=np.float32)
        full[:3, :3] = K
        return full
    if K.shape != (4, 4):
        raise UsageError(f"intrinsics must be 3x3 or 4x4, got shape {K.shape}")
    return K


def _for_each_sample(load: Callable[[int], None], count: int) -> None:
    """``load(b)`` for b in 0..count-1 (each fills its own sample of a batch). In a DataLoader worker one after
    the other: the workers are the parallelism. In the training process itself (``--num-workers 0``) on as many
    threads as torch uses: the step waits for the batch, and decoding, resizing and the jitter release the GIL
    (a mono batch of 4 from KITTI-size JPEGs: 0.19 s -> 0.1 s on 2 cores). The samples are written through
    numpy views, so no torch operation runs on these threads (each thread would start an OpenMP team of its own,
    spinning against the training step's). The first failure, in sample order, is raised, as one thread would."""
    threads = 1 if get_worker_info() is not None else min(count, torch.get_num_threads())
    if threads <= 1:
        for b in range(count):
            load(b)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="md2-load") as pool:
        list(pool.map(load, range(count)))


_threads_limited = False


def _limit_worker_threads() -> None:
    """In a DataLoader worker, keep OpenCV and numpy's BLAS (the lidar projection) to one thread (torch already
    is): workers are the parallelism."""
    global _threads_limited
    if not _threads_limited and get_worker_info() is not None:
        import cv2

        cv2.setNumThreads(1)
        one_blas_thread()  # not exited: for the worker's lifetime
        _threads_limited = True


def _shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in shared memory, allocated there directly as torch's own ``default_collate``
    does in workers (``share_memory_()`` on a new tensor would copy it once more)."""
    numel = int(np.prod(shape))
    template = torch.empty(0, dtype=dtype)
    storage = template._typed_storage()._new_shared(numel, device=template.device)
    return template.new(storage).resize_(shape)
