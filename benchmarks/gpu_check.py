"""One check of md2's CUDA path on a GPU machine without network, in under 8 minutes on one H100.

    python -m benchmarks.gpu_check --out gpu.json [--work DIR] [--budget 450]
    python -m benchmarks.gpu_check --out gpu.json --simulate     (no GPU: the fake-CUDA stretches)

Runs md2 as a user does (``python -m md2`` from this checkout, nothing installed) on ``md2 synth`` data: training
in mono, stereo, mono+stereo and the ablations, --amp in bf16 and forced fp16, --augment-on device and workers,
torchrun with a resume, NCCL, evaluate-depth, evaluate-pose, predict on photos and a video, export and
onnxruntime's CUDA provider; then the speed figures (training samples/s at 640x192 batch 12 in fp32 and with
--amp, depth-network images/s at batch 1 and 12, peak GPU memory). Every phase runs, whatever the others did
(a phase needing an earlier one's output is skipped, saying so); each is bounded in time, and phases that
would start after the budget are skipped. Writes ``{"device", "versions", "phases": [{"name", "status",
"seconds", "simulated", "detail"}], "figures"}`` and prints a table. Exit 1 if a phase failed or (without
--simulate) there is no CUDA device.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import gpu_phases as real
from benchmarks.gpu_phases import Skipped, Work

BUDGET_S = 450
"""The whole check, 30 s under the 8 minutes it must fit, whatever the GPU (phases past it are skipped)."""
REHEARSAL_SLOWER = 10
"""--rehearse: each phase's time limit multiplied by this."""
MIN_START_S = 15
"""A phase does not start with less of the budget left."""


@dataclass
class PhaseResult:
    name: str
    status: str  # passed | failed | skipped
    seconds: float
    simulated: bool
    detail: str


@dataclass
class Phase:
    """``run(work, limit)`` on a GPU; ``simulate(work)`` with --simulate (None: nothing to simulate)."""

    name: str
    limit: float
    run: Callable[[Work, float], str]
    simulate: Callable[[Work], str] | None = None


def phases(engine: dict[str, bool]) -> list[Phase]:
    """The check, in order: what later phases need first, then the figures, then the rest. ``engine``: which of
    predict and evaluate-depth take ``--engine``."""
    from benchmarks import gpu_simulate as sim

    mono = "--modality", "mono"
    return [
        Phase("synth", 120, real.synth, lambda w: real.synth(w, 120, small=True)),
        Phase("train_mono", 90, lambda w, t: real.train(w, t, "mono", *mono),
              lambda w: f"{sim.train(w.data, w.root, modality='mono')}; {sim.ssim_backward()}"),
        Phase("speed_training", 120, speed_training, sim.nothing("timings")),
        Phase("speed_depth", 45, speed_depth, sim.nothing("timings")),
        Phase("train_amp_bf16", 90, lambda w, t: real.train_amp(w, t, fp16=False),
              lambda w: sim.train(w.data, w.root, amp="bf16", modality="mono")),
        Phase("train_amp_fp16", 90, lambda w, t: real.train_amp(w, t, fp16=True),
              lambda w: sim.train(w.data, w.root, amp="fp16", modality="mono")),
        Phase("train_stereo", 90, lambda w, t: real.train(w, t, "stereo", "--modality", "stereo"),
              lambda w: sim.train(w.data, w.root, modality="stereo")),
        Phase("train_mono_stereo_workers", 90,
              lambda w, t: real.train(w, t, "mono_stereo", "--modality", "mono+stereo", "--augment-on", "workers"),
              lambda w: sim.train(w.data, w.root, uint8=False, modality="mono+stereo")),
        Phase("train_ablations", 90,
              lambda w, t: real.train(w, t, "ablations", "--modality", "mono+stereo", "--predictive-mask",
                                      "--disable-automasking", "--v1-multiscale", "--pose-model-type", "posecnn",
                                      "--augment-on", "device", "--num-workers", "4"),
              lambda w: sim.train(w.data, w.root, modality="mono+stereo", predictive_mask=True,
                                  disable_automasking=True, v1_multiscale=True, pose_model_type="posecnn")),
        Phase("torchrun", 90, lambda w, t: "one process, no process group (NCCL: the nccl phase); " + real.train(
            w, t, "torchrun", *mono, "--save-every-steps", "10", launcher=[*real.TORCHRUN, "-m", "md2"]),
              sim.nothing("torchrun")),
        Phase("torchrun_resume", 90, real.torchrun_resume, sim.nothing("torchrun")),
        Phase("nccl", 60, real.nccl, sim.nothing("NCCL")),
        Phase("evaluate_depth", 60, lambda w, t: real.evaluate_depth(w, t, engine["evaluate-depth"]),
              lambda w: sim.evaluate_depth(w.root)),
        Phase("evaluate_pose", 60, real.evaluate_pose, lambda w: sim.evaluate_pose()),
        Phase("predict_photos", 60, lambda w, t: real.predict_photos(w, t, engine["predict"]),
              lambda w: sim.predict(w.root, 375, 1242)),
        Phase("predict_video", 60, lambda w, t: real.predict_video(w, t, engine["predict"]),
              lambda w: sim.predict(w.root, real.HEIGHT, real.WIDTH)),
        Phase("export_onnx", 90, real.export_onnx, sim.nothing("the exported file is run on the GPU next")),
        Phase("predict_onnx_cuda", 60, lambda w, t: real.predict_onnx_cuda(w, t, engine["predict"]),
              sim.nothing("onnxruntime's CUDA provider")),
    ]


