"""``md2 export``: Monodepth2's depth (and pose) networks as ONNX or TorchScript files, verified by their runtimes.

``graphs`` (the exported modules and their named inputs and outputs), ``metadata`` (what a file says about itself),
``onnx_file`` and ``torchscript_file`` (the writers), ``verify`` (the runtime against PyTorch), ``job`` (the
command's work). Running an exported file is md2.core.exported.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"ExportedFile": "job", "ExportSettings": "job", "check_export_settings": "job", "run_export": "job",
            "ExportMeta": "metadata", "TensorSpec": "metadata", "DEFAULT_OPSET": "onnx_file", "OPSETS": "onnx_file",
            "TOLERANCES": "verify"}
"""Name -> its module: imported on first use, so reading an exported file's metadata (``md2.core.export.metadata``,
no torch) does not import the exporters (torch)."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"md2.core.export.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'md2.core.export' has no attribute {name!r}")
