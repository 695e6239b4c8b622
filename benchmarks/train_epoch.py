"""One training epoch, whole process (python start to exit): ``md2 train`` beside a reference-equivalent trainer.

    python -m benchmarks.train_epoch [--json out.json] [--repeats 2] [--cases md2,reference,md2_amp] [--data DIR]

Writes one synthetic KITTI drive (1242 x 375 JPEGs with lidar scans, :mod:`md2.data.synth`) and split
``bench``: 20 training samples and 8 validation samples. Then, interleaved (md2, reference, md2 --amp, md2,
reference, ...; ``--repeats`` rounds), it times whole processes of one mono epoch at 640 x 192, batch 4,
``--num-workers 0``, ResNet-18 from scratch (ImageNet weights cannot be downloaded here), logging and saving
as each does by default (one log with validation at the epoch's first step, the weights at its end):

* ``md2``: ``python -m md2 train --modality mono ... --num-epochs 1`` (fp32);
* ``reference``: :mod:`benchmarks.reference_trainer` with the same options, written for this benchmark after
  the reference's documented behaviour (its docstring says how it follows the reference and where it may
  differ); it gets the default glibc malloc settings, not the ones md2 sets for itself;
* ``md2_amp``: md2 with ``--amp`` (bf16 autocast), reported with the path it ran: bf16 native where the CPU
  computes it (``md2.core.inference.fast_bf16``: AVX-512 BF16 / AMX), else emulated (far slower: leave it out
  with ``--cases md2,reference``); ``md2_amp_channels_last``: ``--amp --channels-last``.

Before timing, the same batch and weights go through md2's step and the reference-equivalent's: their
first-step losses (and an unaugmented sample of each dataset) are compared, so the stand-in is known to
compute the same thing. After timing, each case's final weights are scored with md2's fp32 loss on one fixed
validation batch, so the loss difference of --amp after the epoch is shown. Prints JSON: per case the times,
median and spread, each run's CPU seconds and those the machine's other processes used meanwhile (it may be
shared: a busy neighbour slows two-thread steps several times over), the ratio reference / md2, the machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import emit, machine
from md2.allocator import ENVIRONMENT
from md2.core.inference import fast_bf16

REPO = Path(__file__).resolve().parent.parent
SPLIT, TRAIN_SAMPLES, VAL_SAMPLES = "bench", 20, 8
HEIGHT, WIDTH, BATCH = 192, 640, 4
REFERENCE = {"md2_seconds": 41.3, "reference_seconds": 51.3}
"""The issue's figures (the filer's machine, another day): md2 x1.24 the reference."""
TARGET = {"ratio": 1.5}
FLAGS = {"md2": [], "md2_amp": ["--amp"], "md2_amp_channels_last": ["--amp", "--channels-last"]}
"""md2's cases: their flags beside the common options."""


def make_data(root: Path) -> Path:
    """One KITTI-size drive (JPEG, lidar) and split ``bench``: 20 train and 8 val lines (frames 1..14, l and r)."""
    from md2.data.synth import SynthOptions, drive_name, generate_dataset

    data = generate_dataset(root, SynthOptions(drives=1, frames=16, seed=0, ext="jpg", lidar=True))
    lines = [f"{drive_name(0)} {frame} {side}" for frame in range(1, 15) for side in "lr"]
    folder = data / "splits" / SPLIT
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_files.txt").write_text("\n".join(lines[:TRAIN_SAMPLES]) + "\n")
    (folder / "val_files.txt").write_text("\n".join(lines[TRAIN_SAMPLES:TRAIN_SAMPLES + VAL_SAMPLES]) + "\n")
    return data


def command(case: str, data: Path, logs: Path, name: str) -> list[str]:
    """The command line of ``case`` training one epoch into logs/name."""
    if case == "reference":
        return [sys.executable, "-m", "benchmarks.reference_trainer", "--data_path", str(data), "--splits_dir",
                str(data / "splits"), "--split", SPLIT, "--height", str(HEIGHT), "--width", str(WIDTH),
                "--batch_size", str(BATCH), "--num_workers", "0", "--num_epochs", "1", "--log_dir", str(logs),
                "--model_name", name]
    return [sys.executable, "-m", "md2", "train", "--modality", "mono", "--data-path", str(data), "--splits-dir",
            str(data / "splits"), "--split", SPLIT, "--height", str(HEIGHT), "--width", str(WIDTH),
            "--batch-size", str(BATCH), "--num-workers", "0", "--weights-init", "scratch", "--num-epochs", "1",
            "--log-dir", str(logs), "--model-name", name, "--quiet", *FLAGS[case]]


