"""torch.hub entries: ``torch.hub.load("path/to/md2", "mono_640x192", source="local")``.

One entry per pretrained model of md2's zoo (:data:`md2.core.zoo.MODELS`), each returning
:class:`md2.api.DepthModel` (encoder + decoder in eval mode; ``model.predict_depth(picture)`` for one photo).
Names with ``+`` are also reachable as valid identifiers, ``+`` written ``_``: ``mono_stereo_640x192``.
``load_model`` takes a model name or a weights folder of your own. Weights are downloaded once into md2's
cache ($MD2_HOME, $MD2_ZOO_URL for a mirror), exactly as ``md2.load_model`` does.
"""

from __future__ import annotations

from md2 import api
from md2.core.zoo import MODELS

dependencies = ["torch", "torchvision", "numpy", "PIL", "yaml", "rich", "typer", "cv2"]
"""What torch.hub checks is importable: md2's runtime requirements (pyproject.toml), by module name."""


def load_model(name_or_folder: str = "mono+stereo_640x192", device: str = "cpu"):
    """A pretrained model by name or a weights folder of your own (``md2.load_model``), on ``device``."""
    return api.load_model(name_or_folder, device=device)


def _entry(name: str):
    def entry(pretrained: bool = True, device: str = "cpu"):
        if not pretrained:
            raise ValueError(f"{name}: md2's hub entries load the published weights; for an untrained network "
                             "build md2.core.networks.ResnetEncoder and DepthDecoder yourself")
        return api.load_model(name, device=device)

    info = MODELS[name]
    entry.__name__ = entry.__qualname__ = name.replace("+", "_")
    entry.__doc__ = (f"Monodepth2 {info.modality} model at {info.width}x{info.height} (ResNet-{info.num_layers}"
                     f"{', no ImageNet pretraining' if not info.imagenet_pretrained else ''}, split {info.split}): "
                     f"md2.load_model({name!r}, device). Returns md2.api.DepthModel on ``device`` (default cpu).")
    return entry


for _name in MODELS:
    globals()[_name] = _entry(_name)
    globals()[_name.replace("+", "_")] = globals()[_name]
del _name
