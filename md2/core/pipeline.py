"""The prediction pipeline: inputs prepared ahead of the network and finished behind it, in input order.

    items --(feeder thread)--> prepare (worker threads) --> network (caller's thread, or ``lanes`` threads of
    its own; batches of consecutive items) --> after_network per item (caller's thread, input order) -->
    finish (worker threads) --> on_done (caller's thread, strictly in input order)

Decoding, resizing, colour-mapping and encoding are Pillow, NumPy and OpenCV calls that release the GIL, so
they overlap the network. Every torch operation stays in the caller's thread: torch run from another thread
starts an OpenMP team of its own for that thread, whose spinning threads would take the cores from the
network's. Every queue is bounded (memory does not grow with the number of inputs, a video's
frames are never all in memory); results, failures and progress are reported in the inputs' order whatever
finishes first. The same code runs photos, video frames and exported models (:mod:`md2.core.predict`,
:mod:`md2.core.video_predict`).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from md2.core.pictures import Prepared
from md2.errors import DataError

Item = TypeVar("Item")
Result = TypeVar("Result")
_END = object()


@dataclass(frozen=True)
class Stages(Generic[Item, Result]):
    """What the pipeline does with each item: ``prepare`` and ``finish`` run in worker threads (Pillow and
    NumPy, no torch), ``network`` and ``after_network`` in the caller's thread."""

    prepare: Callable[[Item], Prepared]
    """Decode and resize; a DataError marks the item failed and the others go on."""
    network: Callable[[np.ndarray], Any]
    """(B, h, w, 3) uint8 -> (B, 1, h, w) disparity (a tensor, or an array from onnxruntime)."""
    finish: Callable[[Item, Prepared, Any], Result]
    """Outputs of one item from what ``after_network`` made of its disparity; a DataError (disk full...)
    stops the run."""
    after_network: Callable[[Item, Prepared, Any], Any] = lambda item, ready, disp: disp
    """Per item, in input order: its (1, 1, h, w) disparity -> what ``finish`` takes (the torch work: upsampling,
    depth; and what depends on the items before, such as a video's running colour scale)."""
    lanes: int = 1
    """Network passes running at once, each batch's in a thread of its own (a network that is safe to call from
    several threads: an onnxruntime session); 1: in the caller's thread (torch)."""


def run_pipeline(items: Iterable[Item], stages: Stages[Item, Result],
                 on_done: Callable[[Item, Result | DataError], None], *, batch_size: int = 1,
                 workers: int = 2, ahead: int | None = None) -> None:
    """Run every item through ``stages``; ``on_done(item, result or the DataError of its preparation)`` is
    called once per item, in input order, from the caller's thread.

    Batches are ``batch_size`` consecutive items (their readable ones), as md2 always grouped them: the
    grouping decides the last bits of fp32 convolutions. At most ``ahead`` items (default: two batches and a
    few) are being prepared, and as many finished, at any time. An exception raised by iterating ``items``,
    by the network or by ``finish`` stops the pipeline and is raised here after the threads have stopped.
    On Ctrl-C (KeyboardInterrupt) the items whose finishing had started are waited for and reported, in
    order, before it is raised again: whatever an item's ``finish`` wrote (a frame's .npy) is also reported
    done (in the video), never left behind without it.
    """
    ahead = ahead if ahead is not None else 2 * batch_size + 2
    lanes = max(1, stages.lanes)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="md2-predict") as pool, \
            _lane_threads(lanes) as lane_threads:
        feeder = _Feeder(items, stages.prepare, pool, ahead)
        running: deque[tuple[list, Future | None]] = deque()  # batches in the network, in input order
        finishing: deque[tuple[Item, Future | DataError]] = deque()
        try:
            for chunk in feeder.chunks(batch_size):
                running.append(_start_batch(chunk, stages, lane_threads))
                if len(running) >= lanes:
                    _end_batch(*running.popleft(), stages, pool, finishing)
                while finishing and (len(finishing) > ahead or _settled(finishing[0][1])):
                    _report(finishing.popleft(), on_done)
            while running:
                _end_batch(*running.popleft(), stages, pool, finishing)
            while finishing:
                _report(finishing.popleft(), on_done)
        except KeyboardInterrupt:
            _drain(finishing, on_done)
            raise
        finally:
            feeder.stop()
            for _, pending in finishing:
                if isinstance(pending, Future):
                    pending.cancel()


