"""A reference-equivalent Monodepth2 trainer, for :mod:`benchmarks.train_epoch` to time beside ``md2 train``.

    python -m benchmarks.reference_trainer --data_path DIR --splits_dir DIR --split NAME --num_epochs 1 ...

Written for this benchmark from the reference's README, the paper and the reference trainer's documented
behaviour (its code is under a non-commercial licence and is not copied): mono training with a separate
ResNet pose encoder on frame pairs, as ``python train.py --model_name M`` with the reference's defaults.

* Start: imports (torch, torchvision, tensorboard), the models (torchvision ResNet-18 encoders; md2's depth and
  pose decoders, which are the same plain code), plain Adam (``torch.optim.Adam(params, lr)``: on the CPU
  torch's per-parameter loop) and ``StepLR(step_size, 0.1)``, the datasets (:class:`ReferenceKITTIRaw`: PIL,
  a ``transforms.Resize`` LANCZOS pyramid per frame, colour jitter on every PIL image with p = 0.5, flips
  with p = 0.5, ``ToTensor``, lidar ground truth for every sample when the split has scans), DataLoaders
  (shuffle, drop_last, pinned memory on CUDA), two SummaryWriters and opt.json.
* Each epoch: the scheduler steps first; per batch: the forward pass (depth, then each source frame's pose
  from its ordered pair), warping at every scale at full resolution, the per-scale losses computed plainly
  for autograd (SSIM + L1 0.85 / 0.15 of every warped and every unwarped source, identity error + N(0, 1e-5)
  noise, per-pixel minimum, edge-aware smoothness of mean-normalised disparity x 1e-3 / 2^s), backward, Adam.
* Logging as the reference: at batch % log_frequency == 0 while step < 2000 (and every 2000 steps) it prints
  a line, computes the depth metrics on the lidar, writes the scalars and the images of up to 4 samples x
  every scale x every frame (colour, warped colour at scale 0, normalised disparity, auto-mask) to
  TensorBoard, then runs val(): one validation batch without gradients, with its metrics, logged the same way.
* After each epoch (save_frequency 1) it saves the four models (encoder with height, width, use_stereo) and
  Adam's state to models/weights_N.

Where it may differ from the reference: it runs on today's PyTorch (torch.utils.tensorboard instead of
tensorboardX, grid_sample with align_corners=True stated as the reference's 0.4 behaved, the new ColorJitter
API applied in the old random order), and the lidar map is resized with md2's nearest-neighbour resize instead
of skimage's (quicker; see :mod:`benchmarks.reference_parts` for every part reused from md2). Its numbers: with
the same weights and batch, its first-step losses equal md2's to float rounding (``benchmarks.train_epoch``
checks).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from benchmarks import reference_parts as parts
from md2.core.networks import DepthDecoder, PoseDecoder


def build_models(scales) -> dict[str, torch.nn.Module]:
    encoder = parts.ReferenceResnetEncoder()
    pose_encoder = parts.ReferenceResnetEncoder(num_input_images=2)
    return {"encoder": encoder, "depth": DepthDecoder(encoder.num_ch_enc, scales),
            "pose_encoder": pose_encoder,
            "pose": PoseDecoder(pose_encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)}


class Trainer:
    def __init__(self, opt: argparse.Namespace) -> None:
        self.build_step(opt, build_models(opt.scales))
        self.log_path = Path(opt.log_dir) / opt.model_name
        parameters = [p for model in self.models.values() for p in model.parameters()]
        self.model_optimizer = torch.optim.Adam(parameters, opt.learning_rate)
        self.model_lr_scheduler = torch.optim.lr_scheduler.StepLR(self.model_optimizer, opt.scheduler_step_size, 0.1)
        print("Training model named:\n  ", opt.model_name)
        print("Training is using:\n  ", self.device)
        split = Path(opt.splits_dir) / opt.split
        train_files = (split / "train_files.txt").read_text().splitlines()
        val_files = (split / "val_files.txt").read_text().splitlines()
        img_ext = ".png" if opt.png else ".jpg"
        self.num_total_steps = len(train_files) // opt.batch_size * opt.num_epochs

        def loader(files: list[str], is_train: bool) -> DataLoader:
            dataset = parts.ReferenceKITTIRaw(opt.data_path, files, opt.height, opt.width, opt.frame_ids,
                                              4, is_train=is_train, img_ext=img_ext)
            return DataLoader(dataset, opt.batch_size, shuffle=True, num_workers=opt.num_workers,
                              pin_memory=torch.cuda.is_available(), drop_last=True)

        self.train_loader, self.val_loader = loader(train_files, True), loader(val_files, False)
        self.val_iter = iter(self.val_loader)
        self.writers = {mode: SummaryWriter(str(self.log_path / mode)) for mode in ("train", "val")}
        self.depth_metric_names = ["de/abs_rel", "de/sq_rel", "de/rms", "de/log_rms", "da/a1", "da/a2", "da/a3"]
        print(f"There are {len(train_files):d} training items and {len(val_files):d} validation items\n")
        self.save_opts()

    def build_step(self, opt: argparse.Namespace, models: dict[str, torch.nn.Module]) -> None:
        """What a step needs: the options, the models on the device, SSIM and the warping layers per scale."""
        self.opt, self.num_scales = opt, len(opt.scales)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.models = {name: model.to(self.device) for name, model in models.items()}
        self.ssim = parts.SSIM().to(self.device)
        h, w, b = opt.height, opt.width, opt.batch_size
        self.backproject_depth = {s: parts.BackprojectDepth(b, h // 2**s, w // 2**s).to(self.device)
                                  for s in opt.scales}
        self.project_3d = {s: parts.Project3D(b, h // 2**s, w // 2**s).to(self.device) for s in opt.scales}

    def set_train(self) -> None:
        for model in self.models.values():
            model.train()

    def set_eval(self) -> None:
        for model in self.models.values():
            model.eval()

    def train(self) -> None:
        self.epoch, self.step, self.start_time = 0, 0, time.time()
        for self.epoch in range(self.opt.num_epochs):
            self.run_epoch()
            if (self.epoch + 1) % self.opt.save_frequency == 0:
                self.save_model()

    def run_epoch(self) -> None:
        self.model_lr_scheduler.step()
        print("Training")
        self.set_train()
        for batch_idx, inputs in enumerate(self.train_loader):
            before_op_time = time.time()
            outputs, losses = self.process_batch(inputs)
            self.model_optimizer.zero_grad()
            losses["loss"].backward()
            self.model_optimizer.step()
            duration = time.time() - before_op_time
            early_phase = batch_idx % self.opt.log_frequency == 0 and self.step < 2000
            late_phase = self.step % 2000 == 0
            if early_phase or late_phase:
                self.log_time(batch_idx, duration, losses["loss"].cpu().data)
                if "depth_gt" in inputs:
                    self.compute_depth_losses(inputs, outputs, losses)
                self.log("train", inputs, outputs, losses)
                self.val()
            self.step += 1

    def process_batch(self, inputs: dict):
        for key, value in inputs.items():
            inputs[key] = value.to(self.device)
        features = self.models["encoder"](inputs["color_aug", 0, 0])
        outputs = self.models["depth"](features)
        outputs = {("disp", scale): disp for scale, disp in outputs.items()}
        outputs.update(self.predict_poses(inputs))
        self.generate_images_pred(inputs, outputs)
        return outputs, self.compute_losses(inputs, outputs)

    def predict_poses(self, inputs: dict) -> dict:
        outputs = {}
        pose_feats = {f_i: inputs["color_aug", f_i, 0] for f_i in self.opt.frame_ids}
        for f_i in self.opt.frame_ids[1:]:
            pair = [pose_feats[f_i], pose_feats[0]] if f_i < 0 else [pose_feats[0], pose_feats[f_i]]
            pose_inputs = [self.models["pose_encoder"](torch.cat(pair, 1))]
            axisangle, translation = self.models["pose"](pose_inputs)
            outputs[("axisangle", 0, f_i)], outputs[("translation", 0, f_i)] = axisangle, translation
            outputs[("cam_T_cam", 0, f_i)] = parts.transformation_from_parameters(
                axisangle[:, 0], translation[:, 0], invert=(f_i < 0))
        return outputs

    def val(self) -> None:
        self.set_eval()
        try:
            inputs = next(self.val_iter)
        except StopIteration:
            self.val_iter = iter(self.val_loader)
            inputs = next(self.val_iter)
        with torch.no_grad():
            outputs, losses = self.process_batch(inputs)
            if "depth_gt" in inputs:
                self.compute_depth_losses(inputs, outputs, losses)
            self.log("val", inputs, outputs, losses)
            del inputs, outputs, losses
        self.set_train()

    def generate_images_pred(self, inputs: dict, outputs: dict) -> None:
        for scale in self.opt.scales:
            disp = F.interpolate(outputs[("disp", scale)], [self.opt.height, self.opt.width], mode="bilinear",
                                 align_corners=False)
            _, depth = parts.disp_to_depth(disp, self.opt.min_depth, self.opt.max_depth)
            outputs[("depth", 0, scale)] = depth
            for frame_id in self.opt.frame_ids[1:]:
                T = outputs[("cam_T_cam", 0, frame_id)]
                cam_points = self.backproject_depth[0](depth, inputs[("inv_K", 0)])
                pix_coords = self.project_3d[0](cam_points, inputs[("K", 0)], T)
                outputs[("sample", frame_id, scale)] = pix_coords
                # PyTorch 0.4's grid_sample behaved as align_corners=True.
                outputs[("color", frame_id, scale)] = F.grid_sample(
                    inputs[("color", frame_id, 0)], pix_coords, padding_mode="border", align_corners=True)
                outputs[("color_identity", frame_id, scale)] = inputs[("color", frame_id, 0)]

    def compute_reprojection_loss(self, pred, target):
        l1_loss = torch.abs(target - pred).mean(1, True)
        return 0.85 * self.ssim(pred, target).mean(1, True) + 0.15 * l1_loss

    def compute_losses(self, inputs: dict, outputs: dict) -> dict:
        losses, total_loss = {}, 0
        target = inputs[("color", 0, 0)]
        for scale in self.opt.scales:
            disp, color = outputs[("disp", scale)], inputs[("color", 0, scale)]
            reprojection_loss = torch.cat([self.compute_reprojection_loss(outputs[("color", f, scale)], target)
                                           for f in self.opt.frame_ids[1:]], 1)
            identity_reprojection_loss = torch.cat([self.compute_reprojection_loss(inputs[("color", f, 0)], target)
                                                    for f in self.opt.frame_ids[1:]], 1)
            identity_reprojection_loss += torch.randn(identity_reprojection_loss.shape,
                                                      device=self.device) * 0.00001
            combined = torch.cat((identity_reprojection_loss, reprojection_loss), dim=1)
            to_optimise, idxs = torch.min(combined, dim=1)
            outputs[f"identity_selection/{scale}"] = (idxs > identity_reprojection_loss.shape[1] - 1).float()
            loss = to_optimise.mean()
            norm_disp = disp / (disp.mean(2, True).mean(3, True) + 1e-7)
            loss += self.opt.disparity_smoothness * parts.get_smooth_loss(norm_disp, color) / (2 ** scale)
            total_loss += loss
            losses[f"loss/{scale}"] = loss
        losses["loss"] = total_loss / self.num_scales
        return losses

    def compute_depth_losses(self, inputs: dict, outputs: dict, losses: dict) -> None:
        depth_pred = torch.clamp(F.interpolate(outputs[("depth", 0, 0)], [375, 1242], mode="bilinear",
                                               align_corners=False), 1e-3, 80).detach()
        depth_gt = inputs["depth_gt"]
        mask = depth_gt > 0
        crop_mask = torch.zeros_like(mask)
        crop_mask[:, :, 153:371, 44:1197] = 1
        mask = mask * crop_mask
        depth_gt, depth_pred = depth_gt[mask], depth_pred[mask]
        depth_pred *= torch.median(depth_gt) / torch.median(depth_pred)
        depth_pred = torch.clamp(depth_pred, min=1e-3, max=80)
        for name, value in zip(self.depth_metric_names, parts.compute_depth_errors(depth_gt, depth_pred)):
            losses[name] = value.cpu()

    def log_time(self, batch_idx: int, duration: float, loss) -> None:
        samples_per_sec = self.opt.batch_size / duration
        elapsed = time.time() - self.start_time
        left = (self.num_total_steps / self.step - 1.0) * elapsed if self.step > 0 else 0
        print(f"epoch {self.epoch:>3} | batch {batch_idx:>6} | examples/s: {samples_per_sec:5.1f} | "
              f"loss: {float(loss):.5f} | time elapsed: {elapsed:.0f} s | time left: {left:.0f} s")

    def log(self, mode: str, inputs: dict, outputs: dict, losses: dict) -> None:
        writer = self.writers[mode]
        for name, value in losses.items():
            writer.add_scalar(name, value, self.step)
        for j in range(min(4, self.opt.batch_size)):
            for s in self.opt.scales:
                for frame_id in self.opt.frame_ids:
                    writer.add_image(f"color_{frame_id}_{s}/{j}", inputs[("color", frame_id, s)][j].data, self.step)
                    if s == 0 and frame_id != 0:
                        writer.add_image(f"color_pred_{frame_id}_{s}/{j}", outputs[("color", frame_id, s)][j].data,
                                         self.step)
                writer.add_image(f"disp_{s}/{j}", parts.normalize_image(outputs[("disp", s)][j]), self.step)
                writer.add_image(f"automask_{s}/{j}", outputs[f"identity_selection/{s}"][j][None, ...], self.step)

    def save_opts(self) -> None:
        folder = self.log_path / "models"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "opt.json").write_text(json.dumps(vars(self.opt).copy(), indent=2))

    def save_model(self) -> None:
        folder = self.log_path / "models" / f"weights_{self.epoch}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, model in self.models.items():
            to_save = model.state_dict()
            if name == "encoder":
                to_save.update(height=self.opt.height, width=self.opt.width, use_stereo=False)
            torch.save(to_save, folder / f"{name}.pth")
        torch.save(self.model_optimizer.state_dict(), folder / "adam.pth")


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    """The reference's option names and defaults, for the mono case it trains here."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--splits_dir", required=True)
    parser.add_argument("--split", default="eigen_zhou")
    parser.add_argument("--log_dir", default=str(Path.home() / "tmp"))
    parser.add_argument("--model_name", default="mdp")
    parser.add_argument("--png", action="store_true")
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--disparity_smoothness", type=float, default=1e-3)
    parser.add_argument("--scales", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--min_depth", type=float, default=0.1)
    parser.add_argument("--max_depth", type=float, default=100.0)
    parser.add_argument("--frame_ids", nargs="+", type=int, default=[0, -1, 1])
    parser.add_argument("--batch_size", type=int, default=12)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--num_epochs", type=int, default=20)
    parser.add_argument("--scheduler_step_size", type=int, default=15)
    parser.add_argument("--num_workers", type=int, default=12)
    parser.add_argument("--log_frequency", type=int, default=250)
    parser.add_argument("--save_frequency", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    Trainer(parse_options()).train()
