"""Split files: typed parsing, the manifest of official lists, fetching from a local server, derived drives."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from md2.data.download import file_sha256
from md2.data.kitti_download import Archive, DepthAnnotations, DepthSelection, OdometryArchive, archives_for
from md2.data.splits import (RAW_SPLITS, BenchmarkTestLine, OdomLine, RawLine, drives_for_splits, fetch_official,
                             manifest, official_split_names, parse_line, read_split_file, resolve_split_dir,
                             split_file)
from md2.errors import DataError, DownloadError, UsageError
from tests.cli.test_app import run_md2
from tests.httpserver import LocalServer

REPO = Path(__file__).resolve().parents[2]
COMMIT = "b676244e5a1ca55564eb5d16ab521a48f823af31"


@pytest.fixture
def official_server(shared_dir, tmp_path, monkeypatch):
    """A local server holding the reference's splits/ folder; md2's cache in tmp_path."""
    monkeypatch.setenv("MD2_HOME", str(tmp_path / "home"))
    with LocalServer() as server:
        server.add_folder(shared_dir / "splits", prefix="/splits/")
        monkeypatch.setenv("MD2_SPLITS_URL", server.url("/splits/"))
        yield server


@pytest.mark.parametrize("text,expected", [
    ("2011_09_26/2011_09_26_drive_0002_sync 0000000069 l", RawLine("2011_09_26/2011_09_26_drive_0002_sync", 69, "l")),
    ("2011_09_26/2011_09_26_drive_0002_sync 5 3", RawLine("2011_09_26/2011_09_26_drive_0002_sync", 5, "r")),
    ("9 5 r", OdomLine("9", 5, "r")),
    ("10 0 2", OdomLine("10", 0, "l")),
    ("image 17", BenchmarkTestLine("image", 17, None)),
])
def test_line_formats_are_typed_and_sides_normalised(text, expected):
    line = parse_line(text)
    assert line == expected and type(line) is type(expected)


def test_typed_lines_name_their_parts():
    raw = parse_line("2011_09_28/2011_09_28_drive_0002_sync 7 l")
    assert (raw.date, raw.drive, raw.frame, str(raw)) == ("2011_09_28", "2011_09_28_drive_0002", 7,
                                                          "2011_09_28/2011_09_28_drive_0002_sync 7 l")
    assert parse_line("09 3 l").seq == 9 and str(parse_line("image 4")) == "image 4"


@pytest.mark.parametrize("text", ["drive 5", "drive five l", "drive 5 x", "a b c d", "image x"])
def test_malformed_line_names_file_and_line(tmp_path, text):
    path = tmp_path / "train_files.txt"
    path.write_text(f"2011_09_26/x 1 l\n\n{text}\n")
    with pytest.raises(DataError, match=r"train_files.txt, line 3"):
        read_split_file(path)


def test_manifest_is_package_data_and_names_every_official_list():
    data = json.loads((REPO / "md2" / "splits_manifest.json").read_text())
    assert data == manifest() and data["commit"] == COMMIT
    assert data["base_url"] == f"https://raw.githubusercontent.com/nianticlabs/monodepth2/{COMMIT}/splits/"
    assert len(data["files"]) == 15 and all(len(entry["sha256"]) == 64 for entry in data["files"].values())
    assert official_split_names() == {"benchmark", "eigen", "eigen_benchmark", "eigen_full", "eigen_zhou", "odom"}
    assert sorted(p.name for p in (REPO / "splits").iterdir()) == ["README.md"]  # nothing copied


def test_manifest_matches_the_official_files_and_every_line_parses(shared_dir):
    files = manifest()["files"]
    listed = {p.relative_to(shared_dir / "splits").as_posix() for p in (shared_dir / "splits").rglob("*")
              if p.is_file()}
    assert set(files) <= listed
    for relative, entry in files.items():
        path = shared_dir / "splits" / relative
        assert file_sha256(path) == entry["sha256"], relative
        if "lines" in entry:
            assert len(path.read_text().splitlines()) == entry["lines"], relative
        if "/" in relative and relative.endswith(".txt"):  # every official line parses
            assert len(read_split_file(path)) == entry["lines"], relative


def test_official_lists_are_fetched_on_first_use_then_read_from_the_cache(official_server, tmp_path):
    folder = resolve_split_dir("eigen")
    assert folder == tmp_path / "home" / "splits" / "eigen"
    assert len(read_split_file(split_file("eigen", "test"))) == 697
    count = len(official_server.requests)
    assert resolve_split_dir("eigen") == folder and len(official_server.requests) == count
    assert split_file("odom", "test_files_09").name == "test_files_09.txt"
    assert not list((tmp_path / "home" / "splits").rglob(".fetch-*"))


def test_a_tampered_list_is_refused_and_not_cached(official_server, tmp_path):
    official_server.files["/splits/odom/test_files_09.txt"] = b"9 0 l\n"
    with pytest.raises(DownloadError, match="sha256"):
        resolve_split_dir("odom")
    assert not (tmp_path / "home" / "splits" / "odom" / "test_files_09.txt").exists()


def test_an_altered_cached_list_is_fetched_again(official_server, tmp_path):
    path = fetch_official(["eigen"])[0]
    path.write_text("2011_09_26/2011_09_26_drive_0001_sync 1 l\n")
    fetch_official(["eigen"])
    assert file_sha256(path) == manifest()["files"]["eigen/test_files.txt"]["sha256"]


def test_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MD2_HOME", str(tmp_path))
    monkeypatch.setenv("MD2_SPLITS_URL", "http://127.0.0.1:9/")
    with pytest.raises(DownloadError, match="could not reach 127.0.0.1:9.*--splits-dir"):
        resolve_split_dir("eigen")


def test_own_split_folders_and_unknown_names(tmp_path, monkeypatch):
    monkeypatch.setenv("MD2_HOME", str(tmp_path / "home"))
    (tmp_path / "mine").mkdir()
    assert resolve_split_dir("mine", tmp_path) == tmp_path / "mine"
    with pytest.raises(DataError, match=r"\(found: mine\)"):
        resolve_split_dir("other", tmp_path)
    with pytest.raises(UsageError, match="unknown split 'no_such_split'.*eigen_zhou"):
        resolve_split_dir("no_such_split")
    (tmp_path / "home" / "splits" / "cached_own").mkdir(parents=True)
    assert resolve_split_dir("cached_own") == tmp_path / "home" / "splits" / "cached_own"
    with pytest.raises(DataError, match="split file not found"):
        split_file("mine", "train", tmp_path)


def test_all_raw_splits_need_exactly_the_official_archive_list(shared_dir):
    splits = shared_dir / "splits"
    official = sorted((splits / "kitti_archives_to_download.txt").read_text().split())
    assert len(official) == 66
    archives = archives_for(list(RAW_SPLITS), splits)
    assert sorted(archive.url() for archive in archives if isinstance(archive, Archive)) == official
    # eigen_benchmark is evaluated on the depth benchmark's maps, benchmark on its test images.
    extras = [archive for archive in archives if not isinstance(archive, Archive)]
    assert extras == [DepthAnnotations(tuple(drives_for_splits(["eigen_benchmark"], splits))), DepthSelection()]
    # The full Eigen split (eigen_full's train/val and eigen's test) alone already names every archive.
    assert sorted(archive.url() for archive in archives_for(["eigen_full", "eigen"], splits)) == official
    assert sorted(archive.url() for archive in archives_for(None, splits)) == official


def test_eigen_needs_28_drives_and_odom_none(shared_dir):
    drives = drives_for_splits(["eigen"], shared_dir / "splits")
    assert len(drives) == 28 and all(re.fullmatch(r"2011_\d\d_\d\d_drive_\d{4}", drive) for drive in drives)
    with pytest.raises(DataError, match="no KITTI raw drive"):
        drives_for_splits(["odom"], shared_dir / "splits")


def test_each_official_split_pulls_what_it_needs(shared_dir):
    splits = shared_dir / "splits"
    eigen_benchmark = archives_for(["eigen_benchmark"], splits)
    drives = [archive.name for archive in eigen_benchmark if isinstance(archive, Archive) and not archive.is_calibration]
    assert len(drives) == 28 and eigen_benchmark[-1] == DepthAnnotations(tuple(drives))
    benchmark = archives_for(["benchmark"], splits)
    assert benchmark[-1] == DepthSelection() and not any(isinstance(a, DepthAnnotations) for a in benchmark)
    assert archives_for(["odom"], splits) == [OdometryArchive(part) for part in ("color", "calib", "poses")]
    with_maps = archives_for(["eigen_zhou"], splits, depth_annotations=True, raw=False)
    assert with_maps == [DepthAnnotations(tuple(drives_for_splits(["eigen_zhou"], splits)))]


def test_cli_splits_only_fills_the_cache(official_server, tmp_path):
    result = run_md2("download-kitti", "--splits-only", env={"MD2_HOME": str(tmp_path / "home"),
                                                              "MD2_SPLITS_URL": official_server.url("/splits/")})
    assert result.returncode == 0, result.stderr
    assert "15 official split files" in result.stderr
    for relative, entry in manifest()["files"].items():
        assert file_sha256(tmp_path / "home" / "splits" / relative) == entry["sha256"]
