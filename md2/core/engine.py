"""Which engine runs the depth network, and the cached ONNX export that lets onnxruntime run a weights folder.

``auto`` runs onnxruntime on the CPU and torch on CUDA (or where ``--precision fp32`` / ``bf16`` asks for torch's
paths); a weights folder is exported once (``md2 export``'s job: verified against PyTorch, written atomically) into
``MD2_HOME/onnx/KEY.onnx`` (or ``$MD2_ONNX_CACHE/KEY.onnx``), KEY the sha256 of encoder.pth and depth.pth, so a
retrained folder gets a new file and a changed one is never served stale. onnxruntime's optimised graph of that
file is kept beside it (:func:`optimized_for`) for later sessions. Nothing here imports torch unless a file has to
be exported.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import platform
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from md2 import __version__
from md2.errors import MD2Error, UsageError
from md2.files import atomic_path

ENGINES = ("auto", "torch", "onnxruntime")
"""``--engine`` choices."""
EXPORT_RECIPE = f"md2 {__version__}; onnx; dynamic batch; disparity only"
"""Part of every cache key: a later md2 that exports differently does not take an earlier file."""
Note = Callable[[str], None]
"""Says one line to the user (a fallback to torch)."""
Status = Callable[[str], AbstractContextManager]
"""Shows ``text`` while a long step runs, and nothing after it."""


class EngineUnavailable(MD2Error):
    """onnxruntime cannot run this model here (a package missing, an export that failed): ``auto`` falls back to
    torch with a note (unless ``noted`` is False: torch reports the same problem itself), ``--engine onnxruntime``
    reports it."""

    def __init__(self, message: str, noted: bool = True) -> None:
        super().__init__(message)
        self.noted = noted


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def cuda_present() -> bool:
    """Whether an NVIDIA GPU is usable, asked of the driver (libcuda) rather than of torch, whose import is most
    of a one-photo run."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            return driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
        except AttributeError:
            return False
    return False


def choose_engine(engine: str, device: str, precision: str, note: Note | None = None) -> str:
    """``engine`` resolved to "torch" or "onnxruntime" for a weights folder on ``device``.

    ``auto``: onnxruntime when the device is the CPU (``cpu``, or ``auto`` with no GPU) and ``precision`` is
    "auto"; torch otherwise (``--precision fp32`` and ``bf16`` are torch's paths), and torch with one ``note``
    when onnxruntime is not installed.
    """
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "torch":
        return "torch"
    if engine == "onnxruntime":
        if precision not in ("auto", "fp32"):
            raise UsageError(f"--engine onnxruntime computes in fp32: leave out --precision {precision}, or use "
                             "--engine torch")
        if not onnxruntime_installed():
            raise UsageError("--engine onnxruntime: onnxruntime is not installed (pip install onnxruntime)")
        return "onnxruntime"
    on_cpu = device == "cpu" or (device == "auto" and not cuda_present())
    if precision != "auto" or not on_cpu:
        return "torch"
    if not onnxruntime_installed():
        if note is not None:
            note("onnxruntime is not installed: the network runs on torch (pip install onnxruntime)")
        return "torch"
    return "onnxruntime"


