"""The console side of training: a rich progress bar per epoch (samples/s, share of time waiting for data, loss,
time left) on a terminal, one summary line per epoch otherwise; a hint when the data loader is the bottleneck;
peak memory at the end."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.progress import TimeRemainingColumn


T = TypeVar("T")

LOADER_BOUND_SHARE = 0.25
"""Share of an epoch spent waiting for batches above which the end of the epoch suggests feeding it faster."""
LOADER_BOUND_MIN_BATCHES = 10
"""Batches an epoch needs (besides its first) before the share is worth a hint."""


class EpochBar:
    """``with EpochBar(console, epoch, total, done) as bar: for batch in bar.timed(batches): ...; bar.advance(
    samples); bar.show_loss(x)``.

    ``total`` batches in the epoch, ``done`` of them already trained (a resumed epoch). Rate and time left
    count only the batches of this session. :meth:`timed` measures the time the loop waits for each batch
    (from the second on: the first includes starting the loader), shown as the data-wait share.
    """

    def __init__(self, console: Console, epoch: int, total: int, done: int, enabled: bool = True) -> None:
        self.console, self.epoch, self.total, self.done = console, epoch, total, done
        self.enabled = enabled
        self.samples, self.loss = 0, float("nan")
        self.started = time.perf_counter()
        self.waiting, self.waited_batches, self.first_batch_at = 0.0, 0, None
        self.bar = Progress(TextColumn(f"epoch {epoch}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TextColumn("loss {task.fields[loss]}"),
                            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                            console=console, transient=False,
                            disable=not (enabled and console.is_terminal))
        self.task = None

    def __enter__(self) -> EpochBar:
        self.bar.__enter__()
        self.task = self.bar.add_task("train", total=self.total, completed=self.done, loss="-", rate="")
        return self

    def timed(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, adding the time spent waiting for each (after the first) to the epoch's data wait."""
        iterator = iter(items)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            if self.first_batch_at is None:
                self.first_batch_at = time.perf_counter()
            else:
                self.waiting += time.perf_counter() - start
                self.waited_batches += 1
            yield item

    def wait_share(self) -> float:
        """Share of the time since the first batch arrived spent waiting for the next ones (0 before)."""
        if self.first_batch_at is None:
            return 0.0
        return min(1.0, self.waiting / max(time.perf_counter() - self.first_batch_at, 1e-9))

    def advance(self, samples: int) -> None:
        self.samples += samples
        self.done += 1
        self.bar.update(self.task, advance=1,
                        rate=f"{self.rate():.1f} samples/s, data wait {self.wait_share():.0%}")

    def show_loss(self, loss: float) -> None:
        self.loss = loss
        self.bar.update(self.task, loss=f"{loss:.4f}")

    def rate(self) -> float:
        return self.samples / max(time.perf_counter() - self.started, 1e-9)

    def __exit__(self, *exc_info) -> None:
        self.bar.__exit__(*exc_info)
        if exc_info[0] is not None or not self.enabled:
            return
        share = self.wait_share()
        if not self.console.is_terminal:
            elapsed = time.perf_counter() - self.started
            self.console.print(f"epoch {self.epoch}: {self.done}/{self.total} batches, {self.rate():.1f} "
                               f"samples/s, waiting for data {share:.0%}, last logged loss {self.loss:.4f}, "
                               f"{elapsed:.0f} s", highlight=False)
        if share >= LOADER_BOUND_SHARE and self.waited_batches >= LOADER_BOUND_MIN_BATCHES:
            self.console.print(f"the data loader held training back {share:.0%} of epoch {self.epoch}: more "
                               "--num-workers, --resize-cache DIR, or on a GPU --augment-on device would feed it "
                               "faster (README: Performance)", highlight=False)


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory of this process in GB: CUDA allocations on a GPU, resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak / 1e6  # bytes on macOS, kilobytes on Linux
