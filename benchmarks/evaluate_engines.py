"""evaluate-depth's prediction on the CPU through each engine: images/s, torch (before issue 27) and onnxruntime.

    python -m benchmarks.evaluate_engines [--json out.json] [--frames 24] [--repeats 3] [--batch-size 16]

A synthetic KITTI drive of ``--frames`` frames at 1242x375 (md2.data.synth), its test lines read as
evaluate-depth reads them (LANCZOS to 640x192, the loader in this process), and a ResNet-18 640x192 model written
by md2 (random weights). Each engine predicts every frame's scaled disparity as ``md2 evaluate-depth`` does
(``predict_disparities``, batch ``--batch-size``); the figure is the best of ``--repeats`` after one untimed run
(which exports the model for onnxruntime into the run's own cache). The JSON names each engine and its threads.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from benchmarks.common import emit, machine, rate, timed_runs
from benchmarks.inference import _random_modules
from md2.core.checkpoint import save_weights_folder
from md2.core.evaluation.datasets import depth_test_dataset
from md2.core.evaluation.depth import predict_disparities
from md2.core.inference import DepthPredictor
from md2.data.sample import collate_samples
from md2.data.synth import SynthOptions, generate_dataset


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    from benchmarks.predict import engine_of
    from md2.core.exported import onnx_predictor

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        os.environ["MD2_ONNX_CACHE"] = str(root / "onnx")
        data = generate_dataset(root / "kitti", SynthOptions(drives=1, frames=args.frames, seed=0, lidar=False))
        split_dir = root / "split"
        split_dir.mkdir()
        drive = next(data.glob("*/*_sync")).relative_to(data)
        lines = [f"{drive} {index} l" for index in range(args.frames)]
        (split_dir / "test_files.txt").write_text("".join(f"{line}\n" for line in lines))
        dataset = depth_test_dataset("eigen", split_dir, data, 192, 640, png=True)
        weights = save_weights_folder(root / "weights", _random_modules(), height=192, width=640, use_stereo=False)
        predictors = {"torch": DepthPredictor.from_folder(weights, device="cpu"),  # evaluate-depth's torch path
                      "onnxruntime": onnx_predictor(weights, "cpu")}
        results = {}
        for name, predictor in predictors.items():
            seconds = min(timed_runs(lambda: predict_disparities(predictor, dataset, args.batch_size, 0,
                                                                 collate_fn=collate_samples), args.repeats))
            results[name] = {**engine_of(predictor), "images_per_s": rate(len(dataset), seconds)}
    results["speedup"] = round(results["onnxruntime"]["images_per_s"] / results["torch"]["images_per_s"], 3)
    return emit({"machine": machine(), "frames": args.frames, "batch_size": args.batch_size,
                 "torch_threads": torch.get_num_threads(), **results}, args.json)


if __name__ == "__main__":
    main()
