"""Finishing uint8 training batches on the training device: the float conversion and the colour jitter.

With ``--augment-on device`` the loader workers stop after the LANCZOS pyramid and ship it as uint8 (a quarter
of the bytes of float32, and no jittered copy); :func:`finish_batch` then does on the device, after the copy,
what the workers otherwise do on the CPU: ``x / 255`` (bit-identical to :func:`md2.data.augment.to_float`) and
each sample's colour jitter with :func:`md2.data.augment.color_jitter` (torchvision's tensor functional: within
1e-5 of the workers' OpenCV jitter). The pyramid itself stays in the workers: it is Pillow's LANCZOS chain, the
reference's pixels, which no GPU resize reproduces.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from md2.data.augment import color_jitter
from md2.data.sample import Batch, FrameId


def is_uint8(batch: Batch) -> bool:
    """Whether ``batch`` holds the workers' uint8 pyramids, still to be finished by :func:`finish_batch`."""
    return next(iter(batch.color.values()))[0].dtype == torch.uint8


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] on their device, bit-identical to :func:`md2.data.augment.to_float`."""
    # Divided by a tensor on the images' device, not by the number 255: CUDA turns division by a host scalar
    # into multiplication by its reciprocal, which is not x / 255 for every x. Converted first: the CPU's
    # uint8 / float division is not vectorised (6x slower).
    return images.to(torch.float32).div_(torch.full((), 255.0, device=images.device))


def finish_batch(batch: Batch) -> Batch:
    """The float batch the workers would have made, from a uint8 one on any device (a float batch is returned
    as it is).

    ``color``: frame id -> S tensors (B, 3, h, w) uint8 -> float32 in [0, 1]. ``color_aug``: ``color`` after
    each sample's ``jitter`` (one set of parameters for all its frames and scales, contrast with each image's
    own grey mean); a sample without jitter keeps its ``color`` values, and a batch without any jitter has
    ``color_aug`` holding the very tensors of ``color``, as from the workers.

    All frames and scales of the batch are packed into one (B, 3, P) tensor, so a jittered sample costs one
    call of :func:`color_jitter` (a few tens of kernels), whatever the number of frames and scales.
    """
    if not is_uint8(batch):
        return batch
    color = {frame: [to_float(image) for image in scales] for frame, scales in batch.color.items()}
    jittered = [(b, params) for b, params in enumerate(batch.jitter) if params is not None]
    if not jittered:
        return replace(batch, color=color, color_aug=color)
    # Scale-major, so that each scale's frames are one run of equal sizes (one mean for contrast).
    places: list[tuple[FrameId, int]] = [(frame, s) for s in range(batch.num_scales) for frame in color]
    sizes = [color[frame][s].shape[-2] * color[frame][s].shape[-1] for frame, s in places]
    packed = torch.cat([color[frame][s].flatten(-2) for frame, s in places], dim=-1)
    for b, params in jittered:
        packed[b] = color_jitter(packed[b].unsqueeze(-2), params, sizes).squeeze(-2)
    color_aug: dict[FrameId, list[torch.Tensor]] = {frame: [] for frame in color}
    for (frame, s), piece in zip(places, packed.split(sizes, dim=-1)):
        color_aug[frame].append(piece.unflatten(-1, color[frame][s].shape[-2:]).contiguous())
    return replace(batch, color=color, color_aug=color_aug)
