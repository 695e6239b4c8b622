"""md2 predict on videos through the md2 command: outputs, several inputs with a bad one, reruns, Ctrl-C."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests import md2_process
from tests.cli.test_app import run_md2
from tests.core.test_video_predict import encode, frame_count


@pytest.fixture(scope="module")
def frames(synth_raw) -> list[Path]:
    return sorted(next(synth_raw.glob("*/*_sync/image_02/data")).glob("*.png"))


def test_a_folder_of_videos_with_a_bad_one_names_it_and_does_the_rest(tmp_path, frames, weights):
    encode(frames, tmp_path / "a.mp4")
    encode(frames[:3], tmp_path / "b.mp4")
    (tmp_path / "c.mp4").write_bytes(b"not a video at all")
    result = run_md2("predict", str(tmp_path), "--ext", "mp4", "--weights", str(weights), "--side-by-side")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "c.mp4" in errors[0] and "Traceback" not in result.stderr
    assert frame_count(tmp_path / "a_disp.mp4")[:3] == (8, 256, 160)
    assert frame_count(tmp_path / "b_disp.mp4")[0] == 3
    assert not (tmp_path / "c_disp.mp4").exists()


def test_a_rerun_does_not_overwrite_without_asking(tmp_path, frames, weights):
    clip = encode(frames[:2], tmp_path / "clip.avi", "MJPG")
    assert run_md2("predict", str(clip), "--weights", str(weights)).returncode == 0
    before = (tmp_path / "clip_disp.mp4").read_bytes()
    again = run_md2("predict", str(clip), "--weights", str(weights), "--every", "2")
    assert again.returncode == 1 and "--overwrite" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert (tmp_path / "clip_disp.mp4").read_bytes() == before
    assert run_md2("predict", str(clip), "--weights", str(weights), "--every", "2", "--overwrite").returncode == 0
    assert frame_count(tmp_path / "clip_disp.mp4")[0] == 1


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path, frames, weights):
    clip = encode(frames[:2], tmp_path / "clip.mp4")
    (tmp_path / "taken").write_text("a file where the folder should go")
    result = run_md2("predict", str(clip), "--weights", str(weights), "--output-dir", str(tmp_path / "taken" / "out"))
    assert result.returncode == 1 and "taken is a file, not a folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_video_options_without_a_video_are_a_usage_error(tmp_path, frames, weights):
    result = run_md2("predict", str(frames[0]), "--weights", str(weights), "--side-by-side")
    assert result.returncode == 2 and "--side-by-side" in result.stderr


def test_ctrl_c_leaves_a_playable_video_of_the_frames_done(tmp_path, frames, weights):
    clip = encode(frames * 60, tmp_path / "long.mp4")  # 480 frames
    process = md2_process.popen(["predict", str(clip), "--weights", str(weights), "--save-frames", "--batch-size",
                                 "1"], stdout=md2_process.PIPE, stderr=md2_process.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list((tmp_path / "long_frames").glob("*.npy"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    done = frame_count(tmp_path / "long_disp.mp4")[0]
    assert 5 <= done < 480 and f"the {done} frames done" in stderr
    assert len(list((tmp_path / "long_frames").glob("*.npy"))) == done  # every frame written is in the video
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
