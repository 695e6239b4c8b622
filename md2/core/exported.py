"""Running models written by ``md2 export``: ONNX files through onnxruntime, TorchScript files through torch.jit.

:func:`open_exported` reads a file and its md2 metadata into a network called with tensors; :func:`load_predictor`
gives ``md2 predict`` and ``md2.load_model`` a depth predictor for a weights folder or an exported file alike, and a
weights folder to onnxruntime through its cached export (:mod:`md2.core.engine`). The onnxruntime path imports no
torch: arrays in, arrays out (:mod:`md2.core.depth_arrays`); torch is imported where tensors are asked for.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from md2.core import depth_arrays
from md2.core.engine import EngineUnavailable, Note, Status, cached_onnx, choose_engine, cpu_lanes, cuda_present
from md2.core.export.metadata import TORCHSCRIPT_META_FILE, ExportMeta
from md2.errors import CheckpointError, MD2Error, UsageError

if TYPE_CHECKING:
    import torch

    from md2.core.inference import DepthPredictor

EXPORTED_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}
"""File suffix -> format of an exported model."""
INSTALL_HINT = 'pip install "md2[export]"'
"""How to install what ``md2 export`` needs beyond md2 (onnx, onnxscript)."""
RUNTIME_HINT = "pip install onnxruntime"
"""onnxruntime is one of md2's own dependencies: missing only where it was removed."""


def import_onnxruntime():
    """The onnxruntime module, or one clear line saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise MD2Error(f"running an ONNX model needs onnxruntime, which is not installed: {RUNTIME_HINT}") from None
    return onnxruntime


def _reason(error: BaseException) -> str:
    """An exception as one short line, without onnxruntime's code prefix and the path it repeats."""
    text = " ".join(str(error).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (Load model from .* failed:)?(This is an invalid model. )?",
                  "", text)
    return (text or type(error).__name__)[:160]


