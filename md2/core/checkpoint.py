"""The official Monodepth2 weights-folder format, read and written.

A folder holds ``encoder.pth`` (the depth encoder's state dict plus plain ``height``, ``width`` and
``use_stereo``), ``depth.pth``, and when trained with a pose network ``pose_encoder.pth`` and ``pose.pth``
(``predictive_mask.pth`` and ``adam.pth`` when present). Files are plain dicts of tensors written by
``torch.save``; md2 reads them with ``weights_only=True`` so loading never runs pickled code.
"""

from __future__ import annotations

import math
import os
import pickle
import secrets
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from md2.errors import CheckpointError
from md2.core.checkpoint_header import MAX_NETWORK_SIDE

PLAIN_VALUES = ("height", "width", "use_stereo")
"""Extra entries of encoder.pth that are not parameters."""

LAYER3_BLOCKS = {(2, False): 18, (6, False): 34, (6, True): 50, (23, True): 101, (36, True): 152}
"""(blocks in layer3, bottleneck blocks) -> ResNet depth."""
POSE_FILES = ("pose_encoder.pth", "pose.pth")
"""The separate ResNet pose network's files in a weights folder."""


@dataclass(frozen=True)
class ModelMeta:
    """What a weights folder says about its depth model."""

    height: int
    width: int
    use_stereo: bool
    num_layers: int


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            module = module.module
        else:
            return module


def save_weights_folder(folder: Path, modules: dict[str, nn.Module], *, height: int, width: int,
                        use_stereo: bool, optimizer: torch.optim.Optimizer | None = None,
                        extra: dict[str, dict] | None = None) -> Path:
    """Write ``<name>.pth`` per module (and ``adam.pth``, and ``extra`` files) into ``folder``, atomically.

    Args:
        modules: weights-file name -> module, e.g. {"encoder": ..., "depth": ...}; DDP / torch.compile
            wrappers are unwrapped so keys never carry ``module.`` or ``_orig_mod.``.
        height, width, use_stereo: stored as plain values in ``encoder.pth``, as the reference did.
        optimizer: its state dict goes to ``adam.pth``.
        extra: file name -> content, saved as they are (e.g. md2's own training state).
    Everything is written, on the CPU, into a temporary sibling folder that is renamed onto ``folder`` only
    when complete, so a crash never leaves a folder that looks complete but is not. An existing ``folder`` is
    replaced. A failure to write (disk full, permissions) raises CheckpointError naming ``folder``.
    """
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        temporary = _sibling(folder, "tmp")
        temporary.mkdir()
    except OSError as error:
        raise CheckpointError(f"cannot write weights folder {folder}: {error.strerror or error}") from None
    try:
        files: dict[str, object] = {}
        if optimizer is not None:  # the largest file first: its fsync overlaps the writing of the others
            files["adam.pth"] = _to_cpu(optimizer.state_dict())
        for name, module in modules.items():
            state = {_plain_key(k): _to_cpu(v) for k, v in unwrap(module).state_dict().items()}
            if name == "encoder":
                state.update(height=int(height), width=int(width), use_stereo=bool(use_stereo))
            files[f"{name}.pth"] = state
        files.update((filename, _to_cpu(content)) for filename, content in (extra or {}).items())
        _save_all(files, temporary)
        _replace_folder(temporary, folder)
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True)
        if isinstance(error, OSError):
            raise CheckpointError(f"cannot write weights folder {folder}: {error.strerror or error}") from None
        raise
    return folder


def _save(obj, path: Path) -> None:
    """torch.save through a Python file, so that a failed write (disk full, file too large) raises the OSError:
    torch.save reports it as a RuntimeError of its zip writer, raised while handling the file's OSError. Ctrl-C
    during a write comes back the same way ("unexpected pos"): it is raised as the KeyboardInterrupt it was."""
    with open(path, "wb") as file:
        try:
            torch.save(obj, file)
        except RuntimeError as error:
            if isinstance(error.__context__, (OSError, KeyboardInterrupt)):
                raise error.__context__ from None
            raise


def _sibling(folder: Path, tag: str) -> Path:
    """A unique hidden name beside ``folder`` (same file system, so renames are atomic)."""
    return folder.with_name(f".{folder.name}.{os.getpid()}.{secrets.token_hex(4)}.{tag}")


def _plain_key(key: str) -> str:
    # A submodule compiled on its own still carries "_orig_mod." inside its keys.
    return key.replace("_orig_mod.", "")


