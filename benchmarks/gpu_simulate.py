"""``python -m benchmarks.gpu_check --simulate``: the check's phases through the fake-CUDA stretches of
tests/fake_cuda.py (FakeTensorMode, no GPU): what each phase would run on the device, with shapes and devices
checked and no values. Phases with nothing to simulate (torchrun/NCCL, export, onnxruntime's CUDA provider,
the speed figures) are skipped. Needs the repository's tests/ (a development checkout), not a GPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.gpu_phases import Skipped


def _config(data: Path, work: Path, **options):
    from tests.core.train.helpers import tiny_config

    return tiny_config(data, work, width=64, **options)


def train(data: Path, work: Path, amp: str | None = None, uint8: bool = True, **options) -> str:
    """One training step's device part: models moved, the batch copied (and finished), forward, the scaled
    loss's backward (walked in Python), GradScaler unscale, Adam, scale update."""
    from md2.core.train.tb_logging import log_scalars
    from tests.fake_cuda import backward, build_train_parts, fake_cuda, host_batch, loaded_batch, on_cuda
    from tests.fake_cuda import optimiser_step
    from tests.fake_cuda import train_forward

    config = _config(data, work, augment_on="device" if uint8 else "workers", amp=amp is not None, **options)
    batch = host_batch(config, data, uint8=uint8)
    with fake_cuda(bf16=amp != "fp16") as cuda:
        parts = build_train_parts(cuda, config)
        on_device = loaded_batch(cuda, batch)
        losses, outputs, scaled = train_forward(parts, on_device, config)
        scalars = log_scalars(losses, on_device, outputs)
        backward(scaled)
        optimiser_step(parts)
        if not (on_cuda(losses) and on_cuda(outputs) and on_cuda(scalars) and scaled.device.type == "cuda"):
            raise AssertionError("a step output is not on the device")
    scaler = "GradScaler on" if parts.scaler.is_enabled() else "no GradScaler"
    return f"fake CUDA: {'uint8' if uint8 else 'float'} batch, {amp or 'fp32'}, {scaler}, forward, logged scalars, backward, Adam"


def _predictor(cuda, work: Path):
    from md2.core.checkpoint import save_weights_folder
    from md2.core.networks import DepthDecoder, ResnetEncoder
    from tests.fake_cuda import predictor_on_cuda

    folder = work / "simulated_weights"
    if not (folder / "depth.pth").is_file():
        def write():
            encoder = ResnetEncoder(18, False)
            save_weights_folder(folder, {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)},
                                height=64, width=96, use_stereo=False)
        cuda.on_host(write)
    return predictor_on_cuda(cuda, folder, "auto")


def predict(work: Path, height: int, width: int) -> str:
    from tests.fake_cuda import fake_cuda, predict_pass

    with fake_cuda() as cuda:
        predictor = _predictor(cuda, work)
        disp, _ = predict_pass(predictor, cuda.host(torch.rand(4, 3, 64, 96)), height, width)
        assert disp.device.type == "cuda" and disp.shape == (4, 1, height, width)
    return f"fake CUDA: network pass ({predictor.precision}) and upsampling to {width}x{height}"


def evaluate_depth(work: Path) -> str:
    from tests.fake_cuda import evaluate_batch, fake_cuda

    with fake_cuda() as cuda:
        scaled = evaluate_batch(_predictor(cuda, work), cuda.host(torch.rand(4, 3, 64, 96)))
        assert scaled.device.type == "cuda"
    return "fake CUDA: batch and mirror image in one pass (post-processing)"


def evaluate_pose() -> str:
    from tests.fake_cuda import fake_cuda, pose_pass

    with fake_cuda() as cuda:
        poses = pose_pass(cuda, cuda.host(torch.rand(4, 3, 64, 96)), cuda.host(torch.rand(4, 3, 64, 96)))
        assert poses.device.type == "cuda"
    return "fake CUDA: pose encoder + decoder, transforms"


def ssim_backward() -> str:
    from tests.fake_cuda import fake_cuda, ssim_backward as run

    with fake_cuda() as cuda:
        run(cuda, keep_target=True)
        run(cuda, keep_target=False)
    return "fake CUDA: SSIM's hand-written backward, without a kept target"


def nothing(what: str):
    """A phase with nothing to simulate: skipped, saying why."""
    def skip(*_args) -> str:
        raise Skipped(f"needs a GPU ({what}): nothing to simulate")
    return skip
