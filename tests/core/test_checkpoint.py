"""Weights folders in the official format: written atomically, read safely, refused clearly when broken."""

from __future__ import annotations

import pytest
import torch

from md2.core.checkpoint import (infer_num_layers, load_depth_model, load_module, load_state_dict_file,
                                 read_model_meta, save_weights_folder)
from md2.core.networks import DepthDecoder, PoseCNN, ResnetEncoder, build_pose_networks
from md2.errors import CheckpointError
from tests.core.test_networks import official_block

H, W = 64, 192


def depth_models(num_layers: int = 18, seed: int = 0) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    encoder = ResnetEncoder(num_layers)
    return {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)}


def write_depth_folder(folder, num_layers=18, use_stereo=False, seed=0) -> dict[str, torch.nn.Module]:
    models = depth_models(num_layers, seed)
    save_weights_folder(folder, models, height=H, width=W, use_stereo=use_stereo)
    return models


def disparity(encoder, decoder, image) -> torch.Tensor:
    with torch.no_grad():
        return decoder.eval()(encoder.eval()(image))[0]


# Round trip -----------------------------------------------------------------------------------------------

def test_round_trip_of_a_whole_training_folder_gives_identical_outputs(tmp_path):
    models = depth_models()
    models.update(build_pose_networks("separate_resnet"))
    models["predictive_mask"] = DepthDecoder(models["encoder"].num_ch_enc, num_output_channels=2)
    optimizer = torch.optim.Adam([p for m in models.values() for p in m.parameters()], lr=1e-4)
    sum(p.sum() for p in models["depth"].parameters()).backward()
    optimizer.step()
    save_weights_folder(tmp_path / "weights_0", models, height=H, width=W, use_stereo=True, optimizer=optimizer)

    names = sorted(p.name for p in (tmp_path / "weights_0").iterdir())
    assert names == ["adam.pth", "depth.pth", "encoder.pth", "pose.pth", "pose_encoder.pth", "predictive_mask.pth"]
    encoder, decoder, meta = load_depth_model(tmp_path / "weights_0")
    assert (meta.height, meta.width, meta.use_stereo, meta.num_layers) == (H, W, True, 18)
    image = torch.rand(1, 3, H, W)
    assert torch.equal(disparity(encoder, decoder, image), disparity(models["encoder"], models["depth"], image))

    fresh = build_pose_networks("separate_resnet")
    for name, module in fresh.items():
        load_module(module, tmp_path / "weights_0" / f"{name}.pth")
        assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(),
                                                     models[name].state_dict().values()))
    adam = load_state_dict_file(tmp_path / "weights_0" / "adam.pth")
    optimizer.load_state_dict(adam)  # the optimizer state is complete enough to resume from


def test_wrapped_modules_are_saved_without_prefixes(tmp_path):
    models = depth_models()
    models["pose"] = torch.nn.Sequential(torch.nn.Conv2d(6, 2, 1), torch.nn.ReLU())
    wrapped = {"encoder": torch.nn.DataParallel(models["encoder"]), "depth": torch.compile(models["depth"]),
               "pose": torch.nn.Sequential(torch.compile(models["pose"][0]), models["pose"][1])}
    save_weights_folder(tmp_path / "w", wrapped, height=H, width=W, use_stereo=False)
    for name in ("encoder", "depth", "pose"):
        keys = set(load_state_dict_file(tmp_path / "w" / f"{name}.pth")) - {"height", "width", "use_stereo"}
        assert keys == set(models[name].state_dict())


def test_saving_replaces_an_older_folder_and_leaves_nothing_beside_it(tmp_path):
    write_depth_folder(tmp_path / "weights_0", seed=0)
    models = write_depth_folder(tmp_path / "weights_0", seed=1)
    assert [p.name for p in tmp_path.iterdir()] == ["weights_0"]
    encoder, decoder, _ = load_depth_model(tmp_path / "weights_0")
    image = torch.rand(1, 3, H, W)
    assert torch.equal(disparity(encoder, decoder, image), disparity(models["encoder"], models["depth"], image))


@pytest.mark.parametrize("num_layers", [18, 34, 50, 101, 152])
def test_resnet_depth_is_read_from_the_weights(tmp_path, num_layers):
    assert infer_num_layers(ResnetEncoder(num_layers).state_dict()) == num_layers
    if num_layers in (18, 50):
        write_depth_folder(tmp_path / "w", num_layers=num_layers)
        assert read_model_meta(tmp_path / "w").num_layers == num_layers


