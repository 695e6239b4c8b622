"""Training step speed and memory: samples per second of forward + backward + Adam, and peak memory.

    python -m benchmarks.train_step [--json out.json] [--steps 6] [--data DIR]

The mono default configuration (ResNet-18 depth + separate ResNet-18 pose, frames 0 -1 1, 4 scales, full
loss with auto-masking and SSIM, Adam) at 640x192, batch 4 on the CPU (12 on CUDA), for fp32 and each speed
flag (--amp, --channels-last, --compile, and --amp with --channels-last), then fp32 at batch 12 for memory.
Each case runs in a fresh process (``--case NAME``) on one batch held in memory -- the step alone, not the
data loader -- so its peak resident memory (CUDA: peak allocated) is its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import emit, machine, median_seconds, peak_rss_gb, rate, run_child
from md2.core.inference import fast_bf16

CASES = {
    "fp32": {},
    "amp": {"amp": True},
    "channels_last": {"channels_last": True},
    "amp_channels_last": {"amp": True, "channels_last": True},
    "compile": {"compile": True},
}
REFERENCE = {"fp32_samples_per_s": 0.96, "fp32_peak_rss_gb": 3.9}
TARGET = {"fp32_samples_per_s": 1.5, "amp_samples_per_s": 2.5, "fp32_peak_rss_gb": 3.9,
          "fp32_batch_12_peak_gb": 12.0}


def make_data(root: Path) -> Path:
    """Small synthetic drives at the training size (the step does not see the source size), with splits."""
    from md2.data.synth import SynthOptions, generate_dataset

    return generate_dataset(root, SynthOptions(drives=2, frames=24, seed=0, width=640, height=192, lidar=False))


def measure_case(data: Path, case: str, batch_size: int, steps: int) -> dict:
    """Build the trainer for ``case`` and time its step on one fixed batch (in this process)."""
    from md2.core.train import distributed
    from md2.core.train.config import build_config
    from md2.core.train.loop import Trainer, seed_everything

    with tempfile.TemporaryDirectory() as logs:
        config = build_config({"data_path": str(data), "splits_dir": str(data / "splits"), "split": "synth",
                               "png": True, "height": 192, "width": 640, "batch_size": batch_size,
                               "num_workers": 0, "weights_init": "scratch", "log_dir": logs, "model_name": "bench",
                               **CASES[case]}, modality="mono")
        seed_everything(0)
        placement = distributed.setup("auto")
        trainer = Trainer(config, placement)
        dataset = trainer.train_loader.dataset
        batch = dataset.__getitems__([(0, i % len(dataset)) for i in range(batch_size)])
        step = iter(range(10**9))

        def one_step() -> None:
            trainer._train_step(batch, next(step))
            if placement.device.type == "cuda":
                torch.cuda.synchronize()

        warmup = 3 if case == "compile" else 1
        seconds = median_seconds(one_step, repeats=steps, warmup=warmup)
    result = {"case": case, "batch_size": batch_size, "samples_per_s": rate(batch_size, seconds),
              "seconds_per_step": round(seconds, 3), "peak_rss_gb": peak_rss_gb()}
    if placement.device.type == "cuda":
        result["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--data", type=Path, help="a synthetic dataset made earlier (md2 synth)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: measure one case in this process
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure_case(args.data, args.case, args.batch_size, args.steps)))
        return {}
    batch = 12 if torch.cuda.is_available() else 4
    with tempfile.TemporaryDirectory() as temporary:
        data = args.data or make_data(Path(temporary) / "data")
        common = ["--data", str(data), "--steps", str(args.steps)]
        cases = {}
        emulated = not fast_bf16(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        for case in args.cases.split(","):
            arguments = ["--case", case, "--batch-size", str(batch), *common]
            if emulated and CASES[case].get("amp"):
                arguments[-1] = "1"  # bf16 without hardware support: one step tells enough (it is slow)
            cases[case] = run_child("benchmarks.train_step", arguments)
            cases[case]["bf16_emulated"] = emulated if CASES[case].get("amp") else None
            print(json.dumps(cases[case]), file=sys.stderr)
        memory = run_child("benchmarks.train_step", ["--case", "fp32", "--batch-size", "12", *common[:2],
                                                     "--steps", "2"])
    results = {"machine": machine(), "size": "640x192", "modality": "mono", "cases": cases,
               "fp32_batch_12": memory, "reference": REFERENCE, "target": TARGET}
    return emit(results, args.json)


if __name__ == "__main__":
    main()
