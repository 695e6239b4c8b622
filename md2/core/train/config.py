"""Training configuration: one frozen dataclass per concern, composed into :class:`TrainConfig`.

Defaults live here and only here (the reference's options.py values); the CLI and YAML files fill them.
Each field's ``metadata["help"]`` is the option's help text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from md2.errors import UsageError
from md2.validate import require_finite

FrameId = Union[int, str]


def _opt(default: Any, help: str, **extra: Any) -> Any:  # noqa: A002 - "help" is the natural name here
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class DataConfig:
    data_path: str = _opt("kitti_data", "Folder holding the KITTI data.")
    split: str = _opt("eigen_zhou", "Training split: eigen_zhou, eigen_full, odom, benchmark or your own.")
    splits_dir: str | None = _opt(None, "Folder holding split folders (default: md2's cache of the official lists).")
    dataset: str = _opt("kitti", "Dataset reader: kitti, kitti_odom, kitti_depth, or video (--data-path is a "
                                 "folder of frames, or of such folders, with --intrinsics; no split files).",
                        choices=("kitti", "kitti_odom", "kitti_depth", "video"))
    intrinsics: tuple[float, ...] | None = _opt(None, "With --dataset video: the camera's fx,fy,cx,cy in pixels "
                                                      "of the frames (or divided by the frame width and height).")
    png: bool = _opt(False, "Read .png images instead of .jpg.")
    height: int = _opt(192, "Input image height (a multiple of 32).")
    width: int = _opt(640, "Input image width (a multiple of 32).")
    frame_ids: tuple[int, ...] = _opt((0, -1, 1), "Frames to load, the target first (comma-separated).")
    use_stereo: bool = _opt(False, "Use the other stereo image as a source frame.")
    num_workers: int = _opt(12, "Data loader worker processes.")
    augment_on: str = _opt("auto", "Where training images become float and get their colour jitter: workers "
                                   "(the exact CPU path), device (workers ship the uint8 LANCZOS pyramid; the "
                                   "training device converts and jitters, within 1e-5), auto (device on CUDA).",
                           choices=("auto", "workers", "device"))
    resize_cache: str | None = _opt(None, "Folder in which to keep each frame's resized image pyramid, built on its "
                                          "first use and read back after (the same pixels; about 0.5 MB per frame "
                                          "at 640x192).")
    skip_bad_samples: bool = _opt(False, "Replace samples whose images cannot be read by the next readable ones "
                                         "and count them at the end of each epoch (default: stop, naming the file).")


@dataclass(frozen=True)
class ModelConfig:
    num_layers: int = _opt(18, "ResNet depth: 18, 34, 50, 101 or 152.", choices=(18, 34, 50, 101, 152))
    weights_init: str = _opt("pretrained", "Encoder initialisation: pretrained (ImageNet) or scratch.",
                             choices=("pretrained", "scratch"))
    pose_model_input: str = _opt("pairs", "Pose network input: pairs or all frames.", choices=("pairs", "all"))
    pose_model_type: str = _opt("separate_resnet", "Pose network: separate_resnet, shared or posecnn.",
                                choices=("separate_resnet", "shared", "posecnn"))
    scales: tuple[int, ...] = _opt((0, 1, 2, 3), "Scales used in the loss (comma-separated).")
    min_depth: float = _opt(0.1, "Minimum depth.")
    max_depth: float = _opt(100.0, "Maximum depth.")
    predictive_mask: bool = _opt(False, "Zhou et al.'s predictive mask (needs --disable-automasking).")


@dataclass(frozen=True)
class LossConfig:
    disparity_smoothness: float = _opt(1e-3, "Weight of the edge-aware smoothness term.")
    v1_multiscale: bool = _opt(False, "Monodepth v1 multi-scale: compute the loss at each scale's resolution.")
    avg_reprojection: bool = _opt(False, "Average the reprojection errors instead of taking the minimum.")
    disable_automasking: bool = _opt(False, "Disable auto-masking of stationary pixels.")
    no_ssim: bool = _opt(False, "L1 photometric error only (no SSIM).")


@dataclass(frozen=True)
class OptimConfig:
    batch_size: int = _opt(12, "Batch size (per process when distributed).")
    learning_rate: float = _opt(1e-4, "Adam learning rate.")
    num_epochs: int = _opt(20, "Number of epochs.")
    max_steps: int = _opt(0, "Stop after N optimiser steps, saving weights and state (0: no limit).")
    scheduler_step_size: int = _opt(15, "StepLR step size in epochs (gamma 0.1).")


@dataclass(frozen=True)
class RunConfig:
    log_dir: str = _opt("~/tmp", "Folder for logs and checkpoints.")
    model_name: str = _opt("mdp", "Run name: LOG_DIR/MODEL_NAME holds its logs and weights.")
    load_weights_folder: str | None = _opt(None, "Weights folder to start from (finetuning).")
    models_to_load: tuple[str, ...] = _opt(("encoder", "depth", "pose_encoder", "pose"),
                                           "Models to load from --load-weights-folder (comma-separated).")
    log_frequency: int = _opt(250, "Steps between logs (first 2000 steps; then every 2000).")
    save_frequency: int = _opt(1, "Epochs between saved weights_N folders.")
    save_every_steps: int = _opt(0, "Also save the training state every N steps (0: off).")
    seed: int = _opt(0, "Random seed: the same seed repeats the same run.")
    device: str = _opt("auto", "auto (CUDA when available), cpu, cuda or cuda:N.")
    amp: bool = _opt(False, "Mixed precision: bf16 (fp16 with gradient scaling on CUDA without bf16).")
    channels_last: bool = _opt(False, "channels_last memory format for the networks.")
    compile: bool = _opt(False, "torch.compile the networks.")


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # Derived views used by the step; computed, never stored.
    @property
    def frame_ids(self) -> tuple[FrameId, ...]:
        """Frames of a sample: ``data.frame_ids`` plus "s" with stereo (as the reference's opt.frame_ids)."""
        return tuple(self.data.frame_ids) + (("s",) if self.data.use_stereo else ())

    @property
    def use_pose_net(self) -> bool:
        """A pose network is needed unless training is stereo-only (frame ids just [0])."""
        return not (self.data.use_stereo and tuple(self.data.frame_ids) == (0,))

    @property
    def num_pose_frames(self) -> int:
        return 2 if self.model.pose_model_input == "pairs" else len(self.data.frame_ids)

    @property
    def data_root(self) -> Path:
        return Path(self.data.data_path).expanduser()

    @property
    def log_path(self) -> Path:
        return Path(self.run.log_dir).expanduser() / self.run.model_name


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig,
                             "optim": OptimConfig, "run": RunConfig}

