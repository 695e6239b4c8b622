"""TensorBoard logging of a run, as the reference's: losses, depth metrics on lidar, example images.

(Named tb_logging, not logging, so that it never shadows the standard library's module.)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from md2.core.metrics import batch_depth_errors
from md2.core.visualize import colorize_disparity

MAX_IMAGES = 4
"""Samples of a batch shown per log, as the reference."""
PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10; older ones choose the filter row by row
    PNG_OPTIONS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH]
"""How the logged images are encoded (lossless, like any PNG). SummaryWriter.add_image saves with Pillow's
defaults (zlib level 6, filters chosen per row): 65 ms for a 640x192 camera image here, and a log's 88 images
took 2-3 s. Paeth-filtered rows with Huffman coding only: 4 ms for a file 1% larger."""
LATE_LOG_INTERVAL = 2000
"""After this many steps the reference logs only every 2000 steps."""


def should_log(batch_index: int, step: int, log_frequency: int) -> bool:
    """The reference's cadence: every ``log_frequency`` batches of an epoch while step < 2000, and every 2000
    steps throughout (``step`` is the global step before this batch's increment)."""
    early_phase = batch_index % log_frequency == 0 and step < LATE_LOG_INTERVAL
    late_phase = step % LATE_LOG_INTERVAL == 0
    return early_phase or late_phase


def log_scalars(losses: dict[str, torch.Tensor], batch, outputs) -> dict[str, torch.Tensor]:
    """The losses and, when the batch has lidar ground truth, the reference's depth metrics ("de/abs_rel", ...)
    on the full-resolution depth of scale 0 (upsampled to the lidar size, Garg crop, median scaling)."""
    scalars = {name: value.detach() for name, value in losses.items()}
    if batch.depth_gt is not None:
        scalars.update(batch_depth_errors(outputs.depth[0], batch.depth_gt))
    return scalars


class RunLogger:
    """Event files in RUN/train and RUN/val; a logger of a process other than rank 0 writes nothing.

    The images of a log are PNG-encoded by as many threads as torch uses (OpenCV releases the GIL while it
    encodes): the training step is waiting for the log, so its cores are free.
    """

    def __init__(self, log_path: Path, enabled: bool) -> None:
        self.writers = {}
        self._encoders: ThreadPoolExecutor | None = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            fast_event_checksums()
            self.writers = {mode: SummaryWriter(str(log_path / mode)) for mode in ("train", "val")}

    def log(self, mode: str, step: int, scalars: dict[str, torch.Tensor | float], batch, outputs,
            scales) -> dict[str, float]:
        """Write ``scalars`` and up to four samples' images; returns the scalars as floats."""
        values = {name: float(value) for name, value in scalars.items()}
        writer = self.writers.get(mode)
        if writer is None:
            return values
        for name, value in values.items():
            writer.add_scalar(name, value, step)
        if self._encoders is None:
            self._encoders = ThreadPoolExecutor(max(1, torch.get_num_threads()), thread_name_prefix="md2-png")
        encoded = [self._encoders.submit(image_summary, tag, image)
                   for j in range(min(MAX_IMAGES, len(batch))) for scale in scales
                   for tag, image in _images(batch, outputs, scale, j)]
        for summary in encoded:  # in the order of the images, as one thread would write them
            writer.file_writer.add_summary(summary.result(), step)
        writer.flush()
        return values

    def close(self) -> None:
        if self._encoders is not None:
            self._encoders.shutdown()
        for writer in self.writers.values():
            writer.close()


def _images(batch, outputs, scale: int, j: int):
    """(tag, (h, w, 3) uint8 RGB) of sample ``j`` at ``scale``: every frame's colour, the warped sources
    (scale 0), the colour-mapped disparity, and the predictive mask per source frame or else the auto-mask."""
    for frame_id in batch.frame_ids:
        yield f"color_{frame_id}_{scale}/{j}", to_image(batch.color[frame_id][scale][j])
        if scale == 0 and frame_id != 0 and (frame_id, scale) in outputs.warped:
            yield f"color_pred_{frame_id}_{scale}/{j}", to_image(outputs.warped[(frame_id, scale)][j])
    yield f"disp_{scale}/{j}", colorize_disparity(outputs.disp[scale][j, 0].detach().float().cpu().numpy())
    if outputs.predictive_mask is not None:
        sources = [f for f in batch.frame_ids if f != 0]
        for index, frame_id in enumerate(sources):
            yield (f"predictive_mask_{frame_id}_{scale}/{j}",
                   to_image(outputs.predictive_mask[scale][j, index:index + 1]))
    elif scale in outputs.identity_selection:
        yield f"automask_{scale}/{j}", to_image(outputs.identity_selection[scale][j][None])


def to_image(image: torch.Tensor) -> np.ndarray:
    """(C, h, w) values in [0, 1] (others clipped), C = 1 or 3 -> (h, w, 3) uint8, converted as
    SummaryWriter.add_image does: float32 x 255, clipped to [0, 255], truncated; one channel repeated."""
    array = image.detach().float().cpu().numpy().transpose(1, 2, 0)
    array = (array * np.float32(255)).clip(0, 255).astype(np.uint8)
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def image_summary(tag: str, image: np.ndarray):
    """A TensorBoard image summary of an (h, w, 3) uint8 RGB image, PNG-encoded with :data:`PNG_OPTIONS`."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    height, width, channels = image.shape
    encoded, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), PNG_OPTIONS)
    if not encoded:
        raise RuntimeError(f"OpenCV could not encode image {tag} ({width}x{height}) as PNG")
    picture = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png.tobytes())
    return Summary(value=[Summary.Value(tag=tag, image=picture)])


def fast_event_checksums() -> bool:
    """Make TensorBoard's event writer checksum its records in C; returns whether it now does.

    Every record of an event file carries the masked CRC-32C of its bytes. Without TensorFlow, tensorboard
    computes it in pure Python, about 0.7 s for the 6 MB of one log's images here (more than encoding them);
    google-crc32c computes the same value in about a millisecond. The writer looks the function up at each
    record, so replacing it in its module is enough; without google-crc32c's C extension nothing changes.
    """
    try:
        import google_crc32c
    except ImportError:
        return False
    if google_crc32c.implementation != "c":
        return False
    from tensorboard.summary.writer import record_writer

    record_writer.masked_crc32c = masked_crc32c
    return True


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum of ``data``: CRC-32C rotated right by 15 bits plus 0xA282EAD8, modulo 2^32."""
    import google_crc32c

    crc = google_crc32c.value(bytes(data))
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


SUMMARY_NAMES = {"loss": "loss", **{f"de/{name}": name for name in
                                     ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")}}
"""Validation scalars shown on the console (TensorBoard name -> shown name), in this order."""


def validation_summary(batches: list[dict[str, float]]) -> str:
    """``"loss 0.1234, abs_rel 0.120, ..."``: each scalar's mean over the batches that have it; a non-finite
    mean is shown as n/a, never as a number."""
    parts = []
    for name, shown in SUMMARY_NAMES.items():
        values = [values[name] for values in batches if name in values]
        if values:
            mean = float(np.mean(values))
            parts.append(f"{shown} {mean:.4f}" if np.isfinite(mean) else f"{shown} n/a")
    return ", ".join(parts)
