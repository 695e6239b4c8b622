"""md2 predict's engines: onnxruntime by default on the CPU through a cached export, no torch once it is cached,
outputs within 1e-4 of the reference's fp32 path, the cache keyed by content and safe for concurrent first runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from md2.core.engine import choose_engine, content_key
from md2.errors import UsageError
from tests.cli.test_app import run_md2
from tests.cli.test_predict import street_image
from tests.core.test_video_predict import encode

TORCH_FP32 = ("--engine", "torch", "--precision", "fp32")


def predict(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = run_md2("predict", *args, "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    """Two photos of different sizes (one KITTI-size) in a folder."""
    folder = tmp_path_factory.mktemp("pictures")
    street_image(folder / "a.png", 300, 100)
    street_image(folder / "b.png", 1242, 375)
    return folder


def test_default_outputs_are_within_1e_4_of_the_reference_fp32_path(tmp_path, pictures, weights):
    fast, exact = tmp_path / "fast", tmp_path / "exact"
    for out, extra in ((fast, ()), (exact, TORCH_FP32)):
        predict(str(pictures), "--ext", "png", "--weights", str(weights), "--output-dir", str(out), *extra)
        predict(str(pictures), "--ext", "png", "--weights", str(weights), "--output-dir", str(out / "metric"),
                "--pred-metric-depth", "--save-depth-png", *extra)
    for stem in ("a", "b"):
        for name in (f"{stem}_disp.npy", f"metric/{stem}_depth.npy"):
            got, want = np.load(fast / name), np.load(exact / name)
            assert got.shape == want.shape and np.isfinite(got).all()
            assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), name
        png_got, png_want = (np.array(Image.open(out / f"metric/{stem}_depth.png")).astype(np.int64)
                             for out in (fast, exact))
        assert np.all(np.abs(png_got - png_want) <= np.maximum(1, 1e-4 * png_want))  # a rounding at most
        with Image.open(fast / f"{stem}_disp.jpeg") as got, Image.open(exact / f"{stem}_disp.jpeg") as want:
            assert got.size == want.size


def test_colour_maps_of_both_engines_differ_by_at_most_one_level_per_channel(pictures, weights):
    from md2.core.exported import load_predictor
    from md2.core.pictures import prepare_image
    from md2.core.predict import as_array, batch_disparity, image_arrays
    from md2.core.visualize import colorize_disparity

    onnx = load_predictor(weights, device="cpu", engine="onnxruntime")
    torch_fp32 = load_predictor(weights, device="cpu", precision="fp32", engine="torch")
    assert onnx.arrays and not torch_fp32.arrays
    ready = prepare_image(pictures / "b.png", onnx.width, onnx.height)
    pictures_ = []
    for predictor in (onnx, torch_fp32):
        disp = batch_disparity(predictor, ready.pixels[None])
        arrays = image_arrays(predictor, disp, ready.original, False, False)
        assert isinstance(as_array(disp), np.ndarray) and arrays.disp_full.shape == ready.original
        pictures_.append(colorize_disparity(arrays.disp_full).astype(np.int64))
    levels = np.abs(pictures_[0] - pictures_[1])
    # A disparity within 1e-6 may still cross a colour's boundary: the next magma colour, rarely.
    assert (levels <= 1).mean() >= 0.999


def test_a_cached_predict_imports_no_torch_nor_pydantic(tmp_path, pictures, weights, synth_raw):
    """Nor pydantic, which Typer imports to parse options md2 parses without it (md2.cli.coercion)."""
    frames = sorted(next(synth_raw.glob("*/*_sync/image_02/data")).glob("*.png"))
    clip = encode(frames[:3], tmp_path / "clip.mp4")
    predict(str(pictures / "a.png"), "--weights", str(weights), "--output-dir", str(tmp_path / "first"))
    script = f"""
import sys
from md2.cli.app import main
for inputs in ([{str(pictures)!r}, "--ext", "png"], [{str(clip)!r}]):
    try:
        main(["predict", *inputs, "--weights", {str(weights)!r}, "--output-dir", {str(tmp_path / "out")!r},
              "--quiet"])
    except SystemExit as end:
        assert not end.code, end.code
print("torch" in sys.modules, "onnxruntime" in sys.modules, "pydantic" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "False"]
    assert {path.name for path in (tmp_path / "out").iterdir()} >= {"a_disp.npy", "b_disp.jpeg", "clip_disp.mp4"}


