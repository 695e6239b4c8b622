"""md2's networks: output shapes, the reference's constants, the multi-image conv1 rule, the official keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm

from md2.core.networks import (ENCODERS, POSE_NETS, DepthDecoder, PoseCNN, PoseDecoder, ResnetEncoder,
                               build_pose_networks, encoder_channels, multi_image_conv1)
from md2.core.networks.max_pool import stem_max_pool
from md2.errors import UsageError

KEY_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "official_checkpoint_keys.txt"
PLAIN_VALUES = ("height", "width", "use_stereo")
H, W = 64, 192


def official_blocks() -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """Heading of each block of the official key file -> [(key, shape)] in file order (plain values left out)."""
    if not KEY_FILE.exists():
        pytest.skip(f"{KEY_FILE} not present")
    blocks: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    current = None
    for line in KEY_FILE.read_text().splitlines():
        if line.startswith("## "):
            current = blocks.setdefault(line[3:], [])
        elif current is not None and "\t" in line:
            key, shape = line.split("\t")
            if key not in PLAIN_VALUES:
                current.append((key, () if shape == "(scalar)" else tuple(int(n) for n in shape.split("x"))))
    return blocks


def official_block(prefix: str) -> list[tuple[str, tuple[int, ...]]]:
    matches = [keys for heading, keys in official_blocks().items() if heading.startswith(prefix)]
    assert len(matches) == 1, f"{prefix!r} names {len(matches)} blocks of {KEY_FILE}"
    return matches[0]


def key_shapes(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in module.state_dict().items()]


# Official keys --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix, build", [
    ("encoder.pth (ResNet-18", lambda: ResnetEncoder(18)),
    ("depth.pth", lambda: DepthDecoder(encoder_channels(18))),
    ("pose_encoder.pth", lambda: ResnetEncoder(18, num_input_images=2)),
    ("pose.pth (pose decoder", lambda: build_pose_networks("separate_resnet")["pose"]),
    ("pose.pth when pose_model_type=posecnn", lambda: PoseCNN(2)),
])
def test_state_dict_keys_and_shapes_equal_the_official_files(prefix, build):
    # Order too: it is the order of parameters(), and so of the optimizer state in adam.pth.
    assert key_shapes(build()) == official_block(prefix)


def test_resnet50_encoder_starts_with_the_official_keys():
    expected = official_block("encoder.pth for ResNet-50")
    assert expected and key_shapes(ResnetEncoder(50))[:len(expected)] == expected


# Encoder --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_layers, num_images", [(18, 1), (18, 2), (50, 1), (50, 2)])
def test_encoder_gives_five_maps_with_num_ch_enc_channels(num_layers, num_images):
    encoder = ResnetEncoder(num_layers, num_input_images=num_images).eval()
    with torch.no_grad():
        features = encoder(torch.rand(2, 3 * num_images, H, W))
    expected = [(2, int(c), H // 2 ** (k + 1), W // 2 ** (k + 1)) for k, c in enumerate(encoder.num_ch_enc)]
    assert [tuple(f.shape) for f in features] == expected
    assert encoder.encoder.conv1.in_channels == 3 * num_images


@pytest.mark.parametrize("num_layers, channels", [
    (18, [64, 64, 128, 256, 512]), (34, [64, 64, 128, 256, 512]),
    (50, [64, 256, 512, 1024, 2048]), (101, [64, 256, 512, 1024, 2048]), (152, [64, 256, 512, 1024, 2048]),
])
def test_every_registered_depth_has_the_reference_channels(num_layers, channels):
    assert num_layers in ENCODERS
    assert encoder_channels(num_layers).tolist() == channels
    assert isinstance(ResnetEncoder(num_layers).num_ch_enc, np.ndarray)


def test_unknown_depth_is_a_usage_error():
    with pytest.raises(UsageError, match="20"):
        ResnetEncoder(20)


def test_encoder_normalises_with_the_reference_constants():
    encoder = ResnetEncoder(18).eval()
    image = torch.rand(1, 3, H, W)
    net = encoder.encoder
    with torch.no_grad():
        by_hand = net.relu(net.bn1(net.conv1((image - 0.45) / 0.225)))
        assert torch.allclose(encoder(image)[0], by_hand)


def test_multi_image_conv1_repeats_and_divides_so_copies_respond_as_one_image():
    weight = torch.randn(64, 3, 7, 7)
    stacked = multi_image_conv1(weight, 3)
    assert stacked.shape == (64, 9, 7, 7)
    for n in range(3):
        assert torch.allclose(stacked[:, 3 * n:3 * n + 3], weight / 3)
    image = torch.rand(1, 3, 32, 32)
    one = torch.nn.functional.conv2d(image, weight)
    three = torch.nn.functional.conv2d(torch.cat([image] * 3, 1), stacked)
    assert torch.allclose(one, three, atol=1e-4)


def test_pretrained_two_image_encoder_uses_the_rule_on_the_imagenet_weights(tmp_path, monkeypatch):
    # A stand-in for torchvision's ImageNet file, placed where its weights API looks first: no download.
    torch.manual_seed(0)
    imagenet = tvm.resnet18().state_dict()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(imagenet, cache / Path(tvm.ResNet18_Weights.IMAGENET1K_V1.url).name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = ResnetEncoder(18, pretrained=True, num_input_images=2).encoder.state_dict()
    assert torch.equal(state["conv1.weight"], torch.cat([imagenet["conv1.weight"]] * 2, 1) / 2)
    assert all(torch.equal(state[k], v) for k, v in imagenet.items() if k != "conv1.weight")


# Depth decoder --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_layers", [18, 50])
@pytest.mark.parametrize("scales, channels", [(range(4), 1), ((0, 2), 3)])
def test_depth_decoder_gives_sigmoid_maps_at_each_scale(num_layers, scales, channels):
    encoder = ResnetEncoder(num_layers).eval()
    decoder = DepthDecoder(encoder.num_ch_enc, scales=scales, num_output_channels=channels).eval()
    with torch.no_grad():
        outputs = decoder(encoder(torch.rand(2, 3, H, W)))
    assert sorted(outputs) == sorted(scales)
    for s, disp in outputs.items():
        assert disp.shape == (2, channels, H // 2 ** s, W // 2 ** s)
        assert disp.min() >= 0 and disp.max() <= 1
    assert len(decoder.decoder) == 10 + len(tuple(scales))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(H, W), (96, 160), (64, 416)])  # 416 / 32 = 13: rows not a multiple of 8
@pytest.mark.parametrize("use_skips", [True, False])
def test_depth_decoder_inference_path_gives_forwards_numbers_bit_for_bit(channels_last, size, use_skips):
    torch.manual_seed(3)
    encoder = ResnetEncoder(18).eval()
    decoder = DepthDecoder(encoder.num_ch_enc, use_skips=use_skips).eval()
    image = torch.rand(2, 3, *size)
    if channels_last:
        for module in (encoder, decoder):
            module.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        features = encoder(image)
    with torch.enable_grad():  # the plain path, as in training
        expected = {scale: disp.detach() for scale, disp in decoder(features).items()}
    with torch.inference_mode():
        without_grad = decoder(features)
        everything = decoder.infer(features, scales=range(4))
        only_zero = decoder.infer(features)
    assert sorted(everything) == [0, 1, 2, 3] and list(only_zero) == [0]
    for scale in range(4):
        assert torch.equal(everything[scale], expected[scale])
        assert torch.equal(without_grad[scale], expected[scale])
    assert torch.equal(only_zero[0], expected[0])
    assert only_zero[0].stride() == expected[0].stride()


def test_depth_decoder_inference_path_takes_only_the_decoders_scales():
    decoder = DepthDecoder(encoder_channels(18), scales=(0, 2)).eval()
    features = ResnetEncoder(18).eval()(torch.rand(1, 3, H, W))
    assert list(decoder.infer(features, scales=(2,))) == [2]
    with pytest.raises(ValueError, match="scales"):
        decoder.infer(features, scales=(1,))


def test_depth_decoder_without_skips_uses_only_the_last_map():
    decoder = DepthDecoder(encoder_channels(18), use_skips=False).eval()
    features = ResnetEncoder(18).eval()(torch.rand(1, 3, H, W))
    blanked = [torch.zeros_like(f) for f in features[:-1]] + [features[-1]]
    with torch.no_grad():
        assert torch.equal(decoder(features)[0], decoder(blanked)[0])


# Pose networks --------------------------------------------------------------------------------------------

def features_of(num_frames: int, batch: int = 2) -> list[list[torch.Tensor]]:
    encoder = ResnetEncoder(18).eval()
    with torch.no_grad():
        return [encoder(torch.rand(batch, 3, H, W)) for _ in range(num_frames)]


@pytest.mark.parametrize("num_inputs, frames, expected_frames", [(1, 2, 2), (2, None, 1), (3, None, 2)])
def test_pose_decoder_gives_one_pose_per_frame(num_inputs, frames, expected_frames):
    decoder = PoseDecoder(encoder_channels(18), num_input_features=num_inputs, num_frames_to_predict_for=frames)
    with torch.no_grad():
        axisangle, translation = decoder(features_of(num_inputs))
    assert axisangle.shape == translation.shape == (2, expected_frames, 1, 3)


def test_pose_decoder_scales_its_output_by_one_hundredth():
    decoder = PoseDecoder(encoder_channels(18), num_input_features=1, num_frames_to_predict_for=2)
    with torch.no_grad():
        decoder.net[3].weight.zero_()
        decoder.net[3].bias.copy_(torch.arange(12.0))
        axisangle, translation = decoder(features_of(1))
    # Bias b becomes 0.01 * b, split per frame as [axis-angle (3), translation (3)].
    assert torch.allclose(axisangle[0, :, 0], 0.01 * torch.tensor([[0.0, 1, 2], [6, 7, 8]]))
    assert torch.allclose(translation[1, :, 0], 0.01 * torch.tensor([[3.0, 4, 5], [9, 10, 11]]))


@pytest.mark.parametrize("num_frames", [2, 3])
def test_posecnn_gives_n_minus_one_poses_scaled_by_one_hundredth(num_frames):
    net = PoseCNN(num_frames)
    images = torch.rand(2, 3 * num_frames, H, W)
    with torch.no_grad():
        axisangle, translation = net(images)
        assert axisangle.shape == translation.shape == (2, num_frames - 1, 1, 3)
        net.pose_conv.weight.zero_()
        net.pose_conv.bias.copy_(torch.arange(6.0 * (num_frames - 1)))
        axisangle, translation = net(images)
        net.pose_conv.bias.zero_()
        assert not net(images)[0].any() and not net(images)[1].any()
    assert torch.allclose(axisangle[0, 0, 0], torch.tensor([0.0, 0.01, 0.02]))
    assert torch.allclose(translation[1, -1, 0], 0.01 * (torch.tensor([3.0, 4, 5]) + 6 * (num_frames - 2)))


def test_posecnn_convolutions_follow_the_reference():
    convs = PoseCNN(2).net
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256, 256, 256]
    assert [c.kernel_size[0] for c in convs] == [7, 5, 3, 3, 3, 3, 3]
    assert all(c.stride == (2, 2) and c.padding[0] == c.kernel_size[0] // 2 for c in convs)


@pytest.mark.parametrize("pose_type, files", [
    ("separate_resnet", ["pose_encoder", "pose"]), ("shared", ["pose"]), ("posecnn", ["pose"]),
])
@pytest.mark.parametrize("num_pose_frames", [2, 3])
def test_pose_registry_builds_networks_keyed_by_weights_file(pose_type, files, num_pose_frames):
    assert pose_type in POSE_NETS
    nets = build_pose_networks(pose_type, num_layers=18, num_pose_frames=num_pose_frames)
    assert list(nets) == files
    images = [torch.rand(1, 3, H, W) for _ in range(num_pose_frames)]
    with torch.no_grad():
        if pose_type == "separate_resnet":
            out = nets["pose"]([nets["pose_encoder"](torch.cat(images, 1))])
        elif pose_type == "shared":
            encoder = ResnetEncoder(18).eval()
            out = nets["pose"]([encoder(image) for image in images])
        else:
            out = nets["pose"](torch.cat(images, 1))
    # The separate ResNet decoder always predicts 2 poses, as the reference's.
    frames = 2 if pose_type == "separate_resnet" else num_pose_frames - 1
    assert out[0].shape == out[1].shape == (1, frames, 1, 3)


def test_unknown_pose_type_is_a_usage_error():
    with pytest.raises(UsageError, match="flownet"):
        build_pose_networks("flownet")


# Stem max pooling -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 64, 48, 160), (1, 8, 13, 27), (3, 4, 1, 1)])
def test_stem_max_pool_gives_torchs_values_indices_and_gradients(shape):
    torch.manual_seed(4)
    # After ReLU many windows hold several equal maxima (zeros): the gradient must go where torch sends it.
    values = torch.relu(torch.randn(shape)).round(decimals=1)
    grad = torch.randn(F.max_pool2d(values, 3, 2, 1).shape)
    plain, fast = values.clone().requires_grad_(), values.clone().requires_grad_()
    expected, pooled = F.max_pool2d(plain, 3, 2, 1), stem_max_pool(fast)
    expected.backward(grad)
    pooled.backward(grad)
    assert torch.equal(pooled, expected) and pooled.is_contiguous()
    assert torch.equal(fast.grad, plain.grad)
    with torch.no_grad():
        assert torch.equal(stem_max_pool(values), expected)


class _ScaleZero(torch.nn.Module):
    def __init__(self, decoder: DepthDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        return self.decoder(list(features))[0]


def test_traced_networks_hold_the_plain_operations():
    encoder = ResnetEncoder(18).eval()
    decoder = DepthDecoder(encoder.num_ch_enc).eval()
    with torch.no_grad():
        traced_encoder = torch.jit.trace(encoder, torch.rand(1, 3, H, W), check_trace=False)
        traced_decoder = torch.jit.trace(_ScaleZero(decoder), tuple(encoder(torch.rand(1, 3, H, W))),
                                         check_trace=False)
    kinds = {node.kind() for node in traced_encoder.inlined_graph.nodes()}
    assert "aten::max_pool2d" in kinds and "aten::contiguous" not in kinds
    kinds = {node.kind() for node in traced_decoder.inlined_graph.nodes()}
    assert {"aten::pad", "aten::cat", "aten::upsample_nearest2d"} <= kinds
    assert "aten::copy_" not in kinds
