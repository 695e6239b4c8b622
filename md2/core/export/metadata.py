"""What an exported model says about itself: md2's metadata, stored as strings in the file.

ONNX files hold it in ``metadata_props`` (one key each, shown by Netron and read by
``onnxruntime.InferenceSession(...).get_modelmeta().custom_metadata_map``); TorchScript files hold the same keys
as one JSON object in the archive's extra file ``md2.json`` (``torch.jit.load(path, _extra_files=...)``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from md2 import __version__
from md2.core.depth_arrays import STEREO_SCALE_FACTOR
from md2.errors import CheckpointError

SCHEMA = "1"
"""Version of this metadata layout (key ``md2_export_schema``)."""
TORCHSCRIPT_META_FILE = "md2.json"
"""The extra file of a TorchScript archive that holds the metadata."""
PREPROCESSING = ("RGB (not BGR), resized to the model's width x height with LANCZOS (Pillow's Image.LANCZOS, as "
                 "Monodepth2 was trained), divided by 255 to [0, 1], laid out NCHW as float32; no mean/std "
                 "normalisation (the network does it)")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an exported network: its name, shape (``"batch"`` where it is dynamic), meaning."""

    name: str
    shape: tuple[int | str, ...]
    meaning: str

    def as_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "meaning": self.meaning}


@dataclass(frozen=True)
class ExportMeta:
    """Everything an exported file records about its network.

    ``batch`` is the fixed batch size, or None when the file takes any (``--dynamic-batch``). ``min_depth`` and
    ``max_depth`` are the ones baked into the scaled-disparity and depth outputs; ``stereo_scale_factor`` turns
    depth into metres for models trained with stereo (``use_stereo``).
    """

    network: str
    format: str
    height: int
    width: int
    batch: int | None
    precision: str
    use_stereo: bool
    min_depth: float
    max_depth: float
    model: str
    num_layers: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int | None = None
    pose_file: str | None = None
    md2_version: str = __version__
    stereo_scale_factor: float = STEREO_SCALE_FACTOR
    preprocessing: str = field(default=PREPROCESSING)

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    def to_strings(self) -> dict[str, str]:
        """The metadata as string keys and values (ONNX metadata_props; md2.json of a TorchScript file)."""
        strings = {
            "md2_export_schema": SCHEMA, "md2_version": self.md2_version, "network": self.network,
            "format": self.format, "model": self.model, "num_layers": str(self.num_layers),
            "height": str(self.height), "width": str(self.width),
            "batch": "dynamic" if self.batch is None else str(self.batch), "precision": self.precision,
            "use_stereo": "true" if self.use_stereo else "false", "min_depth": repr(self.min_depth),
            "max_depth": repr(self.max_depth), "stereo_scale_factor": repr(self.stereo_scale_factor),
            "preprocessing": self.preprocessing,
            "inputs": json.dumps([spec.as_dict() for spec in self.inputs]),
            "outputs": json.dumps([spec.as_dict() for spec in self.outputs]),
        }
        if self.opset is not None:
            strings["opset"] = str(self.opset)
        if self.pose_file is not None:
            strings["pose_file"] = self.pose_file
        return strings

    @classmethod
    def from_strings(cls, strings: dict[str, str], path: Path) -> "ExportMeta":
        """Parse what :meth:`to_strings` wrote; CheckpointError naming ``path`` and the key when it cannot."""
        if "md2_export_schema" not in strings:
            raise CheckpointError(f"{path} holds no md2 metadata: export the model with `md2 export`")
        if strings["md2_export_schema"] != SCHEMA:
            raise CheckpointError(f"{path} was written by md2 {strings.get('md2_version', '?')} in metadata schema "
                                  f"{strings['md2_export_schema']!r}, which this md2 ({__version__}) cannot read")
        key = ""
        try:
            key = "batch"
            batch = None if strings[key] == "dynamic" else int(strings[key])
            values = {}
            for key, parse in (("height", int), ("width", int), ("num_layers", int), ("min_depth", float),
                               ("max_depth", float), ("stereo_scale_factor", float), ("inputs", _specs),
                               ("outputs", _specs), ("use_stereo", _boolean)):
                values[key] = parse(strings[key])
            for key in ("network", "format", "precision", "model", "md2_version", "preprocessing"):
                values[key] = strings[key]
            key = "opset"
            opset = int(strings[key]) if key in strings else None
        except (KeyError, ValueError, TypeError, json.JSONDecodeError):
            raise CheckpointError(f"{path}: its md2 metadata {key!r} is missing or malformed") from None
        return cls(batch=batch, opset=opset, pose_file=strings.get("pose_file"), **values)


def _specs(text: str) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(item["name"], tuple(item["shape"]), item["meaning"]) for item in json.loads(text))


def _boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(text)
    return text == "true"
