"""The model zoo's table overridden for a test: zips served from 127.0.0.1 under the published names, with the
md5 sums of those zips put in the table (md2 has no bypass: a zip whose md5 is not the table's is refused)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from md2.core.zoo import MODELS


def publish(monkeypatch: pytest.MonkeyPatch, archives: dict[str, bytes]) -> None:
    """For the test's duration, MODELS[name].md5 is the md5 of ``archives[name]`` (model name -> zip bytes);
    models whose md5 the table leaves out (checked by CRC only) stay so."""
    for name, data in archives.items():
        if MODELS[name].md5 is not None:
            monkeypatch.setitem(MODELS, name, dataclasses.replace(MODELS[name], md5=hashlib.md5(data).hexdigest()))


def publish_for_paths(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> None:
    """:func:`publish` for a LocalServer's files ("/mono%2Bstereo_640x192.zip" -> bytes): the models served."""
    by_path = {"/" + info.url.rsplit("/", 1)[1]: name for name, info in MODELS.items()}
    publish(monkeypatch, {by_path[path]: data for path, data in files.items() if path in by_path})
