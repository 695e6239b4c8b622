"""Predict depth for photos and videos with a pretrained or trained Monodepth2 model (the reference's
test_simple.py)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from md2.cli.common import status_console
from md2.cli.errors import err_console
from md2.errors import DataError, UsageError

NAME = "predict"
EPILOG = (
    "Examples:  md2 predict photo.jpg  |  md2 predict frames/ --ext png --batch-size 8  |  "
    "md2 predict 'shots/*.jpg' --model mono_1024x320 --output-dir out  |  "
    "md2 predict photo.jpg --weights ~/tmp/mono_model/models/weights_19 --save-depth-png  |  "
    "md2 predict clip.mp4 --side-by-side  |  md2 predict videos/ --ext mp4 --every 2 --start 10 --end 20s  |  "
    "md2 predict photo.jpg --point-cloud --stride 2 --fov 70"
)


def command(
    inputs: Annotated[list[str], typer.Argument(
        help="Image or video files (mp4, avi, mkv, mov ...), folders (see --ext) or glob patterns. A video gives "
             "STEM_disp.mp4 at its size and frame rate; its colour scale follows running averages of the frames' "
             "minimum and 95th-percentile disparity (about 30 frames), so it does not flicker.")],
    model: Annotated[Optional[str], typer.Option(help="Pretrained model name (default: mono+stereo_640x192).")] = None,
    weights: Annotated[
        Optional[Path], typer.Option("--weights", "--load-weights-folder", help="A weights folder instead of --model, "
                                     "or a model written by md2 export (.onnx, or .pt / .ts for TorchScript).")
    ] = None,
    ext: Annotated[str, typer.Option(help="Image extension to look for in folders.")] = "jpg",
    output_dir: Annotated[Optional[Path], typer.Option(help="Write outputs here (default: beside each image).")] = None,
    pred_metric_depth: Annotated[
        bool, typer.Option(help="Write NAME_depth.npy (metric depth = 5.4 x depth) instead of NAME_disp.npy.")
    ] = False,
    save_depth_png: Annotated[bool, typer.Option(help="Also write NAME_depth.png: 16-bit, depth x 256 (KITTI).")] = False,
    batch_size: Annotated[Optional[int], typer.Option(
        min=1, help="Images per network pass (default: 4 at 640x192, 1 at 1024x320; 1 with --precision fp32, the "
             "reference's exact path).")]
    = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda, cuda:N.")] = "auto",
    engine: Annotated[str, typer.Option(
        help="auto (onnxruntime on the CPU, torch on CUDA), torch or onnxruntime (exported once, cached).")] = "auto",
    precision: Annotated[str, typer.Option(
        help="auto (the engine's fastest: onnxruntime fp32; on torch channels_last, bf16 where native); fp32 (on "
             "torch the reference's numbers exactly) or bf16 (autocast, within 1% of fp32) run on torch.")] = "auto",
    side_by_side: Annotated[bool, typer.Option(help="Videos: the input above the depth in STEM_disp.mp4.")] = False,
    save_frames: Annotated[bool, typer.Option(
        help="Videos: also STEM_frames/NNNNNN_disp.npy per frame (NNNNNN_depth.npy with --pred-metric-depth); "
             "--save-depth-png adds NNNNNN_depth.png there.")] = False,
    every: Annotated[int, typer.Option(min=1, help="Videos: every N-th frame (the output's frame rate / N).")] = 1,
    start: Annotated[Optional[str], typer.Option(
        help="Videos: first frame, in seconds (12.5 or 12.5s) or as a frame number (300f).")] = None,
    end: Annotated[Optional[str], typer.Option(help="Videos: stop before this time or frame (as --start).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Videos: replace an existing STEM_disp.mp4.")] = False,
    point_cloud: Annotated[bool, typer.Option(
        help="Also NAME.ply and its view NAME_cloud.png (a video: one fused STEM.ply).")] = False,
    intrinsics: Annotated[Optional[str], typer.Option(
        metavar="FX,FY,CX,CY", help="Point cloud: the camera's intrinsics in the picture's pixels.")] = None,
    fov: Annotated[Optional[float], typer.Option(
        help="Point cloud: horizontal field of view, degrees (default: EXIF, else KITTI's).")] = None,
    max_depth: Annotated[Optional[float], typer.Option(help="Point cloud: drop points farther than this.")] = None,
    stride: Annotated[int, typer.Option(min=1, help="Point cloud: every N-th pixel of every N-th row.")] = 1,
    voxel: Annotated[float, typer.Option(help="Point cloud of a video: voxel size of the fused cloud.")] = 0.1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Also the weights folder, resolution and device, and one line per image.")] = False,
) -> None:
    """Predict depth for photos and videos with a pretrained or trained Monodepth2 model (the reference's
    test_simple.py)."""
    from md2.core.pictures import collect_inputs
    from md2.data.video_io import FrameRange, is_video

    console = status_console(quiet, verbose)
    if model is not None and weights is not None:
        raise UsageError("give --model or --weights, not both")
    paths = collect_inputs(inputs, ext)
    if output_dir is not None:  # made with the first output: a file or a read-only disk in the way said now
        from md2.files import check_folder_can_be_made

        check_folder_can_be_made(output_dir)
    videos = [path for path in paths if is_video(path)]
    images = [path for path in paths if not is_video(path)]
    video_only = {"--side-by-side": side_by_side, "--save-frames": save_frames, "--every": every != 1,
                  "--start": start, "--end": end, "--overwrite": overwrite}
    if not videos and any(video_only.values()):
        raise UsageError(f"{', '.join(k for k, v in video_only.items() if v)} applies to videos, and no input is one")
    from md2.cli.predict_cloud import cloud_request, depth_outputs, intrinsics_summary

    cloud = cloud_request(point_cloud, intrinsics, fov, max_depth, stride, voxel)
    if weights is None:
        from md2.core import zoo

        name = model or zoo.DEFAULT_MODEL
        weights = zoo.fetch_model(name, progress=not quiet)
        label = name
    else:
        label = str(weights)
    with _prepared_ahead(images, weights) as ahead:  # while torch is imported and the model loaded
        from md2.core.exported import load_predictor
        from md2.core.predict import PredictOptions, default_batch_size

        predictor = load_predictor(weights, device=device, precision=precision, engine=engine,
                                   note=lambda text: console.print(f"[yellow]note:[/yellow] {escape(text)}"),
                                   status=lambda text: console.status(escape(text)),  # transient, terminals only
                                   pictures=len(images) + 2 * len(videos))
        cloud_options, metric_scale = depth_outputs(predictor, label, weights, cloud, bool(videos), pred_metric_depth,
                                                    save_depth_png, console)
        batch_size = batch_size or default_batch_size(predictor)
        if verbose:
            console.print(f"{_count(images, videos)}; model {escape(label)} from "
                          f"{escape(str(weights))} at {predictor.width}x{predictor.height} on {predictor.device} in "
                          f"{predictor.precision} with {predictor.engine}; batch size {batch_size}")
        failed = []
        if images:
            options = PredictOptions(output_dir, pred_metric_depth, save_depth_png, batch_size, cloud_options,
                                     metric_scale)
            failed += _images(predictor, images, options, console, quiet, verbose, ahead)
        if videos:
            from md2.core.video_predict import VideoOptions

            options = VideoOptions(output_dir, side_by_side, save_frames, pred_metric_depth, save_depth_png,
                                   FrameRange(start, end, every), overwrite, batch_size, cloud_options)
            failed += _videos(predictor, videos, options, console, quiet, verbose)
    if len(paths) == 1 and failed:  # nothing else to report: the reason is the one line
        raise DataError(failed[0])
    for reason in failed:
        err_console.print(f"[bold red]error:[/bold red] {escape(reason)}", soft_wrap=True)
    where = output_dir if output_dir is not None else "the inputs' folders"
    console.print(f"{len(paths) - len(failed)} of {_count(images, videos)} with {label} on {predictor.device}; "
                  f"outputs in {where}", highlight=False)
    if cloud_options is not None:
        summary = intrinsics_summary(cloud, images, videos)
        console.print(f"point clouds in {cloud_options.units}" + (f"; {summary}" if summary else ""),
                      highlight=False)
    if failed:
        raise typer.Exit(1)


def _count(images: list, videos: list) -> str:
    """"3 images", "1 video", "3 images and 1 video"."""
    parts = [f"{len(group)} {noun}{'s' if len(group) != 1 else ''}" for group, noun in ((images, "image"),
                                                                                      (videos, "video")) if group]
    return " and ".join(parts)


@contextmanager
def _prepared_ahead(images: list[Path], weights: Path):
    """The first images decoded and resized in a thread from now on (:class:`md2.core.pictures.PreparedAhead`),
    when the weights folder tells its input size without torch (:mod:`md2.core.checkpoint_header`); else None.
    Stopped and joined on the way out, whatever happened."""
    from md2.core.checkpoint_header import network_size
    from md2.core.pictures import PreparedAhead

    size = network_size(weights) if images else None  # None for an exported model's file too
    ahead = PreparedAhead(images, *size) if size is not None else None
    try:
        yield ahead
    finally:
        if ahead is not None:
            ahead.close()


def _images(predictor, paths: list[Path], options, console, quiet: bool, verbose: bool, ahead=None) -> list[str]:
    """The images through the predict pipeline under one progress bar; the reasons of those that failed."""
    from md2.core.predict import predict_images

    def on_image(path: Path) -> None:
        progress.advance(task)
        if verbose:
            console.print(f"  {escape(str(path))}")

    with Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                  disable=quiet or verbose or len(paths) < 2 or not console.is_terminal, transient=True) as progress:
        task = progress.add_task("predict", total=len(paths))
        report = predict_images(predictor, paths, options, on_image=on_image, ahead=ahead)
    return [reason for _, reason in report.failed]


def _videos(predictor, paths: list[Path], options, console, quiet: bool, verbose: bool) -> list[str]:
    """Each video through the predict pipeline with a bar of frames, frames/s and ETA; the failures' reasons.
    Ctrl-C finishes the current video's file with the frames done, says so, and stops."""
    from md2.core.video_predict import VideoInterrupted, predict_video

    failed = []
    for path in paths:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _FramesPerSecond(),
                      TimeRemainingColumn(), console=console, disable=quiet or not console.is_terminal,
                      transient=True) as progress:
            task = progress.add_task(escape(path.name), total=None)
            began = time.perf_counter()
            try:
                report = predict_video(predictor, path, options,
                                       on_start=lambda total: progress.update(task, total=total),
                                       on_frame=lambda number: progress.advance(task))
            except VideoInterrupted as stop:
                progress.stop()
                kept = stop.report
                console.print(f"[yellow]interrupted:[/yellow] {escape(str(kept.video))} holds the {kept.frames} "
                              "frames done" if kept.frames else "[yellow]interrupted:[/yellow] no frame was done")
                raise KeyboardInterrupt from None
            except DataError as error:
                failed.append(str(error))
                continue
        seconds = time.perf_counter() - began
        rate = f" at {report.frames / seconds:.1f} frames/s" if seconds > 0 and report.frames else ""
        saved = f", per-frame files in {escape(str(report.frames_folder))}" if report.frames_folder else ""
        cloud = f", point cloud {escape(str(report.cloud[0]))}" if report.cloud else ""
        console.print(f"{escape(path.name)} -> {escape(str(report.video))}: {report.frames} frames written{rate}"
                      f"{saved}{cloud}", highlight=False)
    return failed


class _FramesPerSecond(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f} frames/s" if task.speed else "")
