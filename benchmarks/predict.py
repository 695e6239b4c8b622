"""``md2 predict`` beside the reference's test_simple.py loop, whole processes, in one run.

    python -m benchmarks.predict [--json out.json] [--images 24] [--repeats 3] [--engine auto]

On the same files and the same weights (a ResNet-18 640x192 model written by md2, random weights: speed does
not depend on them): (1) a folder of ``--images`` KITTI-size (1242x375) PNGs, ``md2 predict DIR --ext png
--weights W --engine E`` against ``python -m benchmarks.reference_predict`` (the reference's loop, see that module)
and against ``md2 predict --engine torch`` (md2's torch path, the default before onnxruntime); (2) one photo
(../shared/images/test_image.jpg when present, else a KITTI-size JPEG), the same three commands; runs interleaved
(reference, md2, md2 torch, ...), each figure the best of ``--repeats`` after one untimed round (warm file cache,
and the weights folder's ONNX export cached, in a cache of the run's own). (3) In process: ``predict_images``
against the network alone (``predictor.disparity`` on ready inputs) at the same batch size, the engine's defaults,
so the share says what the pipeline costs beyond the network; the network alone both ways md2 runs it (one pass on
all cores, and the folder's lanes: passes at once, each on its share of the cores), the share of the faster; rounds
interleaved, at least 5. (4) ``predict_video`` on a 1242x375 mp4 of ``--video-frames`` frames, in process:
frames/s, also as a multiple of the reference loop's images/s on the folder. (5) The roofline: the machine's fp32
matrix-multiply peak, the network's 16 GFLOP a picture at that peak plus a bare process start, so the largest
folder speed-up any fp32 engine could show here. The JSON names the engine, its threads, lanes and precision.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DEPTH_GFLOP_640x192, emit, machine, matmul_gflops, median_seconds, rate, timed_runs
from benchmarks.inference import _random_modules, _street_photo
from md2.core.checkpoint import save_weights_folder
from md2.core.exported import load_predictor
from md2.core.inference import fast_bf16
from md2.core.pictures import collect_inputs
from md2.core.predict import PredictOptions, default_batch_size, lanes_of, predict_images

SHARED_PHOTO = Path(__file__).resolve().parents[1].parent / "shared" / "images" / "test_image.jpg"
TARGET = {"folder_speedup": 3.5, "one_photo_speedup": 5.0, "in_process_share_of_network": 0.9,
          "video_speedup_at_least_the_folder's": True}
"""Issue 27's targets on the 2-core AMD EPYC CI machine, with a cached ONNX export."""
FILER = {"folder_24_png_reference_s": 11.3, "folder_24_png_md2_s": 10.3}
"""What issue 14's filer measured on a 2-core AMD EPYC with native bf16 (for scale only)."""