class _InCaller:
    """A lane-less run: ``submit`` runs the network at once, in the caller's thread (torch's must stay there)."""

    def submit(self, function: Callable, *args) -> Future:
        future: Future = Future()
        future.set_result(function(*args))  # an exception is raised here, in the caller's thread, as before lanes
        return future


@contextmanager
def _lane_threads(lanes: int) -> Iterator[ThreadPoolExecutor | _InCaller]:
    """The threads running network passes: none for one lane (the caller's), else ``lanes``; on the way out,
    passes not started are cancelled and those running waited for (a pass cannot be stopped half-way)."""
    if lanes == 1:
        yield _InCaller()
        return
    threads = ThreadPoolExecutor(lanes, thread_name_prefix="md2-network")
    try:
        yield threads
    finally:
        threads.shutdown(wait=True, cancel_futures=True)


def _start_batch(chunk: list[tuple[Item, Future]], stages: Stages,
                 lane_threads: ThreadPoolExecutor | _InCaller) -> tuple[list, Future | None]:
    """Wait for the chunk's preparations (in order) and start the network on the readable ones."""
    prepared = [(item, _outcome(future)) for item, future in chunk]
    good = [ready for _, ready in prepared if isinstance(ready, Prepared)]
    network = lane_threads.submit(stages.network, np.stack([ready.pixels for ready in good])) if good else None
    return prepared, network


def _end_batch(prepared: list, network: Future | None, stages: Stages, pool: ThreadPoolExecutor,
               finishing: deque) -> None:
    """The batch's disparities (waited for) through ``after_network``, in order; their finishing queued."""
    disps = network.result() if network is not None else None
    index = 0
    for item, ready in prepared:
        if isinstance(ready, Prepared):
            payload = stages.after_network(item, ready, disps[index:index + 1])
            finishing.append((item, pool.submit(stages.finish, item, ready, payload)))
            index += 1
        else:
            finishing.append((item, ready))


def _drain(finishing: deque, on_done: Callable) -> None:
    """After Ctrl-C: cancel the finishing not started, report the items before the first one cancelled (or
    failed) in order, waiting for those running; a second Ctrl-C stops the wait."""
    for _, pending in finishing:
        if isinstance(pending, Future):
            pending.cancel()
    while finishing:
        item, pending = finishing[0]
        if not isinstance(pending, Future) or pending.cancelled():
            return
        try:
            result = pending.result()
        except Exception:  # noqa: BLE001 -- the run is being interrupted; this item is simply not done
            return
        finishing.popleft()
        on_done(item, result)


def _outcome(future: Future) -> Prepared | DataError:
    try:
        return future.result()
    except DataError as error:
        return error


def _settled(pending: Future | DataError) -> bool:
    return not isinstance(pending, Future) or pending.done()


def _report(entry: tuple[Item, Future | DataError], on_done: Callable) -> None:
    item, pending = entry
    on_done(item, pending.result() if isinstance(pending, Future) else pending)


class _Feeder:
    """Reads ``items`` in a thread of its own (a video's decoder is sequential and may be slow) and submits
    each one's preparation; the caller takes (item, future) pairs in order through a bounded queue."""

    def __init__(self, items: Iterable, prepare: Callable, pool: ThreadPoolExecutor, ahead: int) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._feed, args=(iter(items), prepare, pool), daemon=True,
                                       name="md2-predict-feeder")
        self.thread.start()

    def _feed(self, items: Iterator, prepare: Callable, pool: ThreadPoolExecutor) -> None:
        try:
            for item in items:
                if not self._put((item, pool.submit(prepare, item))):
                    return
        except BaseException as error:  # noqa: BLE001 -- handed to the caller's thread, raised there
            self._put((_END, error))
            return
        self._put((_END, None))

    def _put(self, entry) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        if isinstance(entry[1], Future):
            entry[1].cancel()
        return False

    def chunks(self, size: int) -> Iterator[list[tuple]]:
        """Consecutive (item, future) pairs, ``size`` at a time (the last chunk may be shorter)."""
        chunk: list[tuple] = []
        while True:
            item, future = self.queue.get()
            if item is _END:
                if chunk:
                    yield chunk
                if future is not None:
                    raise future
                return
            chunk.append((item, future))
            if len(chunk) == size:
                yield chunk
                chunk = []

    def stop(self) -> None:
        """Stop reading items and cancel the preparations not started (used on success and on errors)."""
        self.stopping.set()
        self.thread.join()  # its puts time out and see the flag, so it ends within one item's reading
        while True:
            try:
                _, pending = self.queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(pending, Future):
                pending.cancel()
