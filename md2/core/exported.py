"""Running models written by ``md2 export``: ONNX files through onnxruntime, TorchScript files through torch.jit.

:func:`open_exported` reads a file and its md2 metadata into a network called with tensors; :func:`load_predictor`
gives ``md2 predict`` and ``md2.load_model`` a depth predictor for a weights folder or an exported file alike.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch

from md2.core.export.metadata import TORCHSCRIPT_META_FILE, ExportMeta
from md2.core.geometry import disp_to_depth
from md2.core.inference import DepthPredictor, resolve_device
from md2.errors import CheckpointError, MD2Error, UsageError

EXPORTED_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}
"""File suffix -> format of an exported model."""
INSTALL_HINT = 'pip install "md2[export]"'


def import_onnxruntime():
    """The onnxruntime module, or one clear line saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise MD2Error(f"running an ONNX model needs onnxruntime, which is not installed: {INSTALL_HINT}") from None
    return onnxruntime


def _reason(error: BaseException) -> str:
    """An exception as one short line, without onnxruntime's code prefix and the path it repeats."""
    text = " ".join(str(error).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (Load model from .* failed:)?(This is an invalid model. )?",
                  "", text)
    return (text or type(error).__name__)[:160]


class OnnxNetwork:
    """An exported ONNX file in an onnxruntime session: ``network(*inputs)`` -> its outputs as tensors.

    ``device`` "auto" runs on CUDA when both torch and onnxruntime have it (onnxruntime-gpu), else on the CPU.
    """

    def __init__(self, path: Path, device: str = "auto") -> None:
        ort = import_onnxruntime()
        providers, self.device = _onnx_providers(ort, device)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors are raised as exceptions; no warnings on stderr
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as error:  # noqa: BLE001 -- onnxruntime raises its own classes for bad files
            unreadable = type(error).__name__ in ("InvalidProtobuf", "InvalidArgument", "NoSuchFile")
            what = ("not an ONNX file, or corrupt or truncated" if unreadable
                    else f"onnxruntime {ort.__version__} cannot run it")
            raise CheckpointError(f"cannot read ONNX model {path}: {what} ({_reason(error)})") from None
        self.meta = ExportMeta.from_strings(dict(self.session.get_modelmeta().custom_metadata_map), path)
        self.path, self.runtime = path, f"onnxruntime {ort.__version__}"

    def __call__(self, *inputs: torch.Tensor, outputs: list[str] | None = None) -> list[torch.Tensor]:
        """Float32 tensors in the order of ``meta.inputs`` -> the ``outputs`` named (default all), on the CPU."""
        feed = {name: tensor.detach().to("cpu", torch.float32).contiguous().numpy()
                for name, tensor in zip(self.meta.input_names, inputs)}
        try:
            arrays = self.session.run(outputs or self.meta.output_names, feed)
        except Exception as error:  # noqa: BLE001 -- e.g. a batch size the file was not exported for
            raise MD2Error(f"onnxruntime could not run {self.path}: {_reason(error)}") from None
        return [torch.from_numpy(array) for array in arrays]


def _onnx_providers(ort, device: str) -> tuple[list, torch.device]:
    target = resolve_device(device)
    if target.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return [("CUDAExecutionProvider", {"device_id": target.index or 0}), "CPUExecutionProvider"], target
        if device != "auto":
            raise UsageError(f"--device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu "
                             "instead of onnxruntime), or use --device cpu")
    return ["CPUExecutionProvider"], torch.device("cpu")


