"""The console side of training: a rich progress bar per epoch (samples/s, loss, time left) on a terminal,
one summary line per epoch otherwise; peak memory at the end."""

from __future__ import annotations

import resource
import sys
import time

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.progress import TimeRemainingColumn


class EpochBar:
    """``with EpochBar(console, epoch, total, done) as bar: bar.advance(samples); bar.show_loss(x)``.

    ``total`` batches in the epoch, ``done`` of them already trained (a resumed epoch). Rate and time left
    count only the batches of this session.
    """

    def __init__(self, console: Console, epoch: int, total: int, done: int, enabled: bool = True) -> None:
        self.console, self.epoch, self.total, self.done = console, epoch, total, done
        self.enabled = enabled
        self.samples, self.loss = 0, float("nan")
        self.started = time.perf_counter()
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

    def advance(self, samples: int) -> None:
        self.samples += samples
        self.done += 1
        self.bar.update(self.task, advance=1, rate=f"{self.rate():.1f} samples/s")

    def show_loss(self, loss: float) -> None:
        self.loss = loss
        self.bar.update(self.task, loss=f"{loss:.4f}")

    def rate(self) -> float:
        return self.samples / max(time.perf_counter() - self.started, 1e-9)

    def __exit__(self, *exc_info) -> None:
        self.bar.__exit__(*exc_info)
        if exc_info[0] is None and self.enabled and not self.console.is_terminal:
            elapsed = time.perf_counter() - self.started
            self.console.print(f"epoch {self.epoch}: {self.done}/{self.total} batches, {self.rate():.1f} "
                               f"samples/s, last logged loss {self.loss:.4f}, {elapsed:.0f} s", highlight=False)


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory of this process in GB: CUDA allocations on a GPU, resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak / 1e6  # bytes on macOS, kilobytes on Linux
