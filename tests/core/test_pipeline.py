"""The prediction pipeline's guarantees: input order whatever finishes first, bounded memory on endless
inputs, failures reported in place, errors raised after every thread stopped."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
import torch

from md2.core.pipeline import Prepared, Stages, run_pipeline
from md2.errors import DataError


def _prepare(item: int) -> Prepared:
    time.sleep(random.random() * 0.002)  # preparations finish out of order
    if item % 7 == 3:
        raise DataError(f"item {item} is unreadable")
    return Prepared(np.full((2, 2, 3), item, np.uint8), (2, 2))


def _network(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels[..., :1]).permute(0, 3, 1, 2).float() * 2


def _finish(item: int, ready: Prepared, disp: torch.Tensor) -> float:
    time.sleep(random.random() * 0.002)
    return float(disp[0, 0, 0, 0])


def _slow_network(pixels: np.ndarray) -> np.ndarray:
    time.sleep(random.random() * 0.004)  # passes in lanes end out of order
    return pixels[..., :1].transpose(0, 3, 1, 2).astype(np.float32) * 2


@pytest.mark.parametrize("batch_size, workers, lanes", [(1, 1, 1), (3, 2, 1), (4, 3, 1), (1, 2, 2), (3, 2, 3)])
def test_results_and_failures_arrive_in_input_order(batch_size, workers, lanes):
    random.seed(batch_size)
    seen = []
    network = _slow_network if lanes > 1 else _network
    run_pipeline(range(40), Stages(_prepare, network, _finish, lanes=lanes),
                 lambda item, out: seen.append((item, out)), batch_size=batch_size, workers=workers)
    assert [item for item, _ in seen] == list(range(40))
    for item, outcome in seen:
        if item % 7 == 3:
            assert isinstance(outcome, DataError) and str(item) in str(outcome)
        else:
            assert outcome == 2.0 * item


@pytest.mark.parametrize("lanes", [1, 2])
def test_batches_are_consecutive_inputs_and_after_network_sees_every_item_in_order(lanes):
    batches, ordered, threads = [], [], set()

    def network(images):
        batches.append([int(v) for v in images[:, 0, 0, 0]])
        threads.add(threading.current_thread() is threading.main_thread())
        return _slow_network(images)

    def after_network(item, ready, disp):
        assert threading.current_thread() is threading.main_thread()  # torch's work stays in the caller's thread
        ordered.append(item)
        return disp

    stages = Stages(_prepare, network, _finish, after_network=after_network, lanes=lanes)
    run_pipeline(range(12), stages, lambda item, out: None, batch_size=4)
    assert sorted(batches) == [[0, 1, 2], [4, 5, 6, 7], [8, 9, 11]]  # 3 and 10 unreadable: dropped from their batch
    assert ordered == [i for i in range(12) if i % 7 != 3]
    assert threads == ({True} if lanes == 1 else {False})  # one lane: the caller's thread, as torch needs


@pytest.mark.parametrize("lanes", [1, 2])
def test_memory_is_bounded_on_an_endless_input(lanes):
    pulled, done, most = 0, 0, 0

    def endless():
        nonlocal pulled
        while True:
            pulled += 1
            yield pulled

    def on_done(item, outcome):
        nonlocal done, most
        done += 1
        most = max(most, pulled - done)
        if done == 300:
            raise StopIteration("enough")

    with pytest.raises(StopIteration):
        run_pipeline(endless(), Stages(lambda i: Prepared(np.zeros((2, 2, 3), np.uint8), (2, 2)), _network, _finish,
                                       lanes=lanes), on_done, batch_size=4, ahead=10)
    assert most <= 10 + 4 * lanes + 10 + 2  # queued + a batch in each lane + finishing + in hand


@pytest.mark.parametrize("lanes", [1, 2])
@pytest.mark.parametrize("where", ["items", "network", "finish"])
def test_an_error_stops_the_pipeline_and_its_threads(where, lanes):
    before = threading.active_count()

    def items():
        yield from range(5)
        if where == "items":
            raise OSError("the decoder broke")
        yield from range(5, 20)

    def network(images):
        if where == "network" and images[0, 0, 0, 0] >= 8:
            raise RuntimeError("out of memory")
        return _network(images)

    def finish(item, ready, disp):
        if where == "finish" and item == 9:
            raise DataError("cannot write item 9: no space left on device")
        return item

    seen = []
    with pytest.raises((OSError, RuntimeError, DataError)):
        run_pipeline(items(), Stages(lambda i: Prepared(np.full((2, 2, 3), i, np.uint8), (2, 2)), network, finish,
                                     lanes=lanes), lambda item, out: seen.append(item), batch_size=2)
    assert seen == list(range(len(seen)))  # what was reported before the error, in order
    assert threading.active_count() == before


@pytest.mark.parametrize("batch_size, lanes", [(1, 1), (3, 1), (1, 2)])
def test_ctrl_c_reports_every_item_whose_finishing_started(batch_size, lanes):
    """A frame's .npy is written in ``finish``; after Ctrl-C, every item that wrote one is also reported done
    (the video holds that frame), in order, and the interrupt is raised again."""
    written, seen = [], []

    def network(images):
        if images[0, 0, 0, 0] >= 12:
            raise KeyboardInterrupt  # Ctrl-C arrives in the caller's thread, here during the network
        return _network(images)

    def finish(item, ready, disp):
        time.sleep(0.02 if item % 2 else 0.001)  # some finishing still running when Ctrl-C arrives
        written.append(item)
        return item

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(range(40), Stages(lambda i: Prepared(np.full((2, 2, 3), i, np.uint8), (2, 2)), network, finish,
                                       lanes=lanes), lambda item, out: seen.append(item), batch_size=batch_size,
                     workers=2)
    time.sleep(0.05)  # nothing still running would write later
    assert seen == list(range(len(seen))) and len(seen) >= 1
    assert sorted(written) == seen
