"""md2 download-kitti beyond KITTI raw: the depth benchmark's annotations and test images, the odometry dataset.

A local server holds zips built from md2's synthetic dataset with KITTI's real archive names and inner paths
(tests/kitti_mirror.py): data_depth_annotated.zip unpacks as train/DRIVE_sync/proj_depth/... and val/..., the
odometry archives as dataset/sequences/... and dataset/poses/....
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from md2.core.evaluation.datasets import depth_test_dataset, pose_test_dataset
from md2.data.groundtruth import benchmark_ground_truth, export_gt, load_gt_depths
from md2.data.kitti import KITTIDepthDataset
from md2.data.kitti_download import (MARKERS, ODOMETRY_PARTS, Archive, DepthAnnotations, DepthSelection, Mirror,
                                     OdometryArchive, Reporter, download_kitti)
from md2.data.splits import read_split_file
from md2.errors import DownloadError
from tests.cli.test_app import run_md2
from tests.data.test_kitti_download import gets, same_tree
from tests.httpserver import LocalServer
from tests.kitti_mirror import UNKNOWN_DRIVE, kitti_mirror, zip_members

DRIVES = ("2011_09_26_drive_0001", "2011_09_26_drive_0002")
ANNOTATED, COLOR, POSES = "/data_depth_annotated.zip", "/data_odometry_color.zip", "/data_odometry_poses.zip"


def drive_folder(root: Path, drive: str) -> Path:
    return root / drive[:10] / f"{drive}_sync"


@pytest.fixture(scope="module")
def mirror(synth_raw) -> dict[str, bytes]:
    return kitti_mirror(synth_raw)


@pytest.fixture
def splits(synth_raw, tmp_path) -> Path:
    """synth and odom as written by md2 synth, eigen_benchmark (synth's test lines), one (drive 0001 only) and
    benchmark (test lines "image N", synth's training lines)."""
    root, source = tmp_path / "splits", synth_raw / "splits"
    for name in ("synth", "odom"):
        shutil.copytree(source / name, root / name)
    tests = (source / "synth" / "test_files.txt").read_text()
    for name, files in {"eigen_benchmark": {"test": tests},
                        "one": {"train": "".join(f"{line}\n" for line in tests.splitlines() if DRIVES[0] in line)},
                        "benchmark": {"test": "".join(f"image {i}\n" for i in range(8)),
                                      "train": (source / "synth" / "train_files.txt").read_text()}}.items():
        (root / name).mkdir()
        for which, text in files.items():
            (root / name / f"{which}_files.txt").write_text(text)
    return root


class Recorder(Reporter):
    """Keeps the notes and the last (done, total) of every check and extraction."""

    def __init__(self) -> None:
        self.notes, self.stages = [], {}

    def note(self, archive, message: str) -> None:
        self.notes.append(message)

    def checking(self, archive):
        return lambda done, total: self.stages.__setitem__((archive.filename, "checking"), (done, total))

    def unpacking(self, archive):
        return lambda done, total: self.stages.__setitem__((archive.filename, "unpacking"), (done, total))


def test_eigen_benchmark_gets_its_drives_and_their_maps_where_export_gt_reads_them(tmp_path, synth_raw, mirror,
                                                                                     splits):
    out = tmp_path / "kitti"
    with LocalServer(mirror) as server:
        fetched = download_kitti(out, ["eigen_benchmark"], splits_dir=splits, base_url=server.url("/raw_data"))
    assert fetched[-1] == DepthAnnotations(DRIVES) and Archive(DRIVES[1]) in fetched
    for drive in DRIVES:
        assert same_tree(drive_folder(out, drive) / "proj_depth", drive_folder(synth_raw, drive) / "proj_depth")
        assert (drive_folder(out, drive) / "image_02" / "data").is_dir()
    assert not {"train", "val", "2011_09_28"} & {path.name for path in out.iterdir()}  # UNKNOWN_DRIVE stays zipped
    assert not list(out.glob("*.zip*"))
    gt = load_gt_depths(export_gt(out, "eigen_benchmark", splits_dir=splits, jobs=1, progress=False))
    lines = read_split_file(splits / "eigen_benchmark" / "test_files.txt")
    assert len(gt) == len(lines)
    for depth, line in zip(gt, lines):
        np.testing.assert_array_equal(depth, benchmark_ground_truth(synth_raw, line))
    # --dataset kitti_depth reads both cameras' maps from the same folders.
    right = KITTIDepthDataset(out, [f"{lines[0].folder} {lines[0].frame} r"], 64, 192, (0,), img_ext=".png")
    expected = drive_folder(synth_raw, DRIVES[0]) / "proj_depth" / "groundtruth" / "image_03"
    assert right.has_depth(right.refs[0]) and right.depth_path(right.refs[0]).name in {
        path.name for path in expected.iterdir()}


def test_maps_come_before_or_after_the_raw_drives_and_more_drives_later_unpack_only_those(tmp_path, mirror, splits):
    out, maps = tmp_path / "kitti", {"raw": False, "depth_annotations": True}
    with LocalServer(mirror) as server:
        base = server.url("/raw_data")
        assert download_kitti(out, ["one"], splits_dir=splits, base_url=base, **maps) == [DepthAnnotations(DRIVES[:1])]
        first = {path: path.stat().st_mtime_ns for path in drive_folder(out, DRIVES[0]).rglob("*.png")}
        assert first and not drive_folder(out, DRIVES[1]).exists()
        fetched = download_kitti(out, ["synth"], splits_dir=splits, base_url=base, **maps)
        assert fetched == [DepthAnnotations(DRIVES[1:])]
        assert {path: path.stat().st_mtime_ns for path in first} == first
        assert (drive_folder(out, DRIVES[1]) / "proj_depth" / "groundtruth" / "image_02").is_dir()
        before = len(server.requests)
        assert download_kitti(out, ["synth"], splits_dir=splits, base_url=base, **maps) == []
        assert len(server.requests) == before
        # The drives' folders exist (they hold the maps), but the raw drives are still to get.
        fetched = download_kitti(out, ["synth"], splits_dir=splits, base_url=base, depth_annotations=True)
    assert sorted(archive.filename for archive in fetched) == ["2011_09_26_calib.zip",
                                                               *(f"{drive}_sync.zip" for drive in DRIVES)]
    assert (drive_folder(out, DRIVES[1]) / "image_03" / "data").is_dir() and first.keys() <= set(out.rglob("*.png"))


def test_drives_the_annotations_do_not_cover_are_named_once_and_not_fetched_again(tmp_path, mirror, splits):
    (splits / "other").mkdir()
    (splits / "other" / "train_files.txt").write_text("2011_09_26/2011_09_26_drive_0001_sync 1 l\n"
                                                      "2011_09_26/2011_09_26_drive_0093_sync 1 l\n")
    out, recorder = tmp_path / "kitti", Recorder()
    with LocalServer(mirror) as server:
        options = {"splits_dir": splits, "base_url": server.url("/raw_data"), "raw": False, "depth_annotations": True}
        download_kitti(out, ["other"], reporter=recorder, **options)
        assert recorder.notes == ["data_depth_annotated.zip has no depth maps for 1 of the 2 drives asked for "
                                  "(first: 2011_09_26_drive_0093)"]
        assert (out / MARKERS / "data_depth_annotated" / "2011_09_26_drive_0093.none").is_file()
        assert download_kitti(out, ["other"], **options) == []
    assert not drive_folder(out, UNKNOWN_DRIVE).exists()


def test_odometry_lands_as_sequences_and_poses_for_evaluate_pose(tmp_path, synth_raw, mirror, splits):
    out, recorder = tmp_path / "kitti", Recorder()
    with LocalServer(mirror) as server:
        fetched = download_kitti(out, ["odom"], splits_dir=splits, base_url=server.url("/raw_data"), reporter=recorder)
        assert fetched == [OdometryArchive(part) for part in ODOMETRY_PARTS]
        assert not any(path.startswith("/raw_data") for path in gets(server))
        before = len(server.requests)
        assert download_kitti(out, ["odom"], splits_dir=splits, base_url=server.url("/raw_data")) == []
        assert len(server.requests) == before
    assert same_tree(out / "sequences", synth_raw / "sequences") and same_tree(out / "poses", synth_raw / "poses")
    assert not (out / "dataset").exists()
    for (name, stage), (done, total) in recorder.stages.items():
        assert done == total > 0, (name, stage)
    assert len(recorder.stages) == 2 * len(ODOMETRY_PARTS)
    dataset = pose_test_dataset(splits / "odom" / "test_files_09.txt", out, 64, 192, png=True)
    assert len(dataset) == len((synth_raw / "poses" / "09.txt").read_text().splitlines()) - 1


def test_odometry_parts_choose_the_archives(tmp_path, mirror):
    with LocalServer(mirror) as server:
        fetched = download_kitti(tmp_path / "k", None, base_url=server.url("/raw_data"), raw=False,
                                 odometry_parts=["poses"])
        assert gets(server) == [POSES] and fetched == [OdometryArchive("poses")]
    assert sorted(path.name for path in (tmp_path / "k" / "poses").iterdir()) == ["09.txt", "10.txt"]


def test_benchmark_gets_the_test_images_evaluate_depth_reads(tmp_path, mirror, splits):
    out = tmp_path / "kitti"
    with LocalServer(mirror) as server:
        fetched = download_kitti(out, ["benchmark"], splits_dir=splits, base_url=server.url("/raw_data"))
    assert fetched[-1] == DepthSelection()
    images = out / "depth_selection" / "test_depth_prediction_anonymous"
    dataset = depth_test_dataset("benchmark", splits / "benchmark", images, 64, 192, png=True)
    assert len(dataset) == 8 and len(list((images / "intrinsics").iterdir())) == 8
    assert not (out / "depth_selection" / "val_selection_cropped").exists()


def test_new_archives_resume_retry_and_the_others_arrive_when_one_is_bad(tmp_path, mirror, splits):
    files = dict(mirror)
    damaged = bytearray(files[POSES])
    damaged[len(damaged) // 3: len(damaged) // 3 + 50] = b"\xff" * 50
    files[POSES] = bytes(damaged)
    out, options = tmp_path / "kitti", {"splits_dir": splits, "raw": False, "depth_annotations": True}
    with LocalServer(files) as server:
        server.cut(COLOR, after=20_000)
        server.fail(ANNOTATED, status=503)
        with pytest.raises(DownloadError, match="1 of 4 archives failed.*data_odometry_poses.zip"):
            download_kitti(out, ["synth", "odom"], base_url=server.url("/raw_data"), **options)
        assert [r.range for r in server.requests if r.path == COLOR and r.method == "GET"] == [None, "bytes=20000-"]
        assert gets(server).count(ANNOTATED) == 2
    assert (out / "sequences" / "09" / "image_2").is_dir() and (drive_folder(out, DRIVES[1]) / "proj_depth").is_dir()
    assert not (out / "poses").exists() and not (out / "data_odometry_poses.zip").exists()
    with LocalServer(mirror) as server:
        assert download_kitti(out, ["synth", "odom"], base_url=server.url("/raw_data"), **options) == [
            OdometryArchive("poses")]


def test_a_member_leaving_the_folder_is_refused_before_anything_is_written(tmp_path, mirror, splits):
    evil = zip_members({"train/2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000001.png": b"x",
                        "train/../../escaped.txt": b"x"})
    with LocalServer({**mirror, ANNOTATED: evil}) as server, pytest.raises(DownloadError, match="escaped.txt"):
        download_kitti(tmp_path / "out" / "k", ["synth"], splits_dir=splits, base_url=server.url("/raw_data"),
                       raw=False, depth_annotations=True)
    assert not list(tmp_path.rglob("escaped.txt")) and not list(tmp_path.rglob("0000000001.png"))


def test_mirrors_default_to_the_folder_above_raw_data():
    assert Mirror.of() == Mirror("https://s3.eu-central-1.amazonaws.com/avg-kitti/raw_data",
                                 "https://s3.eu-central-1.amazonaws.com/avg-kitti")
    assert Mirror.of("http://m/kitti/raw_data/") == Mirror("http://m/kitti/raw_data", "http://m/kitti")
    assert Mirror.of("http://m/raw", None).benchmarks == "https://s3.eu-central-1.amazonaws.com/avg-kitti"
    assert Mirror.of("http://m/raw", "http://b/x/") == Mirror("http://m/raw", "http://b/x")
    assert DepthAnnotations(DRIVES).url() == "https://s3.eu-central-1.amazonaws.com/avg-kitti/data_depth_annotated.zip"
    assert OdometryArchive("color").url(Mirror.of("http://m/raw_data")) == "http://m/data_odometry_color.zip"


def zip_names(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_the_test_mirror_has_the_real_inner_paths(mirror):
    annotated = zip_names(mirror[ANNOTATED])
    assert "train/2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000001.png" in annotated
    assert any(name.startswith("val/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_03/") for name in annotated)
    assert "dataset/sequences/09/image_2/000000.png" in zip_names(mirror[COLOR])
    assert zip_names(mirror[POSES]) == ["dataset/poses/09.txt", "dataset/poses/10.txt"]
    assert "depth_selection/test_depth_prediction_anonymous/image/0000000000.png" in zip_names(
        mirror["/data_depth_selection.zip"])


def test_cli_dry_run_lists_every_archive_with_its_size_and_what_it_unpacks(mirror, splits, tmp_path):
    files = {path if path.startswith("/raw_data") else f"/bench{path}": data for path, data in mirror.items()}
    with LocalServer(files) as server:
        result = run_md2("download-kitti", "--output", str(tmp_path / "k"), "--split", "synth", "--splits-dir",
                         str(splits), "--base-url", server.url("/raw_data"), "--archives-url", server.url("/bench"),
                         "--depth-annotations", "--odometry", "--dry-run")
        assert {request.method for request in server.requests} == {"HEAD"}
    assert result.returncode == 0, result.stderr
    *rows, summary = [line.split("\t") for line in result.stdout.strip().splitlines()]
    paths = ["/raw_data/2011_09_26_calib.zip", *(f"/raw_data/{d}/{d}_sync.zip" for d in DRIVES), f"/bench{ANNOTATED}",
             f"/bench{COLOR}", "/bench/data_odometry_calib.zip", f"/bench{POSES}"]
    assert [row[:2] for row in rows] == [[server.url(path), f"{len(files[path]) / 1e9:.2f} GB"] for path in paths]
    assert rows[3][2] == "depth maps of 2 drives -> DATE/DRIVE_sync/proj_depth/"
    assert rows[4][2] == "odometry -> sequences/" and rows[6][2] == "odometry -> poses/"
    assert summary[0].startswith("7 archives to download (0 already done)")
    assert not (tmp_path / "k").exists()


def test_cli_gets_raw_maps_and_odometry_then_converts_only_the_camera_images(synth_raw, mirror, splits, tmp_path):
    out = tmp_path / "k"
    with LocalServer(mirror) as server:
        result = run_md2("download-kitti", "--output", str(out), "--split", "synth", "--splits-dir", str(splits),
                         "--base-url", server.url("/raw_data"), "--depth-annotations", "--odometry", "--convert-jpeg")
    assert result.returncode == 0, result.stderr
    assert "7 archives downloaded and unpacked" in result.stderr and "images converted to JPEG" in result.stderr
    assert list((out / "sequences" / "09" / "image_2").glob("*.jpg")) and not list(out.rglob("image_[23]/*.png"))
    assert not list(out.rglob("image_0[23]/data/*.png"))
    maps = sorted(path.relative_to(out) for path in out.rglob("proj_depth/groundtruth/image_0[23]/*.png"))
    assert maps and maps == sorted(path.relative_to(synth_raw) for path in synth_raw.rglob("proj_depth/*/*/*.png"))


def test_a_stop_during_the_check_keeps_the_zip_for_the_next_run(tmp_path, mirror):
    import threading

    from md2.data.kitti_download import fetch_archive

    out = tmp_path / "kitti"
    out.mkdir()
    (out / "data_odometry_color.zip").write_bytes(mirror[COLOR])  # downloaded by a run that was stopped
    stop = threading.Event()
    stop.set()
    with pytest.raises(Exception) as raised:
        fetch_archive(OdometryArchive("color"), out, stop=stop)
    assert type(raised.value).__name__ == "_Cancelled"
    assert (out / "data_odometry_color.zip").is_file() and not (out / "sequences").exists()
    fetch_archive(OdometryArchive("color"), out)  # no server: the kept zip is checked and unpacked
    assert (out / "sequences" / "09" / "image_2").is_dir() and not (out / "data_odometry_color.zip").exists()


def test_the_disk_space_check_counts_the_new_archives_before_any_download(tmp_path, mirror, splits, monkeypatch):
    from collections import namedtuple

    from md2.data import kitti_download
    from md2.errors import DataError

    sizes = [len(mirror[path]) for path in (ANNOTATED, COLOR, "/data_odometry_calib.zip", POSES)]
    needed = sum(sizes) + sum(sorted(sizes, reverse=True)[:4])  # contents + the zips in flight (4 jobs)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(kitti_download.shutil, "disk_usage", lambda path: usage(0, 0, needed - 1))
    with LocalServer(mirror) as server, pytest.raises(DataError, match="GB free but the download needs"):
        download_kitti(tmp_path / "k", ["synth", "odom"], splits_dir=splits, base_url=server.url("/raw_data"),
                       raw=False, depth_annotations=True)
    assert gets(server) == []
    monkeypatch.setattr(kitti_download.shutil, "disk_usage", lambda path: usage(0, 0, needed))
    with LocalServer(mirror) as server:
        assert len(download_kitti(tmp_path / "k", ["synth", "odom"], splits_dir=splits,
                                  base_url=server.url("/raw_data"), raw=False, depth_annotations=True)) == 4