def _to_cpu(value):
    """``value`` with every tensor (also inside dicts, lists and tuples) detached and moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _save_all(files: dict[str, object], folder: Path) -> None:
    """torch.save each content to folder/name; every file is on disk (fsync) before this returns. Each file's
    fsync runs in a thread while the next one is written (the disk's work overlaps the serialisation)."""
    with ThreadPoolExecutor(1, thread_name_prefix="md2-fsync") as syncer:
        synced = []
        for name, content in files.items():
            _save(content, folder / name)
            synced.append(syncer.submit(_fsync_file, folder / name))
        for future in synced:
            future.result()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _replace_folder(source: Path, target: Path) -> None:
    """Rename ``source`` onto ``target``; an old ``target`` is moved aside first and removed after."""
    if not target.exists():
        os.replace(source, target)
        return
    old = _sibling(target, "old")
    os.replace(target, old)
    try:
        os.replace(source, target)
    except BaseException:
        os.replace(old, target)  # put the previous weights back
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_state_dict_file(path: Path) -> dict:
    """Read one ``.pth`` file safely (``weights_only=True``, so no pickled code runs) onto the CPU.

    Reads both torch's zip format and the legacy format of the published models (PyTorch 0.4).
    Raises CheckpointError naming the file when it is missing, truncated, corrupt or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with warnings.catch_warnings():
            # A pickle of another protocol than torch's makes the weights_only unpickler warn (two lines of
            # torch's source) just before it refuses the file or reads it: md2's own line says what matters.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Also what weights_only=True raises for a file that would need arbitrary code to load.
        raise CheckpointError(f"cannot read checkpoint {path}: not a torch weights file "
                              "(or one that would need to run code to load)") from None
    except Exception as error:  # noqa: BLE001 -- arbitrary bytes fail in many ways (struct, EOF, zip, ...)
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:120]
        raise CheckpointError(f"cannot read checkpoint {path}: corrupt or truncated ({reason})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(state).__name__})")
    for key, value in state.items():
        # A network with NaN weights predicts NaN everywhere, which would be written out as if it were depth.
        # The sum is finite exactly when every value is (short of an overflow, which isfinite then rules out):
        # a reduction, 20-30x cheaper than isfinite's full boolean copy on a 12-million-weight encoder.
        if (isinstance(value, torch.Tensor) and value.is_floating_point()
                and not math.isfinite(float(value.sum())) and not torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: {key!r} holds NaN or infinite values (a corrupt or diverged model)")
    return state


def load_module(module: nn.Module, source: Path | dict, *, file_label: str | None = None,
                strict: bool = True, assign: bool = False) -> None:
    """Load a state dict into ``module`` after checking keys and shapes.

    Args:
        source: a ``.pth`` path or an already loaded state dict.
        file_label: how to name the source in errors (defaults to the path).
        strict: refuse missing and unexpected keys (plain height/width/use_stereo are always ignored).
        assign: take the loaded tensors as the module's (for a module built on the meta device, which
            then needs every key).
    Raises CheckpointError naming the file and the first offending key.
    """
    state = load_state_dict_file(source) if isinstance(source, (str, Path)) else source
    label = file_label or str(source if isinstance(source, (str, Path)) else "state dict")
    state = {k: v for k, v in state.items() if k not in PLAIN_VALUES}
    target = unwrap(module)
    _check_resnet_depth(target, state, label)
    expected = target.state_dict()
    for key, value in state.items():
        if key not in expected:
            if strict:
                raise CheckpointError(f"{label}: unexpected key {key!r} (a different architecture?)")
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{label}: key {key!r} is not a tensor")
        if value.shape != expected[key].shape:
            raise CheckpointError(f"{label}: key {key!r} has shape {tuple(value.shape)}, "
                                  f"the model expects {tuple(expected[key].shape)}")
    missing = [key for key in expected if key not in state]
    if missing and strict:
        raise CheckpointError(f"{label}: missing key {missing[0]!r}" +
                              (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    target.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=strict, assign=assign)


def _check_resnet_depth(module: nn.Module, state: dict, label: str) -> None:
    """A ResNet encoder's weights of another depth: say so, rather than name the first key of a wrong shape."""
    expected = getattr(module, "num_layers", None)
    if not isinstance(expected, int) or not any(key.startswith("encoder.layer3.") for key in state):
        return
    found = LAYER3_BLOCKS.get(_layer3_signature(state))
    if found is not None and found != expected:
        raise CheckpointError(f"{label} holds a ResNet-{found} encoder, the model is a ResNet-{expected} "
                              f"(--num-layers {expected}): give --num-layers {found} or the matching weights")


def _layer3_signature(encoder_state: dict) -> tuple[int, bool]:
    layer3 = [key.split(".") for key in encoder_state if key.startswith("encoder.layer3.")]
    blocks = {parts[2] for parts in layer3 if len(parts) > 3}
    return len(blocks), any(parts[-2] == "conv3" for parts in layer3)


def infer_num_layers(encoder_state: dict, label: str = "encoder.pth") -> int:
    """ResNet depth from an encoder state dict: the blocks of layer3 and whether they are bottlenecks (conv3).

    18 -> 2 basic blocks, 34 -> 6 basic, 50 -> 6 bottleneck, 101 -> 23, 152 -> 36.
    """
    depth = LAYER3_BLOCKS.get(_layer3_signature(encoder_state))
    if depth is None:
        raise CheckpointError(f"{label}: not a ResNet-18/34/50/101/152 encoder")
    return depth


