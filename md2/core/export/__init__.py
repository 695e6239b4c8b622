"""``md2 export``: Monodepth2's depth (and pose) networks as ONNX or TorchScript files, verified by their runtimes.

``graphs`` (the exported modules and their named inputs and outputs), ``metadata`` (what a file says about itself),
``onnx_file`` and ``torchscript_file`` (the writers), ``verify`` (the runtime against PyTorch), ``job`` (the
command's work). Running an exported file is md2.core.exported.
"""

from md2.core.export.job import ExportedFile, ExportSettings, check_export_settings, run_export
from md2.core.export.metadata import ExportMeta, TensorSpec
from md2.core.export.onnx_file import DEFAULT_OPSET, OPSETS
from md2.core.export.verify import TOLERANCES

__all__ = ["DEFAULT_OPSET", "OPSETS", "TOLERANCES", "ExportMeta", "ExportSettings", "ExportedFile", "TensorSpec",
           "check_export_settings", "run_export"]
