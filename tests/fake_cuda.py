"""md2's CUDA path run on a machine without a GPU: torch's FakeTensorMode with tensors on "cuda".

Inside :func:`fake_cuda` tensors carry shapes, dtypes and devices but no values: ``torch.empty(3, device="cuda")``
works without a GPU, and any operation where a CPU tensor (other than a 0-dim one, which CUDA kernels accept
too) meets a CUDA tensor raises ``FakeTensorDeviceMismatchError``, as a real GPU would raise. Anything that
reads a value back (``.item()``, ``float(loss)``, ``.cpu().numpy()``) raises as well: those reads belong at the
edges of the path and stay outside the stretches here.

Autograd's engine cannot run backward on CUDA tensors without a GPU (it asks the CUDA driver for each device's
stream context, ``GraphTask::stash_current_streams``), so :func:`backward` walks the graph in Python instead:
each node's backward is called as the engine calls it (torch's derivative formulas and md2's own backward
passes run on the fake tensors), its gradients summed to the shape and cast to the dtype of the input they go
to, and their device checked against that input's, as the engine's ``validate_outputs`` does.
``GradScaler.step`` reads the found-inf flag with ``.item()``: the optimiser stretch runs what it runs when the
flag is 0 (``unscale_``, the optimiser's step, ``update``).

torch's availability probes are answered as a GPU machine would answer them while the context is open: CUDA
autocast and the CUDA GradScaler stay enabled (without a GPU torch switches them off with a warning), and
``torch.cuda.is_bf16_supported`` says ``bf16`` (an H100) or not (a V100: fp16 with gradient scaling).

The stretches (functions below) are used by tests/core/train/test_fake_cuda.py and by
``python -m benchmarks.gpu_check --simulate``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily

CUDA = torch.device("cuda", 0)


@dataclass
class FakeCuda:
    """An open fake-CUDA context: ``device`` is "cuda:0"; ``adopt`` moves host objects there."""

    mode: FakeTensorMode
    device: torch.device = CUDA

    def adopt(self, move):
        """``move()`` (e.g. ``lambda: module.to(device)``, ``lambda: batch.to(device)``) with real CPU tensors
        accepted as inputs: what the loop does with what it built or loaded on the host. Returns its result.
        A real tensor taken in becomes a fake one on its own device (the CPU): the device check still holds."""
        self.mode.allow_non_fake_inputs = True
        try:
            return move()
        finally:
            self.mode.allow_non_fake_inputs = False

    @staticmethod
    def on_host(build):
        """``build()`` with the fake mode suspended: real CPU tensors, as md2 builds its networks before moving
        them (a module built inside the mode could not be moved: torch swaps fake parameters, and refuses)."""
        with unset_fake_temporarily():
            return build()

    def host(self, tensor: torch.Tensor) -> torch.Tensor:
        """A real CPU tensor as a (fake) CPU tensor of this context: a loader's output before its copy."""
        return self.mode.from_tensor(tensor)


@contextlib.contextmanager
def fake_cuda(bf16: bool = True) -> Iterator[FakeCuda]:
    """Fake CUDA tensors for the duration; ``bf16``: what ``torch.cuda.is_bf16_supported()`` answers."""
    import torch.cuda.amp.common as amp_common

    saved = (amp_common.amp_definitely_not_available, torch.cuda.is_bf16_supported)
    amp_common.amp_definitely_not_available = lambda: False
    torch.cuda.is_bf16_supported = lambda including_emulation=True: bf16
    mode = FakeTensorMode(allow_non_fake_inputs=False)
    try:
        with mode:
            yield FakeCuda(mode)
    finally:
        amp_common.amp_definitely_not_available, torch.cuda.is_bf16_supported = saved


def on_cuda(value) -> bool:
    """Whether every tensor in ``value`` (nested dicts, lists, tuples, dataclass fields) is on CUDA."""
    return all(tensor.device.type == "cuda" for tensor in _tensors(value))


def _tensors(value) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from _tensors(getattr(value, name))


# -- the stretches -------------------------------------------------------------------------------------------------
@dataclass
class TrainParts:
    """What a Trainer holds on its device (md2.core.train.loop.Trainer.__init__, the same calls)."""

    models: torch.nn.ModuleDict
    networks: torch.nn.ModuleDict
    warpers: torch.nn.Module
    ssim: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


