"""md2's CUDA path on a CPU-only machine (tests/fake_cuda.py): every stretch that reads no value back runs with
its tensors on "cuda" (training: forward, backward, GradScaler, Adam), and a tensor md2 made on the CPU inside
it fails the test (planted in test-only copies of md2's modules)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError

from md2.core.checkpoint import save_weights_folder
from md2.core.networks import DepthDecoder, ResnetEncoder
from md2.core.train.tb_logging import log_scalars
from tests.core.train.helpers import tiny_config
from tests.fake_cuda import (backward, build_train_parts, evaluate_batch, fake_cuda, host_batch, is_fake, loaded_batch,
                             network_dtypes, on_cuda, optimiser_step, pose_pass, predict_pass, predictor_on_cuda,
                             ssim_backward, train_forward)

VARIANTS = [
    {"modality": "mono"},
    {"modality": "stereo"},
    {"modality": "mono+stereo"},
    {"predictive_mask": True, "disable_automasking": True, "modality": "mono+stereo"},
    {"v1_multiscale": True},
    {"pose_model_type": "posecnn"},
    {"pose_model_type": "shared", "modality": "mono+stereo"},
    {"pose_model_input": "all", "avg_reprojection": True},
    {"channels_last": True, "no_ssim": True},
]
AMP = {"fp32": {}, "bf16": {"amp": True}, "fp16": {"amp": True}}


def _name(options: dict) -> str:
    return ",".join(f"{key}={value}" for key, value in options.items())


def test_a_cpu_tensor_meeting_a_cuda_tensor_fails():
    with fake_cuda() as cuda:
        on_device = torch.empty(3, 4, device=cuda.device)
        assert is_fake(on_device) and on_device.device.type == "cuda"
        assert (on_device @ torch.empty(4, 5, device=cuda.device)).device.type == "cuda"
        with pytest.raises(FakeTensorDeviceMismatchError):
            on_device @ torch.ones(4, 5)
        with pytest.raises(FakeTensorDeviceMismatchError):  # host tensors adopted stay on the host
            cuda.adopt(lambda: on_device @ torch.ones(4, 5))


@pytest.mark.parametrize("options", VARIANTS, ids=_name)
def test_models_build_on_cuda(synth_raw, tmp_path, options):
    config = tiny_config(synth_raw, tmp_path, width=64, **options)
    with fake_cuda() as cuda:
        parts = build_train_parts(cuda, config)
        tensors = [*parts.models.parameters(), *parts.models.buffers(), *parts.warpers.buffers()]
        assert tensors and all(is_fake(t) and t.device.type == "cuda" for t in tensors)


@pytest.mark.parametrize("uint8", [True, False], ids=["augment-on-device", "augment-on-workers"])
def test_loaded_batch_is_finished_on_cuda(synth_raw, tmp_path, uint8):
    config = tiny_config(synth_raw, tmp_path, width=64, modality="mono+stereo")
    batch = host_batch(config, synth_raw, uint8)
    assert (batch.color[0][0].dtype == torch.uint8) is uint8 and batch.jitter[1] is not None
    with fake_cuda() as cuda:
        finished = loaded_batch(cuda, batch)
        assert on_cuda(finished)
        assert all(image.dtype == torch.float32 for scales in finished.color_aug.values() for image in scales)
        assert finished.color_aug[0][0] is not finished.color[0][0]  # sample 1 is jittered


@pytest.mark.parametrize("amp", AMP, ids=str)
@pytest.mark.parametrize("options", VARIANTS, ids=_name)
def test_training_step_runs_on_cuda(synth_raw, tmp_path, options, amp):
    config = tiny_config(synth_raw, tmp_path, width=64, augment_on="device", **options, **AMP[amp])
    batch = host_batch(config, synth_raw, uint8=True)
    with fake_cuda(bf16=amp != "fp16") as cuda:
        parts = build_train_parts(cuda, config)
        assert parts.scaler.is_enabled() is (amp == "fp16")
        dtypes = network_dtypes(parts)
        on_device = loaded_batch(cuda, batch)
        losses, outputs, scaled = train_forward(parts, on_device, config)
        assert on_cuda(losses) and on_cuda(outputs) and scaled.device.type == "cuda"
        # What a log computes on the device before its one read: losses and the lidar depth metrics.
        scalars = log_scalars(losses, on_device, outputs)
        assert "de/abs_rel" in scalars and on_cuda(scalars)
        assert all(loss.dtype == torch.float32 for loss in losses.values())
        expected = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        assert set(dtypes) == {expected}
        backward(scaled)
        gradients = {name: p.grad for name, p in parts.models.named_parameters() if p.requires_grad}
        assert all(g is not None for g in gradients.values()), [n for n, g in gradients.items() if g is None][:3]
        assert on_cuda(list(gradients.values())) and {g.dtype for g in gradients.values()} == {torch.float32}
        optimiser_step(parts)
        moments = [state[key] for state in parts.optimizer.state.values() for key in ("exp_avg", "exp_avg_sq")]
        assert moments and on_cuda(moments)
        assert all(p.device.type == "cuda" for p in parts.models.parameters())


@pytest.mark.parametrize("keep_target", [True, False], ids=["target-kept", "both-need-gradients"])
def test_ssim_backward_runs_on_cuda(keep_target):
    with fake_cuda() as cuda:
        grad_x, grad_y, _ = ssim_backward(cuda, keep_target=keep_target)
        assert grad_x.device.type == "cuda" and grad_x.shape == (2, 3, 32, 64)
        assert (grad_y is None) is keep_target


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory):
    torch.manual_seed(0)
    encoder = ResnetEncoder(18, False)
    folder = tmp_path_factory.mktemp("weights") / "weights_0"
    return save_weights_folder(folder, {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc)},
                               height=64, width=96, use_stereo=False)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_predict_network_pass_and_upsampling_run_on_cuda(weights_folder, precision):
    with fake_cuda() as cuda:
        predictor = predictor_on_cuda(cuda, weights_folder, precision)
        assert predictor.precision == ("fp32" if precision == "fp32" else "bf16")  # auto: bf16 on an H100
        images = cuda.host(torch.rand(3, 3, 64, 96))
        disp, depth = predict_pass(predictor, images, 375, 1242)
        assert disp.shape == (3, 1, 375, 1242) and on_cuda([disp, depth])
        assert disp.dtype == torch.float32


def test_evaluate_depth_batch_with_post_processing_runs_on_cuda(weights_folder):
    with fake_cuda() as cuda:
        predictor = predictor_on_cuda(cuda, weights_folder)
        scaled = evaluate_batch(predictor, cuda.host(torch.rand(4, 3, 64, 96)))
        assert scaled.shape == (8, 64, 96) and scaled.device.type == "cuda"


def _planted_copy(module, old: str, new: str, tmp_path):
    """A test-only copy of md2's ``module`` with ``old`` replaced by ``new`` (a planted mistake)."""
    source = open(module.__file__).read()
    planted = source.replace(old, new)
    assert planted != source
    name = f"planted_{module.__name__.rsplit('.', 1)[-1]}"
    path = tmp_path / f"{name}.py"
    path.write_text(planted)
    spec = importlib.util.spec_from_file_location(name, path)
    copy = importlib.util.module_from_spec(spec)
    sys.modules[name] = copy
    try:
        spec.loader.exec_module(copy)
    finally:
        del sys.modules[name]
    return copy


