"""md2.allocator: freed memory is kept for reuse (glibc), the user's own malloc settings win, the heap can be
faulted in ahead of use."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")

PROBE = """
import json, os, resource
import numpy as np
from md2.allocator import keep_freed_memory

def allocate():
    block = np.ones(20 * 1024 * 1024 // 8)  # 20 MB, every page touched
    del block

applied = keep_freed_memory()
allocate()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    allocate()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"applied": applied, "again": keep_freed_memory(), "faults": faults,
                  "env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**clean, **env},
                            check=True, timeout=60)
    return json.loads(result.stdout)


def test_freed_blocks_are_reused_without_faulting_pages_in_again_and_children_inherit_it():
    from md2.allocator import ENVIRONMENT

    probe = _probe()
    assert probe["applied"] is True and probe["again"] is True
    assert probe["faults"] < 5  # 20 MB is 5120 pages: reused, not faulted in afresh
    assert probe["env"] == ENVIRONMENT  # loader workers start with the same settings


def test_the_users_own_malloc_setting_wins():
    probe = _probe(MALLOC_TRIM_THRESHOLD_="1")
    assert probe["applied"] is False
    assert probe["env"] == {"MALLOC_TRIM_THRESHOLD_": "1"}  # nothing added for the processes it starts


PREFAULT_PROBE = """
import ctypes, json, resource, sys
from md2.allocator import PREFAULT_CHUNK, keep_freed_memory, prefault_heap

NBYTES = 16 * PREFAULT_CHUNK
libc = ctypes.CDLL(None)
libc.malloc.argtypes, libc.malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
libc.memset.argtypes, libc.memset.restype = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t), ctypes.c_void_p
applied = keep_freed_memory()
thread = prefault_heap(NBYTES) if sys.argv[1] == "on" else None
if thread is not None:
    thread.join()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
size = PREFAULT_CHUNK - 4096
for _ in range(8):  # half of it, below the mmap threshold (so from the heap), every byte written
    libc.memset(libc.malloc(size), 1, size)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "thread": thread is not None, "faults": faults, "pages": 8 * size // 4096,
                  "tiny": prefault_heap(4096) is None}))
"""


def _prefault_probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run([sys.executable, "-c", PREFAULT_PROBE, mode], capture_output=True, text=True,
                            env={**clean, **env}, check=True, timeout=60)
    return json.loads(result.stdout)


def test_a_prefaulted_heap_serves_later_allocations_without_page_faults():
    cold, warm = _prefault_probe("off"), _prefault_probe("on")
    assert cold["applied"] and warm["applied"] and warm["thread"] and warm["tiny"]
    assert cold["faults"] > cold["pages"] // 2  # without it, every page of the new arrays is faulted in
    assert warm["faults"] < warm["pages"] // 20  # with it, the pages were faulted in by the thread beforehand


def test_a_process_started_by_md2_with_its_settings_can_prefault_too():
    from md2.allocator import ENVIRONMENT

    probe = _prefault_probe("on", **ENVIRONMENT)  # e.g. md2 train run by a benchmark that applied them itself
    assert probe["applied"] and probe["thread"] and probe["faults"] < probe["pages"] // 20


def test_nothing_is_prefaulted_when_the_users_malloc_settings_are_kept():
    probe = _prefault_probe("on", MALLOC_MMAP_THRESHOLD_="131072")
    assert probe["applied"] is False and probe["thread"] is False
