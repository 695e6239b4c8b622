"""Depth videos: synthetic KITTI drives encoded by OpenCV (mp4 and avi), predicted through the same pipeline as
photos; the frames' files equal predicting the decoded frames as images; Ctrl-C leaves a playable file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from md2.core.inference import DepthPredictor
from md2.core.networks import DepthDecoder, ResnetEncoder
from md2.core.predict import PredictOptions, predict_images
from md2.core.video_predict import RunningScale, VideoInterrupted, VideoOptions, predict_video
from md2.data.video_io import FrameRange, VideoReader
from md2.errors import DataError, UsageError

FPS = 10


def encode(frames: list[Path], path: Path, fourcc: str = "mp4v", fps: float = FPS) -> Path:
    """Write image files as a video with OpenCV."""
    first = cv2.imread(str(frames[0]))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (first.shape[1], first.shape[0]))
    for frame in frames:
        writer.write(cv2.imread(str(frame)))
    writer.release()
    return path


def frame_count(path: Path) -> tuple[int, int, int, float]:
    """(frames decoded, width, height, fps) of a video, by reading it to the end."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return count, *size, capture.get(cv2.CAP_PROP_FPS)


@pytest.fixture(scope="module")
def clips(synth_raw, tmp_path_factory) -> dict[str, Path]:
    """The 8 frames (256 x 80) of a synthetic drive as clip.mp4 (mp4v) and clip.avi (MJPG)."""
    frames = sorted(next(synth_raw.glob("*/*_sync/image_02/data")).glob("*.png"))
    folder = tmp_path_factory.mktemp("clips")
    return {"mp4": encode(frames, folder / "clip.mp4"), "avi": encode(frames, folder / "clip.avi", "MJPG")}


@pytest.fixture(scope="module")
def predictor() -> DepthPredictor:
    torch.manual_seed(0)
    encoder = ResnetEncoder(18).eval()
    return DepthPredictor(encoder, DepthDecoder(encoder.num_ch_enc).eval(), 64, 192, True, torch.device("cpu"))


