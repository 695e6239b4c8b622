"""Evaluate the pose network on KITTI odometry sequence 09 or 10: the reference's evaluate_pose.py."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from md2.errors import UsageError

NAME = "evaluate-pose"
EPILOG = (
    "Examples:  md2 evaluate-pose --eval-split odom_9 --load-weights-folder ./odom_split.M/models/weights_29 "
    "--data-path kitti_odom  |  md2 evaluate-pose --eval-split odom_10 --load-weights-folder W --data-path "
    "kitti_odom --plot odom_10.png --json odom_10.json  |  md2 evaluate-pose --model mono_odom_640x192 "
    "--eval-split odom_10.  DATA holds sequences/NN/image_2/*.jpg (or --png) and poses/NN.txt "
    "(md2 download-kitti --odometry)."
)

_DATA = "data"
_MODEL = "model"
_OUT = "outputs"


def command(
    load_weights_folder: Annotated[Optional[Path], typer.Option(
        help="A weights folder with pose_encoder.pth and pose.pth.", rich_help_panel=_MODEL)] = None,
    model: Annotated[Optional[str], typer.Option(
        help="A pretrained model name instead: mono_odom_640x192 or mono+stereo_odom_640x192 (see md2 predict "
             "--help; downloaded on first use).", rich_help_panel=_MODEL)] = None,
    eval_split: Annotated[str, typer.Option(help="odom_9 or odom_10.", rich_help_panel=_DATA)] = "odom_9",
    data_path: Annotated[Path, typer.Option(
        help="The KITTI odometry folder (sequences/, poses/).", rich_help_panel=_DATA)] = Path("kitti_data"),
    splits_dir: Annotated[Optional[Path], typer.Option(
        help="The folder holding the split folders (odom/) (default: md2's splits).", rich_help_panel=_DATA)] = None,
    png: Annotated[bool, typer.Option("--png", help="Images are .png, not .jpg.", rich_help_panel=_DATA)] = False,
    height: Annotated[int, typer.Option(help="Input height in pixels.", rich_help_panel=_MODEL)] = 192,
    width: Annotated[int, typer.Option(help="Input width in pixels.", rich_help_panel=_MODEL)] = 640,
    num_layers: Annotated[Optional[int], typer.Option(
        help="ResNet depth of the pose encoder (default: read from the checkpoint).", rich_help_panel=_MODEL)] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Frame pairs per network pass.", rich_help_panel=_MODEL)] = 16,
    num_workers: Annotated[Optional[int], typer.Option(
        min=0, help="Image-loading processes (default: min(12, CPUs)).", rich_help_panel=_MODEL)] = None,
    device: Annotated[str, typer.Option(
        help="auto (CUDA when available), cpu, cuda, cuda:N.", rich_help_panel=_MODEL)] = "auto",
    eval_out_dir: Annotated[Optional[Path], typer.Option(
        help="Where poses.npy goes (default: the weights folder; '.' with --model).", rich_help_panel=_OUT)] = None,
    plot: Annotated[Optional[Path], typer.Option(
        help="Draw the predicted and true trajectories seen from above into FILE.png.", rich_help_panel=_OUT)] = None,
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", help="Also write the errors and settings to this JSON file.", rich_help_panel=_OUT)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the results.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also every resolved setting, before the run.")]
    = False,
) -> None:
    """Evaluate the pose network on KITTI odometry sequence 09 or 10: the reference's evaluate_pose.py."""
    from md2.cli.common import print_settings, status_console
    from md2.core.evaluation.pose_job import (PoseEvalSettings, check_pose_settings, fetch_pose_model,
                                              run_pose_evaluation)
    from md2.core.evaluation.report import progress_stages, write_json

    console = status_console(quiet, verbose)
    if model is not None and load_weights_folder is not None:
        raise UsageError("give --load-weights-folder or --model, not both")
    settings = PoseEvalSettings(
        load_weights_folder=load_weights_folder, eval_split=eval_split, data_path=data_path, splits_dir=splits_dir,
        height=height, width=width, png=png, num_layers=num_layers, batch_size=batch_size,
        num_workers=num_workers if num_workers is not None else min(12, os.cpu_count() or 1), device=device,
        eval_out_dir=eval_out_dir, plot=plot)
    if model is not None:
        check_pose_settings(replace(settings, load_weights_folder=Path(model)))  # usage errors before a download
        settings = replace(settings, load_weights_folder=fetch_pose_model(model, progress=not quiet),
                           eval_out_dir=eval_out_dir if eval_out_dir is not None else Path("."))  # not into the cache
    if verbose:  # resolved: the model's name and folder, the device that runs it
        from md2.core.inference import resolve_device

        print_settings({"model": model, **settings.as_dict(), "device": str(resolve_device(device))}, console)
    with progress_stages(console) as progress:
        result = run_pose_evaluation(settings, progress)
    _print_results(result, console)
    if json_path is not None:
        written = write_json(json_path, NAME, _json_results(result, model), settings.as_dict())
        console.print(f"results written to {escape(str(written))}")


def _print_results(result, console: Console) -> None:
    """The reference's trajectory line and a table of every number on stdout; file locations on stderr."""
    from md2.core.evaluation.report import key_value_table

    scores = result.scores
    trajectory = scores.trajectory
    out = Console(highlight=False)
    out.print(f"\n   Trajectory error: {scores.snippet_mean:0.3f}, std: {scores.snippet_std:0.3f}\n", markup=False)
    rows = [
        ("snippet ATE (5 frames), mean ± std", f"{scores.snippet_mean:.4f} ± {scores.snippet_std:.4f} m"),
        ("full trajectory ATE RMSE (Sim(3) aligned)", f"{trajectory['ate_rmse']:.3f} m"),
        ("relative translation error per frame", f"{trajectory['rel_translation']:.2f} % of the step"),
        ("relative rotation error per frame", f"{trajectory['rel_rotation']:.4f}°"),
        ("alignment scale", f"{trajectory['scale']:.4f}"),
    ]
    title = f"{result.settings.eval_split} · {len(scores.snippet_errors)} frame pairs"
    out.print(key_value_table(rows, title=title))
    console.print(f"-> Predicted poses saved to {escape(str(result.poses_path))}")
    if result.plot_path is not None:
        console.print(f"-> Trajectory plot written to {escape(str(result.plot_path))}")


def _json_results(result, model: str | None) -> dict:
    scores = result.scores
    return {
        "model": {"name": model, **result.model},
        "num_pairs": len(scores.snippet_errors),
        "metrics": {"snippet_ate_mean": scores.snippet_mean, "snippet_ate_std": scores.snippet_std,
                    **scores.trajectory},
        "poses": result.poses_path,
        "plot": result.plot_path,
    }
