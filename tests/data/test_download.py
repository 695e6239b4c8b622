"""Resumable downloads, zip verification and safe extraction, against a local HTTP server."""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import struct
import zipfile
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from md2.data.download import download_file
from md2.data.unzip import safe_extract, verify_zip
from md2.errors import DownloadError
from tests.httpserver import LocalServer

DATA = os.urandom(300_000)
PATH = "/files/data.bin"


def gets(server: LocalServer, path: str = PATH) -> list[str | None]:
    """Range headers of the GET requests for ``path``, in order."""
    return [request.range for request in server.requests if request.method == "GET" and request.path == path]


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def damage_member(data: bytes, name: str) -> bytes:
    """Flip bytes in the middle of one member's stored data (its CRC no longer matches)."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    middle = info.header_offset + 30 + name_length + extra_length + info.compress_size // 2
    damaged = bytearray(data)
    damaged[middle: middle + 16] = bytes(255 - b for b in damaged[middle: middle + 16])
    return bytes(damaged)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_download_writes_the_file_and_no_part_remains(tmp_path):
    with LocalServer({PATH: DATA}) as server:
        dest = download_file(server.url(PATH), tmp_path / "sub" / "data.bin", backoff=0.01)
    assert dest.read_bytes() == DATA
    assert os.listdir(tmp_path / "sub") == ["data.bin"]


def test_cut_connections_are_resumed_with_range(tmp_path):
    with LocalServer({PATH: DATA}) as server:
        server.cut(PATH, after=100_000, times=2)
        dest = download_file(server.url(PATH), tmp_path / "data.bin", backoff=0.01, retries=1)
        assert gets(server) == [None, "bytes=100000-", "bytes=200000-"]
    assert dest.read_bytes() == DATA


def test_a_server_ignoring_range_restarts_from_zero(tmp_path):
    with LocalServer({PATH: DATA}, ranges=False) as server:
        server.cut(PATH, after=123_456)
        dest = download_file(server.url(PATH), tmp_path / "data.bin", backoff=0.01)
        assert gets(server) == [None, "bytes=123456-"]
    assert dest.read_bytes() == DATA


def test_a_rerun_resumes_the_part_left_by_an_interrupted_run(tmp_path):
    dest = tmp_path / "data.bin"
    with LocalServer({PATH: DATA}) as server:
        server.cut(PATH, after=50_000)
        server.fail(PATH, status=503, times=3)
        with pytest.raises(DownloadError, match=r"503.*resumes"):
            download_file(server.url(PATH), dest, retries=2, backoff=0.01)
        assert (tmp_path / "data.bin.part").stat().st_size == 50_000 and not dest.exists()
        download_file(server.url(PATH), dest, backoff=0.01)
        assert gets(server)[-1] == "bytes=50000-"
    assert dest.read_bytes() == DATA


@pytest.mark.parametrize("part_size", [len(DATA), len(DATA) + 10])
def test_a_complete_or_oversized_part_is_settled(tmp_path, part_size):
    (tmp_path / "data.bin.part").write_bytes((DATA + b"0123456789")[:part_size])
    with LocalServer({PATH: DATA}) as server:
        dest = download_file(server.url(PATH), tmp_path / "data.bin", backoff=0.01)
        restarted = len(gets(server)) > 1
    assert dest.read_bytes() == DATA
    assert restarted == (part_size > len(DATA))


def test_server_errors_are_retried_with_back_off(tmp_path):
    with LocalServer({PATH: DATA}) as server:
        server.fail(PATH, status=500, times=2)
        download_file(server.url(PATH), tmp_path / "data.bin", backoff=0.01)
        assert len(gets(server)) == 3
    assert (tmp_path / "data.bin").read_bytes() == DATA


def test_not_found_is_final_and_leaves_nothing(tmp_path):
    (tmp_path / "data.bin.part").write_bytes(DATA[:1000])
    with LocalServer({}) as server, pytest.raises(DownloadError, match="not found"):
        download_file(server.url(PATH), tmp_path / "data.bin", backoff=0.01)
    assert len(gets(server)) == 1
    assert os.listdir(tmp_path) == []


def test_an_unreachable_host_is_one_message_with_what_to_do(tmp_path):
    port = closed_port()
    with pytest.raises(DownloadError) as caught:
        download_file(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", backoff=0.01,
                      mirror_hint="or set MD2_TEST_URL to a mirror")
    message = str(caught.value)
    assert message.startswith(f"could not reach 127.0.0.1:{port}") and "check your connection" in message
    assert message.endswith("or set MD2_TEST_URL to a mirror") and "\n" not in message


def test_size_and_sha256_are_checked_before_the_rename(tmp_path):
    digest = hashlib.sha256(DATA).hexdigest()
    with LocalServer({PATH: DATA}) as server:
        url = server.url(PATH)
        assert download_file(url, tmp_path / "ok.bin", sha256=digest, expected_size=len(DATA)).is_file()
        with pytest.raises(DownloadError, match="sha256"):
            download_file(url, tmp_path / "a.bin", sha256="0" * 64)
        with pytest.raises(DownloadError, match=f"expected {len(DATA) + 1}"):
            download_file(url, tmp_path / "b.bin", expected_size=len(DATA) + 1)
    assert sorted(os.listdir(tmp_path)) == ["ok.bin"]


def test_progress_reports_bytes_to_a_callback_or_a_rich_task(tmp_path):
    seen: list[tuple[int, int | None]] = []
    bar = Progress(console=Console(file=io.StringIO()))
    task = bar.add_task("data", total=None)
    with LocalServer({PATH: DATA}) as server:
        download_file(server.url(PATH), tmp_path / "a.bin", progress=lambda done, total: seen.append((done, total)))
        download_file(server.url(PATH), tmp_path / "b.bin", progress=(bar, task))
    assert seen[-1] == (len(DATA), len(DATA)) and all(a[0] < b[0] for a, b in zip(seen, seen[1:]))
    assert bar.tasks[0].completed == len(DATA) and bar.tasks[0].total == len(DATA)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_verify_zip_detects_a_damaged_member(tmp_path, compression):
    data = zip_bytes({"a/one.bin": os.urandom(5000), "a/two.bin": os.urandom(5000)}, compression)
    good, bad = tmp_path / "good.zip", tmp_path / "bad.zip"
    good.write_bytes(data)
    bad.write_bytes(damage_member(data, "a/two.bin"))
    assert verify_zip(good) == 2
    with pytest.raises(DownloadError, match="bad.zip"):
        verify_zip(bad)


def test_verify_zip_detects_a_truncated_archive(tmp_path):
    path = tmp_path / "cut.zip"
    path.write_bytes(zip_bytes({"a.bin": os.urandom(5000)})[:3000])
    with pytest.raises(DownloadError, match="cut.zip is not a valid zip"):
        verify_zip(path)


def test_safe_extract_writes_the_tree(tmp_path):
    members = {"2011_09_26/calib.txt": b"P: 1 2 3", "2011_09_26/drive/image_02/data/0000000000.png": DATA[:999]}
    (tmp_path / "a.zip").write_bytes(zip_bytes(members))
    written = safe_extract(tmp_path / "a.zip", tmp_path / "out")
    assert sorted(path.relative_to(tmp_path / "out").as_posix() for path in written) == sorted(members)
    assert all((tmp_path / "out" / name).read_bytes() == data for name, data in members.items())


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt",
                                  "..\\evil.txt", "link"])
def test_safe_extract_refuses_members_leaving_the_folder(tmp_path, name):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("first.txt", b"harmless")
        info = zipfile.ZipInfo(name)
        if name == "link":
            info.external_attr = 0o120777 << 16  # a symbolic link to ../../etc
        archive.writestr(info, b"../../etc" if name == "link" else b"evil")
    (tmp_path / "a.zip").write_bytes(buffer.getvalue())
    with pytest.raises(DownloadError, match=f"refusing .*{re.escape(repr(name)[:8])}"):
        safe_extract(tmp_path / "a.zip", tmp_path / "deep" / "out")
    assert not (tmp_path / "deep" / "out").exists()  # refused before anything was written
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.zip"]


def test_an_extraction_failing_midway_leaves_no_file_that_looks_complete(tmp_path):
    data = zip_bytes({"a/first.bin": os.urandom(4000), "a/second.bin": os.urandom(400_000)}, zipfile.ZIP_STORED)
    (tmp_path / "a.zip").write_bytes(damage_member(data, "a/second.bin"))
    with pytest.raises(DownloadError, match="second.bin is corrupt"):
        safe_extract(tmp_path / "a.zip", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "a").iterdir()) == ["first.bin"]


def test_safe_extract_keeps_existing_files_and_user_symlinks(tmp_path):
    elsewhere = tmp_path / "other_disk"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "date").symlink_to(elsewhere, target_is_directory=True)
    (tmp_path / "out" / "mine.txt").write_text("keep")
    (tmp_path / "a.zip").write_bytes(zip_bytes({"date/x.txt": b"x"}))
    safe_extract(tmp_path / "a.zip", tmp_path / "out")
    assert (elsewhere / "x.txt").read_bytes() == b"x" and (tmp_path / "out" / "mine.txt").read_text() == "keep"


def test_paths_may_be_strings(tmp_path: Path):
    (tmp_path / "a.zip").write_bytes(zip_bytes({"x.txt": b"x"}))
    assert verify_zip(str(tmp_path / "a.zip")) == 1
    assert safe_extract(str(tmp_path / "a.zip"), str(tmp_path / "o")) == [tmp_path / "o" / "x.txt"]


def test_safe_extract_places_members_by_a_map_and_reports_progress(tmp_path):
    members = {"dataset/poses/09.txt": b"1 2 3", "dataset/sequences/09/calib.txt": b"P0: 1", "readme.txt": b"r"}
    (tmp_path / "a.zip").write_bytes(zip_bytes(members))
    seen = []
    written = safe_extract(tmp_path / "a.zip", tmp_path / "out", select=lambda parts: parts[1:] if parts[0] == "dataset"
                           else None, progress=lambda done, total: seen.append((done, total)))
    assert sorted(path.relative_to(tmp_path / "out").as_posix() for path in written) == [
        "poses/09.txt", "sequences/09/calib.txt"]
    assert (tmp_path / "out" / "poses" / "09.txt").read_bytes() == b"1 2 3"
    assert seen == [(5, 10), (10, 10)] and not (tmp_path / "out" / "readme.txt").exists()


@pytest.mark.parametrize("target", [("..", "evil.txt"), ("a/../../evil.txt",), ()])
def test_a_member_map_cannot_leave_the_folder(tmp_path, target):
    (tmp_path / "a.zip").write_bytes(zip_bytes({"x.txt": b"x"}))
    with pytest.raises(DownloadError, match="unsafe path"):
        safe_extract(tmp_path / "a.zip", tmp_path / "out", select=lambda parts: target)
    assert not list(tmp_path.rglob("*.txt"))


def test_verify_zip_reports_the_bytes_it_reads(tmp_path):
    (tmp_path / "a.zip").write_bytes(zip_bytes({"a.bin": os.urandom(3000), "b.bin": os.urandom(5000)}))
    seen = []
    assert verify_zip(tmp_path / "a.zip", lambda done, total: seen.append((done, total))) == 2
    assert seen[-1] == (8000, 8000) and [done for done, _ in seen] == sorted(done for done, _ in seen)
