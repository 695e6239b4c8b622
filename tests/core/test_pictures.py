"""Pictures prepared ahead (while md2 predict imports torch): each one once, in order, failures handed over."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from md2.core.pictures import PreparedAhead, prepare_image
from md2.errors import DataError


@pytest.fixture
def pictures(tmp_path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for index in range(5):
        path = tmp_path / f"p{index}.png"
        if index == 2:
            path.write_bytes(b"\x89PNG broken")
        else:
            Image.fromarray(rng.integers(0, 256, (40 + index, 70, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_each_picture_is_handed_out_once_as_prepare_image_makes_it(pictures):
    ahead = PreparedAhead(pictures, 32, 16)
    try:
        for path in pictures:
            if path.name == "p2.png":
                with pytest.raises(DataError, match="p2.png"):
                    ahead.take(path)
            else:
                ready = ahead.take(path)
                expected = prepare_image(path, 32, 16)
                assert np.array_equal(ready.pixels, expected.pixels) and ready.original == expected.original
            assert ahead.take(path) is None  # handed out: the caller prepares it if asked again
    finally:
        ahead.close()


def test_the_budget_limits_how_many_are_prepared(pictures):
    ahead = PreparedAhead(pictures, 32, 16, budget=2 * 32 * 16 * 3)
    ahead._thread.join()  # it ends by itself after the two it may hold
    assert ahead.take(pictures[0]) is not None and ahead.take(pictures[1]) is not None
    assert all(ahead.take(path) is None for path in pictures[2:])
    ahead.close()


def test_stop_ends_the_thread_within_the_picture_in_hand(pictures, monkeypatch):
    started, release = threading.Event(), threading.Event()
    import md2.core.pictures as module

    def slow_prepare(path, width, height):
        started.set()
        release.wait(10)
        return prepare_image(path, width, height)

    monkeypatch.setattr(module, "prepare_image", slow_prepare)
    ahead = PreparedAhead(pictures, 32, 16)
    assert started.wait(10)
    ahead.stop()
    taker = threading.Thread(target=lambda: setattr(taker, "result", ahead.take(pictures[0])))
    taker.start()  # the picture in hand: take waits for it
    release.set()
    taker.join(10)
    assert taker.result is not None
    ahead._thread.join(10)
    assert not ahead._thread.is_alive()
    assert all(ahead.take(path) is None for path in pictures[1:])  # nothing after the stop
    ahead.close()
