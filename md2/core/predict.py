"""The ``md2 predict`` job: photos in, disparity / depth files and colour-mapped images out."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from md2.core.depth_arrays import STEREO_SCALE_FACTOR, images_from_pixels
from md2.core.pictures import Prepared, PreparedAhead, network_pixels, prepare_image, read_rgb
from md2.core.pipeline import Stages, run_pipeline
from md2.core.pointcloud.photo import CloudOptions, write_photo_cloud
from md2.core.visualize import colorized_image
from md2.errors import DataError
from md2.files import atomic_path, make_folder

if TYPE_CHECKING:
    import torch

    from md2.core.exported import ExportedPredictor
    from md2.core.inference import DepthPredictor

    Predictor = DepthPredictor | ExportedPredictor

FAST_BATCH_PIXELS = 4 * 640 * 192
"""Default pixels per network pass outside the exact fp32 path: 4 images at 640x192, 1 at 1024x320. Measured
(benchmarks.inference, a 2-core CPU with native bf16): 640x192 gives 23 images/s one at a time and 26 in
fours; 1024x320 gives 10.4 one at a time but 6.6 in fours (its batch no longer fits the caches)."""
PIPELINE_WORKERS = 2
"""Threads decoding and writing beside the network (measured: benchmarks.predict)."""


@dataclass(frozen=True)
class PredictOptions:
    """Where and what to write for each image."""

    output_dir: Path | None = None
    pred_metric_depth: bool = False
    save_depth_png: bool = False
    batch_size: int = 1
    cloud: CloudOptions | None = None
    """--point-cloud: NAME.ply and NAME_cloud.png too."""
    metric_scale: float = STEREO_SCALE_FACTOR
    """--pred-metric-depth's factor: 5.4, or a mono model's saved median scale (md2.core.metric_scale)."""


@dataclass
class PredictReport:
    """What a run did: one entry per image."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def default_batch_size(predictor: Predictor) -> int:
    """Images per network pass when the user gives none: one for ``--precision fp32``, the exact path (the
    reference predicted one image at a time, and a batch's composition moves the last bits of fp32
    convolutions), else as many as fit :data:`FAST_BATCH_PIXELS` (4 at 640x192, 1 at 1024x320)."""
    if predictor.precision == "fp32" and not getattr(predictor, "channels_last", False):
        return 1
    return max(1, FAST_BATCH_PIXELS // (predictor.height * predictor.width))


def lanes_of(predictor: Predictor, pictures: int) -> tuple[Predictor, int]:
    """(the predictor whose network runs ``pictures`` pictures, network passes at once): several for
    onnxruntime on the CPU (:meth:`md2.core.exported.ExportedPredictor.in_lanes`), one for torch."""
    in_lanes = getattr(predictor, "in_lanes", None)
    return in_lanes(pictures) if in_lanes is not None else (predictor, 1)


def load_image(path: Path, width: int, height: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Read an RGB image and resize it to the network's size with LANCZOS (Pillow's old ANTIALIAS).

    Returns ((3, height, width) float in [0, 1], (original_height, original_width)).
    """
    import torch

    rgb = read_rgb(path)
    pixels = network_pixels(rgb, width, height)
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0), (rgb.height, rgb.width)


def batch_disparity(predictor: Predictor, pixels: np.ndarray):
    """The network on (B, h, w, 3) uint8 pixels: the ToTensor floats (x / 255), NCHW as the exact path has
    always been given them (channels_last for the fast path, which converts to it anyway). An array for a
    predictor on arrays (onnxruntime, no torch), else a tensor."""
    if getattr(predictor, "arrays", False):
        return predictor.disparity(images_from_pixels(pixels))
    import torch

    images = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    if not getattr(predictor, "channels_last", False):
        images = images.contiguous()
    return predictor.disparity(images.float().div_(255.0))


@dataclass(frozen=True)
class ImageArrays:
    """One image's results as arrays, computed in the caller's thread for the writers in the workers."""

    npy: np.ndarray
    """(1, 1, h, w): the scaled disparity, or 5.4 x depth with --pred-metric-depth."""
    disp_full: np.ndarray
    """(H, W) sigmoid disparity upsampled to the picture's size."""
    depth_full: np.ndarray | None
    """(H, W) depth at the picture's size (metres for stereo models), with --save-depth-png."""


def image_arrays(predictor: Predictor, disp, original: tuple[int, int], metric_depth: bool,
                 depth_png: bool, metric_scale: float = STEREO_SCALE_FACTOR) -> ImageArrays:
    """``disp`` (1, 1, h, w), a tensor or an array as the predictor gives it -> what an image's files hold (as
    the reference: the .npy at the network's resolution, the pictures at the original size). The predictor's
    own operations: torch's on tensors, md2.core.depth_arrays' on arrays. ``metric_scale``: --pred-metric-depth's
    factor (5.4, or a mono model's saved median scale)."""
    if metric_depth:
        npy = metric_scale * predictor.depth(disp)
    else:
        npy = predictor.scaled_disparity(disp)
    disp_full = predictor.upsample(disp, *original)
    depth = None
    if depth_png:
        depth = as_array(predictor.depth(disp_full)[0, 0])
        if predictor.use_stereo:
            depth = depth * STEREO_SCALE_FACTOR
    return ImageArrays(as_array(npy), as_array(disp_full[0, 0]), depth)


def as_array(values) -> np.ndarray:
    """A float32 tensor (any device) or array as a NumPy array."""
    return values if isinstance(values, np.ndarray) else values.float().cpu().numpy()


def is_finite(values) -> bool:
    """Whether every value of a tensor (any device, without importing torch here) or array is finite."""
    return bool(np.isfinite(values).all() if isinstance(values, np.ndarray) else values.isfinite().all())


def _output_stem(path: Path, options: PredictOptions) -> Path:
    folder = options.output_dir if options.output_dir is not None else path.parent
    return folder / path.stem


def save_outputs(path: Path, arrays: ImageArrays, options: PredictOptions) -> list[Path]:
    """Write one image's files: STEM_disp.npy (or STEM_depth.npy), STEM_disp.jpeg, STEM_depth.png, and
    STEM.ply with STEM_cloud.png."""
    stem = _output_stem(path, options)
    make_folder(stem.parent)  # --output-dir appears with its first output, not before
    written = [write_npy(stem, arrays.npy, options.pred_metric_depth)]
    picture = Path(f"{stem}_disp.jpeg")
    encoded = io.BytesIO()  # encoded in memory and written at once: Pillow's file writes cost more here
    colorized_image(arrays.disp_full).save(encoded, format="JPEG")
    with atomic_path(picture) as temporary:
        temporary.write_bytes(encoded.getbuffer())
    written.append(picture)
    if arrays.depth_full is not None:
        written.append(write_depth_png(stem, arrays.depth_full))
    if options.cloud is not None:
        written += write_photo_cloud(stem, path, arrays.disp_full, options.cloud)
    return written


def write_npy(stem: Path, array: np.ndarray, metric_depth: bool) -> Path:
    """STEM_disp.npy (the scaled disparity) or, with ``metric_depth``, STEM_depth.npy."""
    npy = Path(f"{stem}_depth.npy" if metric_depth else f"{stem}_disp.npy")
    with atomic_path(npy) as temporary:
        np.save(temporary, array)
    return npy


def write_depth_png(stem: Path, depth: np.ndarray) -> Path:
    """STEM_depth.png: depth x 256 as 16-bit (KITTI's convention)."""
    png = Path(f"{stem}_depth.png")
    encoded = np.clip(np.round(depth * 256.0), 0, 65535).astype(np.uint16)
    with atomic_path(png) as temporary:
        Image.fromarray(encoded).save(temporary, format="PNG")
    return png


def predict_images(predictor: Predictor, paths: list[Path], options: PredictOptions,
                   on_image: Callable[[Path], None] | None = None, workers: int = PIPELINE_WORKERS,
                   ahead: PreparedAhead | None = None) -> PredictReport:
    """Predict every image in ``paths``; unreadable images are reported, the rest still run.

    Through :func:`md2.core.pipeline.run_pipeline`: the next images are decoded and resized, and the previous
    ones colour-mapped and written, while the network runs. ``on_image(path)`` is called for every path in
    input order once its outputs are written (or it was found unreadable). ``ahead``: pictures already being
    prepared (at this predictor's size, else it is not used), taken over here and closed on return.
    """
    report = PredictReport()
    width, height = predictor.width, predictor.height
    if ahead is not None and (ahead.width, ahead.height) != (width, height):
        ahead.close()
        ahead = None
    if ahead is not None:
        ahead.stop()  # the pipeline's workers prepare the rest

    def prepare(path: Path) -> Prepared:
        ready = ahead.take(path) if ahead is not None else None
        return ready if ready is not None else prepare_image(path, width, height)

    def done(path: Path, outcome: list[Path] | DataError) -> None:
        if isinstance(outcome, DataError):
            report.failed.append((path, str(outcome)))
        else:
            report.written.extend(outcome)
        if on_image is not None:
            on_image(path)

    def arrays_of(ready: Prepared, disp) -> ImageArrays:
        return image_arrays(predictor, disp, ready.original, options.pred_metric_depth, options.save_depth_png,
                            options.metric_scale)

    in_workers = getattr(predictor, "arrays", False)  # NumPy only: upsampling and depth beside the network

    def after_network(path: Path, ready: Prepared, disp):
        if not is_finite(disp):  # returned, not raised: the image fails, the others go on
            return DataError(f"the prediction for {path} is not finite (NaN or infinite disparities; are the "
                             "weights corrupt?): nothing written")
        return disp if in_workers else arrays_of(ready, disp)  # torch's operations stay in the caller's thread

    def finish(path: Path, ready: Prepared, payload) -> list[Path] | DataError:
        if isinstance(payload, DataError):
            return payload
        return save_outputs(path, arrays_of(ready, payload) if in_workers else payload, options)

    runner, lanes = lanes_of(predictor, len(paths))
    stages = Stages(prepare, lambda pixels: batch_disparity(runner, pixels), finish, after_network, lanes)
    try:
        run_pipeline(paths, stages, done, batch_size=options.batch_size, workers=workers)
    finally:
        if ahead is not None:
            ahead.close()
    return report
