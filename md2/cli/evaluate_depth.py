"""Evaluate depth on KITTI (Eigen, Eigen benchmark) or write benchmark PNGs: the reference's evaluate_depth.py."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from md2.cli.options import finite
from md2.errors import UsageError

NAME = "evaluate-depth"
EPILOG = (
    "Examples:  md2 evaluate-depth --load-weights-folder ~/tmp/mono_model/models/weights_19 --eval-mono  |  "
    "md2 evaluate-depth --model mono+stereo_640x192 --eval-stereo --post-process --json results.json  |  "
    "md2 evaluate-depth --ext-disp-to-eval other_method_disp.npy --eval-mono  |  "
    "md2 evaluate-depth --model mono_640x192 --eval-mono --gt-dir my_photos  |  "
    "md2 evaluate-depth --model stereo_640x192 --eval-stereo --eval-split benchmark --data-path "
    "depth_selection/test_depth_prediction_anonymous --png.  "
    "Ground truth first: md2 export-gt --data-path kitti_data --split eigen"
)

_DATA = "data"
_MODEL = "model and predictions"
_EVAL = "evaluation"
_OUT = "outputs"


def command(
    load_weights_folder: Annotated[Optional[Path], typer.Option(
        help="A weights folder (encoder.pth, depth.pth).", rich_help_panel=_MODEL)] = None,
    model: Annotated[Optional[str], typer.Option(
        help="A pretrained model name instead (see md2 predict --help).", rich_help_panel=_MODEL)] = None,
    eval_mono: Annotated[bool, typer.Option(
        "--eval-mono", help="Mono model: median scaling per image.", rich_help_panel=_EVAL)] = False,
    eval_stereo: Annotated[bool, typer.Option(
        "--eval-stereo", help="Stereo model: depth x 5.4, no median scaling.", rich_help_panel=_EVAL)] = False,
    data_path: Annotated[Path, typer.Option(help="The KITTI raw folder.", rich_help_panel=_DATA)] = Path("kitti_data"),
    eval_split: Annotated[str, typer.Option(
        help="eigen, eigen_benchmark, benchmark, or a custom split folder's name.", rich_help_panel=_DATA)] = "eigen",
    splits_dir: Annotated[Optional[Path], typer.Option(
        help="The folder holding the split folders (default: md2's splits).", rich_help_panel=_DATA)] = None,
    png: Annotated[bool, typer.Option("--png", help="Images are .png, not .jpg.", rich_help_panel=_DATA)] = False,
    disable_median_scaling: Annotated[bool, typer.Option(
        "--disable-median-scaling", help="No per-image median scaling (mono).", rich_help_panel=_EVAL)] = False,
    pred_depth_scale_factor: Annotated[float, typer.Option(
        callback=finite, help="Multiply predicted depths by this (mono).", rich_help_panel=_EVAL)] = 1.0,
    post_process: Annotated[bool, typer.Option(
        "--post-process", help="Also predict the mirrored images and blend (Monodepth v1).",
        rich_help_panel=_MODEL)] = False,
    ext_disp_to_eval: Annotated[Optional[Path], typer.Option(
        help="Evaluate disparities (N x h x w .npy) instead of a model.", rich_help_panel=_MODEL)] = None,
    eval_eigen_to_benchmark: Annotated[bool, typer.Option(
        "--eval-eigen-to-benchmark", help="Re-index eigen disparities to the eigen_benchmark split.",
        rich_help_panel=_MODEL)] = False,
    save_pred_disps: Annotated[bool, typer.Option(
        "--save-pred-disps", help="Save disps_<split>_split.npy.", rich_help_panel=_OUT)] = False,
    no_eval: Annotated[bool, typer.Option(
        "--no-eval", help="Stop after predicting (and saving).", rich_help_panel=_OUT)] = False,
    eval_out_dir: Annotated[Optional[Path], typer.Option(
        help="Where saved disparities and benchmark PNGs go (default: the weights folder; '.' with --model "
             "or --ext-disp-to-eval).",
        rich_help_panel=_OUT)] = None,
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", help="Also write metrics, scaling ratios and settings to this JSON file.",
        rich_help_panel=_OUT)] = None,
    save_scale: Annotated[bool, typer.Option(
        "--save-scale", help="Mono: store the ratios' median in the weights folder, for md2 predict's metres.",
        rich_help_panel=_OUT)] = False,
    num_layers: Annotated[Optional[int], typer.Option(
        help="ResNet depth (default: read from the checkpoint).", rich_help_panel=_MODEL)] = None,
    min_depth: Annotated[float, typer.Option(callback=finite, help="disp_to_depth's minimum depth.",
                                             rich_help_panel=_MODEL)] = 0.1,
    max_depth: Annotated[float, typer.Option(callback=finite, help="disp_to_depth's maximum depth.",
                                             rich_help_panel=_MODEL)] = 100.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per network pass.", rich_help_panel=_MODEL)] = 16,
    num_workers: Annotated[Optional[int], typer.Option(
        min=0, help="Image-loading processes (default: min(12, CPUs)).", rich_help_panel=_MODEL)] = None,
    device: Annotated[str, typer.Option(
        help="auto (CUDA when available), cpu, cuda, cuda:N.", rich_help_panel=_MODEL)] = "auto",
    gt_dir: Annotated[Optional[Path], typer.Option(
        help="Your own test set instead of a split: images NAME.jpg/.png and NAME_depth.png (16-bit).",
        rich_help_panel=_DATA)] = None,
    gt_scale: Annotated[float, typer.Option(
        help="--gt-dir PNG value per metre (KITTI: 256; millimetres: 1000).", rich_help_panel=_DATA)] = 256.0,
    eigen_crop: Annotated[bool, typer.Option(
        "--eigen-crop", help="--gt-dir: Garg's crop and 1e-3..80 m, as the eigen split.",
        rich_help_panel=_EVAL)] = False,
    engine: Annotated[str, typer.Option(
        help="auto (onnxruntime on the CPU, torch on CUDA), torch or onnxruntime.", rich_help_panel=_MODEL)]
    = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the results.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also every resolved setting, before the run.")]
    = False,
) -> None:
    """Evaluate depth on KITTI (Eigen, Eigen benchmark) or write benchmark PNGs: the reference's evaluate_depth.py."""
    from md2.cli.common import print_settings, status_console
    from md2.core.evaluation.depth_job import DepthEvalSettings, check_settings, run_depth_evaluation
    from md2.core.evaluation.report import progress_stages, write_json

    console = status_console(quiet, verbose)
    if model is not None and load_weights_folder is not None:
        raise UsageError("give --load-weights-folder or --model, not both")
    settings = DepthEvalSettings(
        eval_mono=eval_mono, eval_stereo=eval_stereo, eval_split=eval_split, data_path=data_path,
        splits_dir=splits_dir, load_weights_folder=load_weights_folder, ext_disp_to_eval=ext_disp_to_eval,
        disable_median_scaling=disable_median_scaling, pred_depth_scale_factor=pred_depth_scale_factor,
        post_process=post_process, eval_eigen_to_benchmark=eval_eigen_to_benchmark,
        save_pred_disps=save_pred_disps, no_eval=no_eval, eval_out_dir=eval_out_dir, png=png,
        num_layers=num_layers, min_depth=min_depth, max_depth=max_depth, batch_size=batch_size,
        num_workers=_workers(num_workers), device=device, gt_dir=gt_dir, gt_scale=gt_scale, eigen_crop=eigen_crop,
        engine=engine)
    if model is not None and ext_disp_to_eval is None:
        check_settings(_with_folder(settings, Path(model)))  # usage errors before a download
        from md2.core import zoo

        _check_save_scale(save_scale, _with_folder(settings, Path(model)))
        settings = _with_folder(settings, zoo.fetch_model(model, progress=not quiet))
        if eval_out_dir is None:  # not into the model cache
            settings = replace(settings, eval_out_dir=Path("."))
    _check_save_scale(save_scale, settings)
    if verbose:  # resolved: the model's name and folder, the device that runs it
        from md2.core.inference import resolve_device

        device_used = str(resolve_device(device)) if settings.ext_disp_to_eval is None else None
        print_settings({"model": model, **settings.as_dict(), "device": device_used}, console)
    with progress_stages(console) as progress:
        result = run_depth_evaluation(settings, progress)
    _print_results(result, console)
    if save_scale and result.scores is not None and result.scores.ratios is not None:
        from md2.core.metric_scale import save_scale as store

        scores = result.scores
        path = store(settings.load_weights_folder, scores.ratio_median, settings.eval_split, scores.num_images,
                     scores.ratio_std)
        console.print(f"-> median scale {scores.ratio_median:.4f} saved to {escape(str(path))}: md2 predict "
                      "--pred-metric-depth and --point-cloud give metres with it", highlight=False)
    if json_path is not None:
        written = write_json(json_path, NAME, _json_results(result, model), settings.as_dict())
        console.print(f"results written to {written}")


