"""Whether a network call is being recorded into a graph rather than run."""

from __future__ import annotations

import sys

import torch


def capturing_a_graph() -> bool:
    """True while torch.jit traces or scripts, torch.compile / torch.export trace, or the ONNX exporter runs:
    the networks then take their plain path, whose graph is the reference's operations and nothing else."""
    onnx = sys.modules.get("torch.onnx")  # not imported just to ask: importing it costs start-up
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or (onnx is not None and onnx.is_in_onnx_export()))
