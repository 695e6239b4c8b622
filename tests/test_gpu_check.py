"""benchmarks.gpu_check without a GPU: one line and exit 1; --simulate runs the phases' fake-CUDA stretches and
writes the report's JSON shape; a phase that fails does not stop the others."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu_phases import Work

ROOT = Path(__file__).resolve().parents[1]
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")


@needs_no_gpu
def test_without_cuda_the_check_exits_1_with_one_line(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "--simulate" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_simulate_writes_every_phase_marked_simulated(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    chosen = "synth,train_amp_fp16,speed_training,nccl,evaluate_depth,predict_photos"
    assert gpu_check.main(["--out", str(out), "--simulate", "--work", str(tmp_path / "work"),
                           "--phases", chosen]) == 0
    report = json.loads(out.read_text())
    assert set(report) >= {"device", "versions", "phases", "figures", "notes"} and report["versions"]["torch"]
    phases = {phase["name"]: phase for phase in report["phases"]}
    assert set(phases) == set(chosen.split(","))  # in the check's order
    assert all(phase["simulated"] is True and phase["seconds"] >= 0 for phase in phases.values())
    assert {name for name, phase in phases.items() if phase["status"] == "skipped"} == {"speed_training", "nccl"}
    assert "GradScaler on" in phases["train_amp_fp16"]["detail"] and "fp16" in phases["train_amp_fp16"]["detail"]
    assert all(phases[name]["status"] == "passed" for name in ("synth", "evaluate_depth", "predict_photos"))
    assert report["figures"] == {}
    printed = capsys.readouterr().out
    assert all(name in printed for name in phases)


def test_a_failing_phase_is_reported_and_the_next_still_runs(tmp_path):
    work = Work(tmp_path, deadline=float("inf"))

    def broken(_work):
        raise RuntimeError("exit 1: something\nwent wrong")

    results = [gpu_check.run_phase(gpu_check.Phase(name, 10, broken, simulate), work, simulate=True)
               for name, simulate in (("first", broken), ("second", lambda _work: "fine"))]
    assert [(r.status, r.detail) for r in results] == [("failed", "RuntimeError: exit 1: something went wrong"),
                                                       ("passed", "fine")]


def test_phases_past_the_budget_are_skipped(tmp_path):
    work = Work(tmp_path, deadline=0.0)
    result = gpu_check.run_phase(gpu_check.Phase("late", 10, lambda *_: "ran", lambda _w: "ran"), work, True)
    assert result.status == "skipped" and "budget" in result.detail


def test_an_unknown_phase_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--out", str(tmp_path / "gpu.json"), "--simulate", "--phases", "train_mono,warp_drive"])
    assert stopped.value.code == 2 and "warp_drive" in capsys.readouterr().err


def test_lidar_ground_truth_is_read_without_threadpoolctl(synth_raw):
    # The GPU machines' image has no threadpoolctl (and no pip): md2 reads the lidar there, with BLAS's threads.
    script = (
        "import sys; sys.modules['threadpoolctl'] = None\n"
        "from md2.data.calib import generate_depth_map, one_blas_thread\n"
        f"day = {str(synth_raw / '2011_09_26')!r}\n"
        "with one_blas_thread():\n"
        "    depth = generate_depth_map(day, day + '/2011_09_26_drive_0001_sync/velodyne_points/data/0000000001.bin')\n"
        "print(depth.shape, int((depth > 0).sum()))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shape, valid = done.stdout.rsplit(" ", 1)
    assert shape == "(80, 256)" and int(valid) > 100