def _check_save_scale(save_scale: bool, settings) -> None:
    """--save-scale needs the mono median scaling of a model's predictions on a split with ground truth."""
    if not save_scale:
        return
    if not settings.median_scaling:
        raise UsageError("--save-scale stores the median-scaling ratios' median: give --eval-mono, without "
                         "--disable-median-scaling")
    if settings.ext_disp_to_eval is not None or settings.load_weights_folder is None:
        raise UsageError("--save-scale stores the scale in a weights folder: give --load-weights-folder or --model")
    if settings.no_eval or settings.eval_split == "benchmark":
        raise UsageError("--save-scale needs the scores: not with --no-eval or --eval-split benchmark")


def _workers(requested: int | None) -> int:
    """The reference's 12 loader processes, or fewer on a smaller machine."""
    return requested if requested is not None else min(12, os.cpu_count() or 1)


def _print_results(result, console: Console) -> None:
    """Status on stderr; the scaling ratios, the table and the LaTeX line on stdout (as the reference)."""
    from md2.core.evaluation.report import (
        DEPTH_METRICS, depth_table, latex_line, reference_header, scaling_ratios_line)

    settings = result.settings
    source = f"--gt-dir {settings.gt_dir}" if settings.gt_dir is not None else f"split {settings.eval_split}"
    if result.model:
        model = result.model
        console.print(f"-> {result.num_predictions} images of {escape(source)} predicted by "
                      f"{escape(str(model['weights_folder']))} at {model['width']}x{model['height']} on "
                      f"{model['device']}" + (" with post-processing" if settings.post_process else ""))
    else:
        console.print(f"-> {result.num_predictions} disparities loaded from {escape(str(settings.ext_disp_to_eval))}"
                      + (" (re-indexed eigen -> eigen_benchmark)" if settings.eval_eigen_to_benchmark else ""))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    if result.saved_disps is not None:
        console.print(f"-> Saved predicted disparities to {escape(str(result.saved_disps))}")
    if result.benchmark_dir is not None:
        console.print(f"-> Wrote {result.num_predictions} benchmark PNGs to {escape(str(result.benchmark_dir))}")
    scores = result.scores
    if scores is None:
        return
    out = Console(highlight=False)
    if scores.ratios is not None:
        console.print("   Mono evaluation - using median scaling")
        out.print(scaling_ratios_line(scores.ratio_median, scores.ratio_std), markup=False)
    mode = "stereo (x5.4)" if settings.eval_stereo else ("mono, median scaling" if settings.median_scaling
                                                       else f"mono, x{settings.scale_factor:g}")
    crop = " · eigen crop" if settings.eigen_crop else ""
    name = Path(settings.gt_dir).name if settings.gt_dir is not None else settings.eval_split
    title = f"{name} · {scores.num_images} images · {mode}{crop}" + (
        " · post-processed" if settings.post_process and settings.ext_disp_to_eval is None else "")
    out.print(depth_table(scores.metrics, title=title))
    out.print("\n  " + reference_header(DEPTH_METRICS), markup=False)
    out.print(latex_line([scores.metrics[name] for name in DEPTH_METRICS]), markup=False)


def _with_folder(settings, folder: Path):
    return replace(settings, load_weights_folder=folder)


def _json_results(result, model: str | None) -> dict:
    scores = result.scores
    return {
        "model": {"name": model, **result.model},
        "num_predictions": result.num_predictions,
        "metrics": None if scores is None else scores.metrics,
        "scaling_ratios": None if scores is None or scores.ratios is None
        else {"median": scores.ratio_median, "std": scores.ratio_std},
        "saved_disps": result.saved_disps,
        "benchmark_dir": result.benchmark_dir,
    }
