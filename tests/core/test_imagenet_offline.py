"""ImageNet initialisation when the weights cannot be downloaded: one clear line suggesting scratch."""

from __future__ import annotations

import pytest
import torch.hub
import torchvision.models._api as weights_api

from md2.core.networks import ResnetEncoder
from md2.errors import DownloadError
from tests.httpserver import LocalServer


def test_unreachable_imagenet_weights_suggest_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached
    with LocalServer() as server:  # answers 404 for everything: the download really fails
        real = torch.hub.load_state_dict_from_url
        monkeypatch.setattr(weights_api, "load_state_dict_from_url",
                            lambda url, *args, **kwargs: real(server.url("/resnet18.pth"), *args, **kwargs))
        with pytest.raises(DownloadError, match="--weights-init scratch"):
            ResnetEncoder(18, pretrained=True)