def test_loaded_model_is_in_eval_mode_on_the_device(tmp_path):
    write_depth_folder(tmp_path / "w")
    encoder, decoder, _ = load_depth_model(tmp_path / "w", device="cpu")
    assert not encoder.training and not decoder.training
    assert next(encoder.parameters()).device.type == "cpu"


# The official layout --------------------------------------------------------------------------------------

def official_state(prefix: str, generator: torch.Generator, **plain) -> dict:
    """Random tensors with the key file's names and shapes (num_batches_tracked an int64 scalar)."""
    state = {}
    for key, shape in official_block(prefix):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        else:
            state[key] = torch.rand(shape, generator=generator) + 0.1
    state.update(plain)
    return state


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_a_folder_written_as_the_reference_did_loads_strictly(tmp_path, legacy):
    # The reference saved plain dicts with torch.save (PyTorch 0.4: the legacy, non-zip format).
    generator = torch.Generator().manual_seed(0)
    files = {
        "encoder": official_state("encoder.pth (ResNet-18", generator, height=192, width=640, use_stereo=False),
        "depth": official_state("depth.pth", generator),
        "pose_encoder": official_state("pose_encoder.pth", generator),
        "pose": official_state("pose.pth (pose decoder", generator),
    }
    folder = tmp_path / "mono_640x192"
    folder.mkdir()
    for name, state in files.items():
        torch.save(state, folder / f"{name}.pth", _use_new_zipfile_serialization=not legacy)

    encoder, decoder, meta = load_depth_model(folder)
    assert (meta.height, meta.width, meta.use_stereo, meta.num_layers) == (192, 640, False, 18)
    assert torch.equal(encoder.state_dict()["encoder.layer4.1.bn2.running_var"],
                       files["encoder"]["encoder.layer4.1.bn2.running_var"])
    assert torch.equal(decoder.state_dict()["decoder.13.conv.weight"], files["depth"]["decoder.13.conv.weight"])
    for name, module in build_pose_networks("separate_resnet").items():
        load_module(module, folder / f"{name}.pth")
        assert all(torch.equal(v, files[name][k]) for k, v in module.state_dict().items())
    assert disparity(encoder, decoder, torch.rand(1, 3, 192, 640)).shape == (1, 1, 192, 640)


def test_an_official_posecnn_file_loads_strictly(tmp_path):
    state = official_state("pose.pth when pose_model_type=posecnn", torch.Generator().manual_seed(1))
    torch.save(state, tmp_path / "pose.pth")
    load_module(PoseCNN(2), tmp_path / "pose.pth")


# Refusals -------------------------------------------------------------------------------------------------

def test_num_layers_contradicting_the_weights_names_both(tmp_path):
    write_depth_folder(tmp_path / "w", num_layers=50)
    with pytest.raises(CheckpointError, match="ResNet-50.*18"):
        load_depth_model(tmp_path / "w", num_layers=18)


@pytest.mark.parametrize("missing", ["depth.pth", "encoder.pth"])
def test_folder_without_depth_files_is_refused(tmp_path, missing):
    write_depth_folder(tmp_path / "w")
    (tmp_path / "w" / missing).unlink()
    with pytest.raises(CheckpointError, match=missing):
        load_depth_model(tmp_path / "w")


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere"):
        load_depth_model(tmp_path / "nowhere")


