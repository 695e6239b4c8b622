"""``md2 predict`` beside the reference's test_simple.py loop, whole processes, in one run.

    python -m benchmarks.predict [--json out.json] [--images 24] [--repeats 3]

On the same files and the same weights (a ResNet-18 640x192 model written by md2, random weights: speed does
not depend on them): (1) a folder of ``--images`` KITTI-size (1242x375) PNGs, ``md2 predict DIR --ext png
--weights W`` against ``python -m benchmarks.reference_predict`` (the reference's loop, see that module);
(2) one photo (../shared/images/test_image.jpg when present, else a KITTI-size JPEG), the same two commands;
runs interleaved (reference, md2, reference, md2, ...), each figure the median of ``--repeats`` with the file
cache warm. (3) In process: ``predict_images`` against the network alone (``DepthPredictor.disparity`` on
ready tensors) at the same batch size and precision (md2 predict's defaults), so the share says what the
pipeline costs beyond the network. (4) ``md2 predict`` on a 1242x375 mp4 of ``--video-frames`` frames, in
process: frames/s. The JSON names the precision that ran and whether bf16 is native here.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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
from md2.core.inference import DepthPredictor, fast_bf16
from md2.core.pictures import collect_inputs
from md2.core.predict import PredictOptions, default_batch_size, predict_images

SHARED_PHOTO = Path(__file__).resolve().parents[1].parent / "shared" / "images" / "test_image.jpg"
TARGET = {"folder_speedup": 1.5, "one_photo_speedup": 1.5, "in_process_share_of_network": 0.85}
FILER = {"folder_24_png_reference_s": 11.3, "folder_24_png_md2_s": 10.3}
"""What issue 14's filer measured on a 2-core AMD EPYC with native bf16 (for scale only)."""


def whole_process(command: list[str]) -> float:
    """Seconds from starting ``command`` to its exit (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def side_by_side(reference: list[str], md2: list[str], outputs: list[Path], repeats: int) -> dict:
    """Both commands ``repeats`` times, alternating, each after one untimed run (warm file cache)."""
    times: dict[str, list[float]] = {"reference": [], "md2": []}
    for round_ in range(repeats + 1):
        for name, command in (("reference", reference), ("md2", md2)):
            seconds = whole_process(command)
            if round_:
                times[name].append(seconds)
            for folder in outputs:
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
    medians = {name: round(statistics.median(values), 3) for name, values in times.items()}
    return {"reference_s": medians["reference"], "md2_s": medians["md2"],
            "speedup": round(medians["reference"] / medians["md2"], 3),
            "reference_runs_s": [round(t, 3) for t in times["reference"]],
            "md2_runs_s": [round(t, 3) for t in times["md2"]]}


def commands(source: Path, weights: Path, out_ref: Path, out_md2: Path, ext: str) -> tuple[list[str], list[str]]:
    reference = [sys.executable, "-m", "benchmarks.reference_predict", "--image-path", str(source), "--weights",
                 str(weights), "--ext", ext, "--output-dir", str(out_ref)]
    md2 = [sys.executable, "-m", "md2", "predict", str(source), "--ext", ext, "--weights", str(weights),
           "--output-dir", str(out_md2), "--quiet"]
    return reference, md2


def in_process(images: Path, weights: Path, out: Path, repeats: int) -> dict:
    """predict_images against the network alone, md2 predict's default precision and batch size."""
    predictor = DepthPredictor.from_folder(weights, device="cpu", precision="auto")
    batch = default_batch_size(predictor)
    paths = collect_inputs([str(images)], "png")
    network_input = torch.rand(batch, 3, predictor.height, predictor.width)
    network = median_seconds(lambda: predictor.disparity(network_input), repeats=repeats * 4, warmup=2)
    options = PredictOptions(output_dir=out, batch_size=batch)
    pipeline = median_seconds(lambda: predict_images(predictor, paths, options), repeats=repeats, warmup=1)
    network_rate, pipeline_rate = rate(batch, network), rate(len(paths), pipeline)
    return {"precision": predictor.precision, "channels_last": predictor.channels_last, "batch_size": batch,
            "network_images_per_s": network_rate, "predict_images_per_s": pipeline_rate,
            "share_of_network": round(pipeline_rate / network_rate, 3)}


def video_rate(folder: Path, weights: Path, frames: int, repeats: int) -> dict:
    """``predict_video`` (defaults: auto precision, default batch) on a KITTI-size mp4 of ``frames`` frames."""
    import cv2

    from md2.core.video_predict import VideoOptions, predict_video

    clip = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (1242, 375))
    for index in range(frames):
        writer.write(np.asarray(_street_photo(index % 8))[:, :, ::-1])
    writer.release()
    predictor = DepthPredictor.from_folder(weights, device="cpu", precision="auto")
    options = VideoOptions(folder / "out", batch_size=default_batch_size(predictor), overwrite=True)
    seconds = median_seconds(lambda: predict_video(predictor, clip, options), repeats=repeats, warmup=1)
    return {"frames": frames, "size": "1242x375", "precision": predictor.precision,
            "batch_size": options.batch_size, "frames_per_s": rate(frames, seconds)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--video-frames", type=int, default=48)
    args = parser.parse_args(argv)
    from benchmarks.reference_predict import colour_mapper

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
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
        folder_run = side_by_side(*commands(images, weights, out_ref, out_md2, "png"), [out_ref, out_md2],
                                  args.repeats)
        photo_run = side_by_side(*commands(photo, weights, out_ref, out_md2, photo.suffix[1:]),
                                 [out_ref, out_md2], args.repeats)
        pipeline = in_process(images, weights, out_md2, args.repeats)
        video = video_rate(root, weights, args.video_frames, args.repeats)
    results = {
        "machine": machine(), "bf16_native": fast_bf16(torch.device("cpu")),
        "reference_colour_map": colour_mapper()[1],
        f"folder_{args.images}_png": folder_run, "one_photo": {"file": photo.name, **photo_run},
        "in_process": pipeline, "video": video, "target": TARGET, "filer": FILER,
    }
    return emit(results, args.json)


if __name__ == "__main__":
    main()
