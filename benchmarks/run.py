"""Every md2 benchmark in one command; prints (and with --json writes) one JSON object.

    python -m benchmarks.run [--json out.json] [--only data,train,train_epoch,inference,predict,commands,evaluate_engines] [--quick]

Sections (each also runs alone, see its module): ``data`` samples/s of the training data pipeline per worker;
``train`` training-step samples/s and peak memory per speed flag; ``train_epoch`` one training epoch, whole
processes, ``md2 train`` beside a reference-equivalent trainer (and ``--amp``); ``inference`` depth images/s;
``predict`` md2 predict beside the reference's loop (whole processes) and on a video; ``commands`` export-gt, evaluate-depth and convert-jpeg end to end; ``evaluate_engines`` evaluate-depth's
prediction on torch and onnxruntime. ``--quick``
measures fewer repeats and items (a smoke run, not figures to quote).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import emit, machine

SECTIONS = {
    "data": ("benchmarks.data_pipeline", [], ["--samples", "12", "--repeats", "2"]),
    "train": ("benchmarks.train_step", [], ["--steps", "1", "--cases", "fp32"]),
    "train_epoch": ("benchmarks.train_epoch", [], ["--repeats", "1", "--cases", "md2,reference", "--no-check"]),
    "inference": ("benchmarks.inference", [], ["--repeats", "1"]),
    "predict": ("benchmarks.predict", [], ["--images", "4", "--repeats", "1", "--video-frames", "8"]),
    "commands": ("benchmarks.commands", [], ["--frames", "8", "--repeats", "1"]),
    "evaluate_engines": ("benchmarks.evaluate_engines", [], ["--frames", "6", "--repeats", "1"]),
}


def run_section(module: str, args: list[str], folder: Path) -> dict:
    """Run one benchmark module in its own process (threads and memory its own) and read its JSON file."""
    out = folder / f"{module.rsplit('.', 1)[-1]}.json"
    subprocess.run([sys.executable, "-m", module, "--json", str(out), *args], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to run")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few repeats, small counts")
    args = parser.parse_args(argv)
    import tempfile

    results: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory() as temporary:
        for name in args.only.split(","):
            if name not in SECTIONS:
                parser.error(f"unknown section {name!r} (choose from {', '.join(SECTIONS)})")
            module, full, quick = SECTIONS[name]
            start = time.perf_counter()
            results[name] = run_section(module, quick if args.quick else full, Path(temporary))
            results[name]["benchmark_seconds"] = round(time.perf_counter() - start, 1)
            print(f"{name}: done in {results[name]['benchmark_seconds']} s", file=sys.stderr)
    return emit(results, args.json)


if __name__ == "__main__":
    main()
