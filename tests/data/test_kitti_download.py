"""md2 download-kitti against a local server of zips built from synthetic drives."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest

from md2.data.kitti_download import archives_for, download_kitti
from md2.errors import DownloadError
from tests.cli.test_app import run_md2
from tests.httpserver import LocalServer

DRIVES = ("2011_09_26_drive_0001", "2011_09_26_drive_0002")


def zip_folder(root: Path, members: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in members:
            archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mirror(synth_raw) -> dict[str, bytes]:
    """URL path -> zip bytes, laid out as KITTI's raw_data server."""
    date = synth_raw / "2011_09_26"
    files = {"/raw_data/2011_09_26_calib.zip": zip_folder(synth_raw, sorted(date.glob("calib_*.txt")))}
    for drive in DRIVES:
        members = sorted(p for p in (date / f"{drive}_sync").rglob("*") if p.is_file())
        files[f"/raw_data/{drive}/{drive}_sync.zip"] = zip_folder(synth_raw, members)
    return files


@pytest.fixture
def splits(synth_raw, tmp_path) -> Path:
    shutil.copytree(synth_raw / "splits" / "synth", tmp_path / "splits" / "synth")
    return tmp_path / "splits"


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all((a / p).read_bytes() == (b / p).read_bytes() for p in files_a)


def test_split_needs_its_drives_and_their_calibration(splits):
    names = [archive.filename for archive in archives_for(["synth"], splits)]
    assert names == ["2011_09_26_calib.zip", "2011_09_26_drive_0001_sync.zip", "2011_09_26_drive_0002_sync.zip"]


def test_download_unpacks_the_kitti_layout_and_resumes_a_cut(tmp_path, synth_raw, mirror, splits):
    with LocalServer(mirror) as server:
        server.cut("/raw_data/2011_09_26_drive_0002/2011_09_26_drive_0002_sync.zip", after=50_000)
        server.fail("/raw_data/2011_09_26_calib.zip", status=503)
        fetched = download_kitti(tmp_path / "kitti", ["synth"], splits_dir=splits, base_url=server.url("/raw_data"))
        ranged = [r.range for r in server.requests if r.path.endswith("0002_sync.zip") and r.range]
    assert len(fetched) == 3 and ranged == ["bytes=50000-"]
    assert same_tree(tmp_path / "kitti" / "2011_09_26" / "2011_09_26_drive_0001_sync",
                     synth_raw / "2011_09_26" / "2011_09_26_drive_0001_sync")
    assert (tmp_path / "kitti" / "2011_09_26" / "calib_cam_to_cam.txt").is_file()
    assert not list((tmp_path / "kitti").glob("*.zip"))


def test_rerun_skips_what_is_done(tmp_path, mirror, splits):
    with LocalServer(mirror) as server:
        download_kitti(tmp_path / "k", ["synth"], splits_dir=splits, base_url=server.url("/raw_data"))
        before = len(server.requests)
        assert download_kitti(tmp_path / "k", ["synth"], splits_dir=splits, base_url=server.url("/raw_data")) == []
        assert len(server.requests) == before


@pytest.mark.parametrize("problem", ["corrupt", "traversal", "404"])
def test_bad_archives_are_never_extracted(tmp_path, mirror, splits, problem):
    files = dict(mirror)
    path = "/raw_data/2011_09_26_drive_0001/2011_09_26_drive_0001_sync.zip"
    if problem == "corrupt":
        damaged = bytearray(files[path])
        damaged[len(damaged) // 2: len(damaged) // 2 + 100] = b"\xff" * 100
        files[path] = bytes(damaged)
    elif problem == "traversal":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("../../escaped.txt", b"x")
        files[path] = buffer.getvalue()
    else:
        del files[path]
    out = tmp_path / "out" / "kitti"
    with LocalServer(files) as server, pytest.raises(DownloadError):
        download_kitti(out, ["synth"], splits_dir=splits, base_url=server.url("/raw_data"))
    assert not (out / "2011_09_26" / "2011_09_26_drive_0001_sync").exists()
    assert not (tmp_path / "out" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert (out / "2011_09_26" / "2011_09_26_drive_0002_sync").is_dir()  # the good ones still arrive


def test_cli_dry_run_lists_archives_and_size(mirror, splits, tmp_path):
    with LocalServer(mirror) as server:
        result = run_md2("download-kitti", "--output", str(tmp_path / "k"), "--split", "synth", "--splits-dir",
                         str(splits), "--base-url", server.url("/raw_data"), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "2011_09_26_drive_0002_sync.zip" in result.stdout and "3 archives to download" in result.stdout
    assert not (tmp_path / "k").exists() or not any((tmp_path / "k").rglob("*.png"))


def test_cli_downloads_and_converts(mirror, splits, tmp_path):
    with LocalServer(mirror) as server:
        result = run_md2("download-kitti", "--output", str(tmp_path / "k"), "--split", "synth", "--splits-dir",
                         str(splits), "--base-url", server.url("/raw_data"), "--convert-jpeg", "--quiet")
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "k").rglob("image_02/data/*.jpg")) and not list((tmp_path / "k").rglob("image_02/data/*.png"))
