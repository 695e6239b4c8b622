"""Weights folders in the official format: written by md2, read back, and refused clearly when broken."""

from __future__ import annotations

import torch

import pytest

from md2.core.checkpoint import load_depth_model, load_module, read_model_meta, save_weights_folder
from md2.core.networks import DepthDecoder, PoseDecoder, ResnetEncoder
from md2.errors import CheckpointError


def write_depth_folder(folder, num_layers=18, height=64, width=192, use_stereo=False, seed=0):
    torch.manual_seed(seed)
    encoder = ResnetEncoder(num_layers)
    decoder = DepthDecoder(encoder.num_ch_enc)
    save_weights_folder(folder, {"encoder": encoder, "depth": decoder}, height=height, width=width,
                        use_stereo=use_stereo)
    return encoder.eval(), decoder.eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    encoder, decoder = write_depth_folder(tmp_path / "weights_0", use_stereo=True)
    loaded_encoder, loaded_decoder, meta = load_depth_model(tmp_path / "weights_0")
    assert (meta.height, meta.width, meta.use_stereo, meta.num_layers) == (64, 192, True, 18)
    image = torch.rand(1, 3, 64, 192)
    with torch.no_grad():
        assert torch.equal(decoder(encoder(image))[0], loaded_decoder(loaded_encoder(image))[0])


def test_resnet50_depth_is_read_from_the_weights(tmp_path):
    write_depth_folder(tmp_path / "w", num_layers=50)
    assert read_model_meta(tmp_path / "w").num_layers == 50


def test_resnet50_weights_with_num_layers_18_are_refused(tmp_path):
    write_depth_folder(tmp_path / "w", num_layers=50)
    with pytest.raises(CheckpointError, match="ResNet-50.*num-layers 18"):
        load_depth_model(tmp_path / "w", num_layers=18)


def test_folder_without_depth_weights_is_refused(tmp_path):
    write_depth_folder(tmp_path / "w")
    (tmp_path / "w" / "depth.pth").unlink()
    with pytest.raises(CheckpointError, match="depth.pth"):
        load_depth_model(tmp_path / "w")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_is_named(tmp_path, damage):
    write_depth_folder(tmp_path / "w")
    path = tmp_path / "w" / "depth.pth"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="depth.pth"):
        load_depth_model(tmp_path / "w")


def test_missing_key_is_named(tmp_path):
    write_depth_folder(tmp_path / "w")
    state = torch.load(tmp_path / "w" / "depth.pth", weights_only=True)
    del state["decoder.3.conv.conv.weight"]
    torch.save(state, tmp_path / "w" / "depth.pth")
    with pytest.raises(CheckpointError, match=r"depth.pth.*decoder\.3\.conv\.conv\.weight"):
        load_depth_model(tmp_path / "w")


def test_wrong_shape_is_named(tmp_path):
    decoder = PoseDecoder(ResnetEncoder(18).num_ch_enc, 1, 2)
    state = decoder.state_dict()
    state["net.3.weight"] = torch.zeros(6, 256, 1, 1)
    with pytest.raises(CheckpointError, match=r"pose.pth.*net\.3\.weight.*\(6, 256, 1, 1\)"):
        load_module(decoder, state, file_label="pose.pth")


def test_failed_save_leaves_no_folder(tmp_path):
    class Broken(torch.nn.Module):
        def state_dict(self, *args, **kwargs):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_weights_folder(tmp_path / "weights_3", {"encoder": ResnetEncoder(18), "depth": Broken()},
                            height=64, width=192, use_stereo=False)
    assert list(tmp_path.iterdir()) == []


def test_reference_style_plain_dicts_load(tmp_path):
    """The reference saved plain dicts with torch.save; md2 must read them as they are."""
    folder = tmp_path / "ref"
    folder.mkdir()
    encoder = ResnetEncoder(18)
    state = dict(encoder.state_dict())
    state.update(height=192, width=640, use_stereo=False)
    torch.save(state, folder / "encoder.pth")
    torch.save(dict(DepthDecoder(encoder.num_ch_enc).state_dict()), folder / "depth.pth")
    _, _, meta = load_depth_model(folder)
    assert (meta.height, meta.width) == (192, 640)
