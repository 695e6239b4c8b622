"""md2.allocator: freed memory is kept for reuse (glibc), the user's own malloc settings win."""

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
