"""Split files: parsing, the manifest of official lists, fetching from a local server, and derived drives."""

from __future__ import annotations

import pytest

from md2.data.download import file_sha256
from md2.data.splits import (RAW_SPLITS, SplitLine, drives_for_splits, manifest, parse_line, read_split_file,
                             resolve_split_dir)
from md2.errors import DataError, DownloadError, UsageError
from tests.httpserver import LocalServer


@pytest.mark.parametrize("text,expected", [
    ("2011_09_26/2011_09_26_drive_0002_sync 0000000069 l", SplitLine("2011_09_26/2011_09_26_drive_0002_sync", 69, "l")),
    ("9 5 r", SplitLine("9", 5, "r")),
    ("9 5 3", SplitLine("9", 5, "r")),
    ("image 17", SplitLine("image", 17, None)),
])
def test_line_formats(text, expected):
    assert parse_line(text) == expected


@pytest.mark.parametrize("text", ["drive 5", "drive five l", "drive 5 x", "a b c d"])
def test_malformed_line_names_file_and_line(tmp_path, text):
    path = tmp_path / "train_files.txt"
    path.write_text(f"2011_09_26/x 1 l\n{text}\n")
    with pytest.raises(DataError, match=r"train_files.txt, line 2"):
        read_split_file(path)


def test_manifest_matches_the_official_files(shared_dir):
    files = manifest()["files"]
    assert len(files) == 15
    for relative, entry in files.items():
        path = shared_dir / "splits" / relative
        assert file_sha256(path) == entry["sha256"], relative
        if "lines" in entry:
            assert len(path.read_text().splitlines()) == entry["lines"], relative


def test_official_lists_are_fetched_on_first_use_and_checked(tmp_path, shared_dir, monkeypatch):
    monkeypatch.setenv("MD2_HOME", str(tmp_path / "home"))
    with LocalServer() as server:
        server.add_folder(shared_dir / "splits", prefix="/splits/")
        monkeypatch.setenv("MD2_SPLITS_URL", server.url("/splits/"))
        folder = resolve_split_dir("eigen")
        assert len(read_split_file(folder / "test_files.txt")) == 697
        server.files["/splits/odom/test_files_09.txt"] = b"tampered\n"
        with pytest.raises(DownloadError, match="sha256"):
            resolve_split_dir("odom")


def test_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MD2_HOME", str(tmp_path))
    monkeypatch.setenv("MD2_SPLITS_URL", "http://127.0.0.1:9/")
    with pytest.raises(DownloadError, match="--splits-dir"):
        resolve_split_dir("eigen")


def test_own_split_folder_and_unknown_names(tmp_path, monkeypatch):
    monkeypatch.setenv("MD2_HOME", str(tmp_path / "home"))
    (tmp_path / "mine").mkdir()
    assert resolve_split_dir("mine", tmp_path) == tmp_path / "mine"
    with pytest.raises(DataError, match="found: mine"):
        resolve_split_dir("other", tmp_path)
    with pytest.raises(UsageError, match="unknown split"):
        resolve_split_dir("no_such_split")


def test_all_raw_splits_need_exactly_the_official_archive_list(shared_dir):
    drives = drives_for_splits(list(RAW_SPLITS), shared_dir / "splits")
    official = [line.rsplit("/", 1)[1].removesuffix("_sync.zip")
                for line in (shared_dir / "splits" / "kitti_archives_to_download.txt").read_text().split()
                if "drive" in line]
    assert drives == sorted(official) and len(drives) == 61
    assert len(drives_for_splits(["eigen"], shared_dir / "splits")) == 28
