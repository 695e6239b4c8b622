"""md2.core.train.prefault: how much of the first CPU steps' memory is faulted in while torch is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from md2.core.train import prefault
from md2.core.train.config import build_config, save_yaml


def _config(**options):
    return build_config({"device": "cpu", "batch_size": 4, "height": 192, "width": 640, **options}, modality="mono")


def test_the_estimate_grows_with_batch_size_image_size_and_frames():
    mono = prefault.expected_heap_bytes(_config())
    assert mono == 4500 * 4 * 192 * 640  # ~2.2 GB: a little below the 2.33 GB measured for this run
    assert prefault.expected_heap_bytes(_config(batch_size=8)) == 2 * mono
    assert prefault.expected_heap_bytes(_config(height=96, width=320)) == mono // 4
    stereo = build_config({"device": "cpu", "batch_size": 4}, modality="stereo")
    both = build_config({"device": "cpu", "batch_size": 4}, modality="mono+stereo")
    assert prefault.expected_heap_bytes(stereo) < mono == prefault.expected_heap_bytes(both)
    assert prefault.expected_heap_bytes(_config(amp=True)) == mono // 2


def test_nothing_is_expected_on_a_gpu_or_with_auto_where_a_gpu_driver_is_installed(tmp_path, monkeypatch):
    assert prefault.expected_heap_bytes(_config(device="cuda")) == 0
    assert prefault.expected_heap_bytes(_config(device="cuda:1")) == 0
    driver = tmp_path / "nvidiactl"
    monkeypatch.setattr(prefault, "GPU_DRIVER_FILES", (str(driver),))
    assert prefault.expected_heap_bytes(_config(device="auto")) > 0
    driver.touch()
    assert prefault.expected_heap_bytes(_config(device="auto")) == 0
    assert prefault.expected_heap_bytes(_config(device="cpu")) > 0


def test_the_prefault_is_capped_by_the_available_memory(monkeypatch):
    asked = []
    monkeypatch.setattr(prefault, "prefault_heap", lambda nbytes: asked.append(nbytes))
    monkeypatch.setattr(prefault, "_available_memory", lambda: 4 * 2**30)
    prefault.start_prefault(_config())
    prefault.start_prefault(_config(batch_size=1))
    assert asked == [2**30, 4500 * 192 * 640]
    monkeypatch.setattr(prefault, "_available_memory", lambda: 0)  # unreadable: nothing
    prefault.start_prefault(_config())
    assert asked[-1] == 0


def test_a_resumed_run_is_prefaulted_from_the_options_it_saved(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(prefault, "prefault_heap", lambda nbytes: asked.append(nbytes))
    monkeypatch.setattr(prefault, "_available_memory", lambda: 64 * 2**30)
    save_yaml(_config(batch_size=2, height=96, width=320), tmp_path / "opt.yaml")
    prefault.start_prefault_for_run(tmp_path)
    assert asked == [4500 * 2 * 96 * 320]
    assert prefault.start_prefault_for_run(tmp_path / "no_run") is None and len(asked) == 1  # resuming reports it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/meminfo")
def test_the_available_memory_is_read_from_proc_meminfo():
    assert prefault._available_memory() > 2**20


def test_the_train_command_module_does_not_import_torch():
    # start_prefault must run before torch is imported, or there is nothing to overlap.
    code = "import sys, md2.cli.train, md2.core.train.prefault; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
