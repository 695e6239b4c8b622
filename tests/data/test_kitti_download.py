"""md2 download-kitti against a local server of zips built from synthetic drives."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest

from md2.data.kitti_download import (MARKERS, Archive, archives_for, check_free_space, download_kitti,
                                     space_needed)
from md2.errors import DataError, DownloadError
from tests.cli.test_app import run_md2
from tests.httpserver import LocalServer

DRIVES = ("2011_09_26_drive_0001", "2011_09_26_drive_0002")
CALIB = "/raw_data/2011_09_26_calib.zip"
DRIVE_1 = "/raw_data/2011_09_26_drive_0001/2011_09_26_drive_0001_sync.zip"
DRIVE_2 = "/raw_data/2011_09_26_drive_0002/2011_09_26_drive_0002_sync.zip"


def zip_folder(root: Path, members: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in members:
            archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mirror(synth_raw) -> dict[str, bytes]:
    """URL path -> zip bytes, laid out as KITTI's raw_data server (members DATE/... as in the real zips)."""
    date = synth_raw / "2011_09_26"
    files = {CALIB: zip_folder(synth_raw, sorted(date.glob("calib_*.txt")))}
    for drive, path in zip(DRIVES, (DRIVE_1, DRIVE_2)):
        files[path] = zip_folder(synth_raw, sorted(p for p in (date / f"{drive}_sync").rglob("*") if p.is_file()))
    return files


@pytest.fixture
def splits(synth_raw, tmp_path) -> Path:
    shutil.copytree(synth_raw / "splits" / "synth", tmp_path / "splits" / "synth")
    return tmp_path / "splits"


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return bool(files_a) and files_a == files_b and all((a / p).read_bytes() == (b / p).read_bytes() for p in files_a)


def gets(server: LocalServer) -> list[str]:
    return [request.path for request in server.requests if request.method == "GET"]


def test_split_needs_its_drives_and_their_calibration(splits):
    names = [archive.filename for archive in archives_for(["synth"], splits)]
    assert names == ["2011_09_26_calib.zip", "2011_09_26_drive_0001_sync.zip", "2011_09_26_drive_0002_sync.zip"]
    s3 = "https://s3.eu-central-1.amazonaws.com/avg-kitti/raw_data"
    assert Archive("2011_09_26_drive_0001").url() == f"{s3}/2011_09_26_drive_0001/2011_09_26_drive_0001_sync.zip"
    assert Archive("2011_09_26").url() == f"{s3}/2011_09_26_calib.zip"


def test_download_unpacks_the_kitti_layout_resuming_cuts_and_retrying_errors(tmp_path, synth_raw, mirror, splits):
    with LocalServer(mirror) as server:
        server.cut(DRIVE_2, after=50_000)
        server.fail(CALIB, status=503)
        fetched = download_kitti(tmp_path / "kitti", ["synth"], splits_dir=splits, base_url=server.url("/raw_data"))
        ranged = [r.range for r in server.requests if r.path == DRIVE_2 and r.method == "GET"]
        calib_gets = gets(server).count(CALIB)
    assert len(fetched) == 3 and ranged == [None, "bytes=50000-"] and calib_gets == 2
    for drive in DRIVES:
        folder = Path("2011_09_26") / f"{drive}_sync"
        assert same_tree(tmp_path / "kitti" / folder, synth_raw / folder)
    assert (tmp_path / "kitti" / "2011_09_26" / "calib_cam_to_cam.txt").is_file()
    assert not list((tmp_path / "kitti").glob("*.zip*"))
    assert len(list((tmp_path / "kitti" / MARKERS).glob("*.done"))) == 3


def test_rerun_skips_what_is_done_and_refetches_what_was_removed(tmp_path, mirror, splits):
    out = tmp_path / "k"
    with LocalServer(mirror) as server:
        download_kitti(out, ["synth"], splits_dir=splits, base_url=server.url("/raw_data"), keep_zips=True)
        assert len(list(out.glob("*.zip"))) == 3
        before = len(server.requests)
        assert download_kitti(out, ["synth"], splits_dir=splits, base_url=server.url("/raw_data")) == []
        assert len(server.requests) == before  # not even a HEAD request
        shutil.rmtree(out / "2011_09_26" / "2011_09_26_drive_0002_sync")
        (out / "2011_09_26_drive_0002_sync.zip").unlink()
        fetched = download_kitti(out, ["synth"], splits_dir=splits, base_url=server.url("/raw_data"))
    assert fetched == [Archive("2011_09_26_drive_0002")]
    assert (out / "2011_09_26" / "2011_09_26_drive_0002_sync" / "image_02").is_dir()


