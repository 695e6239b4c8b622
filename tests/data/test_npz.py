"""md2.data.npz: members deflated beforehand make an npz that np.load, zipfile and md2's reader read back."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from md2.data.groundtruth import load_gt_depths
from md2.data.npz import NpzWriter, deflate_npy


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    sparse = np.zeros((375, 1242), np.float32)
    sparse[rng.integers(0, 375, 5000), rng.integers(0, 1242, 5000)] = rng.uniform(1, 80, 5000)
    return {"0000": sparse, "0001": rng.normal(size=(3, 5)).astype(np.float64),
            "0002": np.arange(7, dtype=np.int16), "0003": np.float32(2.5).reshape(()),
            "0004": np.zeros((0, 4), np.float32), "0005": np.asfortranarray(rng.normal(size=(4, 6)))}


def _write(path, arrays, level=1):
    with open(path, "wb") as stream:
        writer = NpzWriter(stream)
        for key, array in arrays.items():
            writer.add(key, deflate_npy(array, level))
        writer.close()


@pytest.mark.parametrize("level", [1, 6])
def test_np_load_reads_every_array_back_exactly(tmp_path, level):
    arrays = _arrays()
    _write(tmp_path / "a.npz", arrays, level)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as loaded:
        assert sorted(loaded.files) == sorted(arrays)
        for key, array in arrays.items():
            assert loaded[key].dtype == array.dtype and np.array_equal(loaded[key], array)


def test_zip_structures_and_checksums_are_valid(tmp_path):
    arrays = _arrays()
    _write(tmp_path / "a.npz", arrays)
    with zipfile.ZipFile(tmp_path / "a.npz") as archive:
        assert archive.testzip() is None  # every member's CRC-32 checks out
        infos = archive.infolist()
        assert [info.filename for info in infos] == [f"{key}.npy" for key in arrays]
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in infos)
        assert infos[0].compress_size < infos[0].file_size / 10  # the sparse map did compress


def test_same_bytes_as_np_savez_once_inflated(tmp_path):
    arrays = _arrays()
    del arrays["0005"]  # numpy keeps a Fortran-ordered array in Fortran order; md2 writes C order
    _write(tmp_path / "ours.npz", arrays)
    np.savez_compressed(tmp_path / "numpys.npz", **arrays)
    with zipfile.ZipFile(tmp_path / "ours.npz") as ours, zipfile.ZipFile(tmp_path / "numpys.npz") as numpys:
        for key in arrays:
            assert ours.read(f"{key}.npy") == numpys.read(f"{key}.npy")


def test_md2_reads_an_npz_of_depth_maps(tmp_path):
    maps = [_arrays()["0000"], np.ones((4, 5), np.float32)]
    _write(tmp_path / "gt_depths.npz", {"0000": maps[0], "0001": maps[1]})
    loaded = load_gt_depths(tmp_path / "gt_depths.npz")
    assert len(loaded) == 2 and all(np.array_equal(a, b) for a, b in zip(loaded, maps))


def test_object_arrays_are_refused():
    with pytest.raises(ValueError, match="object"):
        deflate_npy(np.array([{"a": 1}], dtype=object), 1)
