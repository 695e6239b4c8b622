"""Export a model as ONNX or TorchScript for deployment, checked by onnxruntime or torch.jit against PyTorch."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from md2.cli.options import finite

NAME = "export"
EPILOG = (
    "Examples:  md2 export --model mono+stereo_640x192 --output depth.onnx  |  "
    "md2 export --weights ~/tmp/mono_model/models/weights_19 --format torchscript --output depth.pt --with-pose  |  "
    "md2 export --model mono_640x192 --output depth.onnx --opset 13 --dynamic-batch --precision fp16.  "
    "The file takes RGB in [0, 1] at the model's fixed height x width (NCHW float32, resized with LANCZOS) and "
    "carries that, min/max depth, use_stereo and its outputs' meanings as metadata. It is run by its runtime "
    "before it is kept: outputs must match PyTorch within 1e-4 (fp32), 1e-2 (fp16), 5e-2 (bf16). "
    "md2 predict --weights FILE runs it. ONNX needs: pip install \"md2[export]\"."
)

_MODEL = "model"
_FILE = "file"


def command(
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write: .onnx, or .pt / .ts for "
                                         "TorchScript.", rich_help_panel=_FILE)],
    model: Annotated[Optional[str], typer.Option(help="A pretrained model's name (see md2 predict --help).",
                                                 rich_help_panel=_MODEL)] = None,
    weights: Annotated[Optional[Path], typer.Option(
        "--weights", "--load-weights-folder", help="A weights folder instead of --model.",
        rich_help_panel=_MODEL)] = None,
    format_: Annotated[Optional[str], typer.Option(
        "--format", help="onnx or torchscript (default: from the suffix of --output).",
        rich_help_panel=_FILE)] = None,
    with_pose: Annotated[bool, typer.Option(
        "--with-pose", help="Also the pose network (two frames -> axis-angle, translation, 4x4 transform), into "
        "NAME_pose.SUFFIX beside --output.", rich_help_panel=_MODEL)] = False,
    opset: Annotated[Optional[int], typer.Option(
        help="ONNX opset, 11 to 25 (default 18).", rich_help_panel=_FILE)] = None,
    dynamic_batch: Annotated[bool, typer.Option(
        "--dynamic-batch", help="Any batch size (verified with 1 and 3); otherwise one image per call.",
        rich_help_panel=_FILE)] = False,
    precision: Annotated[str, typer.Option(
        help="fp32, fp16 or bf16 weights and arithmetic (inputs and outputs stay float32).",
        rich_help_panel=_FILE)] = "fp32",
    disp_only: Annotated[bool, typer.Option(
        "--disp-only", help="Only the disparity output, not also the scaled disparity and depth.",
        rich_help_panel=_FILE)] = False,
    min_depth: Annotated[float, typer.Option(
        callback=finite, help="Depth of disparity 1, baked into the depth outputs.", rich_help_panel=_MODEL)] = 0.1,
    max_depth: Annotated[float, typer.Option(
        callback=finite, help="Depth of disparity 0, baked into the depth outputs.", rich_help_panel=_MODEL)] = 100.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also every resolved setting and each file's "
                                          "inputs and outputs.")] = False,
) -> None:
    """Export a model as ONNX or TorchScript for deployment, checked by onnxruntime or torch.jit against PyTorch."""
    from dataclasses import asdict

    from md2.cli.common import print_settings, status_console
    from md2.core.export import ExportSettings, check_export_settings, run_export

    console = status_console(quiet, verbose)
    settings = ExportSettings(output=output, format=format_, model=model, weights=weights, with_pose=with_pose,
                              opset=opset, dynamic_batch=dynamic_batch, precision=precision, disp_only=disp_only,
                              min_depth=min_depth, max_depth=max_depth)
    kind = check_export_settings(settings)
    if verbose:  # the resolved settings: the format the suffix chose, the opset used
        from md2.core.export.onnx_file import DEFAULT_OPSET

        resolved = {"format": kind, "opset": (settings.opset or DEFAULT_OPSET) if kind == "onnx" else None}
        print_settings({**asdict(settings), **resolved}, console)
    spinner = console.status("loading the model") if console.is_terminal and not quiet else nullcontext()
    with spinner as status:
        def stage(name: str, total: int):
            if status is not None:
                status.update(f"{name} network")
            return lambda done=1: None

        files = run_export(settings, stage, download_progress=not quiet)
    for exported in files:
        _report(exported, console, verbose)


def _report(exported, console, verbose: bool) -> None:
    """One line per file: what was written and what its runtime measured; with --verbose its inputs and outputs."""
    from md2.core.export.verify import short_float

    meta, check = exported.meta, exported.verification
    kind = f"ONNX opset {meta.opset}" if meta.format == "onnx" else "TorchScript"
    batch = "any batch" if meta.batch is None else f"batch {meta.batch}"
    sizes = " and ".join(str(size) for size in check.batch_sizes)
    sizes = f"batch sizes {sizes}" if len(check.batch_sizes) > 1 else f"batch size {sizes}"
    allowed = f"allowed {short_float(check.tolerance)} in {meta.precision}"
    console.print(f"{meta.network} network -> {escape(str(exported.path))} ({exported.size / 1e6:.1f} MB, {kind}, "
                  f"{meta.precision}, {meta.height}x{meta.width} (height x width), {batch}): {check.runtime} matches "
                  f"PyTorch within {check.difference:.1e} ({allowed}; {sizes})")
    if verbose:
        for role, specs in (("input", meta.inputs), ("output", meta.outputs)):
            for spec in specs:
                shape = "x".join(str(n) for n in spec.shape)
                console.print(f"  {role} {spec.name} ({shape}): {escape(spec.meaning)}")

