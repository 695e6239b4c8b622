"""The epoch bar's data-wait share: the time the training loop waits for batches, and the hint it gives."""

from __future__ import annotations

import io
import time

from rich.console import Console

from md2.core.train.epoch_bar import LOADER_BOUND_MIN_BATCHES, EpochBar


def _epoch(load_seconds: float, step_seconds: float, batches: int = LOADER_BOUND_MIN_BATCHES + 2) -> str:
    """Run an epoch whose batches take ``load_seconds`` to arrive and ``step_seconds`` to train; its output."""
    out = io.StringIO()

    def loader():
        for index in range(batches):
            time.sleep(load_seconds)
            yield index

    with EpochBar(Console(file=out, force_terminal=False), epoch=3, total=batches, done=0) as bar:
        for _ in bar.timed(loader()):
            time.sleep(step_seconds)
            bar.advance(4)
    return out.getvalue()


def _share(output: str) -> int:
    return int(output.split("waiting for data ")[1].split("%")[0])


def test_a_slow_loader_shows_as_waiting_and_gets_a_hint():
    output = _epoch(load_seconds=0.03, step_seconds=0.0)
    assert _share(output) >= 80
    assert "the data loader held training back" in output and "--num-workers" in output


def test_a_loader_that_keeps_up_shows_no_wait_and_no_hint():
    output = _epoch(load_seconds=0.0, step_seconds=0.03)
    assert _share(output) <= 10
    assert "held training back" not in output


def test_the_first_batch_does_not_count_and_short_epochs_get_no_hint():
    output = _epoch(load_seconds=0.03, step_seconds=0.0, batches=LOADER_BOUND_MIN_BATCHES)
    assert _share(output) >= 80 and "held training back" not in output  # too few batches for a hint
    out = io.StringIO()

    def starting_loader():
        time.sleep(0.3)  # workers starting: only the first batch waits
        yield from range(LOADER_BOUND_MIN_BATCHES + 2)

    with EpochBar(Console(file=out, force_terminal=False), epoch=0, total=12, done=0) as bar:
        for _ in bar.timed(starting_loader()):
            time.sleep(0.02)
            bar.advance(1)
    assert _share(out.getvalue()) <= 10 and "held training back" not in out.getvalue()