def cpu_lanes() -> tuple[int, int]:
    """(lanes, threads per lane) for onnxruntime on the CPU when many pictures go through md2's pipeline: two
    network passes at once, each on half of the physical cores, rather than one pass on all of them.

    Measured on a 2-core CPU (benchmarks.predict): two one-thread passes at once give 5-8% more pictures a
    second than one two-thread pass, network alone, and more beside the pipeline's decoding and writing: a
    pass whose core is lent to a decoder for a moment slows itself, where a two-thread pass would hold its
    other thread spinning at the next layer's barrier. One core: one lane.
    """
    cores = physical_cores()
    return (2, cores // 2) if cores >= 2 else (1, 1)


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (onnxruntime's default thread count counts cores,
    not their hyper-threads); the CPU count where Linux's topology files are not there."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores) or os.cpu_count() or 1)


def onnx_cache() -> Path:
    """Where exported weights folders are kept: $MD2_ONNX_CACHE, default MD2_HOME/onnx."""
    from md2.core.zoo import md2_home

    folder = os.environ.get("MD2_ONNX_CACHE")
    return Path(folder).expanduser() if folder else md2_home() / "onnx"


def content_key(files: list[Path], cache: Path) -> str:
    """sha256 of the files' contents (and :data:`EXPORT_RECIPE`), hex: for a weights folder, encoder.pth and
    depth.pth.

    Remembered in ``cache``/keys under the files' identity (device, inode, size, modification and change times in
    nanoseconds), so a later run reads two stats instead of 60 MB; any rewrite of a file changes its change time,
    and the key is computed again.
    """
    identity = "|".join(f"{path.resolve()}:{s.st_dev}:{s.st_ino}:{s.st_size}:{s.st_mtime_ns}:{s.st_ctime_ns}"
                        for path, s in ((path, path.stat()) for path in files))
    memo = cache / "keys" / hashlib.sha256(f"{EXPORT_RECIPE}|{identity}".encode()).hexdigest()
    try:
        known = memo.read_text().strip()
        if len(known) == 64:
            return known
    except (OSError, UnicodeDecodeError):
        pass
    digest = hashlib.sha256(EXPORT_RECIPE.encode())
    for path in files:
        part = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):  # hashlib.file_digest is Python 3.11+
                part.update(block)
        digest.update(part.digest())
    key = digest.hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(memo) as temporary:
            temporary.write_text(key)
    except (OSError, MD2Error):  # a read-only cache still works, it hashes every time
        pass
    return key


def cached_onnx(folder: Path, status: Status | None = None, cache: Path | None = None) -> Path:
    """The ONNX file of the weights folder's depth network, exported on first use (torch, onnx and onnxscript
    are needed then, and only then). Concurrent first runs each write a complete file and rename it into place.
    ``status(text)``: a context manager shown while the export runs (the command line's transient spinner).

    Raises EngineUnavailable when the exporter's packages are missing or the export fails its verification; the
    weights' own errors (CheckpointError) as they are.
    """
    from md2.errors import ExportError, NotFiniteOutputs

    cache = cache if cache is not None else onnx_cache()
    target = cache / f"{content_key([folder / 'encoder.pth', folder / 'depth.pth'], cache)}.onnx"
    if target.is_file():
        return target
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise EngineUnavailable(f"exporting {folder} for onnxruntime needs {' and '.join(missing)}, not installed "
                                '(pip install "md2[export]")')
    from md2.core.export.job import ExportSettings, run_export

    cache.mkdir(parents=True, exist_ok=True)
    shown = status(f"exporting {folder} for onnxruntime, once") if status is not None else nullcontext()
    try:
        with shown:
            run_export(ExportSettings(output=target, weights=folder, dynamic_batch=True, disp_only=True),
                       download_progress=False)
    except NotFiniteOutputs as error:  # torch would give the same NaN: its own per-picture error says so
        raise EngineUnavailable(f"cannot export {folder} for onnxruntime: {error}", noted=False) from None
    except ExportError as error:
        raise EngineUnavailable(f"cannot export {folder} for onnxruntime: {error}") from None
    return target


def optimized_for(onnx_file: Path, cache: Path, runtime_version: str) -> Path:
    """Where onnxruntime's optimised graph (CPU provider) of ``onnx_file`` is kept: beside it when it is in the
    cache, else in the cache under the file's content key; named for the runtime's version and this processor
    (an optimised graph holds kernels chosen for the instruction set it was made on)."""
    machine = f"{platform.machine()}|{_cpu_flags()}|onnxruntime {runtime_version}|CPUExecutionProvider"
    tag = hashlib.sha256(machine.encode()).hexdigest()[:16]
    if onnx_file.parent.resolve() == cache.resolve():
        return onnx_file.with_name(f"{onnx_file.stem}.optimized-{tag}.onnx")
    return cache / f"{content_key([onnx_file], cache)}.optimized-{tag}.onnx"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or os.environ.get("PROCESSOR_IDENTIFIER", "")
