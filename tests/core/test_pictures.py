"""Pictures prepared ahead (while md2 predict imports torch): each one once, in order, failures handed over."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from md2.core.pictures import PreparedAhead, prepare_image
from md2.errors import DataError


def test_each_picture_is_handed_out_once_as_prepare_image_makes_it(photos):
    ahead = PreparedAhead(photos, 32, 16)
    try:
        for path in photos:
            if path.name == "p3.png":
                with pytest.raises(DataError, match="p3.png"):
                    ahead.take(path)
            else:
                ready = ahead.take(path)
                expected = prepare_image(path, 32, 16)
                assert np.array_equal(ready.pixels, expected.pixels) and ready.original == expected.original
            assert ahead.take(path) is None  # handed out: the caller prepares it if asked again
    finally:
        ahead.close()


def test_the_budget_limits_how_many_are_prepared(photos):
    ahead = PreparedAhead(photos, 32, 16, budget=2 * 32 * 16 * 3)
    ahead._thread.join()  # it ends by itself after the two it may hold
    assert ahead.take(photos[0]) is not None and ahead.take(photos[1]) is not None
    assert all(ahead.take(path) is None for path in photos[2:])
    ahead.close()


def test_stop_ends_the_thread_within_the_picture_in_hand(photos, monkeypatch):
    started, release = threading.Event(), threading.Event()
    import md2.core.pictures as module

    def slow_prepare(path, width, height):
        started.set()
        release.wait(10)
        return prepare_image(path, width, height)

    monkeypatch.setattr(module, "prepare_image", slow_prepare)
    ahead = PreparedAhead(photos, 32, 16)
    assert started.wait(10)
    ahead.stop()
    taker = threading.Thread(target=lambda: setattr(taker, "result", ahead.take(photos[0])))
    taker.start()  # the picture in hand: take waits for it
    release.set()
    taker.join(10)
    assert taker.result is not None
    ahead._thread.join(10)
    assert not ahead._thread.is_alive()
    assert all(ahead.take(path) is None for path in photos[1:])  # nothing after the stop
    ahead.close()
