"""Writing ONNX files: torch's exporters by opset, the opset checked in the written file, md2's metadata added.

Opsets 18 to 25 are written by torch's torch.export-based exporter (``torch.onnx.export(..., dynamo=True)``, the
default since torch 2.9, with onnxscript), whose own range starts at 18 and whose onnxscript version converter goes
up to 25; asked for less than 18 it silently writes 18, so md2 reads the opset back from the file. Opsets 11 to 17,
which older runtimes (TensorRT 8, OpenCV's dnn, NPU toolkits) still need, are written by torch's TorchScript-based
exporter (``dynamo=False``, deprecated by torch but still shipped): below 11 it cannot write the pose network's
indexed assignment, nor Resize with PyTorch's nearest-neighbour rounding. Every opset of the range was exported and
run by onnxruntime with outputs within 1e-7 of PyTorch (torch 2.14, onnxscript 0.7, onnx 1.23, onnxruntime 1.32).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from md2.errors import ExportError, MD2Error, UsageError

OPSETS = range(11, 26)
"""The ONNX opsets md2 exports (see the module docstring)."""
DEFAULT_OPSET = 18
TORCH_EXPORT_MIN_OPSET = 18
"""From this opset on, the torch.export-based exporter; below it, the TorchScript-based one."""


def check_opset(opset: int) -> None:
    if opset not in OPSETS:
        raise UsageError(f"--opset {opset} is not supported: md2 exports ONNX opsets {OPSETS.start} to "
                         f"{OPSETS.stop - 1}")


def require_onnx_packages(opset: int) -> None:
    """onnx (and onnxscript for opset 18 and later) importable, or one line saying how to install them."""
    from md2.core.exported import INSTALL_HINT, import_onnxruntime

    needed = ["onnx"] + (["onnxscript"] if opset >= TORCH_EXPORT_MIN_OPSET else [])
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            raise MD2Error(f"exporting to ONNX needs {' and '.join(needed)} and onnxruntime, and {name} is not "
                           f"installed: {INSTALL_HINT}") from None
    import_onnxruntime()


def write_onnx(graph: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, *, input_names: list[str],
               output_names: list[str], opset: int, dynamic_batch: bool, metadata: dict[str, str]) -> None:
    """Export ``graph`` called on ``inputs`` to ``path`` (one file, weights inside) with ``metadata``.

    ``dynamic_batch``: the first dimension of every input and output is free; otherwise it is ``inputs``' batch.
    Raises ExportError when the exporter fails or writes another opset than ``opset``.
    """
    import onnx

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation, constant-folding notes
            if opset >= TORCH_EXPORT_MIN_OPSET:
                _torch_export(graph, inputs, path, input_names, output_names, opset, dynamic_batch)
            else:
                axes = {name: {0: "batch"} for name in input_names + output_names} if dynamic_batch else None
                torch.onnx.export(graph, inputs, str(path), dynamo=False, opset_version=opset,
                                  input_names=input_names, output_names=output_names, dynamic_axes=axes)
    except Exception as error:  # noqa: BLE001 -- an exporter's failure is the user's one line (--debug: all)
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        raise ExportError(f"torch.onnx could not export at opset {opset} ({reason}); try another --opset "
                          f"({OPSETS.start} to {OPSETS.stop - 1})") from error
    model = onnx.load(str(path))
    written = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise ExportError(f"torch.onnx wrote opset {written} instead of {opset} (its onnxscript "
                          "cannot convert to that opset): upgrade onnxscript, or choose another --opset")
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def _torch_export(graph: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                  output_names: list[str], opset: int, dynamic_batch: bool) -> None:
    shapes = None
    if dynamic_batch:
        # torch.export specialises a dimension of size 1 to a constant: trace twice the batch instead.
        inputs = tuple(torch.cat([tensor, tensor]) for tensor in inputs)
        batch = torch.export.Dim("batch")
        shapes = tuple({0: batch} for _ in inputs)
    torch.onnx.export(graph, inputs, str(path), dynamo=True, opset_version=opset, external_data=False,
                      verbose=False, input_names=input_names, output_names=output_names, dynamic_shapes=shapes)