def test_without_onnxruntime_auto_falls_back_to_torch_with_one_note(tmp_path, pictures, weights):
    script = f"""
import sys
sys.modules["onnxruntime"] = None  # as if it were not installed
from md2.cli.app import main
main(["predict", {str(pictures / "a.png")!r}, "--weights", {str(weights)!r}, "--output-dir", {str(tmp_path)!r}])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "onnxruntime is not installed" in notes[0]
    assert (tmp_path / "a_disp.npy").exists()


def test_engine_choice_on_the_cpu():
    assert choose_engine("auto", "cpu", "auto") == "onnxruntime"
    assert choose_engine("auto", "cpu", "fp32") == "torch"  # the precisions are torch's paths
    assert choose_engine("auto", "cuda", "auto") == "torch"
    assert choose_engine("torch", "cpu", "auto") == "torch"
    with pytest.raises(UsageError, match="fp32"):
        choose_engine("onnxruntime", "cpu", "bf16")
    with pytest.raises(UsageError, match="--engine"):
        choose_engine("tensorrt", "cpu", "auto")


def test_an_exported_file_runs_on_its_own_runtime_only(tmp_path, weights):
    image = street_image(tmp_path / "x.jpg")
    result = run_md2("predict", str(image), "--weights", str(tmp_path / "model.onnx"), "--engine", "torch")
    assert result.returncode == 2 and "--engine torch" in result.stderr


def test_the_cache_key_follows_the_weights_contents_never_their_names_or_times(tmp_path):
    cache, folders = tmp_path / "cache", [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
        (folder / "encoder.pth").write_bytes(b"encoder weights")
        (folder / "depth.pth").write_bytes(b"depth weights")
    files = [[folder / "encoder.pth", folder / "depth.pth"] for folder in folders]
    first = content_key(files[0], cache)
    assert content_key(files[1], cache) == first == content_key(files[0], cache)  # remembered, same contents
    stat = files[0][0].stat()
    files[0][0].write_bytes(b"encoder weighTs")  # retrained: same size, same modification time
    os.utime(files[0][0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert content_key(files[0], cache) != first
    files[0][0].write_bytes(b"encoder weights")
    assert content_key(files[0], cache) == first


def test_concurrent_first_runs_share_one_complete_cache(tmp_path, weights):
    image = street_image(tmp_path / "x.png")
    env = {**os.environ, "MD2_ONNX_CACHE": str(tmp_path / "cache"), "PYTHONPATH": os.pathsep.join(sys.path)}
    runs = [subprocess.Popen([sys.executable, "-m", "md2", "predict", str(image), "--weights", str(weights),
                              "--output-dir", str(tmp_path / f"out{index}"), "--quiet"], env=env,
                             stderr=subprocess.PIPE, text=True) for index in range(2)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    names = sorted(path.name for path in (tmp_path / "cache").iterdir() if path.is_file())
    assert len(names) == 2 and names[0].endswith(".onnx") and ".optimized-" in names[1], names
    assert np.array_equal(np.load(tmp_path / "out0/x_disp.npy"), np.load(tmp_path / "out1/x_disp.npy"))
    again = predict(str(image), "--weights", str(weights), "--output-dir", str(tmp_path / "out2"),
                    env={"MD2_ONNX_CACHE": str(tmp_path / "cache")})
    assert again.stderr == "" and np.array_equal(np.load(tmp_path / "out2/x_disp.npy"),
                                                 np.load(tmp_path / "out0/x_disp.npy"))


def test_torch_fp32_is_the_exact_path_byte_for_byte(tmp_path, pictures, weights):
    from md2.core.inference import DepthPredictor
    from md2.core.pictures import collect_inputs
    from md2.core.predict import PredictOptions, predict_images

    predict(str(pictures), "--ext", "png", "--weights", str(weights), "--output-dir", str(tmp_path / "cli"),
            "--save-depth-png", *TORCH_FP32)
    predictor = DepthPredictor.from_folder(weights, device="cpu", precision="fp32")
    options = PredictOptions(tmp_path / "loop", save_depth_png=True, batch_size=1)
    assert not predict_images(predictor, collect_inputs([str(pictures)], "png"), options, workers=0).failed
    names = sorted(path.name for path in (tmp_path / "loop").iterdir())
    assert names == sorted(path.name for path in (tmp_path / "cli").iterdir()) and len(names) == 6
    for name in names:
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "loop" / name).read_bytes(), name


def test_a_damaged_cached_export_is_exported_again(tmp_path, weights):
    image = street_image(tmp_path / "x.png")
    env = {"MD2_ONNX_CACHE": str(tmp_path / "cache")}
    predict(str(image), "--weights", str(weights), "--output-dir", str(tmp_path / "first"), env=env)
    for path in (tmp_path / "cache").glob("*.onnx"):
        path.write_bytes(path.read_bytes()[:1000])  # both the export and its optimised graph
    predict(str(image), "--weights", str(weights), "--output-dir", str(tmp_path / "again"), env=env)
    assert np.array_equal(np.load(tmp_path / "first/x_disp.npy"), np.load(tmp_path / "again/x_disp.npy"))


def test_an_exported_onnx_file_keeps_its_optimised_graph_and_imports_no_torch(tmp_path, weights):
    image = street_image(tmp_path / "x.png")
    predict(str(image), "--weights", str(weights), "--output-dir", str(tmp_path / "folder"))  # exports it once
    cache = Path(os.environ["MD2_ONNX_CACHE"])
    key = content_key([weights / "encoder.pth", weights / "depth.pth"], cache)
    model = tmp_path / "model.onnx"
    model.write_bytes((cache / f"{key}.onnx").read_bytes())  # md2's own export of these weights
    env = {**os.environ, "MD2_ONNX_CACHE": str(tmp_path / "cache")}
    script = f"""