# -- figures -----------------------------------------------------------------------------------------------------
FIGURES: dict[str, object] = {}


def speed_training(work: Work, limit: float) -> str:
    """benchmarks.train_step's cases (Trainer._train_step on one batch, 640x192 batch 12, mono), each in a
    process of its own so that its peak GPU memory is its own."""
    shown = []
    batch, steps = ("2", "1") if work.rehearsing else ("12", "8")
    for case in ("fp32",) if work.rehearsing else ("fp32", "amp"):
        output = real.run_command(work, ["--case", case, "--batch-size", batch, "--data", str(work.data),
                                         "--steps", steps], limit / 2, ["-m", "benchmarks.train_step"])
        result = json.loads(output.strip().splitlines()[-1])
        FIGURES[f"train_640x192_batch_{batch}_{case}_samples_per_s"] = result["samples_per_s"]
        FIGURES[f"train_640x192_batch_{batch}_{case}_peak_gpu_gb"] = result.get("peak_cuda_gb")
        shown.append(f"{case} {result['samples_per_s']} samples/s ({result.get('peak_cuda_gb')} GB)")
    return "; ".join(shown)


def speed_depth(work: Work, limit: float) -> str:
    """Depth network (ResNet-18 encoder + decoder, random weights) images/s at 640x192, batch 1 and 12, in fp32
    and md2 predict's default (auto: bf16 + channels_last where the GPU has bf16), inputs already on the GPU."""
    import torch

    from md2.core.inference import DepthPredictor
    from md2.core.networks import DepthDecoder, ResnetEncoder

    device = torch.device(work.device)
    cuda, shown = device.type == "cuda", []
    for precision in ("fp32", "auto"):
        encoder = ResnetEncoder(18, False)
        decoder = DepthDecoder(encoder.num_ch_enc)
        predictor = DepthPredictor(encoder.eval().to(device), decoder.eval().to(device), real.HEIGHT, real.WIDTH,
                                   False, device, precision=precision)
        for batch in (1, 12) if cuda else (1, 2):
            images = torch.rand(batch, 3, real.HEIGHT, real.WIDTH, device=device)
            warmup, repeats = (5, 20) if cuda else (1, 2)
            for _ in range(warmup):
                predictor.disparity(images)
            _synchronize(cuda)
            start = time.perf_counter()
            for _ in range(repeats):
                predictor.disparity(images)
            _synchronize(cuda)
            per_s = round(batch * repeats / (time.perf_counter() - start), 1)
            FIGURES[f"depth_640x192_batch_{batch}_{precision}_images_per_s"] = per_s
            shown.append(f"{precision} b{batch} {per_s}")
    if cuda:
        FIGURES["depth_peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    return "images/s: " + ", ".join(shown)


def _synchronize(cuda: bool) -> None:
    import torch

    if cuda:
        torch.cuda.synchronize()


# -- the run -----------------------------------------------------------------------------------------------------
def versions() -> dict:
    found = {"python": platform.python_version()}
    for module in ("md2", "torch", "torchvision", "numpy", "cv2", "onnx", "onnxscript", "onnxruntime", "typer",
                   "tensorboard", "google_crc32c", "threadpoolctl"):
        try:
            found[module] = getattr(importlib.import_module(module), "__version__", "?")
        except Exception:  # noqa: BLE001 - any failure to import means: not usable here
            found[module] = None
    import torch

    found["cuda"] = torch.version.cuda
    found["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if torch.cuda.is_available():
        found["nccl"] = real.nccl_version()
    if found["onnxruntime"]:
        import onnxruntime

        found["onnxruntime_providers"] = onnxruntime.get_available_providers()
    return found


MISSING = {
    "google_crc32c": "TensorBoard's event checksums computed in Python (slower logs)",
    "threadpoolctl": "lidar read with BLAS's own thread pool",
    "onnxscript": "md2 export needs --opset 17 or lower (the check uses 17)",
    "onnx": "no md2 export to ONNX",
    "onnxruntime": "exported ONNX models cannot be run",
}
"""Optional packages: what is missing without each."""


def notes(found: dict) -> list[str]:
    """One line per missing optional package (and onnxruntime without its CUDA provider)."""
    lines = [f"{name} not installed: {what}" for name, what in MISSING.items() if not found.get(name)]
    providers = found.get("onnxruntime_providers") or []
    if found.get("onnxruntime") and "CUDAExecutionProvider" not in providers:
        lines.append("onnxruntime has no CUDA provider (onnxruntime-gpu): exported models run on the CPU")
    return lines


def device() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"name": "none: fake CUDA (torch FakeTensorMode on the CPU)"}
    properties = torch.cuda.get_device_properties(0)
    return {"name": properties.name, "capability": f"{properties.major}.{properties.minor}",
            "memory_gb": round(properties.total_memory / 1024**3, 1), "count": torch.cuda.device_count(),
            "bf16": torch.cuda.is_bf16_supported()}


def run_phase(phase: Phase, work: Work, simulate: bool) -> PhaseResult:
    left = work.deadline - time.monotonic()
    if left < MIN_START_S:
        return PhaseResult(phase.name, "skipped", 0.0, simulate, "the check's time budget is spent")
    start = time.monotonic()
    try:
        if simulate:
            if phase.simulate is None:
                raise Skipped("nothing to simulate")
            detail, status = phase.simulate(work), "passed"
        else:
            detail, status = phase.run(work, min(phase.limit, left)), "passed"
    except Skipped as reason:
        detail, status = str(reason), "skipped"
    except Exception as error:  # noqa: BLE001 - one phase failing never stops the others
        detail, status = f"{type(error).__name__}: {' '.join(str(error).split())}"[:400], "failed"
    return PhaseResult(phase.name, status, round(time.monotonic() - start, 1), simulate, detail)


def table(results: list[PhaseResult]) -> str:
    rows = [f"{'phase':<27} {'status':<8} {'s':>6}  detail"]
    rows += [f"{r.name:<27} {r.status:<8} {r.seconds:>6.1f}  {r.detail[:120]}" for r in results]
    rows += [f"{name}: {value}" for name, value in FIGURES.items()]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--work", type=Path, help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--simulate", action="store_true", help="no GPU: the fake-CUDA stretches of each phase")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for all phases ({BUDGET_S})")
    parser.add_argument("--phases", help="only these phases (comma-separated names), e.g. to rerun failed ones")
    # The GPU phases' very commands on the CPU at a small size: their arguments and outputs checked (slow).
    parser.add_argument("--rehearse", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    FIGURES.clear()
    import torch

    if not (args.simulate or args.rehearse) and not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine (run it on a GPU machine, or add --simulate)",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="md2_gpu_check_") as temporary:
        root = (args.work or Path(temporary)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + args.budget
        work = Work.rehearsal(root, deadline) if args.rehearse else Work(root, deadline)
        engine = {command: not args.simulate and _has_engine(work, command) for command in ENGINE_COMMANDS}
        chosen, results = phases(engine), []
        if args.phases:
            names = args.phases.split(",")
            unknown = sorted(set(names) - {phase.name for phase in chosen})
            if unknown:
                parser.error(f"unknown phase(s) {', '.join(unknown)}: choose from "
                             f"{', '.join(phase.name for phase in chosen)}")
            chosen = [phase for phase in chosen if phase.name in names]
        found = versions()
        report = {"device": device(), "versions": found, "notes": notes(found), "simulated": args.simulate,
                  "rehearsal": args.rehearse, "engine_option": engine, "phases": [], "figures": FIGURES}
        for phase in chosen:
            if args.rehearse:  # the CPU stands in for the GPU: the same work takes many times longer
                phase.limit *= REHEARSAL_SLOWER
            results.append(run_phase(phase, work, args.simulate))
            print(f"{results[-1].name}: {results[-1].status} ({results[-1].seconds} s) {results[-1].detail}",
                  file=sys.stderr, flush=True)
            report["phases"] = [asdict(result) for result in results]
            _write(args.out, report)  # after every phase: a check stopped from outside keeps what it did
    print(table(results))
    for line in report["notes"]:
        print(f"note: {line}")
    return 1 if any(result.status == "failed" for result in results) else 0


def _write(path: Path, report: dict) -> None:
    from md2.files import atomic_path

    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(report, indent=2) + "\n")


ENGINE_COMMANDS = ("predict", "evaluate-depth")
"""Commands that may take --engine (torch on the GPU, onnxruntime for exported files): passed where they do."""


def _has_engine(work: Work, command: str) -> bool:
    try:
        return real.has_option(work, command, "--engine")
    except Exception:  # noqa: BLE001 - md2 does not start at all: every phase will say why
        return False


if __name__ == "__main__":
    sys.exit(main())