def build_train_parts(cuda: FakeCuda, config) -> TrainParts:
    """The networks built on the host and moved to the device, Adam, the GradScaler, warping layers, SSIM."""
    from md2.core.losses import SSIM
    from md2.core.train.adam import adam
    from md2.core.train.models import build_models
    from md2.core.train.speed import accelerate, amp_dtype
    from md2.core.train.step import Warpers

    device, run = cuda.device, config.run
    models = cuda.on_host(lambda: build_models(config))
    if run.channels_last:
        # Before the move, not after it as the Trainer does (fake parameters cannot be converted in place);
        # the memory format does not depend on the device.
        cuda.on_host(lambda: models.to(memory_format=torch.channels_last))
    cuda.adopt(lambda: models.to(device))
    optimizer = adam(models.parameters(), config.optim.learning_rate)
    scaler = torch.amp.GradScaler(device.type, enabled=run.amp and amp_dtype(device) == torch.float16)
    warpers = cuda.on_host(lambda: Warpers(config.data.height, config.data.width, len(config.model.scales)))
    cuda.adopt(lambda: warpers.to(device))
    ssim = None if config.loss.no_ssim else cuda.adopt(lambda: cuda.on_host(SSIM).to(device))
    networks = accelerate(dict(models), device, amp=run.amp, channels_last=run.channels_last)
    return TrainParts(models, networks, warpers, ssim, optimizer, scaler)


def host_batch(config, data: Path, uint8: bool, is_train: bool = True):
    """Two samples of ``data``'s split "synth" as the training loader hands them over (on the host, not yet
    copied). Indices 0 and 1 of epoch 0: sample 1 jittered, sample 0 not (draw_augmentation with seed 0)."""
    from md2.data.kitti import KITTIRawDataset
    from md2.data.splits import read_split_file

    lines = read_split_file(data / "splits" / "synth" / "train_files.txt")[:2]
    dataset = KITTIRawDataset(data, lines, config.data.height, config.data.width, config.data.frame_ids,
                              num_scales=len(config.model.scales), is_train=is_train, img_ext=".png",
                              use_stereo=config.data.use_stereo, uint8_images=uint8)
    return dataset.__getitems__([(0, 0), (0, 1)])


def loaded_batch(cuda: FakeCuda, host_batch):
    """A loader's batch copied to the device as the loop copies it, then finished (uint8 -> float, jitter)."""
    from md2.data.device_augment import finish_batch

    moved = cuda.adopt(lambda: host_batch.to(cuda.device, non_blocking=True))
    return finish_batch(moved)


def network_dtypes(parts: TrainParts) -> list[torch.dtype]:
    """Hooks recording the dtype of every convolution's output (to see autocast at work); returns the list."""
    seen: list[torch.dtype] = []
    for module in parts.models.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda _m, _i, output: seen.append(output.dtype))
    return seen


def train_forward(parts: TrainParts, batch, config, step_function=None):
    """``training_step`` on the device (its losses and outputs), then ``scaler.scale(loss)`` (what backward
    would start from). ``step_function``: another training_step (a test's planted copy)."""
    from md2.core.train.step import training_step

    step = step_function or training_step
    losses, outputs = step(parts.networks, batch, config, parts.warpers, parts.ssim)
    scaled = parts.scaler.scale(losses["loss"])
    return losses, outputs, scaled


class GradientDeviceMismatch(RuntimeError):
    """A backward pass gave a gradient on another device than its input's (the engine refuses it too)."""


def backward(loss: torch.Tensor) -> None:
    """``loss.backward()`` on fake CUDA tensors: the autograd graph walked in Python (module docstring).
    Gradients accumulate into ``.grad`` of the leaves that require them."""
    order = _topological(loss.grad_fn)
    pending: dict = {loss.grad_fn: {0: torch.ones_like(loss)}}
    for node in order:
        incoming = pending.pop(node, {})
        if not incoming:
            continue
        if hasattr(node, "variable"):  # AccumulateGrad: a leaf
            leaf, gradient = node.variable, incoming[0]
            leaf.grad = gradient if leaf.grad is None else leaf.grad + gradient
            continue
        metadata = node._input_metadata
        gradients = [incoming.get(index) for index in range(len(metadata))]
        if hasattr(node, "_forward_cls"):  # a Python autograd.Function: missing gradients given as zeros
            gradients = [torch.zeros(tuple(m.shape), dtype=m.dtype, device=m.device) if g is None else g
                         for g, m in zip(gradients, metadata)]
            outputs = node.apply(*gradients)
        else:
            outputs = node(*gradients)
        for (child, slot), gradient in zip(node.next_functions, _as_tuple(outputs)):
            if child is not None and gradient is not None:
                gradient = _validated(node, gradient, child._input_metadata[slot])
                into = pending.setdefault(child, {})
                into[slot] = gradient if slot not in into else into[slot] + gradient