def whole_process(command: list[str]) -> float:
    """Seconds from starting ``command`` to its exit (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def side_by_side(named: dict[str, list[str]], outputs: list[Path], repeats: int) -> dict:
    """Every command ``repeats`` times, alternating, after one untimed round; each figure the best run."""
    times: dict[str, list[float]] = {name: [] for name in named}
    for round_ in range(repeats + 1):
        for name, command in named.items():
            seconds = whole_process(command)
            if round_:
                times[name].append(seconds)
            for folder in outputs:
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
    best = {name: round(min(values), 3) for name, values in times.items()}
    result = {f"{name}_s": best[name] for name in named}
    for name in named:
        if name != "reference":
            result[f"{name}_speedup"] = round(best["reference"] / best[name], 3)
    result["runs_s"] = {name: [round(t, 3) for t in values] for name, values in times.items()}
    return result


def commands(source: Path, weights: Path, out_ref: Path, out_md2: Path, ext: str,
             engine: str) -> dict[str, list[str]]:
    reference = [sys.executable, "-m", "benchmarks.reference_predict", "--image-path", str(source), "--weights",
                 str(weights), "--ext", ext, "--output-dir", str(out_ref)]
    md2 = [sys.executable, "-m", "md2", "predict", str(source), "--ext", ext, "--weights", str(weights),
           "--output-dir", str(out_md2), "--quiet"]
    return {"reference": reference, "md2": md2 + ["--engine", engine], "md2_torch": md2 + ["--engine", "torch"]}


def in_process(images: Path, weights: Path, out: Path, repeats: int, engine: str) -> dict:
    """predict_images against the network alone, the engine's default precision and batch size, rounds
    interleaved (network, network in lanes, pipeline), each figure the best round. The network alone is
    measured both ways the engine runs it: one pass on all cores (a lone photo), and ``lanes`` passes at once
    (a folder, :func:`md2.core.predict.lanes_of`); the share is of the faster one."""
    predictor = load_predictor(weights, device="cpu", engine=engine)
    batch = default_batch_size(predictor)
    paths = collect_inputs([str(images)], "png")
    runner, lanes = lanes_of(predictor, len(paths))
    if getattr(predictor, "arrays", False):
        network_input = np.random.default_rng(0).random((batch, 3, predictor.height, predictor.width),
                                                        dtype=np.float32)
    else:
        network_input = torch.rand(batch, 3, predictor.height, predictor.width)
    passes = 4 * lanes

    def one_pass() -> None:
        for _ in range(passes):
            predictor.disparity(network_input)

    def in_lanes() -> None:
        with ThreadPoolExecutor(lanes) as threads:
            list(threads.map(lambda _: runner.disparity(network_input), range(passes)))

    options = PredictOptions(output_dir=out, batch_size=batch)
    cases = {"network_one_pass": one_pass, "network_in_lanes": in_lanes,
             "pipeline": lambda: predict_images(predictor, paths, options)}
    best = _interleaved(cases, repeats)
    rates = {"network_one_pass": rate(batch * passes, best["network_one_pass"]),
             "network_in_lanes": rate(batch * passes, best["network_in_lanes"]),
             "pipeline": rate(len(paths), best["pipeline"])}
    network_rate = max(rates["network_one_pass"], rates["network_in_lanes"])
    return {**engine_of(runner), "batch_size": batch, "lanes": lanes,
            "network_one_pass_images_per_s": rates["network_one_pass"],
            "network_in_lanes_images_per_s": rates["network_in_lanes"], "network_images_per_s": network_rate,
            "predict_images_per_s": rates["pipeline"], "share_of_network": round(rates["pipeline"] / network_rate, 3)}


def _interleaved(cases: dict, repeats: int) -> dict[str, float]:
    """Each case once untimed, then ``repeats`` rounds of all of them in turn: the best seconds of each."""
    for run in cases.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            times[name].append(timed_runs(run, 1, 0)[0])
    return {name: min(values) for name, values in times.items()}


def roofline(images: int, reference_s: float, network_rate: float) -> dict:
    """The fastest the folder can run here: the start of a process that imports what decoding and the network
    need, plus the pictures (1) at onnxruntime's measured network-alone rate, nothing else costing anything,
    and (2) at the machine's fp32 matrix-multiply peak (every core; numpy's and torch's products, the better),
    which no fp32 convolution exceeds; and so the largest folder speed-up over the reference each allows."""
    peak = max(matmul_gflops(torch.float32), _numpy_sgemm_gflops())
    start = min(whole_process([sys.executable, "-c", "import numpy, PIL.Image, onnxruntime"]) for _ in range(3))
    at_network = start + images / network_rate
    at_peak = start + images * DEPTH_GFLOP_640x192 / peak
    return {"fp32_matmul_peak_gflops": peak, "network_gflop_per_image": DEPTH_GFLOP_640x192,
            "network_floor_ms": round(1000 * DEPTH_GFLOP_640x192 / peak, 1), "process_start_floor_s": round(start, 3),
            "folder_floor_at_network_rate_s": round(at_network, 3),
            "folder_speedup_ceiling_at_network_rate": round(reference_s / at_network, 3),
            "folder_floor_at_fp32_peak_s": round(at_peak, 3),
            "folder_speedup_ceiling_at_fp32_peak": round(reference_s / at_peak, 3)}


def _numpy_sgemm_gflops(size: int = 2048, repeats: int = 7) -> float:
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    best = min(timed_runs(lambda: a @ a, repeats, 1))
    return round(2 * size**3 / best / 1e9, 1)


def engine_of(predictor) -> dict:
    """Which engine ran, in what precision and with how many threads."""
    if getattr(predictor, "arrays", False):
        options = predictor.network.session.get_session_options()
        threads = options.intra_op_num_threads or f"onnxruntime's default (physical cores; {os.cpu_count()} CPUs)"
        return {"engine": predictor.engine, "precision": predictor.precision, "intra_op_threads": threads}
    return {"engine": f"torch {torch.__version__}", "precision": predictor.precision,
            "channels_last": predictor.channels_last, "torch_threads": torch.get_num_threads()}


def video_rate(folder: Path, weights: Path, frames: int, repeats: int, engine: str) -> dict:
    """``predict_video`` (the engine's defaults) on a KITTI-size mp4 of ``frames`` frames."""
    import cv2

    from md2.core.video_predict import VideoOptions, predict_video

    clip = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (1242, 375))
    for index in range(frames):
        writer.write(np.asarray(_street_photo(index % 8))[:, :, ::-1])
    writer.release()
    predictor = load_predictor(weights, device="cpu", engine=engine)
    options = VideoOptions(folder / "out", batch_size=default_batch_size(predictor), overwrite=True)
    seconds = median_seconds(lambda: predict_video(predictor, clip, options), repeats=repeats, warmup=1)
    runner, lanes = lanes_of(predictor, frames)
    return {"frames": frames, "size": "1242x375", **engine_of(runner), "lanes": lanes, "batch_size": options.batch_size,
            "frames_per_s": rate(frames, seconds)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--video-frames", type=int, default=48)
    parser.add_argument("--engine", default="auto", help="md2's engine (auto, torch, onnxruntime)")
    args = parser.parse_args(argv)
    from benchmarks.reference_predict import colour_mapper

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        os.environ["MD2_ONNX_CACHE"] = str(root / "onnx")  # the run's own cache: exported in the untimed round
        weights = save_weights_folder(root / "weights", _random_modules(), height=192, width=640, use_stereo=True)
        images = root / "images"
        images.mkdir()
        for index in range(args.images):
            _street_photo(index).save(images / f"{index:04d}.png")
        photo = SHARED_PHOTO if SHARED_PHOTO.exists() else root / "photo.jpg"
        if not photo.exists():
            _street_photo(999).save(photo, quality=92)
        out_ref, out_md2 = root / "out_reference", root / "out_md2"
        for folder in (out_ref, out_md2):
            folder.mkdir()
        folder_run = side_by_side(commands(images, weights, out_ref, out_md2, "png", args.engine),
                                  [out_ref, out_md2], args.repeats)
        photo_run = side_by_side(commands(photo, weights, out_ref, out_md2, photo.suffix[1:], args.engine),
                                 [out_ref, out_md2], args.repeats)
        pipeline = in_process(images, weights, out_md2, max(args.repeats, 5), args.engine)
        video = video_rate(root, weights, args.video_frames, args.repeats, args.engine)
        reference_rate = args.images / folder_run["reference_s"]  # includes its start-up, as the folder's md2
        video["speedup_vs_reference_folder_rate"] = round(video["frames_per_s"] / reference_rate, 3)
    results = {
        "machine": machine(), "bf16_native": fast_bf16(torch.device("cpu")),
        "reference_colour_map": colour_mapper()[1],
        f"folder_{args.images}_png": folder_run, "one_photo": {"file": photo.name, **photo_run},
        "engine_asked": args.engine, "in_process": pipeline, "video": video,
        "roofline": roofline(args.images, folder_run["reference_s"], pipeline["network_images_per_s"]), "target": TARGET, "filer": FILER,
    }
    return emit(results, args.json)


if __name__ == "__main__":
    main()
