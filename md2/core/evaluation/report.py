"""How evaluation results are shown and saved: a rich table, the reference's LaTeX-style line, a JSON file,
and a picture of predicted and true trajectories seen from above."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from md2 import __version__
from md2.errors import DataError
from md2.files import atomic_path

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
"""The seven depth metrics, in the order of the paper's tables and the reference's printout."""

LOWER_IS_BETTER = {"abs_rel": True, "sq_rel": True, "rmse": True, "rmse_log": True,
                   "a1": False, "a2": False, "a3": False}

DEPTH_HEADINGS = {"abs_rel": "Abs Rel", "sq_rel": "Sq Rel", "rmse": "RMSE", "rmse_log": "RMSE log",
                  "a1": "δ<1.25", "a2": "δ<1.25²", "a3": "δ<1.25³"}


def latex_line(values: Sequence[float]) -> str:
    """The reference's line for papers: ``&   0.115  &   0.903  ... \\\\`` (each value ``{: 8.3f}``)."""
    return "".join(f"&{float(v): 8.3f}  " for v in values) + "\\\\"


def reference_header(names: Sequence[str]) -> str:
    """The reference's column header above the LaTeX line: each name right-aligned in 8 characters."""
    return "".join(f"{name:>8} | " for name in names)


def depth_table(metrics: Mapping[str, float], title: str | None = None) -> Table:
    """A one-row rich table of the seven depth metrics (errors in red, lower is better; accuracies in green,
    higher is better), narrow enough for an 80-column terminal."""
    table = Table(title=title, title_justify="left", caption="errors: lower is better · δ accuracies: higher",
                  caption_justify="left")
    for name in DEPTH_METRICS:
        style = "bold red" if LOWER_IS_BETTER[name] else "bold green"
        table.add_column(DEPTH_HEADINGS[name], justify="right", header_style=style, no_wrap=True)
    table.add_row(*(f"{metrics[name]:.3f}" for name in DEPTH_METRICS))
    return table


def key_value_table(rows: Sequence[tuple[str, str]], title: str | None = None) -> Table:
    """A two-column table (quantity, value) for results that are not a fixed metric row (pose)."""
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def scaling_ratios_line(median: float, std: float) -> str:
    """The reference's summary of the mono median-scaling ratios."""
    return f" Scaling ratios | med: {median:0.3f} | std: {std:0.3f}"


@contextlib.contextmanager
def progress_stages(console: Console) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """A rich progress display; yields ``stage(name, total) -> advance(n)``, one bar per stage.

    Shown on a terminal only, from the first stage on: a run that fails before any work prints only its error.
    """
    progress = Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console, transient=True,
                        disable=console.quiet or not console.is_terminal)

    def stage(name: str, total: int) -> Callable[[int], None]:
        if not progress.live.is_started:
            progress.start()
        task = progress.add_task(name, total=total)
        return lambda n=1: progress.advance(task, n)

    try:
        yield stage
    finally:
        if progress.live.is_started:
            progress.stop()


def _plain(value: Any) -> Any:
    """numpy scalars/arrays and Paths -> JSON-ready Python values; NaN and infinities -> None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, command: str, results: Mapping[str, Any], settings: Mapping[str, Any]) -> Path:
    """Write ``{"md2_version", "command", **results, "settings"}`` to ``path`` atomically (indented JSON)."""
    payload = {"md2_version": __version__, "command": command, **_plain(results), "settings": _plain(settings)}
    path = _prepare(path)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def _prepare(path: Path) -> Path:
    """``path`` with ``~`` expanded and its folder created."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create folder {path.parent}: {error.strerror or error}") from None
    return path


PLOT_COLOURS = {"ground truth": (40, 40, 40), "prediction": (220, 50, 47)}


def plot_trajectories(path: Path, gt_xyz: np.ndarray, pred_xyz: np.ndarray, title: str = "",
                      size: int = 800) -> Path:
    """Draw two trajectories seen from above (x to the right, z up) into a PNG, with a legend and a scale bar.

    Args:
        gt_xyz, pred_xyz: (N, 3) camera positions in metres (KITTI camera axes: x right, y down, z forward).
        size: the picture's width and height in pixels; both axes share one scale.
    """
    margin = 50
    points = np.concatenate([gt_xyz[:, [0, 2]], pred_xyz[:, [0, 2]]]).astype(np.float64)
    points = points[np.isfinite(points).all(1)]
    low, high = (points.min(0), points.max(0)) if len(points) else (np.zeros(2), np.ones(2))
    span = max(float((high - low).max()), 1e-6)
    scale = (size - 2 * margin) / span
    centre = (low + high) / 2

    def to_pixels(xyz: np.ndarray) -> list[tuple[float, float]]:
        xz = (xyz[:, [0, 2]] - centre) * scale
        return [(size / 2 + x, size / 2 - z) for x, z in xz if np.isfinite(x) and np.isfinite(z)]

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for label, xyz in (("ground truth", gt_xyz), ("prediction", pred_xyz)):
        pixels = to_pixels(np.asarray(xyz, dtype=np.float64))
        if len(pixels) > 1:
            draw.line(pixels, fill=PLOT_COLOURS[label], width=2)
        if pixels:
            x, y = pixels[0]
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), outline=PLOT_COLOURS[label], width=2)
    _legend(draw, font)
    _scale_bar(draw, font, scale, size, margin)
    if title:
        draw.text((margin, 12), title, fill="black", font=font)
    draw.text((size - margin - 90, size - 20), "x right, z up (m)", fill=(120, 120, 120), font=font)
    path = _prepare(path)
    with atomic_path(path, suffix=".png") as temporary:
        image.save(temporary, format="PNG")
    return path


def _legend(draw: ImageDraw.ImageDraw, font) -> None:
    x, y = 60, 36
    draw.rectangle((x - 8, y - 6, x + 150, y + 42), outline=(180, 180, 180), fill="white")
    for row, (label, colour) in enumerate(PLOT_COLOURS.items()):
        top = y + 18 * row + 6
        draw.line((x, top, x + 24, top), fill=colour, width=3)
        draw.text((x + 32, top - 6), label, fill="black", font=font)


def _scale_bar(draw: ImageDraw.ImageDraw, font, scale: float, size: int, margin: int) -> None:
    """A bar of a round number of metres (1, 2, 5 x 10^k) about a fifth of the picture wide."""
    target = (size - 2 * margin) / 5 / scale
    magnitude = 10 ** np.floor(np.log10(target))
    metres = next(m * magnitude for m in (5, 2, 1) if m * magnitude <= target)
    length = metres * scale
    y = size - 24
    draw.line((margin, y, margin + length, y), fill="black", width=2)
    for x in (margin, margin + length):
        draw.line((x, y - 4, x, y + 4), fill="black", width=2)
    draw.text((margin + length + 8, y - 6), f"{metres:g} m", fill="black", font=font)
