"""The input size of a weights folder, read without torch (which takes ~1.5 s to import).

``md2 predict`` uses it to start decoding and resizing pictures while torch is still being imported. It is a
hint: the real loading (:func:`md2.core.checkpoint.load_state_dict_file`, ``weights_only=True``) checks the
file, and a size that disagrees with it, or a file this reader does not understand, only means that nothing
was prepared ahead.

encoder.pth is written by ``torch.save``: either a zip whose ``*/data.pkl`` is the pickled dict, or (the
published models, PyTorch 0.4) the legacy stream of pickles: magic number, protocol version, system info, then
the dict. In both, tensors are rebuilt by functions of torch named in the pickle, around storages given as
persistent ids. The unpickler here resolves every name of torch to an inert placeholder and refuses any other
name but OrderedDict: no code of the file's choosing runs, and only the plain ``height`` and ``width`` are used.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""The first pickle of torch.save's legacy format."""
MAX_PICKLE_BYTES = 16 << 20
"""A zip's data.pkl larger than this is not read (an encoder's is a few KB)."""
MAX_NETWORK_SIDE = 4096
"""The largest height or width of a depth network md2 accepts from a weights folder (the published models are
at most 1024 x 320, KITTI's full frames 1242 x 375): a file saying 64000 x 96000 would have md2 allocate
tens of gigabytes, picture by picture, before anything failed."""


def network_size(weights: Path) -> tuple[int, int] | None:
    """(width, height) of the depth network in a weights folder, from its encoder.pth; None when the file
    is missing, unreadable here, or holds no plain sizes."""
    try:
        state = _read_state(Path(weights) / "encoder.pth")
    except (OSError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError, KeyError,
            AttributeError, IndexError, RecursionError):
        return None
    if not isinstance(state, dict):
        return None
    height, width = state.get("height"), state.get("width")
    if any(isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_NETWORK_SIDE
           for value in (height, width)):
        return None  # the real loading says what is wrong
    return width, height


def _read_state(path: Path):
    with open(path, "rb") as handle:
        if zipfile.is_zipfile(handle):
            handle.seek(0)
            with zipfile.ZipFile(handle) as archive:
                names = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
                if len(names) != 1 or archive.getinfo(names[0]).file_size > MAX_PICKLE_BYTES:
                    return None
                with archive.open(names[0]) as data:
                    return _InertUnpickler(data).load()
        handle.seek(0)
        if _InertUnpickler(handle).load() != LEGACY_MAGIC:
            return None
        _InertUnpickler(handle).load()  # protocol version
        _InertUnpickler(handle).load()  # system info
        return _InertUnpickler(handle).load()


class _Inert:
    """Stands for whatever torch would have built (a tensor, a storage type): callable, takes any state."""

    def __call__(self, *args, **kwargs) -> _Inert:
        return _Inert()

    def __setstate__(self, state) -> None:
        pass


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "torch" or module.startswith("torch."):
            return _Inert()
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected name {module}.{name}")

    def persistent_load(self, pid) -> _Inert:
        return _Inert()
