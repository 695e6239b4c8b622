"""`md2 train` through the real executable: a tiny run's files, --resume, refused option combinations."""

from __future__ import annotations

import pytest
import yaml

from md2.core.train.state import read_state
from tests.cli.test_app import run_md2
from tests.core.train.helpers import tiny_split


def _common(data, splits, log_dir) -> list[str]:
    """A tiny run's options: 64 x 64 (the smallest size md2 trains), batch 2, scratch weights, no workers."""
    return ["--data-path", str(data), "--splits-dir", str(splits), "--split", "synth", "--png", "--height", "64",
            "--width", "64", "--batch-size", "2", "--num-workers", "0", "--weights-init", "scratch",
            "--log-dir", str(log_dir), "--num-epochs", "1"]


def test_md2_train_writes_weights_options_and_events_and_resumes(synth_raw, tmp_path):
    splits = tiny_split(synth_raw, tmp_path / "splits")
    result = run_md2("train", *_common(synth_raw, splits, tmp_path), "--model-name", "cli", "--modality", "stereo")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "cli"
    assert {p.name for p in (run / "models" / "weights_0").iterdir()} == {"encoder.pth", "depth.pth", "adam.pth"}
    options = yaml.safe_load((run / "opt.yaml").read_text())
    assert options["data"]["frame_ids"] == [0] and options["data"]["use_stereo"] is True
    assert options["data"]["split"] == "synth"  # given explicitly: wins over the stereo preset's eigen_full
    assert list((run / "train").glob("events.out.tfevents.*")) and list((run / "val").glob("events.out.tfevents.*"))
    assert "peak memory" in result.stderr
    more = run_md2("train", "--resume", str(run), "--num-epochs", "2")
    assert more.returncode == 0, more.stderr
    assert read_state(run).progress.epoch == 2 and (run / "models" / "weights_1").is_dir()


@pytest.mark.parametrize("bad", [
    ["--frame-ids", "1,0"],
    ["--height", "100"],
    ["--predictive-mask"],
    ["--frame-ids", "0"],
    ["--modality", "sideways"],
    ["--pose-model-type", "lstm"],
], ids=lambda bad: " ".join(bad))
def test_invalid_combinations_are_refused_with_one_line(synth_raw, tmp_path, bad):
    refused = run_md2("train", *_common(synth_raw, synth_raw / "splits", tmp_path), "--model-name", "bad", *bad)
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("extra,message", [
    (["--learning-rate", "1"], "--learning-rate cannot change"),
    (["--modality", "mono"], "--modality and --config do not apply"),
])
def test_resume_refuses_other_options_with_one_line(synth_raw, tmp_path, extra, message):
    run = tmp_path / "never"
    run.mkdir()
    refused = run_md2("train", "--resume", str(run), *extra)
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_resume_of_a_folder_without_a_run_is_one_line(tmp_path):
    refused = run_md2("train", "--resume", str(tmp_path))
    assert refused.returncode == 1 and "no training state" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
