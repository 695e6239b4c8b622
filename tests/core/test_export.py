"""md2 export: md2-written checkpoints to ONNX and TorchScript, run by onnxruntime and torch.jit, against PyTorch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import md2
from md2.core.checkpoint import load_pose_networks, save_weights_folder
from md2.core.export import OPSETS, TOLERANCES, ExportSettings, run_export
from md2.core.export.graphs import DepthGraph, PoseGraph, probe_images
from md2.core.exported import ExportedPredictor, load_predictor, open_exported
from md2.core.geometry import transformation_from_parameters
from md2.core.inference import DepthPredictor
from md2.core.networks import DepthDecoder, PoseDecoder, ResnetEncoder
from md2.errors import CheckpointError, ExportError, MD2Error, NotFiniteOutputs, UsageError

HEIGHT, WIDTH = 64, 192


def write_weights(folder: Path, num_layers: int, seed: int = 0) -> Path:
    """A weights folder written by md2: depth and pose networks, randomly initialised, stereo-trained metadata."""
    torch.manual_seed(seed)
    encoder, pose_encoder = ResnetEncoder(num_layers), ResnetEncoder(num_layers, num_input_images=2)
    return save_weights_folder(folder, {
        "encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc), "pose_encoder": pose_encoder,
        "pose": PoseDecoder(pose_encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)},
        height=HEIGHT, width=WIDTH, use_stereo=True)


@pytest.fixture(scope="module")
def weights18(tmp_path_factory) -> Path:
    return write_weights(tmp_path_factory.mktemp("weights") / "resnet18", 18)


@pytest.fixture(scope="module")
def weights50(tmp_path_factory) -> Path:
    return write_weights(tmp_path_factory.mktemp("weights") / "resnet50", 50, seed=1)


@pytest.fixture(scope="module")
def exported18(weights18, tmp_path_factory) -> dict[str, Path]:
    """ResNet-18 depth + pose, dynamic batch, in both formats; ONNX at the highest opset md2 writes (the default
    one, 18, is md2 export's through the command line in tests/cli/test_export_cli.py)."""
    out = tmp_path_factory.mktemp("exported18")
    files = {}
    for kind, name in (("onnx", "depth.onnx"), ("torchscript", "depth.pt")):
        written = run_export(ExportSettings(output=out / name, weights=weights18, with_pose=True, dynamic_batch=True,
                                            opset=OPSETS.stop - 1 if kind == "onnx" else None))
        assert [file.meta.network for file in written] == ["depth", "pose"]
        files[kind], files[f"{kind}_pose"] = (file.path for file in written)
    return files


def expected_depth(folder: Path, images: torch.Tensor) -> list[torch.Tensor]:
    """md2's PyTorch path for depth: DepthPredictor in fp32 (disp, scaled disparity, depth)."""
    predictor = DepthPredictor.from_folder(folder, device="cpu", precision="fp32")
    disp = predictor.disparity(images)
    return [disp, predictor.scaled_disparity(disp), predictor.depth(disp)]


@torch.inference_mode()
def expected_pose(folder: Path, frame_0: torch.Tensor, frame_1: torch.Tensor) -> list[torch.Tensor]:
    """md2's PyTorch path for pose (as md2 evaluate-pose): the pair stacked, the first of the two poses."""
    encoder, decoder, _ = load_pose_networks(folder, None, torch.device("cpu"))
    axisangle, translation = decoder([encoder(torch.cat([frame_0, frame_1], 1))])
    transform = transformation_from_parameters(axisangle[:, 0], translation[:, 0])
    return [axisangle[:, 0, 0], translation[:, 0, 0], transform]


def assert_runtime_matches_pytorch(path: Path, weights: Path, batch_sizes=(1, 3), tolerance: float = 1e-4):
    """The exported file, run by its runtime, against md2's PyTorch path (depth compared as 1 / depth)."""
    network = open_exported(path, "cpu")
    for batch in batch_sizes:
        inputs = probe_images(len(network.meta.inputs), batch, HEIGHT, WIDTH, seed=10 + batch)
        expected = (expected_depth(weights, *inputs) if network.meta.network == "depth"
                    else expected_pose(weights, *inputs))
        for name, actual, wanted in zip(network.meta.output_names, network(*inputs), expected):
            assert actual.shape == wanted.shape, name
            if name == "depth":
                actual, wanted = 1 / actual, 1 / wanted
            torch.testing.assert_close(actual, wanted.float(), atol=tolerance, rtol=tolerance, msg=name)


@pytest.mark.parametrize("kind", ["onnx", "onnx_pose", "torchscript", "torchscript_pose"])
def test_resnet18_exports_match_pytorch_at_batch_sizes_1_and_3(exported18, weights18, kind):
    assert_runtime_matches_pytorch(exported18[kind], weights18)


@pytest.mark.parametrize("name, opset", [("depth.onnx", 17), ("depth.ts", None)])
def test_resnet50_exports_match_pytorch(weights50, tmp_path, name, opset):
    # ONNX at opset 17: the highest of torch's TorchScript-based exporter (the ResNet-18 files use the other one).
    written = run_export(ExportSettings(output=tmp_path / name, weights=weights50, with_pose=True, opset=opset))
    assert [file.meta.num_layers for file in written] == [50, 50]
    for file in written:
        assert file.verification.difference < 1e-4 and file.meta.batch == 1
        assert_runtime_matches_pytorch(file.path, weights50, batch_sizes=(1,))


def test_onnx_metadata_reads_back_with_onnx_and_onnxruntime(exported18):
    model = onnx.load(str(exported18["onnx"]))
    props = {entry.key: entry.value for entry in model.metadata_props}
    # The file is in the opset asked for (25), which the torch.export-based exporter alone does not guarantee.
    assert [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")] == [25]
    assert (props["height"], props["width"], props["use_stereo"]) == ("64", "192", "true")
    assert [float(props[key]) for key in ("min_depth", "max_depth", "stereo_scale_factor")] == [0.1, 100, 5.4]
    assert props["model"] == "resnet18" and props["md2_version"] == md2.__version__ and props["batch"] == "dynamic"
    assert props["network"] == "depth" and props["pose_file"] == "depth_pose.onnx" and props["opset"] == "25"
    assert [spec["name"] for spec in json.loads(props["outputs"])] == ["disp", "scaled_disp", "depth"]
    assert json.loads(props["inputs"])[0]["shape"] == ["batch", 3, 64, 192]
    assert "LANCZOS" in props["preprocessing"]
    session = onnxruntime.InferenceSession(str(exported18["onnx_pose"]), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["network"] == "pose"
    assert [i.name for i in session.get_inputs()] == ["frame_0", "frame_1"]
    assert [o.name for o in session.get_outputs()] == ["axisangle", "translation", "transform"]
    assert session.get_inputs()[0].shape == ["batch", 3, 64, 192]


def test_torchscript_metadata_reads_back_with_torch_jit(exported18):
    extra = {"md2.json": ""}
    module = torch.jit.load(str(exported18["torchscript"]), _extra_files=extra)
    props = json.loads(extra["md2.json"])
    assert (props["height"], props["width"], props["format"], props["network"]) == ("64", "192", "torchscript", "depth")
    assert "opset" not in props and props["pose_file"] == "depth_pose.pt"
    # Traced once on the CPU, the graph holds no device constant: it runs wherever it is loaded.
    assert "Device = prim::Constant" not in str(module.inlined_graph)
    pose = torch.jit.load(str(exported18["torchscript_pose"]))
    assert "Device = prim::Constant" not in str(pose.inlined_graph)


def test_fixed_batch_onnx_takes_one_image_and_the_predictor_splits_batches(weights18, tmp_path):
    (file,) = run_export(ExportSettings(output=tmp_path / "one.onnx", weights=weights18, opset=OPSETS.start,
                                        disp_only=True))
    assert file.meta.batch == 1 and file.verification.batch_sizes == (1,)
    session = onnxruntime.InferenceSession(str(file.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 64, 192]
    assert [output.name for output in session.get_outputs()] == ["disp"]
    (images,) = probe_images(1, 3, HEIGHT, WIDTH)
    with pytest.raises(Exception, match="dimensions"):
        session.run(None, {"image": images.numpy()})
    predictor = load_predictor(file.path, device="cpu")
    assert isinstance(predictor, ExportedPredictor) and predictor.precision == "fp32"
    torch.testing.assert_close(predictor.disparity(images), expected_depth(weights18, images)[0], atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("opset", list(OPSETS))
def test_every_supported_opset_exports_depth_and_pose_that_onnxruntime_reproduces(weights18, tmp_path, opset):
    written = run_export(ExportSettings(output=tmp_path / "d.onnx", weights=weights18, opset=opset, with_pose=True))
    for file in written:
        model = onnx.load(str(file.path))
        assert [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")] == [opset]
        assert_runtime_matches_pytorch(file.path, weights18, batch_sizes=(1,))


@pytest.mark.parametrize("opset", [OPSETS.start - 1, OPSETS.stop, 7])
def test_unsupported_opset_is_refused_with_the_range(tmp_path, opset):
    with pytest.raises(UsageError, match=f"--opset {opset} is not supported: md2 exports ONNX opsets 11 to 25"):
        run_export(ExportSettings(output=tmp_path / "x.onnx", weights=tmp_path, opset=opset))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("precision, kind, name", [("fp16", "onnx", "half.onnx"), ("fp16", "torchscript", "half.pt"),
                                                   ("bf16", "torchscript", "bf16.pt")])
def test_lower_precisions_are_verified_with_their_tolerance(weights18, tmp_path, precision, kind, name):
    (file,) = run_export(ExportSettings(output=tmp_path / name, weights=weights18, precision=precision,
                                        opset=17 if kind == "onnx" else None))
    assert file.meta.precision == precision and file.verification.tolerance == TOLERANCES[precision]
    assert 0 < file.verification.difference <= TOLERANCES[precision]
    assert file.size < 0.6 * sum((weights18 / name).stat().st_size for name in ("encoder.pth", "depth.pth"))
    assert_runtime_matches_pytorch(file.path, weights18, batch_sizes=(1,), tolerance=TOLERANCES[precision])
    predictor = load_predictor(file.path, device="cpu")
    assert predictor.precision == precision
    with pytest.raises(UsageError, match=f"computes in {precision}"):
        load_predictor(file.path, device="cpu", precision="fp32")


def test_bf16_onnx_that_onnxruntime_cannot_run_is_a_usage_error_before_any_work(weights18, tmp_path):
    with pytest.raises(UsageError, match="bf16") as caught:
        run_export(ExportSettings(output=tmp_path / "out" / "bf16.onnx", weights=weights18, precision="bf16",
                                  opset=17))
    assert "--format torchscript" in str(caught.value)
    assert not (tmp_path / "out").exists()  # refused before the folder, the tracing and the check


def test_a_runtime_that_does_not_reproduce_pytorch_is_refused_with_the_difference(weights18, tmp_path, monkeypatch):
    # onnxruntime reproduces PyTorch to about 2e-7: allowing no difference at all makes the check refuse the file.
    monkeypatch.setitem(TOLERANCES, "fp32", 0.0)
    with pytest.raises(ExportError, match=r"differ from PyTorch's by \d\.\d\de-0[5-9] \(.*\), more than the 0e0"):
        run_export(ExportSettings(output=tmp_path / "d.onnx", weights=weights18, opset=17))
    assert list(tmp_path.iterdir()) == []


def test_a_model_whose_own_outputs_are_not_finite_is_named_as_such_not_as_a_runtime_difference(tmp_path):
    # Finite weights, but batch norm divides by the square root of a negative running variance: PyTorch's own
    # disparities are NaN, so there is nothing to compare the runtime with.
    folder = write_weights(tmp_path / "nan", 18)
    encoder = torch.load(folder / "encoder.pth", weights_only=True)
    encoder["encoder.bn1.running_var"] = -encoder["encoder.bn1.running_var"].abs() - 1
    torch.save(encoder, folder / "encoder.pth")
    with pytest.raises(NotFiniteOutputs, match="own disp output in PyTorch is not finite"):
        run_export(ExportSettings(output=tmp_path / "out" / "d.onnx", weights=folder, opset=17))
    assert not (tmp_path / "out" / "d.onnx").exists()


def test_graphs_compute_md2s_pytorch_paths(weights18):
    predictor = DepthPredictor.from_folder(weights18, device="cpu", precision="fp32")
    image, frame = probe_images(2, 2, HEIGHT, WIDTH)
    with torch.inference_mode():
        outputs = DepthGraph(predictor.encoder, predictor.decoder, 0.1, 100.0)(image)
        for actual, wanted in zip(outputs, expected_depth(weights18, image)):
            assert torch.equal(actual, wanted)
        encoder, decoder, _ = load_pose_networks(weights18, None, torch.device("cpu"))
        for actual, wanted in zip(PoseGraph(encoder, decoder)(image, frame), expected_pose(weights18, image, frame)):
            assert torch.equal(actual, wanted)


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_load_model_runs_an_exported_file_like_the_weights_folder(exported18, weights18, kind):
    from PIL import Image

    exported, folder = md2.load_model(exported18[kind], device="cpu"), md2.load_model(weights18, device="cpu")
    assert (exported.height, exported.width, exported.use_stereo) == (64, 192, True)
    (images,) = probe_images(1, 2, HEIGHT, WIDTH, seed=3)
    with torch.inference_mode():
        torch.testing.assert_close(exported(images), folder(images), atol=1e-4, rtol=0)
    picture = Image.fromarray((images[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).resize((300, 100))
    depth, reference = exported.predict_depth(picture), folder.predict_depth(picture)
    assert depth.shape == (100, 300)
    np.testing.assert_allclose(1 / depth, 1 / reference, atol=1e-4)


def test_pose_file_is_not_a_depth_predictor(exported18):
    with pytest.raises(CheckpointError, match="exported pose network"):
        load_predictor(exported18["onnx_pose"], device="cpu")


def test_missing_onnxruntime_says_how_to_install_it(exported18, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` finds when not installed
    with pytest.raises(MD2Error, match=r"onnxruntime, which is not installed: pip install onnxruntime"):
        load_predictor(exported18["onnx"], device="cpu")
    with pytest.raises(MD2Error, match=r"pip install onnxruntime"):  # a core dependency since issue 27
        run_export(ExportSettings(output=exported18["onnx"].parent / "never.onnx", weights=exported18["onnx"]))


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_damaged_exported_files_are_one_clear_error(exported18, tmp_path, kind, damage):
    source = exported18[kind]
    path = tmp_path / f"broken{source.suffix}"
    data = source.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "text": b"not a model\n"}[damage])
    with pytest.raises(CheckpointError, match=rf"cannot read (ONNX|TorchScript) model {path}: not an? (ONNX|"
                                              rf"TorchScript) file, or corrupt or truncated \(") as caught:
        load_predictor(path, device="cpu")
    assert "\n" not in str(caught.value)


def test_files_without_md2_metadata_are_named(tmp_path):
    plain = tmp_path / "plain.onnx"
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]), str(plain))
    traced = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.trace(torch.nn.Identity(), torch.ones(1)), str(traced))
    for path in (plain, traced):
        with pytest.raises(CheckpointError, match="holds no md2 metadata: export the model with `md2 export`"):
            load_predictor(path, device="cpu")
