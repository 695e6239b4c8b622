"""The phases of ``python -m benchmarks.gpu_check`` on a GPU: md2's commands run as a user runs them, each in a
process of its own (``python -m md2 ...`` with this checkout first on PYTHONPATH: nothing installed), on
synthetic data written by ``md2 synth``. Each phase function returns one line of detail, raises
:class:`Skipped` (an optional package missing, an earlier phase's output missing) or any other exception
(failed). ``python -m benchmarks.gpu_phases --nccl-probe`` is the NCCL phase's worker (under torchrun).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 192, 640
DRIVE = Path("2011_09_26") / "2011_09_26_drive_0001_sync" / "image_02" / "data"
# md2 with torch.cuda.is_bf16_supported() answering no: --amp then takes the fp16 + GradScaler path of GPUs
# without bf16 (V100, T4) on any GPU.
FP16_LAUNCHER = ("import sys, torch; torch.cuda.is_bf16_supported = lambda *a, **k: False; sys.argv[0] = 'md2'; "
                 "from md2.cli.app import main; main()")
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"]


class Skipped(Exception):
    """The phase cannot run here; the message says why (and what to install)."""


@dataclass
class Work:
    """The check's folder and time: ``deadline`` (time.monotonic) bounds every command."""

    root: Path
    deadline: float
    device: str = "cuda"
    height: int = HEIGHT
    width: int = WIDTH
    batch: int = 4

    @classmethod
    def rehearsal(cls, root: Path, deadline: float) -> "Work":
        """The same commands on the CPU at 192x64, batch 2 (``--rehearse``: their arguments and outputs
        checked on a machine without a GPU; slow, and nothing about CUDA)."""
        return cls(root, deadline, device="cpu", height=64, width=192, batch=2)

    @property
    def rehearsing(self) -> bool:
        return self.device == "cpu"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def weights(self, run: str = "mono", epoch: int = 0) -> Path:
        folder = self.runs / run / "models" / f"weights_{epoch}"
        if not (folder / "depth.pth").is_file():
            raise Skipped(f"needs {folder.relative_to(self.root)} (the train_{run} phase)")
        return folder


def run_command(work: Work, args: list[str], limit: float, launcher: list[str] | None = None) -> str:
    """``python [launcher | -m md2] args`` in ``work.root`` within ``limit`` seconds (and the deadline); its
    stderr. A non-zero exit raises RuntimeError with its last line; a timeout kills the whole process group."""
    command = [sys.executable, *(launcher or ["-m", "md2"]), *args]
    env = {key: value for key, value in os.environ.items() if key not in ("MD2_DEBUG", "WORLD_SIZE", "RANK")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               COLUMNS="200", MD2_HOME=str(work.root / "md2_home"), PYTHONUNBUFFERED="1")
    timeout = max(1.0, min(limit, work.deadline - time.monotonic()))
    process = subprocess.Popen(command, cwd=work.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise RuntimeError(f"no result within {timeout:.0f} s: {' '.join(args[:2])} stopped") from None
    if process.returncode != 0:
        lines = [line.strip() for line in (stderr or stdout).splitlines() if line.strip()]
        raise RuntimeError(f"exit {process.returncode}: {lines[-1] if lines else 'no output'}")
    return stderr + stdout


def has_option(work: Work, command: str, option: str) -> bool:
    """Whether ``md2 COMMAND --help`` lists ``option`` (options added by later versions of md2)."""
    return option in run_command(work, [command, "--help"], 60)


def _done_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith("done:")]
    return lines[-1] if lines else "done"


# -- data --------------------------------------------------------------------------------------------------------
def synth(work: Work, limit: float, small: bool = False) -> str:
    """md2 synth (2 drives, odometry layout) and the ground truth evaluate-depth needs (md2 export-gt)."""
    frames = "8" if small or work.rehearsing else "30"
    width, height = ("192", "64") if small else (str(work.width), str(work.height))
    run_command(work, ["synth", str(work.data), "--drives", "2", "--frames", frames, "--width", width,
                       "--height", height, "--odometry", "-q"], limit)
    if not small:
        run_command(work, ["export-gt", "--data-path", str(work.data), "--split", "synth", "--splits-dir",
                           str(work.data / "splits"), "-q"], limit)
    lines = (work.data / "splits" / "synth" / "train_files.txt").read_text().splitlines()
    return f"2 drives x {frames} frames at {width}x{height}; {len(lines)} training samples"