import sys
from md2.cli.app import main
try:
    main(["predict", {str(image)!r}, "--weights", {str(model)!r}, "--output-dir", {str(tmp_path / "file")!r}])
except SystemExit as end:
    assert not end.code, end.code
print("torch" in sys.modules)
"""
    for _ in range(2):  # the first run optimises the graph and keeps it, the second starts from it
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                                env=env)
        assert result.returncode == 0 and result.stdout.split() == ["False"], result.stderr
        assert len(list((tmp_path / "cache").glob("*.optimized-*.onnx"))) == 1
    assert np.array_equal(np.load(tmp_path / "file/x_disp.npy"), np.load(tmp_path / "folder/x_disp.npy"))


def test_a_folder_in_lanes_gives_the_files_of_one_photo_at_a_time(tmp_path, weights):
    """On the CPU, onnxruntime runs a folder's pictures two at a time, each pass on its share of the cores
    (md2.core.engine.cpu_lanes); the numbers are those of a lone photo on all cores, bit for bit."""
    from md2.core.engine import cpu_lanes
    from md2.core.exported import load_predictor
    from md2.core.pictures import collect_inputs
    from md2.core.predict import PredictOptions, lanes_of, predict_images

    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(5):
        street_image(folder / f"{index}.png", 300 + 20 * index, 100)
    predictor = load_predictor(weights, device="cpu")
    runner, lanes = lanes_of(predictor, 5)
    assert lanes == cpu_lanes()[0] and lanes_of(predictor, 1) == (predictor, 1)
    if lanes > 1:
        assert runner is not predictor and runner.network.session.get_session_options().intra_op_num_threads == \
            cpu_lanes()[1]
        for_folder = load_predictor(weights, device="cpu", pictures=5)  # md2 predict FOLDER: one session only
        assert lanes_of(for_folder, 5) == (for_folder, lanes)
    paths = collect_inputs([str(folder)], "png")
    predict_images(predictor, paths, PredictOptions(output_dir=tmp_path / "together"))
    for path in paths:
        predict_images(predictor, [path], PredictOptions(output_dir=tmp_path / "alone"))
    for path in paths:
        for suffix in ("_disp.npy", "_disp.jpeg"):
            name = f"{path.stem}{suffix}"
            assert (tmp_path / "together" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes(), name


def test_lanes_split_the_physical_cores():
    from md2.core.engine import cpu_lanes, physical_cores

    cores = physical_cores()
    assert 0 < cores <= (os.cpu_count() or 1)
    lanes, threads = cpu_lanes()
    assert (lanes, threads) == ((2, cores // 2) if cores >= 2 else (1, 1))
