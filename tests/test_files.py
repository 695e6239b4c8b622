"""md2.files.atomic_path: complete files under their final name, with the permissions of any new file."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from md2.errors import DataError
from md2.files import atomic_path, check_folder_can_be_made, make_folder


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_written_file_has_the_permissions_of_a_new_file_under_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with atomic_path(tmp_path / "out.npy") as temporary:
            temporary.write_bytes(b"data")
        with open(tmp_path / "plain", "wb") as plain:  # what writing in place would give
            plain.write(b"data")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "out.npy").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_missing_folder_is_one_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot write"):
        with atomic_path(tmp_path / "missing" / "out.txt"):
            pass


# -- output folders (issue 24 item 5) ----------------------------------------------------------------------
@pytest.mark.parametrize("where", ["taken", "taken/below"])
def test_a_file_in_the_way_of_an_output_folder_is_a_data_error_naming_it(tmp_path, where):
    (tmp_path / "taken").write_text("a file")
    for check in (check_folder_can_be_made, make_folder):
        with pytest.raises(DataError, match=f"{tmp_path / 'taken'} is a file, not a folder"):
            check(tmp_path / where)
    assert (tmp_path / "taken").read_text() == "a file"


def test_the_pre_flight_check_creates_nothing_and_make_folder_creates_every_parent(tmp_path):
    check_folder_can_be_made(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []
    assert make_folder(tmp_path / "a" / "b" / "c").is_dir()
    make_folder(tmp_path / "a" / "b" / "c")  # already there: nothing to do


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="POSIX permissions (root ignores them)")
def test_an_output_folder_in_a_read_only_folder_is_a_data_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        for check in (check_folder_can_be_made, make_folder):
            with pytest.raises(DataError, match="cannot create folder .*locked/out"):
                check(locked / "out")
    finally:
        locked.chmod(0o755)


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="Linux sysfs: a file system that refuses new folders")
def test_an_output_folder_the_file_system_refuses_is_a_data_error_even_for_root(tmp_path):
    # sysfs refuses mkdir to every user, root included: the read-only case above, where this suite runs as root.
    with pytest.raises(DataError, match="cannot create folder /sys/md2-test/out: "):
        make_folder(Path("/sys/md2-test/out"))
