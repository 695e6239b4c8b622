"""Writing TorchScript files: the graph traced by torch.jit.trace, md2's metadata in the archive's md2.json.

Tracing records the operations run on the example inputs; md2's networks have no data-dependent control flow and
build every constant from their inputs (md2.core.geometry makes its identity matrices from the input's own ones
and zeros), so the traced file takes any batch size and runs on the device it is loaded onto.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from md2.core.export.metadata import TORCHSCRIPT_META_FILE
from md2.errors import ExportError


def write_torchscript(graph: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path,
                      metadata: dict[str, str]) -> None:
    """Trace ``graph`` on ``inputs`` and save it to ``path`` with ``metadata`` as the extra file md2.json."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch >= 2.10 deprecates TorchScript itself (FutureWarning)
        try:
            # check_trace would trace a second time to compare: md2 verifies the saved file instead.
            traced = torch.jit.trace(graph, inputs, check_trace=False)
        except RuntimeError as error:
            raise ExportError(f"torch.jit could not trace the network ({_one_line(error)})") from error
        try:
            torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_META_FILE: json.dumps(metadata)})
        except RuntimeError as error:  # torch's zip writer reports a full disk or a failed write so
            raise ExportError(f"cannot write {path}: {_one_line(error)}") from error


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]
