"""md2 evaluate-depth --engine: onnxruntime by default on the CPU, the same disparities as torch's fp32 within 1e-4."""

from __future__ import annotations

import json

import numpy as np

from tests.cli.test_evaluate_cli import SPLIT, _depth_args, md2_in_process, splits, weights  # noqa: F401 -- fixtures


def test_onnxruntime_evaluates_like_torch_fp32(capsys, synth_raw, splits, weights, tmp_path):  # noqa: F811
    results = {}
    for engine in ("onnxruntime", "torch"):
        out = tmp_path / engine
        code, _, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--load-weights-folder", weights,
                                                           "--eval-mono", "--engine", engine, "--save-pred-disps",
                                                           "--eval-out-dir", out, "--json", out / "r.json"))
        assert code == 0, err
        results[engine] = (np.load(out / f"disps_{SPLIT}_split.npy"), json.loads((out / "r.json").read_text()))
    onnx, torch_fp32 = results["onnxruntime"][0], results["torch"][0]
    assert onnx.shape == torch_fp32.shape and np.isfinite(onnx).all()
    assert np.abs(onnx - torch_fp32).max() <= 1e-4 * np.abs(torch_fp32).max()
    for name, value in results["torch"][1]["metrics"].items():
        assert abs(results["onnxruntime"][1]["metrics"][name] - value) <= 1e-4 * max(1.0, abs(value)), name


def test_an_unknown_engine_is_a_usage_error(capsys, synth_raw, splits, weights):  # noqa: F811
    code, _, err = md2_in_process(capsys, *_depth_args(synth_raw, splits, "--load-weights-folder", weights,
                                                       "--eval-mono", "--engine", "tensorrt"))
    assert code == 2 and "--engine" in err
