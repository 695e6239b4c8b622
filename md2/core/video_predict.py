"""``md2 predict`` on videos: frames in, a colour-mapped disparity video (and per-frame files) out.

The frames go through the same pipeline as photos (:func:`md2.core.pipeline.run_pipeline`: LANCZOS resize
ahead of the network, upsampling, colour map and writing behind it), decoded one at a time and encoded as
they come, so memory does not grow with the clip. The colour scale is stable over time: vmin and vmax follow
running averages of each frame's minimum and 95th-percentile disparity (:class:`RunningScale`), so the video
does not flicker as a per-frame scale would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from md2.core.pictures import Prepared, network_pixels
from md2.core.pipeline import Stages, run_pipeline
from md2.core.pointcloud.photo import CloudOptions
from md2.core.predict import (PIPELINE_WORKERS, ImageArrays, as_array, batch_disparity, image_arrays, is_finite,
                              lanes_of, write_depth_png, write_npy)
from md2.core.visualize import colorize_disparity, percentile
from md2.data.video_io import FrameRange, VideoReader, VideoWriter
from md2.errors import DataError
from md2.files import make_folder

if TYPE_CHECKING:
    from md2.core.predict import Predictor

SCALE_SPAN = 30
"""Frames over which the colour scale averages (about a second of video)."""


@dataclass(frozen=True)
class VideoOptions:
    """What to write for each video."""

    output_dir: Path | None = None
    side_by_side: bool = False
    save_frames: bool = False
    pred_metric_depth: bool = False
    save_depth_png: bool = False
    frames: FrameRange = FrameRange()
    overwrite: bool = False
    batch_size: int = 1
    cloud: CloudOptions | None = None
    """--point-cloud: one fused STEM.ply (md2.core.video_cloud)."""


@dataclass
class VideoReport:
    """One video's result: the disparity video, the per-frame files' folder, frames done / expected."""

    video: Path
    frames_folder: Path | None
    frames: int
    expected: int | None
    interrupted: bool = False
    cloud: list[Path] = field(default_factory=list)
    """STEM.ply and STEM_cloud.png with --point-cloud."""


@dataclass
class Frame:
    """One decoded frame on its way through the pipeline."""

    number: int
    rgb: np.ndarray
    """(H, W, 3) uint8, as decoded."""
    scale: tuple[float, float] = field(default=(0.0, 1.0))
    """(vmin, vmax) of the colour map, set in frame order."""
    to_first: np.ndarray | None = None
    """--point-cloud: (4, 4) this camera to the first frame's, set in frame order."""


class RunningScale:
    """The colour scale of a video: running means, over about ``span`` frames, of each frame's minimum and
    95th-percentile disparity (at the network's resolution). The first frame sets both."""

    def __init__(self, span: int = SCALE_SPAN) -> None:
        self.span, self.count, self.vmin, self.vmax = span, 0, 0.0, 0.0

    def update(self, disp: np.ndarray) -> tuple[float, float]:
        self.count += 1
        weight = 1.0 / min(self.count, self.span)
        self.vmin += (float(disp.min()) - self.vmin) * weight
        self.vmax += (percentile(disp, 95.0) - self.vmax) * weight
        return self.vmin, self.vmax


def disparity_video_path(path: Path, output_dir: Path | None) -> Path:
    return (output_dir if output_dir is not None else path.parent) / f"{path.stem}_disp.mp4"