def read_model_meta(folder: Path) -> ModelMeta:
    """Height, width, use_stereo and ResNet depth of the depth model in a weights folder."""
    path = Path(folder) / "encoder.pth"
    return meta_from_encoder_state(load_state_dict_file(path), path)


def meta_from_encoder_state(state: dict, path: Path) -> ModelMeta:
    """ModelMeta from an already loaded encoder.pth."""
    missing = [key for key in ("height", "width") if key not in state]
    if missing:
        raise CheckpointError(f"{path}: no {missing[0]!r} entry (not a Monodepth2 encoder.pth?)")
    height, width = _plain_int(state["height"]), _plain_int(state["width"])
    for key, value in (("height", height), ("width", width)):
        if value is None:  # a string "128" would otherwise be reported as a size that is not a multiple of 32
            stored = state[key]
            shown = repr(stored) if len(repr(stored)) <= 40 else repr(stored)[:37] + "..."
            raise CheckpointError(f"{path}: its {key!r} is {shown} ({type(stored).__name__}), not a whole number "
                                  "of pixels")
    if max(height, width) > MAX_NETWORK_SIDE:
        raise CheckpointError(f"{path}: its input size {height}x{width} (height x width) is beyond md2's bound of "
                              f"{MAX_NETWORK_SIDE} pixels a side; refused before allocating anything")
    if height < 64 or width < 64 or height % 32 or width % 32:
        raise CheckpointError(f"{path}: its input size {state['height']}x{state['width']} (height x width) is not "
                              "a multiple of 32 of at least 64, which the depth network needs")
    return ModelMeta(height, width, bool(state.get("use_stereo", False)), infer_num_layers(state, str(path)))


def _plain_int(value) -> int | None:
    """An int stored as a plain number (or a one-element tensor); None for anything else."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value) if int(value) == value else None


def load_depth_model(folder: Path, device: torch.device | str | None = None,
                     num_layers: int | None = None) -> tuple[nn.Module, nn.Module, ModelMeta]:
    """Encoder and depth decoder of a weights folder, in eval mode on ``device``.

    ``num_layers`` (optional) must agree with the weights; by default it is read from them.
    """
    from md2.core.networks import DepthDecoder, ResnetEncoder

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"weights folder not found: {folder}")
    for name in ("encoder.pth", "depth.pth"):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} has no {name}: not a depth model weights folder")
    encoder_state = load_state_dict_file(folder / "encoder.pth")
    meta = meta_from_encoder_state(encoder_state, folder / "encoder.pth")
    if num_layers is not None and num_layers != meta.num_layers:
        raise CheckpointError(f"{folder / 'encoder.pth'} holds a ResNet-{meta.num_layers} encoder, "
                              f"but --num-layers {num_layers} was given")
    # Built on the meta device, without the random initialisation the weights replace (~0.1 s of start-up).
    with torch.device("meta"):
        encoder = ResnetEncoder(meta.num_layers, pretrained=False)
        decoder = DepthDecoder(encoder.num_ch_enc, scales=range(4))
    load_module(encoder, encoder_state, file_label=str(folder / "encoder.pth"), assign=True)
    load_module(decoder, folder / "depth.pth", assign=True)
    target = torch.device(device) if device is not None else torch.device("cpu")
    return encoder.to(target).eval(), decoder.to(target).eval(), meta


def load_pose_networks(folder: Path, num_layers: int | None, device):
    """The separate pose encoder (ResNet, 2 images) and pose decoder of a weights folder, in eval mode.

    Returns (encoder, decoder, num_layers); the ResNet depth is read from pose_encoder.pth unless given.
    """
    from md2.core.networks import PoseDecoder, ResnetEncoder

    require_pose_files(folder)
    encoder_state = load_state_dict_file(folder / "pose_encoder.pth")
    if num_layers is None:
        num_layers = infer_num_layers(encoder_state, str(folder / "pose_encoder.pth"))
    encoder = ResnetEncoder(num_layers, pretrained=False, num_input_images=2)
    decoder = PoseDecoder(encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)
    load_module(encoder, encoder_state, file_label=str(folder / "pose_encoder.pth"))
    load_module(decoder, folder / "pose.pth")
    return encoder.to(device).eval(), decoder.to(device).eval(), num_layers


def require_pose_files(folder: Path) -> None:
    """CheckpointError unless ``folder`` holds pose_encoder.pth and pose.pth."""
    if not folder.is_dir():
        raise CheckpointError(f"no such weights folder: {folder}")
    missing = [name for name in POSE_FILES if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder} has no {' or '.join(missing)}: was the model trained with the separate "
                              f"ResNet pose network (pose_model_type separate_resnet, the default)?")