def test_a_planted_cpu_tensor_in_the_training_step_fails(synth_raw, tmp_path):
    import md2.core.train.step as step

    # The tie-breaking noise made on the CPU: the mistake of forgetting ``device=``.
    planted = _planted_copy(step, "torch.randn_like(identity)", "torch.randn(identity.shape)", tmp_path)
    config = tiny_config(synth_raw, tmp_path, width=64, modality="mono")
    batch = host_batch(config, synth_raw, uint8=True)
    with fake_cuda() as cuda:
        parts = build_train_parts(cuda, config)
        on_device = loaded_batch(cuda, batch)
        train_forward(parts, on_device, config)  # md2's own step passes
        with pytest.raises(FakeTensorDeviceMismatchError):
            train_forward(parts, on_device, config, step_function=planted.training_step)


def test_a_planted_cpu_tensor_in_the_device_augmentation_fails(synth_raw, tmp_path):
    import md2.data.device_augment as device_augment

    # A per-channel divisor made on the CPU (a 0-dim CPU tensor would be legal: CUDA kernels take those).
    planted = _planted_copy(device_augment, "torch.full((), 255.0, device=images.device)",
                            "torch.full((1, 3, 1, 1), 255.0)", tmp_path)
    config = tiny_config(synth_raw, tmp_path, width=64, modality="mono")
    batch = host_batch(config, synth_raw, uint8=True)
    with fake_cuda() as cuda:
        moved = cuda.adopt(lambda: batch.to(cuda.device, non_blocking=True))
        assert on_cuda(device_augment.finish_batch(moved))
        with pytest.raises(FakeTensorDeviceMismatchError):
            planted.finish_batch(moved)


@pytest.mark.parametrize("amp", ["fp32", "bf16"])
@pytest.mark.parametrize("modality", ["mono", "mono+stereo"])
def test_validation_step_runs_on_cuda(synth_raw, tmp_path, modality, amp):
    # Without gradients the depth decoder takes its own path (DepthDecoder.infer); validation batches are float.
    config = tiny_config(synth_raw, tmp_path, width=64, modality=modality, **AMP[amp])
    batch = host_batch(config, synth_raw, uint8=False, is_train=False)
    with fake_cuda() as cuda:
        parts = build_train_parts(cuda, config)
        parts.models.eval()
        with torch.no_grad():
            on_device = loaded_batch(cuda, batch)
            losses, outputs, _ = train_forward(parts, on_device, config)
            assert on_cuda(log_scalars(losses, on_device, outputs)) and on_cuda(outputs)


def test_evaluate_pose_batch_runs_on_cuda():
    with fake_cuda() as cuda:
        frames = [cuda.host(torch.rand(3, 3, 64, 96)) for _ in range(2)]
        poses = pose_pass(cuda, *frames)
        assert poses.shape == (3, 4, 4) and poses.device.type == "cuda"


def test_a_planted_cpu_tensor_in_a_backward_pass_fails(synth_raw, tmp_path):
    import md2.core.losses as losses

    # SSIM's hand-written backward accumulating into a buffer made on the CPU.
    planted = _planted_copy(losses, "torch.zeros_like(padded_x)", "torch.zeros(padded_x.shape)", tmp_path)
    config = tiny_config(synth_raw, tmp_path, width=64, modality="mono")
    batch = host_batch(config, synth_raw, uint8=True)
    with fake_cuda() as cuda:
        parts = build_train_parts(cuda, config)
        on_device = loaded_batch(cuda, batch)
        backward(train_forward(parts, on_device, config)[2])  # md2's own backward passes
        parts.ssim = cuda.adopt(lambda: cuda.on_host(planted.SSIM).to(cuda.device))
        scaled = train_forward(parts, on_device, config)[2]  # the forward is the same
        with pytest.raises(FakeTensorDeviceMismatchError):
            backward(scaled)