class TorchScriptNetwork:
    """An exported TorchScript file loaded by ``torch.jit.load`` onto ``device``: ``network(*inputs)`` -> outputs.

    TorchScript files hold code that torch runs: load only files you trust (md2's own, or your team's).
    """

    def __init__(self, path: Path, device: str = "auto") -> None:
        self.device = resolve_device(device)
        extra = {TORCHSCRIPT_META_FILE: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.10 deprecates TorchScript itself
                self.module = torch.jit.load(str(path), map_location=self.device, _extra_files=extra).eval()
        except Exception as error:  # noqa: BLE001 -- arbitrary bytes fail in many ways (zip, pickle, ...)
            raise CheckpointError(f"cannot read TorchScript model {path}: not a TorchScript file, or corrupt or "
                                  f"truncated ({_reason(error)})") from None
        try:
            strings = json.loads(extra[TORCHSCRIPT_META_FILE] or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CheckpointError(f"{path}: its md2 metadata ({TORCHSCRIPT_META_FILE}) is not JSON") from None
        self.meta = ExportMeta.from_strings(strings if isinstance(strings, dict) else {}, path)
        self.path, self.runtime = path, f"torch.jit (torch {torch.__version__})"

    @torch.inference_mode()
    def __call__(self, *inputs: torch.Tensor, outputs: list[str] | None = None) -> list[torch.Tensor]:
        """Float32 tensors in the order of ``meta.inputs`` -> the ``outputs`` named (default all), on ``device``."""
        result = self.module(*[tensor.to(self.device, torch.float32) for tensor in inputs])
        named = dict(zip(self.meta.output_names, result if isinstance(result, (tuple, list)) else [result]))
        return [named[name].float() for name in outputs or self.meta.output_names]


def open_exported(path: Path | str, device: str = "auto") -> OnnxNetwork | TorchScriptNetwork:
    """An exported file (``.onnx``; ``.pt`` or ``.ts`` for TorchScript), ready to run on ``device``."""
    path = Path(path).expanduser()
    kind = EXPORTED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"{path}: an exported model ends in {', '.join(EXPORTED_SUFFIXES)}")
    if not path.is_file():
        raise CheckpointError(f"exported model not found: {path}")
    return OnnxNetwork(path, device) if kind == "onnx" else TorchScriptNetwork(path, device)


class ExportedPredictor:
    """An exported depth network with :class:`md2.core.inference.DepthPredictor`'s interface.

    ``height`` x ``width`` is the file's fixed input size; a file exported without ``--dynamic-batch`` takes one
    image at a time, so a batch is run image by image. ``precision`` is the one the file computes in.
    """

    def __init__(self, network: OnnxNetwork | TorchScriptNetwork) -> None:
        meta = network.meta
        if meta.network != "depth":
            raise CheckpointError(f"{network.path} is md2's exported {meta.network} network; depth prediction "
                                  "needs the depth network's file")
        self.network, self.meta, self.device = network, meta, network.device
        self.height, self.width, self.use_stereo = meta.height, meta.width, meta.use_stereo
        self.min_depth, self.max_depth, self.precision = meta.min_depth, meta.max_depth, meta.precision
        self.channels_last = False  # the runtime takes plain NCHW arrays (md2.core.predict asks)

    def disparity(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, height, width) RGB in [0, 1] -> (B, 1, height, width) sigmoid disparity, float32 on ``device``."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, self.height, self.width):
            raise UsageError(f"{self.network.path} takes (B, 3, {self.height}, {self.width}) images (height x width "
                             f"fixed at export), got {tuple(images.shape)}")
        chunks = images.split(1) if self.meta.batch is not None else [images]
        disp = torch.cat([self.network(chunk, outputs=["disp"])[0] for chunk in chunks])
        return disp.to(self.device).float().contiguous()

    def scaled_disparity(self, disp: torch.Tensor) -> torch.Tensor:
        """disp_to_depth's scaled disparity (1 / depth) for the file's ``min_depth``..``max_depth``."""
        return disp_to_depth(disp, self.min_depth, self.max_depth)[0]

    def depth(self, disp: torch.Tensor) -> torch.Tensor:
        """Depth in the network's units (x 5.4 gives metres for stereo-trained models)."""
        return disp_to_depth(disp, self.min_depth, self.max_depth)[1]


def load_predictor(weights: Path | str, device: str = "auto",
                   precision: str = "auto") -> DepthPredictor | ExportedPredictor:
    """A depth predictor for a weights folder (:class:`DepthPredictor`) or an exported ``.onnx`` / ``.pt`` / ``.ts``
    file (:class:`ExportedPredictor`). An exported file computes in the precision it was exported in: ``precision``
    must then be "auto" or that one."""
    path = Path(weights).expanduser()
    if path.is_dir() or (path.suffix.lower() not in EXPORTED_SUFFIXES and not path.is_file()):
        return DepthPredictor.from_folder(path, device=device, precision=precision)
    if path.suffix.lower() not in EXPORTED_SUFFIXES:
        raise CheckpointError(f"{path} is a file: give a weights folder (encoder.pth, depth.pth) or a model "
                              f"written by md2 export ({', '.join(EXPORTED_SUFFIXES)})")
    predictor = ExportedPredictor(open_exported(path, device))
    if precision not in ("auto", predictor.precision):
        raise UsageError(f"{path} computes in {predictor.precision}, fixed when it was exported: leave out "
                         f"--precision, or export it again with --precision {precision}")
    return predictor