def run_once(case: str, data: Path, logs: Path, name: str) -> tuple[float, float, float | None]:
    """(wall seconds, its CPU seconds, CPU seconds the machine's other processes used meanwhile) of one whole
    process of ``case`` (it must succeed)."""
    env = dict(os.environ)
    if case == "reference":  # md2's malloc settings (inherited from benchmarks.common) are not the reference's
        for variable in ENVIRONMENT:
            env.pop(variable, None)
    busy, before = _busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command(case, data, logs, name), cwd=REPO, env=env, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{done.stderr[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    others = None if busy is None else max(0.0, _busy_seconds() - busy - cpu)
    return seconds, cpu, others


def _busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (Linux's /proc/stat), None where unknown."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def summary(runs: list[tuple[float, float, float | None]]) -> dict:
    times = [run[0] for run in runs]
    return {"seconds": [round(t, 2) for t in times], "median_s": round(statistics.median(times), 2),
            "spread_s": round(max(times) - min(times), 2), "cpu_seconds": [round(run[1], 1) for run in runs],
            "others_cpu_seconds": [None if run[2] is None else round(run[2], 1) for run in runs]}


def _bf16_flags() -> list[str]:
    """The CPU's bf16 features named in /proc/cpuinfo (Linux; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in ("avx512_bf16", "amx_bf16", "amx_tile") if flag in flags]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--data", type=Path, help="a dataset made earlier by this benchmark (make_data)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds (each runs every case once)")
    parser.add_argument("--cases", default="md2,reference,md2_amp,md2_amp_channels_last",
                        help="comma-separated subset of md2, reference, " + ", ".join(list(FLAGS)[1:]))
    parser.add_argument("--no-check", action="store_true", help="skip the same-math check before timing")
    args = parser.parse_args(argv)
    from benchmarks.train_epoch_check import final_losses, same_math

    cases = args.cases.split(",")
    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as temporary:
        data = args.data or make_data(Path(temporary) / "data")
        logs = Path(temporary) / "logs"
        check = None if args.no_check else same_math(data, SPLIT, HEIGHT, WIDTH, BATCH)
        times: dict[str, list[tuple[float, float, float]]] = {case: [] for case in cases}
        for round_ in range(args.repeats):
            for case in cases:
                times[case].append(run_once(case, data, logs, f"{case}_{round_}"))
                print(f"{case} round {round_}: {times[case][-1][0]:.1f} s", file=sys.stderr)
        runs = {case: logs / f"{case}_{args.repeats - 1}" for case in cases}
        losses = final_losses(data, SPLIT, HEIGHT, WIDTH, BATCH, runs)
    results = {"machine": {**machine(), "cpu_flags": _bf16_flags(), "started": started},
               "size": f"{WIDTH}x{HEIGHT}", "batch_size": BATCH,
               "train_samples": TRAIN_SAMPLES, "val_samples": VAL_SAMPLES, "num_workers": 0,
               "cases": {case: summary(values) for case, values in times.items()}}
    medians = {case: results["cases"][case]["median_s"] for case in cases}
    if "md2" in medians and "reference" in medians:
        results["ratio_reference_over_md2"] = round(medians["reference"] / medians["md2"], 3)
    amp_cases = [case for case in cases if case.startswith("md2_amp")]
    if amp_cases:
        native = fast_bf16(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        results["amp_path"] = "bf16 native" if native else "bf16 emulated"
    for case in amp_cases if "md2" in medians else ():
        results[f"ratio_md2_over_{case}"] = round(medians["md2"] / medians[case], 3)
        results[f"loss_after_epoch_{case}_minus_md2"] = round(losses[case] - losses["md2"], 6)
    results.update(same_math=check, loss_after_epoch=losses, reference=REFERENCE, target=TARGET)
    return emit(results, args.json)


if __name__ == "__main__":
    main()
