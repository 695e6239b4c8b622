"""--resize-cache: pyramids stored once and read back give the samples the images give, and the cache is safe."""

from __future__ import annotations

import os
import shutil
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from md2.data.augment import ColorJitterParams, lanczos_pyramid
from md2.data.kitti import KITTIRawDataset
from md2.data.resize_cache import ResizeCache, flip_commutes
from md2.errors import DataError, UsageError

HEIGHT, WIDTH = 64, 192
JITTER = ColorJitterParams((3, 0, 2, 1), 1.15, 0.85, 1.1, 0.07)
KITTI_SIZES = [(1242, 375), (1241, 376), (1224, 370), (1238, 374), (1226, 370)]


@pytest.fixture
def drives(synth_raw: Path, tmp_path: Path) -> Path:
    """A private copy of the small synthetic drives (the tests rewrite images)."""
    root = tmp_path / "kitti"
    shutil.copytree(synth_raw / "2011_09_26", root / "2011_09_26")
    shutil.copytree(synth_raw / "splits", root / "splits")
    return root


def _lines(root: Path) -> list[str]:
    return (root / "splits" / "synth" / "train_files.txt").read_text().split("\n")[:-1]


def _dataset(root: Path, cache: Path | None, **options) -> KITTIRawDataset:
    options = {"frame_ids": (0, -1, 1), "img_ext": ".png", "use_stereo": True, **options}
    dataset = KITTIRawDataset(root, _lines(root), HEIGHT, WIDTH, **options)
    if cache is not None:
        dataset.resize_cache = ResizeCache(cache, WIDTH, HEIGHT, dataset.num_scales)
    return dataset


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.pyr"))


def _assert_same_samples(a, b) -> None:
    for frame in a.color:
        for scale in range(len(a.color[frame])):
            assert torch.equal(a.color[frame][scale], b.color[frame][scale]), (frame, scale)
            assert torch.equal(a.color_aug[frame][scale], b.color_aug[frame][scale]), (frame, scale)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("uint8_images", [False, True])
def test_cached_samples_equal_the_images_samples_cold_and_warm(drives: Path, tmp_path: Path, flip: bool,
                                                               uint8_images: bool) -> None:
    plain = _dataset(drives, None, uint8_images=uint8_images)
    cached = _dataset(drives, tmp_path / "cache", uint8_images=uint8_images)
    for _ in range(2):  # the first pass stores, the second reads back
        for index in range(len(plain)):
            _assert_same_samples(plain.load_sample(index, flip=flip, jitter=JITTER),
                                 cached.load_sample(index, flip=flip, jitter=JITTER))
    used = {cached._frame_source(ref, f)[0] for ref in cached.refs for f in cached.frame_ids}
    assert len(_entries(tmp_path / "cache")) == len(used)  # one entry per image, flipped or not


def test_training_batches_equal_with_the_cache(drives: Path, tmp_path: Path) -> None:
    keys = [(epoch, index) for epoch in range(3) for index in range(4)]  # flips and jitters drawn per key
    plain = _dataset(drives, None, is_train=True, seed=3).__getitems__(keys)
    _dataset(drives, tmp_path / "cache", is_train=True, seed=3).__getitems__(keys)
    warm = _dataset(drives, tmp_path / "cache", is_train=True, seed=3).__getitems__(keys)
    assert plain.flipped.any() and not plain.flipped.all()
    _assert_same_samples(plain, warm)


def test_a_warm_entry_is_read_instead_of_the_image(drives: Path, tmp_path: Path) -> None:
    cached = _dataset(drives, tmp_path / "cache", frame_ids=(0,), use_stereo=False)
    before = cached.load_sample(0)
    path = cached._frame_source(cached.refs[0], 0)[0]
    stat = path.stat()
    path.write_bytes(bytes(stat.st_size))  # no longer an image, same size and time: the cache cannot tell
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(DataError):
        _dataset(drives, None, frame_ids=(0,), use_stereo=False).load_sample(0)
    _assert_same_samples(before, cached.load_sample(0))


def test_a_replaced_image_gets_a_new_entry(drives: Path, tmp_path: Path) -> None:
    cached = _dataset(drives, tmp_path / "cache", frame_ids=(0,), use_stereo=False)
    cached.load_sample(0)
    path = cached._frame_source(cached.refs[0], 0)[0]
    Image.fromarray(255 - np.array(Image.open(path))).save(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    _assert_same_samples(_dataset(drives, None, frame_ids=(0,), use_stereo=False).load_sample(0),
                         cached.load_sample(0))
    assert len(_entries(tmp_path / "cache")) == 2


@pytest.mark.parametrize("damage", ["flip a pixel byte", "truncate", "empty"])
def test_a_damaged_entry_is_rebuilt(drives: Path, tmp_path: Path, damage: str) -> None:
    cached = _dataset(drives, tmp_path / "cache", frame_ids=(0,), use_stereo=False)
    expected = cached.load_sample(0)
    [entry] = _entries(tmp_path / "cache")
    original = entry.read_bytes()
    data = bytearray(original)
    if damage == "flip a pixel byte":
        data[100] ^= 0xFF
    entry.write_bytes(bytes(data[:len(data) // 2]) if damage == "truncate" else
                      b"" if damage == "empty" else bytes(data))
    _assert_same_samples(expected, cached.load_sample(0))
    repaired = entry.read_bytes()
    assert zlib.crc32(repaired[:-4]) == int.from_bytes(repaired[-4:], "little")
    assert repaired == original


def test_without_the_flip_rule_a_flipped_sample_is_built_from_the_image(drives: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:
    # Pillow's chain commutes with the flip at every size tried (test below); where it would not, md2 must
    # fall back to flipping the image: forced here.
    monkeypatch.setattr("md2.data.resize_cache.flip_commutes", lambda *args: False)
    plain = _dataset(drives, None)
    cached = _dataset(drives, tmp_path / "cache")
    for _ in range(2):
        _assert_same_samples(plain.load_sample(1, flip=True, jitter=JITTER),
                             cached.load_sample(1, flip=True, jitter=JITTER))


@pytest.mark.parametrize("size", KITTI_SIZES + [(638, 235), (997, 301), (640, 192), (333, 97)])
def test_lanczos_chain_commutes_with_the_flip(size: tuple[int, int]) -> None:
    assert flip_commutes(size, (640, 192), 4)
    rng = np.random.default_rng(size[0])
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    flipped = lanczos_pyramid(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 640, 192, 4)
    for a, b in zip(lanczos_pyramid(image, 640, 192, 4), flipped):
        assert np.array_equal(np.asarray(a)[:, ::-1], np.asarray(b))


def test_an_unwritable_cache_warns_once_and_samples_go_on(drives: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{WIDTH}x{HEIGHT}x4").write_text("a file where the cache's folder should be")
    plain, cached = _dataset(drives, None), _dataset(drives, cache)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index in range(2):
            _assert_same_samples(plain.load_sample(index, flip=True), cached.load_sample(index, flip=True))
    messages = [str(w.message) for w in caught if "resize-cache" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith(f"--resize-cache {cache}: cannot store")
    assert not _entries(cache)


def test_a_file_as_the_cache_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        ResizeCache(tmp_path / "file", WIDTH, HEIGHT, 4)


def test_a_missing_image_is_still_named(drives: Path, tmp_path: Path) -> None:
    cached = _dataset(drives, tmp_path / "cache", frame_ids=(0,), use_stereo=False)
    path = cached._frame_source(cached.refs[0], 0)[0]
    path.unlink()
    with pytest.raises(DataError, match=f"missing image .*{path.name}"):
        cached.load_sample(0)