# -- training ----------------------------------------------------------------------------------------------------
def train_args(work: Work, name: str, *options: str) -> list[str]:
    return ["train", "--data-path", str(work.data), "--split", "synth", "--splits-dir", str(work.data / "splits"),
            "--png", "--height", str(work.height), "--width", str(work.width), "--weights-init", "scratch",
            "--num-epochs", "1", "--batch-size", str(work.batch), "--num-workers", "2", "--log-dir", str(work.runs),
            "--model-name", name, "--device", work.device, "--log-frequency", "10", *options]


def train(work: Work, limit: float, name: str, *options: str, launcher: list[str] | None = None) -> str:
    """One epoch (84 samples, batch 4: 21 steps) with validation at every 10th step; weights_0 saved."""
    output = run_command(work, train_args(work, name, *options), limit, launcher)
    work.weights(name)
    return _done_line(output)


def train_amp(work: Work, limit: float, fp16: bool) -> str:
    """--amp: bf16 where the GPU has it, else fp16 with GradScaler; ``fp16`` forces the latter. Checks which
    one ran from the scaler's saved state (empty when the scaler is off)."""
    import torch

    from md2.core.train.state import read_state

    name = "amp_fp16" if fp16 else "amp_bf16"
    detail = train(work, limit, name, "--modality", "mono", "--amp", launcher=["-c", FP16_LAUNCHER] if fp16 else None)
    scaled = bool(read_state(work.runs / name).scaler)
    if work.rehearsing:
        return f"rehearsal on the CPU: bf16 autocast, GradScaler not in play; {detail}"
    expected = fp16 or not torch.cuda.is_bf16_supported()
    if scaled != expected:
        raise RuntimeError(f"--amp ran {'fp16 + GradScaler' if scaled else 'bf16'}, expected the other")
    return f"{'fp16 + GradScaler' if scaled else 'bf16'}; {detail}"


def torchrun_resume(work: Work, limit: float) -> str:
    """The saved run of the torchrun phase, continued for a second epoch through torchrun."""
    work.weights("torchrun")
    output = run_command(work, ["train", "--resume", str(work.runs / "torchrun"), "--num-epochs", "2"], limit,
                         [*TORCHRUN, "-m", "md2"])
    work.weights("torchrun", 1)
    return _done_line(output)


def nccl(work: Work, limit: float) -> str:
    """A process group on NCCL (md2 joins one only with WORLD_SIZE > 1: here it is made by hand, world size 1),
    md2's depth networks in DistributedDataParallel, one forward and backward (gradients all-reduced).
    Rehearsed on the CPU with gloo."""
    output = run_command(work, ["--nccl-probe"], limit, [*TORCHRUN, "-m", "benchmarks.gpu_phases"])
    return output.strip().splitlines()[-1]


def nccl_version() -> str | None:
    import torch

    try:
        version = torch.cuda.nccl.version()
    except Exception:  # noqa: BLE001 - a torch built without NCCL
        return None
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def nccl_probe() -> None:
    import torch
    import torch.distributed as dist

    from md2.core.networks import DepthDecoder, ResnetEncoder

    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    encoder = ResnetEncoder(18, False).to(device)
    ids = [device.index] if cuda else None
    networks = [torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
                for module in (encoder, DepthDecoder(encoder.num_ch_enc).to(device))]
    disp = networks[1](networks[0](torch.rand(2, 3, 64, 192, device=device)))
    sum(scale.mean() for scale in disp.values()).backward()  # every parameter in the loss, as DDP expects
    total = torch.ones((), device=device)
    dist.all_reduce(total)
    backend = f"NCCL {nccl_version()}" if cuda else "gloo (rehearsal)"
    print(f"{backend}: all-reduce {total.item():.0f}, DDP forward and backward of the depth networks")
    dist.destroy_process_group()


# -- evaluation and prediction -----------------------------------------------------------------------------------
def evaluate_depth(work: Work, limit: float, engine: bool) -> str:
    out = work.root / "depth.json"
    run_command(work, ["evaluate-depth", "--load-weights-folder", str(work.weights()), "--eval-mono",
                       "--data-path", str(work.data), "--eval-split", "synth", "--splits-dir",
                       str(work.data / "splits"), "--png", "--device", work.device, "--num-workers", "2",
                       "--post-process", "--json", str(out), *(["--engine", "torch"] if engine else []), "-q"], limit)
    metrics = json.loads(out.read_text())["metrics"]
    if not all(math.isfinite(value) for value in metrics.values() if isinstance(value, float)):
        raise RuntimeError(f"metrics not finite: {metrics}")
    return f"post-processed, median-scaled abs_rel {metrics['abs_rel']:.3f} (a one-epoch model)"