def _topological(root) -> list:
    """The nodes reachable from ``root``, each before every node it feeds (reverse post-order)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            order.append(node)
        elif node not in seen:
            seen.add(node)
            stack.append((node, True))
            stack.extend((child, False) for child, _ in node.next_functions if child is not None and
                         child not in seen)
    return order[::-1]


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _validated(node, gradient: torch.Tensor, metadata) -> torch.Tensor:
    if gradient.device != metadata.device:
        raise GradientDeviceMismatch(f"{node.name()} gave a gradient on {gradient.device} for an input "
                                            f"on {metadata.device}")
    if tuple(gradient.shape) != tuple(metadata.shape):
        gradient = gradient.sum_to_size(tuple(metadata.shape))
    return gradient if gradient.dtype == metadata.dtype else gradient.to(metadata.dtype)


def optimiser_step(parts: TrainParts) -> None:
    """The GradScaler's unscale, Adam's step and the scale's update, on the gradients :func:`backward` left
    (what ``scaler.step`` runs when no gradient overflowed: its ``.item()`` read is the one left out)."""
    parts.scaler.unscale_(parts.optimizer)
    parts.optimizer.step()
    parts.scaler.update()


def ssim_backward(cuda: FakeCuda, height: int = 32, width: int = 64, keep_target: bool = True):
    """SSIM's hand-written backward on device tensors (called directly: see the module docstring).
    Returns the gradients for (x, y)."""
    from md2.core.losses import SSIM, _SSIMFunction

    x = torch.empty(2, 3, height, width, device=cuda.device)
    y = torch.empty(2, 3, height, width, device=cuda.device)
    ssim = cuda.adopt(lambda: cuda.on_host(SSIM).to(cuda.device))
    target = ssim._statistics(y) if keep_target else None
    saved = [*_pad_pair(x, y, target)]
    context = _BackwardContext(tuple(saved), (True, target is None, False), x.shape)
    return _SSIMFunction.backward(context, torch.empty_like(x))


def _pad_pair(x, y, target):
    import torch.nn.functional as F

    padded_y = target.padded if target is not None else F.pad(y, (1, 1, 1, 1), mode="reflect")
    kept = () if target is None else (target.mean, target.variance)
    return (F.pad(x, (1, 1, 1, 1), mode="reflect"), padded_y, *kept)


@dataclass
class _BackwardContext:
    saved_tensors: tuple
    needs_input_grad: tuple
    input_shape: torch.Size


def predictor_on_cuda(cuda: FakeCuda, folder: Path, precision: str = "fp32"):
    """md2's DepthPredictor for a weights folder, loaded on the host and moved to the device."""
    from md2.core.checkpoint import load_depth_model
    from md2.core.inference import DepthPredictor

    encoder, decoder, meta = cuda.on_host(lambda: load_depth_model(folder, device=torch.device("cpu")))
    # Made on the host (its channels_last conversion cannot convert fake parameters in place), for the device
    # (the precision is resolved for CUDA), then its networks moved there.
    predictor = cuda.on_host(lambda: DepthPredictor(encoder, decoder, meta.height, meta.width,
                                                    bool(meta.use_stereo), cuda.device, precision=precision))
    cuda.adopt(lambda: (encoder.to(cuda.device), decoder.to(cuda.device)))
    return predictor


def predict_pass(predictor, host_images: torch.Tensor, height: int, width: int):
    """md2 predict's device part: network pass, upsampling to the picture's size, depth. Returns (disp, depth)."""
    from md2.core.inference import upsample

    disp = predictor.disparity(host_images)
    return upsample(disp, height, width), predictor.depth(disp)


def evaluate_batch(predictor, host_images: torch.Tensor):
    """evaluate-depth's device part of one batch with post-processing: the batch and its mirror image in one
    pass (md2.core.evaluation.depth.predict_disparities, up to its ``.cpu()``)."""
    images = torch.cat((host_images, torch.flip(host_images, [3])), 0)
    return predictor.scaled_disparity(predictor.disparity(images))[:, 0].float()


def is_fake(tensor: torch.Tensor) -> bool:
    return isinstance(tensor, FakeTensor)


def pose_pass(cuda: FakeCuda, host_frame0: torch.Tensor, host_frame1: torch.Tensor) -> torch.Tensor:
    """evaluate-pose's device part (md2.core.evaluation.pose.predict_relative_poses up to its ``.cpu()``) with
    fresh separate-ResNet pose networks: frames (B, 3, H, W) on the host -> (B, 4, 4) transforms."""
    from md2.core.geometry import transformation_from_parameters
    from md2.core.networks import build_pose_networks

    networks = cuda.on_host(lambda: build_pose_networks("separate_resnet", 18, 2, False))
    encoder, decoder = cuda.adopt(lambda: (networks["pose_encoder"].eval().to(cuda.device),
                                           networks["pose"].eval().to(cuda.device)))
    pair = torch.cat([host_frame0, host_frame1], 1).to(cuda.device, non_blocking=True)
    axisangle, translation = decoder([encoder(pair)])
    return transformation_from_parameters(axisangle[:, 0], translation[:, 0])
