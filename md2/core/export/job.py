"""The ``md2 export`` job: a weights folder's networks written as ONNX or TorchScript files, each verified.

Every file is written under a temporary name beside its final one, loaded back by its real runtime and compared
with PyTorch (md2.core.export.verify); only when all of them pass are they renamed into place, so a failed or
interrupted export leaves no file, and never one that differs from md2's networks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from md2.core.export.graphs import DTYPES, DepthGraph, PoseGraph, depth_specs, pose_specs, probe_images
from md2.core.export.metadata import ExportMeta
from md2.core.export.onnx_file import DEFAULT_OPSET, check_opset, require_onnx_packages, write_onnx
from md2.core.export.torchscript_file import write_torchscript
from md2.core.export.verify import Verification, verify_export
from md2.errors import DataError, UsageError
from md2.files import atomic_path

FORMAT_SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".ts")}
"""Export format -> the file suffixes it is written (and recognised by md2 predict) under."""
Progress = Callable[[str, int], Callable[[int], None]]
"""``progress(stage, total)`` -> ``advance(n)``, as the evaluation jobs report their stages."""


@dataclass(frozen=True)
class ExportSettings:
    """Every option of an export. Exactly one of ``model`` (a pretrained model's name) and ``weights``."""

    output: Path
    format: str | None = None  # None: from the suffix of ``output``
    model: str | None = None
    weights: Path | None = None
    with_pose: bool = False
    opset: int | None = None  # ONNX only; None: DEFAULT_OPSET
    dynamic_batch: bool = False
    precision: str = "fp32"
    disp_only: bool = False
    min_depth: float = 0.1
    max_depth: float = 100.0

    @property
    def pose_output(self) -> Path:
        """Where ``--with-pose`` writes the pose network: beside the depth file, NAME_pose.SUFFIX."""
        output = Path(self.output).expanduser()
        return output.with_name(f"{output.stem}_pose{output.suffix}")


@dataclass(frozen=True)
class ExportedFile:
    """One file written: its network, metadata, size in bytes and what its runtime measured."""

    path: Path
    meta: ExportMeta
    size: int
    verification: Verification


@dataclass(frozen=True)
class _Plan:
    """One file to write: the graph to export, its fp32 counterpart to compare with, its metadata and inputs."""

    path: Path
    graph: nn.Module
    reference: nn.Module
    meta: ExportMeta
    inputs: tuple[torch.Tensor, ...]


def check_export_settings(settings: ExportSettings) -> str:
    """Usage errors found before any work (and before any download); returns the format."""
    if (settings.model is None) == (settings.weights is None):
        raise UsageError("give --model NAME or --weights DIR, not both" if settings.model is not None
                         else "give the model to export: --model NAME (a pretrained model) or --weights DIR")
    kind = _format(settings)
    if settings.precision not in DTYPES:
        raise UsageError(f"--precision must be one of {', '.join(DTYPES)}, got {settings.precision!r}")
    if kind == "onnx" and settings.precision == "bf16":  # found out only after the export otherwise
        raise UsageError("--precision bf16 cannot be checked in ONNX: onnxruntime has no bf16 kernels for these "
                         "operators; use --format torchscript (.pt) or --precision fp16")
    if kind == "onnx":
        check_opset(settings.opset or DEFAULT_OPSET)
    elif settings.opset is not None:
        raise UsageError("--opset applies to --format onnx only")
    if settings.with_pose and settings.model is not None:
        from md2.core.zoo import MODELS

        if settings.model in MODELS and not MODELS[settings.model].has_pose_network:
            raise UsageError(f"model {settings.model} has no pose network (trained on stereo pairs only): leave out "
                             "--with-pose, or export a mono or mono+stereo model")
    if not 0 < settings.min_depth < settings.max_depth:
        raise UsageError(f"--min-depth and --max-depth must satisfy 0 < min < max, got {settings.min_depth:g} and "
                         f"{settings.max_depth:g}")
    return kind


def _format(settings: ExportSettings) -> str:
    """--format, or the one of --output's suffix; the suffix must be the format's (md2 recognises files by it)."""
    output = Path(settings.output)
    suffix = output.suffix.lower()
    kind = settings.format or next((name for name, ends in FORMAT_SUFFIXES.items() if suffix in ends), None)
    if kind not in FORMAT_SUFFIXES:
        raise UsageError(f"--format must be onnx or torchscript, got {kind!r}" if settings.format else
                         f"--output {output}: give --format, or a file ending in .onnx, .pt or .ts")
    if suffix not in FORMAT_SUFFIXES[kind]:
        raise UsageError(f"--output {output}: a {kind} file must end in {' or '.join(FORMAT_SUFFIXES[kind])} (md2 "
                         "predict and md2.load_model recognise it by its suffix)")
    return kind


def run_export(settings: ExportSettings, progress: Progress | None = None,
               download_progress: bool = True) -> list[ExportedFile]:
    """Export, verify and write the depth network (and with ``with_pose`` the pose network); see the module.

    ``--model`` is downloaded into md2's cache on first use (with a progress bar unless ``download_progress`` is
    False). Raises UsageError for bad settings, CheckpointError for weights that do not load, ExportError when an
    exporter fails or a runtime does not reproduce PyTorch, DataError when the file cannot be written.
    """
    kind = check_export_settings(settings)
    opset = (settings.opset or DEFAULT_OPSET) if kind == "onnx" else None
    if kind == "onnx":
        require_onnx_packages(opset)
    _make_parent(Path(settings.output).expanduser())
    folder, label = _weights_folder(settings, download_progress)
    plans = _plans(settings, kind, opset, folder, label)
    report = progress or (lambda stage, total: lambda done=1: None)
    verified = []
    with ExitStack() as stack:
        # Temporary names first: an unwritable folder fails now, not after the export.
        temporaries = [stack.enter_context(atomic_path(plan.path)) for plan in plans]
        for plan, temporary in zip(plans, temporaries):
            verified.append(_export_one(plan, temporary, report))
        sizes = [temporary.stat().st_size for temporary in temporaries]
    return [ExportedFile(plan.path, plan.meta, size, verification)
            for plan, size, verification in zip(plans, sizes, verified)]


def _export_one(plan: _Plan, temporary: Path, report: Progress) -> Verification:
    """Write ``plan``'s file under its temporary name and check it with its runtime (batches 1 and 3 when dynamic)."""
    done = report(f"export {plan.meta.network}", 1)
    metadata = plan.meta.to_strings()
    if plan.meta.format == "onnx":
        write_onnx(plan.graph, plan.inputs, temporary, input_names=plan.meta.input_names,
                   output_names=plan.meta.output_names, opset=plan.meta.opset,
                   dynamic_batch=plan.meta.batch is None, metadata=metadata)
    else:
        write_torchscript(plan.graph, plan.inputs, temporary, metadata)
    done(1)
    done = report(f"verify {plan.meta.network}", 1)
    batches = (1, 3) if plan.meta.batch is None else (plan.meta.batch,)
    verification = verify_export(temporary, plan.reference, plan.meta, batches, shown_path=plan.path)
    done(1)
    return verification


def _weights_folder(settings: ExportSettings, download_progress: bool) -> tuple[Path, str]:
    if settings.weights is not None:
        folder = Path(settings.weights).expanduser()
        return folder, folder.name
    from md2.core.zoo import fetch_model

    return fetch_model(settings.model, progress=download_progress), settings.model


def _plans(settings: ExportSettings, kind: str, opset: int | None, folder: Path, label: str) -> list[_Plan]:
    """The depth network's plan, then the pose network's with ``with_pose``."""
    from md2.core.checkpoint import load_depth_model

    encoder, decoder, model = load_depth_model(folder, device="cpu")
    dtype, batch = DTYPES[settings.precision], None if settings.dynamic_batch else 1
    shape_batch = "batch" if batch is None else batch
    common = dict(format=kind, height=model.height, width=model.width, batch=batch, precision=settings.precision,
                  use_stereo=model.use_stereo, min_depth=settings.min_depth, max_depth=settings.max_depth,
                  model=label, opset=opset)
    inputs, outputs = depth_specs(model.height, model.width, shape_batch, settings.min_depth, settings.max_depth,
                                  settings.disp_only)
    pose_file = settings.pose_output.name if settings.with_pose else None
    depth_meta = ExportMeta(network="depth", num_layers=model.num_layers, inputs=inputs, outputs=outputs,
                            pose_file=pose_file, **common)
    graph, reference = _graphs(DepthGraph, (encoder, decoder), dtype, settings.min_depth, settings.max_depth,
                               settings.disp_only)
    plans = [_Plan(Path(settings.output).expanduser(), graph, reference, depth_meta,
                   probe_images(1, 1, model.height, model.width))]
    if settings.with_pose:
        from md2.core.checkpoint import load_pose_networks

        pose_encoder, pose_decoder, pose_layers = load_pose_networks(folder, None, torch.device("cpu"))
        inputs, outputs = pose_specs(model.height, model.width, shape_batch)
        pose_meta = ExportMeta(network="pose", num_layers=pose_layers, inputs=inputs, outputs=outputs, **common)
        graph, reference = _graphs(PoseGraph, (pose_encoder, pose_decoder), dtype)
        plans.append(_Plan(settings.pose_output, graph, reference, pose_meta,
                           probe_images(2, 1, model.height, model.width)))
    return plans


def _graphs(graph_class, networks: tuple[nn.Module, ...], dtype: torch.dtype, *args) -> tuple[nn.Module, nn.Module]:
    """(graph to export in ``dtype``, the same graph in fp32 to compare with); the networks are copied for
    ``dtype`` so the fp32 reference keeps its weights."""
    reference = graph_class(*networks, *args).eval()
    if dtype == torch.float32:
        return reference, reference
    lowered = [copy.deepcopy(network).to(dtype) for network in networks]
    return graph_class(*lowered, *args, dtype=dtype).eval(), reference


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create folder {path.parent}: {error.strerror or error}") from None
