"""Predict depth for photos with a pretrained or trained Monodepth2 model (the reference's test_simple.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from md2.cli.common import status_console
from md2.cli.errors import err_console
from md2.errors import DataError, UsageError

NAME = "predict"
EPILOG = (
    "Examples:  md2 predict photo.jpg  |  md2 predict frames/ --ext png --batch-size 8  |  "
    "md2 predict 'shots/*.jpg' --model mono_1024x320 --output-dir out  |  "
    "md2 predict photo.jpg --weights ~/tmp/mono_model/models/weights_19 --save-depth-png"
)


def command(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (see --ext) or glob patterns.")],
    model: Annotated[Optional[str], typer.Option(help="Pretrained model name (default: mono+stereo_640x192).")] = None,
    weights: Annotated[
        Optional[Path], typer.Option("--weights", "--load-weights-folder", help="A weights folder instead of --model.")
    ] = None,
    ext: Annotated[str, typer.Option(help="Image extension to look for in folders.")] = "jpg",
    output_dir: Annotated[Optional[Path], typer.Option(help="Write outputs here (default: beside each image).")] = None,
    pred_metric_depth: Annotated[
        bool, typer.Option(help="Write NAME_depth.npy (metric depth = 5.4 x depth) instead of NAME_disp.npy.")
    ] = False,
    save_depth_png: Annotated[bool, typer.Option(help="Also write NAME_depth.png: 16-bit, depth x 256 (KITTI).")] = False,
    batch_size: Annotated[Optional[int], typer.Option(
        min=1, help="Images per network pass (default: 4; 1 with --precision fp32, the reference's exact path).")]
    = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda, cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(
        help="fp32 (the reference's numbers exactly), bf16 (autocast; disparities within 1% of fp32) or auto "
             "(channels_last, within 1e-5 of fp32, and bf16 where the device computes it natively).")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Also the weights folder, resolution and device, and one line per image.")] = False,
) -> None:
    """Predict depth for photos with a pretrained or trained Monodepth2 model (the reference's test_simple.py)."""
    from md2.core.inference import DepthPredictor
    from md2.core.predict import PredictOptions, collect_inputs, default_batch_size, predict_images

    console = status_console(quiet, verbose)
    if model is not None and weights is not None:
        raise UsageError("give --model or --weights, not both")
    paths = collect_inputs(inputs, ext)
    if weights is None:
        from md2.core import zoo

        name = model or zoo.DEFAULT_MODEL
        weights = zoo.fetch_model(name, progress=not quiet)
        label = name
    else:
        label = str(weights)
    predictor = DepthPredictor.from_folder(weights, device=device, precision=precision)
    if (pred_metric_depth or save_depth_png) and not (predictor.use_stereo or "stereo" in label):
        console.print("[yellow]warning:[/yellow] this model was not trained with stereo, so its depth has no metric scale")
    batch_size = batch_size or default_batch_size(predictor)
    options = PredictOptions(output_dir, pred_metric_depth, save_depth_png, batch_size)
    if verbose:
        console.print(f"{len(paths)} images; model {escape(label)} from {escape(str(weights))} at "
                      f"{predictor.width}x{predictor.height} on {predictor.device} in {predictor.precision}; "
                      f"batch size {batch_size}")

    def on_image(path: Path) -> None:
        progress.advance(task)
        if verbose:
            console.print(f"  {escape(str(path))}")

    with Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                  disable=quiet or verbose or len(paths) < 2 or not console.is_terminal, transient=True) as progress:
        task = progress.add_task("predict", total=len(paths))
        report = predict_images(predictor, paths, options, on_image=on_image)
    if len(paths) == 1 and report.failed:  # nothing else to report: the reason is the one line
        raise DataError(report.failed[0][1])
    for _, reason in report.failed:
        err_console.print(f"[bold red]error:[/bold red] {escape(reason)}", soft_wrap=True)
    done = len(paths) - len(report.failed)
    where = output_dir if output_dir is not None else "the images' folders"
    console.print(f"{done} of {len(paths)} images with {label} on {predictor.device}; outputs in {where}",
                  highlight=False)
    if report.failed:
        raise typer.Exit(1)