def predict_video(predictor: Predictor, path: Path, options: VideoOptions,
                  on_frame: Callable[[int], None] | None = None, on_start: Callable[[int | None], None] | None = None,
                  workers: int = PIPELINE_WORKERS) -> VideoReport:
    """Predict every selected frame of the video ``path``; writes STEM_disp.mp4 (and STEM_frames/NNNNNN_*).

    ``on_start(expected frame count or None)`` is called once the video is open, ``on_frame(number)`` after
    each frame is encoded. An existing STEM_disp.mp4 is a DataError unless ``options.overwrite``. Ctrl-C
    (KeyboardInterrupt) finishes the file with the frames done, then is raised again.
    """
    target = disparity_video_path(path, options.output_dir)
    if target.exists() and not options.overwrite:
        raise DataError(f"{target} exists: add --overwrite to replace it")
    with VideoReader(path) as reader:
        expected = reader.expected(options.frames)
        if on_start is not None:
            on_start(expected)
        folder = target.parent / f"{path.stem}_frames" if options.save_frames or options.save_depth_png else None
        step = reader.selection(options.frames)[2]
        height = reader.height * (2 if options.side_by_side else 1)
        fusion = _fusion(predictor, options, reader.width, reader.height)
        writer = VideoWriter(target, reader.fps / step, reader.width, height)
        interrupted = False
        try:
            _run(predictor, reader, options, folder, writer, on_frame, workers, fusion)
        except KeyboardInterrupt:
            interrupted = True
        except BaseException:
            writer.discard()
            raise
        closed = writer.close()
        written = writer.frames
        if closed is None and not interrupted:
            raise DataError(f"{path} has no frames" + (" in the range asked" if options.frames != FrameRange()
                                                       else ""))
    cloud = fusion.write(target.parent / path.stem, path) if fusion is not None and fusion.frames else []
    if interrupted:
        raise VideoInterrupted(VideoReport(target, folder, written, expected, interrupted=True, cloud=cloud))
    return VideoReport(target, folder, written, expected, cloud=cloud)


def _fusion(predictor: Predictor, options: VideoOptions, width: int, height: int):
    """The fused point cloud's state with --point-cloud (the pose network loaded), else None."""
    if options.cloud is None:
        return None
    from md2.core.video_cloud import VideoFusion

    return VideoFusion(options.cloud, options.cloud.pose_weights, predictor.device, width, height)


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C during a video, carrying what was written (the caller says so, then stops)."""


    def __init__(self, report: VideoReport) -> None:
        super().__init__()
        self.report = report


def _run(predictor: Predictor, reader: VideoReader, options: VideoOptions, folder: Path | None,
         writer: VideoWriter, on_frame: Callable[[int], None] | None, workers: int, fusion=None) -> None:
    scale = RunningScale()

    def prepare(frame: Frame) -> Prepared:
        return Prepared(network_pixels(Image.fromarray(frame.rgb), predictor.width, predictor.height),
                        frame.rgb.shape[:2])

    in_workers = getattr(predictor, "arrays", False)  # NumPy only: upsampling and depth beside the network

    def arrays_of(ready: Prepared, disp) -> ImageArrays:
        return image_arrays(predictor, disp, ready.original, options.pred_metric_depth, options.save_depth_png)

    def after_network(frame: Frame, ready: Prepared, disp):
        if not is_finite(disp):  # the video is discarded: NaN frames are no depth
            raise DataError(f"the prediction for frame {frame.number} of {reader.path} is not finite (NaN or "
                            "infinite disparities; are the weights corrupt?): no video written")
        frame.scale = scale.update(as_array(disp[0, 0]))  # in frame order
        if fusion is not None:
            frame.to_first = fusion.pose(ready.pixels)
        return disp if in_workers else arrays_of(ready, disp)

    def finish(frame: Frame, ready: Prepared, payload) -> tuple[np.ndarray, object]:
        arrays = arrays_of(ready, payload) if in_workers else payload
        picture = colorize_disparity(arrays.disp_full, vmin=frame.scale[0], vmax=frame.scale[1])
        if folder is not None:
            make_folder(folder)
            stem = folder / f"{frame.number:06d}"
            if options.save_frames:
                write_npy(stem, arrays.npy, options.pred_metric_depth)
            if arrays.depth_full is not None:
                write_depth_png(stem, arrays.depth_full)
        part = fusion.frame_points(arrays.disp_full, frame.rgb, frame.to_first) if fusion is not None else None
        return (np.concatenate([frame.rgb, picture], axis=0) if options.side_by_side else picture), part

    def done(frame: Frame, outcome: tuple[np.ndarray, object] | DataError) -> None:
        if isinstance(outcome, DataError):
            raise outcome
        picture, part = outcome
        if part is not None:
            fusion.add(part)  # in frame order; the frame's points are not kept
        writer.write(picture)
        if on_frame is not None:
            on_frame(frame.number)

    frames = (Frame(number, rgb) for number, rgb in reader.frames(options.frames))
    runner, lanes = lanes_of(predictor, max(2, reader.frame_count))  # frame_count 0: not known
    stages = Stages(prepare, lambda pixels: batch_disparity(runner, pixels), finish, after_network, lanes)
    run_pipeline(frames, stages, done, batch_size=options.batch_size, workers=workers)