class OnnxNetwork:
    """An exported ONNX file in an onnxruntime session: ``network.run(arrays)`` or ``network(*tensors)`` -> outputs.

    ``device`` "auto" runs on CUDA when onnxruntime has it (onnxruntime-gpu) and a GPU is present, else on the CPU.
    ``optimized``: where onnxruntime's optimised graph of the file is kept; a session starts from it when it is
    there (no optimising again), and writes it (under a temporary name, then renamed) when it is not.
    """

    def __init__(self, path: Path, device: str = "auto", optimized: Path | None = None,
                 threads: int | None = None) -> None:
        ort = import_onnxruntime()
        providers, self.device = _onnx_providers(ort, device)
        self.optimized = optimized if self.device == "cpu" else None
        self.threads = threads
        try:
            self.session = _session(ort, path, providers, self.optimized, threads)
        except Exception as error:  # noqa: BLE001 -- onnxruntime raises its own classes for bad files
            unreadable = type(error).__name__ in ("InvalidProtobuf", "InvalidArgument", "NoSuchFile")
            what = ("not an ONNX file, or corrupt or truncated" if unreadable
                    else f"onnxruntime {ort.__version__} cannot run it")
            raise CheckpointError(f"cannot read ONNX model {path}: {what} ({_reason(error)})") from None
        self.meta = ExportMeta.from_strings(dict(self.session.get_modelmeta().custom_metadata_map), path)
        self.path, self.runtime = path, f"onnxruntime {ort.__version__}"

    def with_threads(self, threads: int) -> OnnxNetwork:
        """The same file in a session of its own whose passes use ``threads`` CPU threads (several such passes
        run at once, :func:`md2.core.engine.cpu_lanes`); started from the optimised graph kept by this one."""
        return OnnxNetwork(self.path, self.device, self.optimized, threads)

    def run(self, arrays: list[np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        """Float32 arrays in the order of ``meta.inputs`` -> the ``outputs`` named (default all), as arrays."""
        feed = {name: np.ascontiguousarray(array, dtype=np.float32)
                for name, array in zip(self.meta.input_names, arrays)}
        try:
            return self.session.run(outputs or self.meta.output_names, feed)
        except Exception as error:  # noqa: BLE001 -- e.g. a batch size the file was not exported for
            raise MD2Error(f"onnxruntime could not run {self.path}: {_reason(error)}") from None

    def __call__(self, *inputs: torch.Tensor, outputs: list[str] | None = None) -> list[torch.Tensor]:
        """Float32 tensors in the order of ``meta.inputs`` -> the ``outputs`` named (default all), on the CPU."""
        import torch

        arrays = [tensor.detach().to("cpu", torch.float32).contiguous().numpy() for tensor in inputs]
        return [torch.from_numpy(array) for array in self.run(arrays, outputs)]


def _session(ort, path: Path, providers: list, optimized: Path | None, threads: int | None = None):
    """An InferenceSession of ``path``; from (or saving) its optimised graph ``optimized`` when given; its passes
    on ``threads`` CPU threads (default: onnxruntime's, one per physical core)."""
    options = _options(ort, threads)
    if optimized is not None and optimized.is_file():
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # optimised already
        try:
            return ort.InferenceSession(str(optimized), sess_options=options, providers=providers)
        except Exception:  # noqa: BLE001 -- a damaged or foreign optimised graph: made again from the file
            options = _options(ort, threads)
    if optimized is None:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    temporary = optimized.with_name(f".{optimized.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    options.optimized_model_filepath = str(temporary)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        os.replace(temporary, optimized)  # concurrent runs each rename a complete graph into place
    except OSError:  # a read-only cache: the session runs, its graph is not kept
        pass
    finally:
        if temporary.exists():
            temporary.unlink(missing_ok=True)
    return session


def _options(ort, threads: int | None):
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors are raised as exceptions; no warnings on stderr
    if threads:
        options.intra_op_num_threads = threads
    return options


def _onnx_providers(ort, device: str) -> tuple[list, str]:
    """(onnxruntime providers, the device they run on as "cpu" or "cuda:N"), without torch."""
    name = device.strip().lower()
    if name not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", name):
        raise UsageError(f"--device {device!r} is not a device for onnxruntime (use auto, cpu, cuda or cuda:N)")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if name.startswith("cuda") or (name == "auto" and has_cuda and cuda_present()):
        if has_cuda:
            index = int(name.split(":")[1]) if ":" in name else 0
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], f"cuda:{index}"
        raise UsageError(f"--device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu "
                         "instead of onnxruntime), or use --device cpu")
    return ["CPUExecutionProvider"], "cpu"


class TorchScriptNetwork:
    """An exported TorchScript file loaded by ``torch.jit.load`` onto ``device``: ``network(*inputs)`` -> outputs.

    TorchScript files hold code that torch runs: load only files you trust (md2's own, or your team's).
    """

    def __init__(self, path: Path, device: str = "auto") -> None:
        import torch

        from md2.core.inference import resolve_device

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

    def __call__(self, *inputs: torch.Tensor, outputs: list[str] | None = None) -> list[torch.Tensor]:
        """Float32 tensors in the order of ``meta.inputs`` -> the ``outputs`` named (default all), on ``device``."""
        import torch

        with torch.inference_mode():
            return self._run([torch.as_tensor(tensor) for tensor in inputs], outputs)

    def _run(self, inputs: list, outputs: list[str] | None) -> list:
        import torch

        result = self.module(*[tensor.to(self.device, torch.float32) for tensor in inputs])
        named = dict(zip(self.meta.output_names, result if isinstance(result, (tuple, list)) else [result]))
        return [named[name].float() for name in outputs or self.meta.output_names]


def open_exported(path: Path | str, device: str = "auto", optimized: Path | None = None,
                  threads: int | None = None) -> OnnxNetwork | TorchScriptNetwork:
    """An exported file (``.onnx``; ``.pt`` or ``.ts`` for TorchScript), ready to run on ``device``; an ONNX file's
    session from (or saving) the optimised graph ``optimized`` when given, its passes on ``threads`` CPU threads
    (:class:`OnnxNetwork`)."""
    path = Path(path).expanduser()
    kind = EXPORTED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"{path}: an exported model ends in {', '.join(EXPORTED_SUFFIXES)}")
    if not path.is_file():
        raise CheckpointError(f"exported model not found: {path}")
    return OnnxNetwork(path, device, optimized, threads) if kind == "onnx" else TorchScriptNetwork(path, device)


class ExportedPredictor:
    """An exported depth network with :class:`md2.core.inference.DepthPredictor`'s interface.

    ``height`` x ``width`` is the file's fixed input size; a file exported without ``--dynamic-batch`` takes one
    image at a time, so a batch is run image by image. ``precision`` is the one the file computes in. On
    onnxruntime (``arrays``) every method takes and gives NumPy float32 arrays with no torch involved, and tensors
    still give tensors; on torch.jit, tensors.
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
        self.arrays = isinstance(network, OnnxNetwork)
        self.engine = network.runtime

    def in_lanes(self, pictures: int) -> tuple[ExportedPredictor, int]:
        """(a predictor for ``pictures`` pictures through md2's pipeline, how many of its network passes run at
        once): on onnxruntime on the CPU with two pictures or more, a session whose passes each take their
        share of the cores (:func:`md2.core.engine.cpu_lanes`), else this predictor, one pass at a time. The
        passes compute the same numbers whatever their threads (tested)."""
        lanes, threads = cpu_lanes()
        if not self.arrays or self.device != "cpu" or pictures < 2 or lanes < 2:
            return self, 1
        if self.network.threads == threads:  # loaded for many pictures (load_predictor's ``pictures``)
            return self, lanes
        return ExportedPredictor(self.network.with_threads(threads)), lanes

    def disparity(self, images):
        """(B, 3, height, width) RGB in [0, 1] -> (B, 1, height, width) sigmoid disparity, float32 (an array for an
        array on onnxruntime, else a tensor on ``device``)."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, self.height, self.width):
            raise UsageError(f"{self.network.path} takes (B, 3, {self.height}, {self.width}) images (height x width "
                             f"fixed at export), got {tuple(images.shape)}")
        if isinstance(images, np.ndarray) and self.arrays:
            chunks = np.split(images, len(images)) if self.meta.batch is not None else [images]
            disp = [self.network.run([chunk], outputs=["disp"])[0] for chunk in chunks]
            return np.ascontiguousarray(np.concatenate(disp), dtype=np.float32)
        import torch

        chunks = torch.as_tensor(images).split(1) if self.meta.batch is not None else [torch.as_tensor(images)]
        disp = torch.cat([self.network(chunk, outputs=["disp"])[0] for chunk in chunks])
        return disp.to(self.device).float().contiguous()

    def scaled_disparity(self, disp):
        """disp_to_depth's scaled disparity (1 / depth) for the file's ``min_depth``..``max_depth``."""
        return _disp_to_depth(disp, self.min_depth, self.max_depth)[0]

    def depth(self, disp):
        """Depth in the network's units (x 5.4 gives metres for stereo-trained models)."""
        return _disp_to_depth(disp, self.min_depth, self.max_depth)[1]

    def upsample(self, disp, height: int, width: int):
        """(B, 1, h, w) -> (B, 1, height, width), bilinear as torch's ``align_corners=False``."""
        if isinstance(disp, np.ndarray):
            return depth_arrays.upsample(disp, height, width)
        from md2.core.inference import upsample

        return upsample(disp, height, width)


def _disp_to_depth(disp, min_depth: float, max_depth: float):
    if isinstance(disp, np.ndarray):
        return depth_arrays.disp_to_depth(disp, min_depth, max_depth)
    from md2.core.geometry import disp_to_depth

    return disp_to_depth(disp, min_depth, max_depth)


def load_predictor(weights: Path | str, device: str = "auto", precision: str = "auto", engine: str = "auto",
                   note: Note | None = None, status: Status | None = None,
                   pictures: int = 1) -> DepthPredictor | ExportedPredictor:
    """A depth predictor for a weights folder or an exported ``.onnx`` / ``.pt`` / ``.ts`` file.

    A weights folder runs on the ``engine`` :func:`md2.core.engine.choose_engine` picks: torch
    (:class:`DepthPredictor`), or onnxruntime through its cached export (:class:`ExportedPredictor`); ``auto``
    falls back to torch, with a ``note``, where onnxruntime cannot run it; ``status`` is shown while a first run
    exports the folder (:func:`md2.core.engine.cached_onnx`). An exported file runs on its own
    runtime and computes in the precision it was exported in: ``precision`` must then be "auto" or that one.
    ``pictures``: how many pictures it is loaded for (a video counts as many); from two up, onnxruntime on the
    CPU makes its session for the pipeline's lanes (:meth:`ExportedPredictor.in_lanes`) rather than for a lone
    photo, so a folder holds one session, not two.
    """
    path = Path(weights).expanduser()
    lanes, per_lane = cpu_lanes()
    threads = per_lane if pictures >= 2 and lanes >= 2 else None
    if path.is_dir() or (path.suffix.lower() not in EXPORTED_SUFFIXES and not path.is_file()):
        return _folder_predictor(path, device, precision, engine, note, status, threads)
    if path.suffix.lower() not in EXPORTED_SUFFIXES:
        raise CheckpointError(f"{path} is a file: give a weights folder (encoder.pth, depth.pth) or a model "
                              f"written by md2 export ({', '.join(EXPORTED_SUFFIXES)})")
    runtime = "onnxruntime" if EXPORTED_SUFFIXES[path.suffix.lower()] == "onnx" else "torch"
    if engine not in ("auto", runtime):
        raise UsageError(f"{path} runs on {runtime}: leave out --engine {engine}, or give the weights folder")
    optimized = _optimized_for(path) if runtime == "onnxruntime" else None
    predictor = ExportedPredictor(open_exported(path, device, optimized, threads))
    if precision not in ("auto", predictor.precision):
        raise UsageError(f"{path} computes in {predictor.precision}, fixed when it was exported: leave out "
                         f"--precision, or export it again with --precision {precision}")
    return predictor


def _folder_predictor(folder: Path, device: str, precision: str, engine: str, note: Note | None,
                      status: Status | None, threads: int | None) -> DepthPredictor | ExportedPredictor:
    chosen = choose_engine(engine, device, precision, note)
    if chosen == "onnxruntime":
        try:
            predictor = onnx_predictor(folder, "cpu" if engine == "auto" else device, status, threads)
        except EngineUnavailable as error:
            if engine != "auto":
                raise
            if note is not None and error.noted:
                note(f"{error}; the network runs on torch")
            predictor = None
        if predictor is not None:
            return predictor
    from md2.core.inference import DepthPredictor

    return DepthPredictor.from_folder(folder, device=device, precision=precision)


def onnx_predictor(folder: Path, device: str = "cpu", status: Status | None = None,
                   threads: int | None = None) -> ExportedPredictor | None:
    """The weights folder's depth network on onnxruntime through its cached export (:func:`cached_onnx`), its
    passes on ``threads`` CPU threads (default: all cores), or None when the folder lacks encoder.pth or
    depth.pth (torch's loader then names what is missing). Raises EngineUnavailable when onnxruntime cannot run
    it here."""
    from md2.core.zoo import is_complete

    if not is_complete(folder):
        return None
    onnx_file = cached_onnx(folder, status)
    try:
        return ExportedPredictor(OnnxNetwork(onnx_file, device, _optimized_for(onnx_file), threads))
    except CheckpointError:  # a cached file damaged since it was written (it is written whole): exported again
        onnx_file.unlink(missing_ok=True)
        onnx_file = cached_onnx(folder, status)
        return ExportedPredictor(OnnxNetwork(onnx_file, device, _optimized_for(onnx_file), threads))


def _optimized_for(onnx_file: Path) -> Path | None:
    """Where onnxruntime keeps its optimised graph of ``onnx_file`` (md2's cache), on the CPU."""
    from md2.core.engine import onnx_cache, optimized_for

    try:
        import onnxruntime
    except ImportError:
        return None
    cache = onnx_cache()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:  # no cache: every session optimises the graph again
        return None
    return optimized_for(onnx_file, cache, onnxruntime.__version__)