@pytest.mark.parametrize("kind", ["mp4", "avi"])
@pytest.mark.parametrize("side_by_side", [False, True])
def test_the_depth_video_has_every_frame_at_the_inputs_size_and_rate(tmp_path, clips, predictor, kind,
                                                                    side_by_side):
    report = predict_video(predictor, clips[kind], VideoOptions(tmp_path, side_by_side=side_by_side, batch_size=3))
    assert report.video == tmp_path / "clip_disp.mp4" and report.frames == 8 and report.frames_folder is None
    assert frame_count(report.video) == (8, 256, 80 * (2 if side_by_side else 1), FPS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip_disp.mp4"]  # no temporary left


def test_frame_files_equal_predicting_the_decoded_frames_as_images(tmp_path, clips, predictor):
    options = VideoOptions(tmp_path / "video", save_frames=True, save_depth_png=True, batch_size=2,
                           frames=FrameRange(start="1f", end="7f", every=2))
    report = predict_video(predictor, clips["mp4"], options)
    assert report.frames == 3 and report.expected == 3
    # The same decoder's frames as PNG files, predicted as photos with the same batching.
    images = tmp_path / "images"
    images.mkdir()
    with VideoReader(clips["mp4"]) as reader:
        for number, rgb in reader.frames(FrameRange(start="1f", end="7f", every=2)):
            cv2.imwrite(str(images / f"{number:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    paths = sorted(images.glob("*.png"))
    assert [p.stem for p in paths] == ["000001", "000003", "000005"]
    predict_images(predictor, paths, PredictOptions(tmp_path / "as_images", save_depth_png=True, batch_size=2))
    for path in paths:
        for suffix in ("_disp.npy", "_depth.png"):
            assert (report.frames_folder / f"{path.stem}{suffix}").read_bytes() == \
                (tmp_path / "as_images" / f"{path.stem}{suffix}").read_bytes(), path.stem + suffix


def test_metric_depth_frames(tmp_path, clips, predictor):
    options = VideoOptions(tmp_path, save_frames=True, pred_metric_depth=True, frames=FrameRange(end="0.2"))
    report = predict_video(predictor, clips["mp4"], options)
    assert report.frames == 2  # 0.2 s at 10 frames/s
    depths = sorted(report.frames_folder.glob("*_depth.npy"))
    assert [p.name for p in depths] == ["000000_depth.npy", "000001_depth.npy"]
    assert np.load(depths[0]).shape == (1, 1, 64, 192) and np.load(depths[0]).min() >= 5.4 * 0.1 - 1e-4


def test_an_existing_output_is_kept_unless_overwrite(tmp_path, clips, predictor):
    (tmp_path / "clip_disp.mp4").write_bytes(b"earlier")
    with pytest.raises(DataError, match="--overwrite"):
        predict_video(predictor, clips["mp4"], VideoOptions(tmp_path))
    assert (tmp_path / "clip_disp.mp4").read_bytes() == b"earlier"
    predict_video(predictor, clips["mp4"], VideoOptions(tmp_path, overwrite=True))
    assert frame_count(tmp_path / "clip_disp.mp4")[0] == 8


def test_ctrl_c_leaves_a_playable_file_of_the_frames_done(tmp_path, clips, predictor):
    def interrupt(number: int) -> None:
        if number == 4:
            raise KeyboardInterrupt

    with pytest.raises(VideoInterrupted) as stopped:
        predict_video(predictor, clips["mp4"], VideoOptions(tmp_path, batch_size=2, save_frames=True),
                      on_frame=interrupt)
    report = stopped.value.report
    # frames 0-4, and those already being finished when Ctrl-C came (their .npy written): in the video too
    assert 5 <= report.frames <= 8 and report.interrupted
    assert frame_count(tmp_path / "clip_disp.mp4")[0] == report.frames
    assert sorted(p.name for p in (tmp_path / "clip_frames").iterdir()) == [f"{n:06d}_disp.npy"
                                                                           for n in range(report.frames)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip_disp.mp4", "clip_frames"]


def test_ctrl_c_before_any_frame_leaves_nothing(tmp_path, clips, predictor):
    def interrupt(total) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_video(predictor, clips["mp4"], VideoOptions(tmp_path), on_start=interrupt)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, message", [(b"", "cannot read video"), (b"\x00\x00\x00\x18ftypmp42" * 50,
                                                                           "cannot read video")])
def test_unreadable_videos_are_one_data_error_naming_the_file(tmp_path, predictor, content, message):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        predict_video(predictor, bad, VideoOptions(tmp_path / "out"))
    assert "bad.mp4" in str(error.value) and not (tmp_path / "out").exists()


def test_a_range_past_the_end_has_no_frames(tmp_path, clips, predictor):
    with pytest.raises(DataError, match="no frames in the range"):
        predict_video(predictor, clips["mp4"], VideoOptions(tmp_path, frames=FrameRange(start="100f")))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("frames, message", [(FrameRange(start="x"), "--start"), (FrameRange(start="5", end="2"),
                                                                                  "--end"),
                                            (FrameRange(end="-3f"), "negative")])
def test_bad_ranges_are_usage_errors(tmp_path, clips, predictor, frames, message):
    with pytest.raises(UsageError, match=message):
        predict_video(predictor, clips["mp4"], VideoOptions(tmp_path, frames=frames))


def test_the_colour_scale_moves_slowly():
    scale = RunningScale(span=30)
    first = scale.update(np.linspace(0.1, 0.5, 1000, dtype=np.float32))
    jumped = scale.update(np.linspace(0.1, 0.9, 1000, dtype=np.float32))  # a near object appears
    assert first[1] < jumped[1] < first[1] + 0.6 * (0.88 - first[1])  # halfway at most after one frame
    for _ in range(200):
        settled = scale.update(np.linspace(0.1, 0.9, 1000, dtype=np.float32))
    assert settled[1] == pytest.approx(np.percentile(np.linspace(0.1, 0.9, 1000), 95), rel=1e-3)
