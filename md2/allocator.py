"""Keep freed memory in the process for reuse instead of handing it back to the kernel (glibc's malloc).

md2 allocates and frees the same large buffers over and over: each frame's decoded image and pyramid in the
loader workers, the activations and gradients of every training step, a depth map per scan in export-gt. By
default glibc returns every block of 128 KB or more to the kernel when it is freed (and trims the top of its
heap), so the next allocation faults all of its pages in again, each one zeroed by the kernel. Raising the two
thresholds keeps that memory for reuse. Measured on the 2-core CI machine (see the README's Performance section):
one loader worker +15-25% samples/s, lidar-to-depth maps ~1.5x; a 640x192 training step within the noise.
The resident memory stays near its peak instead of shrinking between uses; the peak itself does not grow.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
import threading

M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc's malloc.h)
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024
"""Blocks below this come from the heap and are reused (glibc's largest allowed value on 64-bit systems)."""
TRIM_THRESHOLD = 1024 * 1024 * 1024
"""Free memory at the top of the heap beyond this is returned to the kernel."""
ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
"""The same settings for child processes (loader workers), which glibc reads when they start."""

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the thresholds to this process (once) and, through the environment, to the processes it starts.

    A no-op returning False when the C library is not glibc (macOS, Windows, musl) or when the user set either
    MALLOC_*_THRESHOLD_ variable (their choice wins). True when glibc accepted both settings, or read them from
    the environment at start-up (a process started by md2, with md2's values).
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    if any(name in os.environ for name in ENVIRONMENT):
        # glibc read them when this process started: md2's own when an md2 parent passed them on, else the user's.
        _applied = platform.libc_ver()[0] == "glibc" and all(os.environ.get(k) == v for k, v in ENVIRONMENT.items())
        return _applied
    libc = _libc()
    if libc is None:
        return False
    if libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1:
        os.environ.update(ENVIRONMENT)
        _applied = True
    return _applied


PREFAULT_CHUNK = MMAP_THRESHOLD // 2
"""Pre-faulted memory is allocated in blocks of this size: below the mmap threshold, so from the heap."""


def prefault_heap(nbytes: int) -> threading.Thread | None:
    """Have the heap's next ``nbytes`` faulted in by a background thread, while this one goes on (importing
    torch, say); returns the thread (started), or None where nothing is done.

    The first training step allocates a couple of gigabytes its process has never touched, and the kernel
    faults every 4 KB page in on first write (~450k faults, 0.4-0.6 s of the step on the 2-core CI machine).
    Here this thread reserves the memory from the heap (blocks of PREFAULT_CHUNK, nothing written yet); the
    returned thread writes every page and frees each block, so the blocks go back to the heap faulted in. glibc
    is told to keep ``nbytes`` at the top of its heap when it trims (M_TOP_PAD), so the freed blocks are not
    handed back to the kernel. Later allocations below the mmap threshold reuse those pages. Needs
    :func:`keep_freed_memory` applied (else None); the memory is the process's anyway once its steps run.
    """
    if nbytes < PREFAULT_CHUNK or not keep_freed_memory():
        return None
    libc = _libc()
    if libc is None or libc.mallopt(M_TOP_PAD, int(min(nbytes, 2**31 - 1))) != 1:
        return None
    blocks = []
    for _ in range(nbytes // PREFAULT_CHUNK):
        block = libc.malloc(PREFAULT_CHUNK)  # reserved in this thread, so from this thread's (the main) heap
        if not block:
            break
        blocks.append(block)

    def fault_in() -> None:
        for block in blocks:  # ctypes releases the GIL for each call: the caller's thread runs meanwhile
            libc.memset(block, 0, PREFAULT_CHUNK)
            libc.free(block)

    thread = threading.Thread(target=fault_in, name="md2-prefault", daemon=True)
    thread.start()
    return thread


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library the interpreter is linked against, with the prototypes used here (None without them)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        libc.malloc.argtypes, libc.malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
        libc.free.argtypes, libc.free.restype = (ctypes.c_void_p,), None
        libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
        libc.memset.restype = ctypes.c_void_p
    except (OSError, AttributeError):
        return None
    return libc