def test_a_zip_left_by_an_interrupted_extraction_is_reused(tmp_path, mirror, splits):
    out = tmp_path / "k"
    out.mkdir()
    (out / "2011_09_26_drive_0001_sync.zip").write_bytes(mirror[DRIVE_1])  # downloaded, never extracted
    with LocalServer(mirror) as server:
        download_kitti(out, ["synth"], splits_dir=splits, base_url=server.url("/raw_data"))
        assert DRIVE_1 not in gets(server) and DRIVE_2 in gets(server)
    assert (out / "2011_09_26" / "2011_09_26_drive_0001_sync" / "image_03").is_dir()


@pytest.mark.parametrize("problem", ["corrupt", "traversal", "404"])
def test_bad_archives_are_never_extracted(tmp_path, mirror, splits, problem):
    files = dict(mirror)
    if problem == "corrupt":
        damaged = bytearray(files[DRIVE_1])
        damaged[len(damaged) // 2: len(damaged) // 2 + 100] = b"\xff" * 100
        files[DRIVE_1] = bytes(damaged)
    elif problem == "traversal":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("2011_09_26/2011_09_26_drive_0001_sync/ok.txt", b"x")
            archive.writestr("../../escaped.txt", b"x")
        files[DRIVE_1] = buffer.getvalue()
    else:
        del files[DRIVE_1]
    out = tmp_path / "out" / "kitti"
    with LocalServer(files) as server, pytest.raises(DownloadError, match="2011_09_26_drive_0001_sync.zip"):
        download_kitti(out, ["synth"], splits_dir=splits, base_url=server.url("/raw_data"))
    assert not (out / "2011_09_26" / "2011_09_26_drive_0001_sync").exists()
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (out / "2011_09_26_drive_0001_sync.zip").exists()  # fetched afresh by the next run
    assert (out / "2011_09_26" / "2011_09_26_drive_0002_sync").is_dir()  # the good ones still arrive


def test_without_a_split_the_official_archive_list_is_used(tmp_path, mirror, splits):
    with LocalServer(mirror) as server:
        (splits / "kitti_archives_to_download.txt").write_text(
            "".join(f"https://example.org/avg-kitti{path}\n" for path in (CALIB, DRIVE_1, DRIVE_2)))
        fetched = download_kitti(tmp_path / "k", None, splits_dir=splits, base_url=server.url("/raw_data"), jobs=2)
    assert sorted(archive.filename for archive in fetched) == sorted(p.rsplit("/", 1)[1] for p in (CALIB, DRIVE_1,
                                                                                                     DRIVE_2))


def test_space_needed_counts_contents_zips_and_what_is_already_there(tmp_path):
    todo = [(Archive("2011_09_26"), 10), (Archive("2011_09_26_drive_0001"), 300), (Archive("2011_09_26_drive_0002"),
                                                                                      200)]
    assert space_needed(todo, tmp_path, jobs=1, keep_zips=False) == 510 + 300
    assert space_needed(todo, tmp_path, jobs=2, keep_zips=True) == 510 + 510
    (tmp_path / "2011_09_26_drive_0002_sync.zip.part").write_bytes(b"x" * 150)
    assert space_needed(todo, tmp_path, jobs=1, keep_zips=False) == 510 + 300 - 150
    with pytest.raises(DataError, match="GB free but the download needs"):
        check_free_space(tmp_path, 10 ** 18)


def test_cli_dry_run_lists_archives_and_size(mirror, splits, tmp_path):
    with LocalServer(mirror) as server:
        result = run_md2("download-kitti", "--output", str(tmp_path / "k"), "--split", "synth", "--splits-dir",
                         str(splits), "--base-url", server.url("/raw_data"), "--dry-run")
        assert {r.method for r in server.requests} == {"HEAD"}
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines[:3]] == [server.url(path) for path in (CALIB, DRIVE_1, DRIVE_2)]
    assert lines[-1].startswith(f"3 archives to download (0 already done), {sum(map(len, mirror.values())) / 1e9:.2f}")
    assert not (tmp_path / "k").exists()


def test_cli_downloads_and_converts(mirror, splits, tmp_path):
    with LocalServer(mirror) as server:
        result = run_md2("download-kitti", "--output", str(tmp_path / "k"), "--split", "synth", "--splits-dir",
                         str(splits), "--base-url", server.url("/raw_data"), "--convert-jpeg")
    assert result.returncode == 0, result.stderr
    assert "3 archives downloaded and unpacked" in result.stderr and "images converted to JPEG" in result.stderr
    assert list((tmp_path / "k").rglob("image_02/data/*.jpg"))
    assert not list((tmp_path / "k").rglob("image_02/data/*.png"))


def test_cli_failure_is_one_line_naming_the_archive(mirror, splits, tmp_path):
    with LocalServer({CALIB: mirror[CALIB], DRIVE_1: mirror[DRIVE_1]}) as server:
        result = run_md2("download-kitti", "--output", str(tmp_path / "k"), "--split", "synth", "--splits-dir",
                         str(splits), "--base-url", server.url("/raw_data"), "--quiet")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "1 of 3 archives failed" in lines[0] and "drive_0002_sync.zip" in lines[0]