def evaluate_pose(work: Work, limit: float) -> str:
    out = work.root / "pose.json"
    run_command(work, ["evaluate-pose", "--load-weights-folder", str(work.weights()), "--data-path", str(work.data),
                       "--eval-split", "odom_9", "--splits-dir", str(work.data / "splits"), "--png", "--height",
                       str(work.height), "--width", str(work.width), "--device", work.device, "--num-workers", "2",
                       "--json", str(out), "-q"], limit)
    result = json.loads(out.read_text())
    return f"{result['num_pairs']} pairs, snippet ATE {result['metrics']['snippet_ate_mean']:.3f}"


def predict_photos(work: Work, limit: float, engine: bool, weights: Path | None = None,
                   name: str = "pred", engine_name: str = "torch") -> str:
    images, out = work.data / DRIVE, work.root / name
    run_command(work, ["predict", str(images), "--ext", "png", "--weights", str(weights or work.weights()),
                       "--device", work.device, "--output-dir", str(out),
                       *(["--batch-size", "4"] if weights is None else []),  # an exported file: its own batch
                       *(["--engine", engine_name] if engine else []), "-q"], limit)
    written = sorted(out.glob("*_disp.npy"))
    expected = len(list(images.glob("*.png")))
    if len(written) != expected:
        raise RuntimeError(f"{len(written)} disparities written for {expected} photos")
    return f"{expected} photos"


def predict_video(work: Work, limit: float, engine: bool) -> str:
    import cv2

    clip = work.root / "clip.mp4"
    frames = sorted((work.data / DRIVE).glob("*.png"))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (work.width, work.height))
    for frame in frames:
        writer.write(cv2.imread(str(frame)))
    writer.release()
    out = work.root / "pred_video"
    run_command(work, ["predict", str(clip), "--weights", str(work.weights()), "--device", work.device, "--output-dir",
                       str(out), *(["--engine", "torch"] if engine else []), "-q"], limit)
    if not (out / "clip_disp.mp4").is_file():
        raise RuntimeError("no clip_disp.mp4 written")
    return f"{len(frames)} frames"


def export_onnx(work: Work, limit: float) -> str:
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        raise Skipped("onnx or onnxruntime not installed (pip install 'md2[export]')")
    opset = [] if importlib.util.find_spec("onnxscript") else ["--opset", "17"]
    run_command(work, ["export", "--weights", str(work.weights()), "--output", str(work.root / "depth.onnx"),
                       *opset, "-q"], limit)
    return "opset 18 (torch.export)" if not opset else "opset 17 (onnxscript not installed: the legacy exporter)"


def predict_onnx_cuda(work: Work, limit: float, engine: bool) -> str:
    import numpy as np

    if importlib.util.find_spec("onnxruntime") is None:
        raise Skipped("onnxruntime not installed (pip install onnxruntime-gpu)")
    import onnxruntime

    model = work.root / "depth.onnx"
    if not model.is_file():
        raise Skipped("needs depth.onnx (the export_onnx phase)")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers() and not work.rehearsing:
        raise Skipped(f"onnxruntime {onnxruntime.__version__} has no CUDA provider (pip install onnxruntime-gpu)")
    detail = predict_photos(work, limit, engine, model, "pred_onnx", "onnxruntime")
    pairs = [(np.load(path), np.load(work.root / "pred" / path.name))
             for path in sorted((work.root / "pred_onnx").glob("*_disp.npy"))]
    if not pairs:
        return f"{detail}; no torch outputs to compare"
    worst = max(float((np.abs(a - b) / np.abs(b).clip(1e-6)).max()) for a, b in pairs)
    # predict_photos ran torch at md2 predict's default precision: bf16 where the GPU has it (~4e-3 apart).
    return f"{detail}; largest relative difference from md2 predict's torch outputs {worst:.1e}"


if __name__ == "__main__" and sys.argv[1:] == ["--nccl-probe"]:
    nccl_probe()