def damaged_bytes(data: bytes, damage: str) -> bytes:
    return {"truncated": data[: len(data) // 2], "cut-at-end": data[:-40], "garbage": b"not a checkpoint" * 10,
            "empty": b"", "flipped": data[:200] + bytes(b ^ 0xFF for b in data[200:260]) + data[260:]}[damage]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
@pytest.mark.parametrize("damage", ["truncated", "cut-at-end", "garbage", "empty", "flipped"])
def test_corrupt_file_is_named(tmp_path, damage, legacy):
    path = tmp_path / "depth.pth"
    torch.save(DepthDecoder(ResnetEncoder(18).num_ch_enc).state_dict(), path,
               _use_new_zipfile_serialization=not legacy)
    path.write_bytes(damaged_bytes(path.read_bytes(), damage))
    try:
        load_state_dict_file(path)
    except CheckpointError as error:
        assert str(path) in str(error) and "\n" not in str(error)
    else:  # flipped bytes inside tensor data cannot be noticed without a checksum, but must not crash
        assert damage == "flipped"


class Unsafe:
    """Not a tensor: loading it would need pickled code to run."""


@pytest.mark.parametrize("content, message", [(Unsafe(), "run code"), ([1, 2], "list")])
def test_files_that_are_not_state_dicts_are_refused(tmp_path, content, message):
    torch.save(content, tmp_path / "encoder.pth")
    with pytest.raises(CheckpointError, match=f"encoder.pth.*{message}"):
        load_state_dict_file(tmp_path / "encoder.pth")


def test_missing_key_is_named_with_the_file(tmp_path):
    write_depth_folder(tmp_path / "w")
    state = torch.load(tmp_path / "w" / "depth.pth", weights_only=True)
    del state["decoder.3.conv.conv.weight"]
    torch.save(state, tmp_path / "w" / "depth.pth")
    with pytest.raises(CheckpointError, match=r"depth.pth.*missing key 'decoder\.3\.conv\.conv\.weight'"):
        load_depth_model(tmp_path / "w")


def test_unexpected_key_is_named_with_the_file(tmp_path):
    state = dict(PoseCNN(2).state_dict(), **{"net.7.weight": torch.zeros(1)})
    torch.save(state, tmp_path / "pose.pth")
    with pytest.raises(CheckpointError, match=r"pose.pth.*unexpected key 'net\.7\.weight'"):
        load_module(PoseCNN(2), tmp_path / "pose.pth")
    load_module(PoseCNN(2), tmp_path / "pose.pth", strict=False)  # tolerated when asked


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    torch.save(PoseCNN(3).state_dict(), tmp_path / "pose.pth")  # 3 frames where the model takes 2
    with pytest.raises(CheckpointError, match=r"pose.pth.*'pose_conv\.weight'.*\(12, 256, 1, 1\).*\(6, 256, 1, 1\)"):
        load_module(PoseCNN(2), tmp_path / "pose.pth")


def test_wrong_architecture_is_refused(tmp_path):
    torch.save(PoseCNN(2).state_dict(), tmp_path / "pose.pth")
    with pytest.raises(CheckpointError, match="pose.pth"):
        load_module(build_pose_networks("separate_resnet")["pose"], tmp_path / "pose.pth")


def test_file_label_names_an_in_memory_state(tmp_path):
    state = dict(ResnetEncoder(18).state_dict(), height=1, width=2, use_stereo=True)  # plain values ignored
    load_module(ResnetEncoder(18), state, file_label="encoder.pth")
    del state["encoder.fc.bias"]
    with pytest.raises(CheckpointError, match=r"^encoder.pth: missing key 'encoder\.fc\.bias'"):
        load_module(ResnetEncoder(18), state, file_label="encoder.pth")


# Atomic saving --------------------------------------------------------------------------------------------

class BrokenStateDict(torch.nn.Module):
    def state_dict(self, *args, **kwargs):
        raise RuntimeError("state dict failed")


@pytest.mark.parametrize("failure", ["state_dict", "unpicklable"])
def test_failed_save_leaves_the_old_folder_and_no_partial_one(tmp_path, failure):
    write_depth_folder(tmp_path / "weights_3", seed=0)
    before = {p.name: p.read_bytes() for p in (tmp_path / "weights_3").iterdir()}
    broken = dict(depth_models(seed=1))
    if failure == "state_dict":
        broken["depth"] = BrokenStateDict()
        extra = None
    else:
        extra = {"trainer_state.pth": {"callback": lambda: None}}
    with pytest.raises(Exception):
        save_weights_folder(tmp_path / "weights_3", broken, height=H, width=W, use_stereo=False, extra=extra)
    assert [p.name for p in tmp_path.iterdir()] == ["weights_3"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "weights_3").iterdir()} == before


def test_failed_first_save_leaves_no_folder(tmp_path):
    with pytest.raises(RuntimeError, match="state dict failed"):
        save_weights_folder(tmp_path / "weights_0", {"encoder": ResnetEncoder(18), "depth": BrokenStateDict()},
                            height=H, width=W, use_stereo=False)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination_is_a_checkpoint_error(tmp_path):
    (tmp_path / "models").write_text("a file where a folder should be")
    with pytest.raises(CheckpointError, match="weights_0"):
        write_depth_folder(tmp_path / "models" / "weights_0")


@pytest.mark.parametrize("size", [(32, 64), (64, 32), (0, 64), (96, 100)])
def test_encoder_sizes_below_64_or_not_multiples_of_32_are_refused(tmp_path, size):
    from md2.core.checkpoint import meta_from_encoder_state

    state = {"height": size[0], "width": size[1]}
    with pytest.raises(CheckpointError, match="multiple of 32 of at least 64"):
        meta_from_encoder_state(state, tmp_path / "encoder.pth")
