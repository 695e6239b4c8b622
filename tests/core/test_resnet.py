"""md2's own ResNet against torchvision's: the same state dict, the same seeded weights, the same outputs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision.models as tvm

from md2.core.checkpoint import load_module
from md2.core.networks import ResnetEncoder
from md2.core.networks.resnet import ResNet

TORCHVISION = {18: tvm.resnet18, 34: tvm.resnet34, 50: tvm.resnet50, 101: tvm.resnet101, 152: tvm.resnet152}


@pytest.mark.parametrize("num_layers", sorted(TORCHVISION))
def test_state_dict_keys_and_shapes_are_torchvisions(num_layers):
    ours = [(k, tuple(v.shape)) for k, v in ResNet(num_layers).state_dict().items()]
    theirs = [(k, tuple(v.shape)) for k, v in TORCHVISION[num_layers]().state_dict().items()]
    assert ours == theirs  # order too: it is the order of parameters() and of Adam's state


@pytest.mark.parametrize("num_layers", [18, 50])
def test_seeded_build_gives_torchvisions_initial_weights(num_layers):
    torch.manual_seed(3)
    ours = ResNet(num_layers).state_dict()
    torch.manual_seed(3)
    theirs = TORCHVISION[num_layers]().state_dict()
    assert all(torch.equal(ours[key], value) for key, value in theirs.items())


@pytest.mark.parametrize("num_layers", [18, 50])
@pytest.mark.parametrize("train", [False, True])
def test_torchvision_weights_load_strictly_and_give_the_same_outputs(num_layers, train):
    torch.manual_seed(0)
    reference = TORCHVISION[num_layers]()
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode is really checked
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    ours = ResNet(num_layers)
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.train(train)
    ours.train(train)
    image = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(ours(image), reference(image))


@pytest.mark.parametrize("num_layers", [18, 50])
def test_encoder_loads_a_torchvision_state_dict_as_an_official_checkpoint(num_layers):
    # The official encoder.pth is a torchvision ResNet's state dict under "encoder."; md2's loader is strict.
    state = {f"encoder.{k}": v for k, v in TORCHVISION[num_layers]().state_dict().items()}
    encoder = ResnetEncoder(num_layers)
    load_module(encoder, state, file_label="encoder.pth")
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in state.items())


def test_building_and_running_the_depth_network_never_imports_torchvision():
    code = ("import sys, torch\n"
            "from md2.core.networks import DepthDecoder, ResnetEncoder\n"
            "from md2.core.inference import DepthPredictor\n"
            "import md2.core.predict\n"
            "encoder = ResnetEncoder(18).eval(); decoder = DepthDecoder(encoder.num_ch_enc).eval()\n"
            "decoder(encoder(torch.rand(1, 3, 64, 64)))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('torchvision', 'torch._dynamo'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
