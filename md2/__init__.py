"""md2: Monodepth2 self-supervised monocular depth, rebuilt as one package and one command-line tool."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def load_model(name_or_folder="mono+stereo_640x192", device: str = "auto"):
    """A ready depth network: a pretrained model's name, a weights folder, or a file written by ``md2 export``
    (``.onnx``, ``.pt``, ``.ts``); see :mod:`md2.api`."""
    from md2.api import load_model as _load

    return _load(name_or_folder, device)