MODALITIES: dict[str, dict[str, Any]] = {
    # The seed README's three training commands.
    "mono": {"frame_ids": (0, -1, 1), "use_stereo": False},
    "stereo": {"frame_ids": (0,), "use_stereo": True, "split": "eigen_full"},
    "mono+stereo": {"frame_ids": (0, -1, 1), "use_stereo": True},
}


def option_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Every option name -> (section, field). Option names are unique across sections."""
    table = {}
    for section, cls in SECTIONS.items():
        for item in dataclasses.fields(cls):
            table[item.name] = (section, item)
    return table


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check and convert one option value to its field's type; a clear UsageError otherwise."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if value is None and type(None) in args:
        return None
    if origin in (Union, UnionType):  # Optional[X] and X | None
        annotation = next(a for a in args if a is not type(None))
        origin, args = get_origin(annotation), get_args(annotation)
    where = f"option {name.replace('_', '-')}"
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise UsageError(f"{where} takes a list, got {value!r}")
        return tuple(_coerce(name, item.strip() if isinstance(item, str) else item, args[0]) for item in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"{where} takes true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise UsageError(f"{where} takes a number, got {value!r}")
        try:
            number = annotation(value)
        except (TypeError, ValueError):
            kind = "an integer" if annotation is int else "a number"
            raise UsageError(f"{where} takes {kind}, got {value!r}") from None
        if annotation is int and isinstance(value, float) and not value.is_integer():
            raise UsageError(f"{where} takes an integer, got {value!r}")
        if annotation is float:  # "nan" and "inf" parse as floats; no option of training means them
            require_finite(number, f"--{name.replace('_', '-')}")
        return number
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UsageError(f"{where} takes text, got {value!r}")
        return str(value)
    return value


def build_config(overrides: dict[str, Any] | None = None, *, modality: str | None = None,
                 config_file: Path | None = None) -> TrainConfig:
    """Resolve options: dataclass defaults < modality preset < YAML file < ``overrides`` (the command line).

    ``overrides`` maps option names (``frame_ids``) to values; ``None`` values mean "not given".
    The result is validated (:func:`validate`).
    """
    values: dict[str, Any] = {}
    if modality is not None:
        if modality not in MODALITIES:
            raise UsageError(f"--modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
        values.update(MODALITIES[modality])
    if config_file is not None:
        values.update(load_yaml(config_file))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_flat(values)


def from_flat(values: dict[str, Any]) -> TrainConfig:
    """Build a validated TrainConfig from option name -> value (unknown names are refused)."""
    table = option_fields()
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for name, value in values.items():
        if name not in table:
            raise UsageError(f"unknown option {name!r}")
        section, item = table[name]
        hints = get_type_hints(SECTIONS[section])
        coerced = _coerce(name, value, hints[name])
        choices = item.metadata.get("choices")
        if choices is not None and coerced not in choices:
            shown = ", ".join(map(str, choices))
            raise UsageError(f"option {name.replace('_', '-')} must be one of {shown}, got {value!r}")
        sections[section][name] = coerced
    config = TrainConfig(**{name: SECTIONS[name](**kwargs) for name, kwargs in sections.items()})
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Refuse invalid combinations up front, with one clear line each."""
    data, model = config.data, config.model
    if data.height < 64 or data.width < 64 or data.height % 32 or data.width % 32:
        # The encoder reduces 32x and the decoder's reflection padding needs 2 pixels: 64 is the least.
        raise UsageError(f"--height and --width must be multiples of 32 of at least 64, got {data.height}x{data.width}")
    if not data.frame_ids or data.frame_ids[0] != 0:
        raise UsageError(f"--frame-ids must start with 0 (the target frame), got {','.join(map(str, data.frame_ids))}")
    if len(set(data.frame_ids)) != len(data.frame_ids):
        raise UsageError("--frame-ids has a repeated frame")
    if tuple(data.frame_ids) == (0,) and not data.use_stereo:
        raise UsageError("--frame-ids 0 alone (stereo-only training) needs --use-stereo")
    if model.predictive_mask and not config.loss.disable_automasking:
        raise UsageError("--predictive-mask needs --disable-automasking (the reference refuses the combination)")
    if not model.scales or sorted(model.scales) != list(range(len(model.scales))):
        raise UsageError(f"--scales must be 0,1,...,N-1 with N <= 4, got {model.scales}")
    if len(model.scales) > 4:
        raise UsageError("--scales: the depth decoder has 4 scales (0,1,2,3)")
    if not 0 < model.min_depth < model.max_depth:
        raise UsageError(f"need 0 < --min-depth < --max-depth, got {model.min_depth} and {model.max_depth}")
    for name in ("batch_size", "num_epochs", "scheduler_step_size"):
        if getattr(config.optim, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    if config.optim.max_steps < 0:
        raise UsageError(f"--max-steps must be >= 0 (0: no limit), got {config.optim.max_steps}")
    if config.optim.learning_rate <= 0:
        raise UsageError("--learning-rate must be positive")
    if config.run.log_frequency <= 0 or config.run.save_frequency <= 0 or config.run.save_every_steps < 0:
        raise UsageError("--log-frequency and --save-frequency must be positive, --save-every-steps >= 0")
    if data.dataset == "video":
        if data.intrinsics is None or len(data.intrinsics) != 4:
            raise UsageError("--dataset video needs --intrinsics fx,fy,cx,cy (pixels of the frames, or normalised)")
        if data.use_stereo:
            raise UsageError("--dataset video is monocular: --use-stereo (and --modality stereo, mono+stereo) "
                             "need a KITTI layout")
        if min(data.intrinsics) <= 0:
            raise UsageError(f"--intrinsics must be positive, got {','.join(map(str, data.intrinsics))}")
    elif data.intrinsics is not None:
        raise UsageError("--intrinsics is for --dataset video; the KITTI readers use KITTI's intrinsics")
    if data.num_workers < 0:
        raise UsageError("--num-workers must be >= 0")
    unknown = set(config.run.models_to_load) - {"encoder", "depth", "pose_encoder", "pose", "predictive_mask"}
    if unknown:
        raise UsageError(f"--models-to-load: unknown model(s) {', '.join(sorted(unknown))}")


def to_dict(config: TrainConfig) -> dict[str, dict[str, Any]]:
    """Nested plain dict (lists for tuples), for YAML."""
    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value
    return {name: {k: plain(v) for k, v in dataclasses.asdict(getattr(config, name)).items()} for name in SECTIONS}


def save_yaml(config: TrainConfig, path: Path) -> None:
    """Write the fully resolved options (nested by section) atomically."""
    from md2.files import atomic_path

    with atomic_path(path) as temporary:
        temporary.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def load_yaml(path: Path) -> dict[str, Any]:
    """Read options from YAML: nested by section (as md2 writes) or flat; option names with - or _."""
    path = Path(path).expanduser()
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read config {path}: {' '.join(str(error).split())}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"config {path} must be a mapping of option: value")
    flat: dict[str, Any] = {}
    for key, value in loaded.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update({str(k).replace("-", "_"): v for k, v in value.items()})
        else:
            flat[str(key).replace("-", "_")] = value
    unknown = sorted(set(flat) - set(option_fields()))
    if unknown:
        raise UsageError(f"config {path}: unknown option(s) {', '.join(unknown)}")
    return flat
