"""Before training starts: the images of a split's first and last lines exist, or one line says why not.

A wrong image extension (``--png`` forgotten) or a missing second camera (``--use-stereo`` without
``image_03``) would otherwise surface at the first batch, after the run folder was created.
"""

from __future__ import annotations

from pathlib import Path

from md2.data.datasets.base import FrameDataset
from md2.errors import DataError


def other_extension_hint(path: Path) -> str:
    """``" (the images are .png: add --png)"`` when ``path`` is missing but its .png / .jpg twin exists."""
    other = path.with_suffix(".jpg" if path.suffix == ".png" else ".png")
    if path.suffix not in (".jpg", ".png") or not other.is_file():
        return ""
    return f" (the images are {other.suffix}: {'drop --png' if other.suffix == '.jpg' else 'add --png'})"


def check_first_and_last(dataset: FrameDataset, which: str, *, tolerate_some: bool = False) -> None:
    """DataError naming the first missing image of the first and last samples of ``dataset`` (split file
    ``which``), with the hint of what to change. ``tolerate_some`` (``--skip-bad-samples``): only when both
    samples miss an image, since then no sample can be expected to read."""
    refs = dataset.refs
    if not refs:
        return
    problems = []
    for ref in dict.fromkeys([refs[0], refs[-1]]):
        missing = [path for path, _ in _sources(dataset, ref) if not path.is_file()]
        if missing:
            problems.append((ref, missing[0]))
    if not problems or (tolerate_some and len(problems) < len(dict.fromkeys([refs[0], refs[-1]]))):
        return
    ref, path = problems[0]
    raise DataError(f"{which} split line '{ref}' needs {path}, which is missing{_hint(path)}")


def _sources(dataset: FrameDataset, ref):
    # The reader's own lookup (the same path it would open at the first batch).
    return [dataset._frame_source(ref, frame_id) for frame_id in dataset.frame_ids]


def _hint(path: Path) -> str:
    hint = other_extension_hint(path)
    if hint:
        return hint
    camera = path.parent.parent if path.parent.name == "data" else path.parent
    if camera.name in ("image_03", "image_3") and not camera.is_dir():
        return f" (no {camera.name} folder: --use-stereo needs both cameras)"
    return ""
