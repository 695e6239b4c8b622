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
so the share says what the pipeline costs beyond the network. (4) ``predict_video`` on a 1242x375 mp4 of
``--video-frames`` frames, in process: frames/s, also as a multiple of the reference loop's images/s on the folder.
The JSON names the engine, its threads and the precision that ran.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import emit, machine, median_seconds, rate
from benchmarks.inference import _random_modules, _street_photo
from md2.core.checkpoint import save_weights_folder
from md2.core.exported import load_predictor
from md2.core.inference import fast_bf16
from md2.core.pictures import collect_inputs
from md2.core.predict import PredictOptions, default_batch_size, predict_images

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
    """predict_images against the network alone, the engine's default precision and batch size."""
    predictor = load_predictor(weights, device="cpu", engine=engine)
    batch = default_batch_size(predictor)
    paths = collect_inputs([str(images)], "png")
    if getattr(predictor, "arrays", False):
        network_input = np.random.default_rng(0).random((batch, 3, predictor.height, predictor.width),
                                                        dtype=np.float32)
    else:
        network_input = torch.rand(batch, 3, predictor.height, predictor.width)
    network = median_seconds(lambda: predictor.disparity(network_input), repeats=repeats * 4, warmup=2)
    options = PredictOptions(output_dir=out, batch_size=batch)
    pipeline = median_seconds(lambda: predict_images(predictor, paths, options), repeats=repeats, warmup=1)
    network_rate, pipeline_rate = rate(batch, network), rate(len(paths), pipeline)
    return {**engine_of(predictor), "batch_size": batch, "network_images_per_s": network_rate,
            "predict_images_per_s": pipeline_rate, "share_of_network": round(pipeline_rate / network_rate, 3)}


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
    return {"frames": frames, "size": "1242x375", **engine_of(predictor), "batch_size": options.batch_size,
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
        pipeline = in_process(images, weights, out_md2, args.repeats, args.engine)
        video = video_rate(root, weights, args.video_frames, args.repeats, args.engine)
        reference_rate = args.images / folder_run["reference_s"]  # includes its start-up, as the folder's md2
        video["speedup_vs_reference_folder_rate"] = round(video["frames_per_s"] / reference_rate, 3)
    results = {
        "machine": machine(), "bf16_native": fast_bf16(torch.device("cpu")),
        "reference_colour_map": colour_mapper()[1],
        f"folder_{args.images}_png": folder_run, "one_photo": {"file": photo.name, **photo_run},
        "engine_asked": args.engine, "in_process": pipeline, "video": video, "target": TARGET, "filer": FILER,
    }
    return emit(results, args.json)


if __name__ == "__main__":
    main()
