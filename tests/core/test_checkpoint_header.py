"""A weights folder's input size read without torch: right for both torch.save formats, None when unsure, and
never running what a file names."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from md2.core.checkpoint import save_weights_folder
from md2.core.checkpoint_header import network_size
from md2.core.networks import DepthDecoder, ResnetEncoder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    encoder = ResnetEncoder(18)
    return save_weights_folder(tmp_path_factory.mktemp("w") / "weights_0",
                               {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)},
                               height=96, width=320, use_stereo=False)


def test_size_of_an_md2_folder(folder):
    assert network_size(folder) == (320, 96)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_size_of_a_file_written_as_the_reference_did(tmp_path, folder, legacy):
    state = torch.load(folder / "encoder.pth", weights_only=True)
    state.update(height=192, width=640)
    torch.save(state, tmp_path / "encoder.pth", _use_new_zipfile_serialization=not legacy)
    assert network_size(tmp_path) == (640, 192)


def test_no_size_when_unsure(tmp_path, folder):
    assert network_size(tmp_path / "missing") is None
    (tmp_path / "encoder.pth").write_bytes(b"garbage")
    assert network_size(tmp_path) is None
    state = torch.load(folder / "encoder.pth", weights_only=True)
    torch.save({**state, "height": torch.tensor(96)}, tmp_path / "encoder.pth")  # a tensor: left to torch
    assert network_size(tmp_path) is None
    torch.save({key: value for key, value in state.items() if key != "width"}, tmp_path / "encoder.pth")
    assert network_size(tmp_path) is None


class _Payload:
    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_file_naming_other_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    payload = _Payload()
    payload.marker = marker
    with open(tmp_path / "encoder.pth", "wb") as handle:
        pickle.dump({"height": 96, "width": 320, "x": payload}, handle)
    assert network_size(tmp_path) is None and not marker.exists()
    torch.save({"height": 96, "width": 320, "x": payload}, tmp_path / "encoder.pth")
    assert network_size(tmp_path) is None and not marker.exists()
