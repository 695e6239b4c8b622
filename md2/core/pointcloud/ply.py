"""Binary little-endian PLY files of coloured points: float32 x, y, z and uint8 red, green, blue per vertex."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from md2.files import atomic_path

VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
"""One vertex as stored: 15 bytes, packed."""


def ply_header(count: int, comments: Iterable[str] = ()) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {' '.join(str(text).split())}" for text in comments]  # one line each, no newline inside
    lines += [f"element vertex {count}"]
    lines += [f"property {'float' if VERTEX[name].kind == 'f' else 'uchar'} {name}" for name in VERTEX.names]
    lines += ["end_header"]
    return ("\n".join(lines) + "\n").encode("ascii", errors="replace")


def write_ply(path: Path, count: int, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
              comments: Iterable[str] = ()) -> Path:
    """Write ``count`` vertices, given as chunks of (n, 3) points and (n, 3) uint8 colours, to ``path``
    (atomically: under a temporary name, renamed once complete). The chunks must add up to ``count``."""
    path = Path(path)
    written = 0
    with atomic_path(path) as temporary, open(temporary, "wb") as out:
        out.write(ply_header(count, comments))
        for points, colours in chunks:
            block = np.empty(len(points), VERTEX)
            block["x"], block["y"], block["z"] = (points[:, axis] for axis in range(3))
            block["red"], block["green"], block["blue"] = (colours[:, channel] for channel in range(3))
            out.write(block.tobytes())
            written += len(block)
        if written != count:  # a bug, not a user's mistake: the file would lie about its size
            raise RuntimeError(f"{path}: {written} vertices written, {count} announced")
    return path

