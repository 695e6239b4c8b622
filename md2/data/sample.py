"""Typed training samples and batches: what the datasets produce and the training step reads.

The reference's sample was a dict keyed by tuples such as ``("color_aug", -1, 2)``; md2 holds the same
information as fields: ``sample.color_aug[-1][2]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Union

import torch
from torch.utils.data import default_collate

from md2.data.augment import ColorJitterParams
from md2.errors import DataError

FrameId = Union[int, str]
"""A frame of a sample: 0 the target, -1 / 1 its temporal neighbours, "s" the other stereo image."""


@dataclass
class Sample:
    """One sample at training size H x W with S scales (scale s is H/2^s x W/2^s).

    color: frame id -> S tensors (3, H/2^s, W/2^s), float32 RGB in [0, 1]: what the loss compares.
    color_aug: the same images after the sample's colour jitter (what the networks see); without a jitter
        each tensor *is* the one in ``color`` (shared, not a copy).
    K, inv_K: S tensors (4, 4) float32: intrinsics in pixels of scale s and their pseudo-inverse (the same
        tensors for every sample of a dataset: do not modify them in place).
    index: position of the sample in its dataset.
    flipped: whether every image (and depth_gt) was flipped left-right.
    stereo_T: (4, 4) float32 transform to the other stereo camera (baseline +-0.1), when "s" is a frame.
    depth_gt: (1, h_gt, w_gt) float32 ground-truth depth in metres (0 where unknown), when loaded
        (KITTI: 375 x 1242).
    jitter: the colour jitter applied, or None (with a dataset's ``uint8_images``: still to apply, and ``color``
        is the uint8 pyramid, ``color_aug`` the same tensors; see :class:`Batch`).
    """

    color: dict[FrameId, list[torch.Tensor]]
    color_aug: dict[FrameId, list[torch.Tensor]]
    K: list[torch.Tensor]
    inv_K: list[torch.Tensor]
    index: int
    flipped: bool
    stereo_T: torch.Tensor | None = None
    depth_gt: torch.Tensor | None = None
    jitter: ColorJitterParams | None = None

    @property
    def frame_ids(self) -> tuple[FrameId, ...]:
        return tuple(self.color)

    @property
    def num_scales(self) -> int:
        return len(self.K)


@dataclass
class Batch:
    """B samples stacked along a new first dimension; the fields of :class:`Sample` with a leading B.

    color, color_aug: frame id -> S tensors (B, 3, H/2^s, W/2^s). When no sample of the batch was jittered,
        ``color_aug`` holds the very tensors of ``color``.
    K, inv_K: S tensors (B, 4, 4).
    index: (B,) int64; flipped: (B,) bool.
    stereo_T: (B, 4, 4) or None; depth_gt: (B, 1, h_gt, w_gt) or None.
    jitter: B entries, each a :class:`ColorJitterParams` or None (plain Python values, not moved by ``to``).

    A dataset built with ``uint8_images`` gives batches whose ``color`` is uint8 (0..255) and ``color_aug`` the
    same tensors, the jitter not yet applied: :func:`md2.data.device_augment.finish_batch` makes them float.
    """

    color: dict[FrameId, list[torch.Tensor]]
    color_aug: dict[FrameId, list[torch.Tensor]]
    K: list[torch.Tensor]
    inv_K: list[torch.Tensor]
    index: torch.Tensor
    flipped: torch.Tensor
    stereo_T: torch.Tensor | None = None
    depth_gt: torch.Tensor | None = None
    jitter: list[ColorJitterParams | None] = field(default_factory=list)

    @property
    def frame_ids(self) -> tuple[FrameId, ...]:
        return tuple(self.color)

    @property
    def num_scales(self) -> int:
        return len(self.K)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch with every tensor on ``device`` (pinned memory makes ``non_blocking`` copies asynchronous)."""
        return self._map(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory (called by DataLoader(pin_memory=True))."""
        return self._map(lambda tensor: tensor.pin_memory())

    def _map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        done: dict[int, torch.Tensor] = {}  # keeps shared tensors (color_aug is color) shared

        def apply(tensor: torch.Tensor | None) -> torch.Tensor | None:
            if tensor is None:
                return None
            if id(tensor) not in done:
                done[id(tensor)] = function(tensor)
            return done[id(tensor)]

        def per_frame(images: dict[FrameId, list[torch.Tensor]]) -> dict[FrameId, list[torch.Tensor]]:
            return {frame: [apply(image) for image in scales] for frame, scales in images.items()}

        return replace(self, color=per_frame(self.color), color_aug=per_frame(self.color_aug),
                       K=[apply(k) for k in self.K], inv_K=[apply(k) for k in self.inv_K],
                       index=apply(self.index), flipped=apply(self.flipped),
                       stereo_T=apply(self.stereo_T), depth_gt=apply(self.depth_gt))


def collate_samples(samples: list[Sample] | Batch) -> Batch:
    """Stack samples into a :class:`Batch` (the DataLoader's ``collate_fn``).

    md2's datasets load whole batches themselves when a DataLoader asks (``__getitems__``); such a Batch is
    returned as it is. In a DataLoader worker the stacked tensors are written straight into shared memory
    (torch's ``default_collate``), so the batch reaches the training process without another copy.
    """
    if isinstance(samples, Batch):
        return samples
    if not samples:
        raise DataError("cannot collate an empty list of samples")
    first = samples[0]
    for sample in samples[1:]:
        if sample.frame_ids != first.frame_ids or sample.num_scales != first.num_scales:
            raise DataError(f"samples {first.index} and {sample.index} have different frames or scales")
    color = {frame: [_stack(s.color[frame][k] for s in samples) for k in range(first.num_scales)]
             for frame in first.frame_ids}
    color_aug = {frame: [color[frame][k] if all(s.color_aug[frame][k] is s.color[frame][k] for s in samples)
                         else _stack(s.color_aug[frame][k] for s in samples) for k in range(first.num_scales)]
                 for frame in first.frame_ids}
    return Batch(
        color=color,
        color_aug=color_aug,
        K=[_stack(s.K[k] for s in samples) for k in range(first.num_scales)],
        inv_K=[_stack(s.inv_K[k] for s in samples) for k in range(first.num_scales)],
        index=torch.tensor([s.index for s in samples], dtype=torch.int64),
        flipped=torch.tensor([s.flipped for s in samples], dtype=torch.bool),
        stereo_T=_stack_optional([s.stereo_T for s in samples], "stereo_T"),
        depth_gt=_stack_optional([s.depth_gt for s in samples], "depth_gt"),
        jitter=[s.jitter for s in samples],
    )


def _stack(tensors) -> torch.Tensor:
    return default_collate(list(tensors))


def _stack_optional(tensors: list[torch.Tensor | None], name: str) -> torch.Tensor | None:
    present = sum(tensor is not None for tensor in tensors)
    if present == 0:
        return None
    if present < len(tensors):
        raise DataError(f"some samples of the batch have {name} and some do not")
    return _stack(tensors)

