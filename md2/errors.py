"""The exceptions md2 raises for users' mistakes and for failures of the world (files, network).

The CLI turns any :class:`MD2Error` into one red line on stderr and the exception's ``exit_code``;
every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class MD2Error(Exception):
    """A problem the user can act on: the message says what and where. Exit code 1 (runtime)."""

    exit_code = 1


class UsageError(MD2Error):
    """A bad option or an invalid combination of options. Exit code 2."""

    exit_code = 2


class DataError(MD2Error):
    """Missing, unreadable or malformed input data (images, splits, calibration, lidar scans)."""


class CheckpointError(MD2Error):
    """A weights folder or file that is missing, corrupt, or does not match the architecture."""


class DownloadError(MD2Error):
    """A download that failed: no network, a server error, a corrupt or unsafe archive."""


class ExportError(MD2Error):
    """An exported model that could not be written, or whose outputs its runtime did not reproduce."""


class NotFiniteOutputs(ExportError):
    """A model whose own outputs in PyTorch are NaN or infinite: nothing to export or compare with."""


def worker_message(text: str) -> str:
    """The original one-line message inside the text of an error a DataLoader worker raised (torch re-raises it
    in the main process as "Caught DataError in DataLoader worker process 0. Original Traceback ...")."""
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    return last.split("Error: ", 1)[1] if "Error: " in last else last
