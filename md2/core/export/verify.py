"""Checking an exported file with its real runtime against md2's PyTorch networks.

The file is loaded as a user would load it (onnxruntime for ONNX, torch.jit.load for TorchScript, on the CPU) and
run on deterministic street-like images; every output is compared with the same network in PyTorch at fp32. The
difference of one value is ``|exported - pytorch| / max(1, |pytorch|)``: absolute for disparities, poses and
transforms (all about [-1, 1]), relative for scaled disparities up to 1 / min_depth. Depth is compared through its
inverse, the scaled disparity it was computed from: 1 / x would magnify a rounding of a far pixel's disparity up to
max_depth / min_depth (1000) times, and no deployment reads depth more precisely than the disparity it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from md2.core.export.graphs import probe_images
from md2.core.export.metadata import ExportMeta
from md2.errors import CheckpointError, ExportError, NotFiniteOutputs

TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}
"""Largest difference allowed per precision. fp32: 1e-4 (measured: 2e-7 with onnxruntime, 0 with torch.jit). fp16
(11-bit significand) and bf16 (8-bit) round every layer's output: measured on md2's ResNet-18 networks at 64 x 192
against fp32 PyTorch, fp16 differs by 3e-5 (onnxruntime) and 3e-4 (torch.jit), bf16 by 3e-3 (torch.jit); the bounds
leave a margin for trained weights and larger inputs while still catching a broken graph (outputs off by 0.1 or
more)."""
COMPARED_AS = {"depth": torch.reciprocal}
"""Outputs compared through a function of themselves (see the module docstring)."""


@dataclass(frozen=True)
class Verification:
    """What the runtime gave: the largest difference over all outputs and batch sizes, and where it was."""

    runtime: str
    difference: float
    worst_output: str
    tolerance: float
    batch_sizes: tuple[int, ...]


def output_difference(name: str, actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max(1, |expected|) over all values of output ``name`` (depth: of its inverse)."""
    view = COMPARED_AS.get(name, lambda values: values)
    expected, actual = (view(values.detach().double().cpu()) for values in (expected, actual))
    error = (actual - expected).abs() / expected.abs().clamp(min=1)
    return float(error.max()) if error.numel() else 0.0


def verify_export(path: Path, reference: nn.Module, meta: ExportMeta, batch_sizes: tuple[int, ...],
                  shown_path: Path | None = None) -> Verification:
    """Run the file at ``path`` by its runtime and compare it with ``reference`` (the fp32 graph in PyTorch).

    ``shown_path`` is the name errors give the file (the final name of a file still written under a temporary one).
    Raises ExportError when the runtime cannot load or run the file, when its metadata or output shapes are not
    what md2 wrote, or when an output differs by more than :data:`TOLERANCES` of ``meta.precision``.
    """
    network = _load_back(path, meta, str(shown_path or path))
    tolerance = TOLERANCES[meta.precision]
    worst, where = 0.0, meta.output_names[0]
    for batch in batch_sizes:
        inputs = probe_images(len(meta.inputs), batch, meta.height, meta.width, seed=batch)
        with torch.inference_mode():
            expected = reference(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        for name, wanted in zip(meta.output_names, expected):
            if not bool(torch.isfinite(wanted).all()):
                raise NotFiniteOutputs(f"the model's own {name} output in PyTorch is not finite (NaN or infinite) "
                                       "on md2's probe images: are the weights corrupt? no file was written")
        for name, actual, wanted in zip(meta.output_names, network(*inputs), expected):
            if tuple(actual.shape) != tuple(wanted.shape):
                raise ExportError(f"{network.runtime} gives {name} of shape {tuple(actual.shape)} for a batch of "
                                  f"{batch}, PyTorch {tuple(wanted.shape)}")
            difference = output_difference(name, actual, wanted)
            if difference > worst or difference != difference:  # NaN is the worst
                worst, where = difference, name
    if not worst <= tolerance:
        raise ExportError(f"{network.runtime} gives {meta.network} outputs that differ from PyTorch's by {worst:.2e} "
                          f"({where}), more than the {short_float(tolerance)} allowed in {meta.precision}: no file "
                          "was written")
    return Verification(network.runtime, worst, where, tolerance, tuple(batch_sizes))


def _load_back(path: Path, meta: ExportMeta, shown: str):
    """The file opened by its runtime on the CPU, its metadata checked; ExportError naming ``shown`` otherwise."""
    from md2.core.exported import open_exported

    try:
        network = open_exported(path, "cpu")
    except CheckpointError as error:
        hint = ""
        if meta.precision == "bf16" and meta.format == "onnx":
            hint = "; onnxruntime has no bf16 kernels for these operators: use --format torchscript or --precision fp16"
        raise ExportError(f"{str(error).replace(str(path), shown)}{hint}; no file was written") from error
    if network.meta != meta:
        raise ExportError(f"{shown}: the metadata read back differs from the metadata written; no file was written")
    return network


def short_float(value: float) -> str:
    """A tolerance as people write it: 1e-4 rather than 0.0001 or 1e-04."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"
