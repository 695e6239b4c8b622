"""The reference trainer's parts, written plainly for :mod:`benchmarks.reference_trainer` (a stand-in, not md2).

What the reference (Godard et al.'s train.py / trainer.py, PyTorch 0.4-era) does, as its README and the paper
describe it, in md2's own words and code: a KITTI raw dataset that opens each frame with PIL, flips it, builds a
LANCZOS pyramid with ``transforms.Resize`` per scale and applies one colour jitter per sample to every PIL image
of every scale before ``ToTensor``; torchvision's ResNet as the encoder; the geometry and the losses written as
plain tensor formulas for autograd (SSIM from 3x3 average pooling with reflection padding). None of md2's
optimisations are used here: no hand-written SSIM backward, no identity reprojection shared between scales, no
whole-batch loading. Reused from md2 because they are the same plain code as the reference's: the depth and
pose decoders (:mod:`md2.core.networks`), md2's calibration-file parser, and for resizing the lidar map md2's
nearest-neighbour resize (the reference's skimage ``resize(order=0)`` interpolates even at the same size: this
stand-in is quicker there). The lidar projection is the reference's plain one (:func:`generate_depth_map`).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torchvision import models, transforms

from md2.data.augment import nearest_resize
from md2.data.calib import read_calib_file

KITTI_K = np.array([[0.58, 0, 0.5, 0], [0, 1.92, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float32)
FULL_RES_SHAPE = (1242, 375)
SIDE_MAP = {"2": 2, "3": 3, "l": 2, "r": 3}
JITTER = {"brightness": (0.8, 1.2), "contrast": (0.8, 1.2), "saturation": (0.8, 1.2), "hue": (-0.1, 0.1)}
_ADJUST = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def generate_depth_map(calib_dir: Path, velo_path: Path, cam: int) -> np.ndarray:
    """Lidar scan -> (H, W) depth in camera ``cam``, as the reference computes it: the calibration read for each
    scan, points behind the lidar dropped, pixels round(u) - 1, round(v) - 1, and where several points land on
    one pixel the smallest depth, found for each such pixel by a search over all the points."""
    cam2cam = read_calib_file(calib_dir / "calib_cam_to_cam.txt")
    velo2cam = read_calib_file(calib_dir / "calib_velo_to_cam.txt")
    velo2cam = np.vstack((np.hstack((velo2cam["R"].reshape(3, 3), velo2cam["T"][..., None])), [0, 0, 0, 1.0]))
    height, width = cam2cam["S_rect_02"][::-1].astype(np.int32)
    rect = np.eye(4)
    rect[:3, :3] = cam2cam["R_rect_00"].reshape(3, 3)
    P_velo2im = cam2cam[f"P_rect_0{cam}"].reshape(3, 4) @ rect @ velo2cam
    velo = np.fromfile(velo_path, dtype=np.float32).reshape(-1, 4)
    velo[:, 3] = 1.0
    velo = velo[velo[:, 0] >= 0, :]
    points = np.dot(P_velo2im, velo.T).T
    points[:, :2] = points[:, :2] / points[:, 2][..., None]
    points[:, 0] = np.round(points[:, 0]) - 1
    points[:, 1] = np.round(points[:, 1]) - 1
    inside = (points[:, 0] >= 0) & (points[:, 1] >= 0) & (points[:, 0] < width) & (points[:, 1] < height)
    points = points[inside, :]
    depth = np.zeros((height, width))
    depth[points[:, 1].astype(int), points[:, 0].astype(int)] = points[:, 2]
    flat = points[:, 1].astype(int) * width + points[:, 0].astype(int)
    for pixel in [index for index, count in Counter(flat).items() if count > 1]:
        same = np.where(flat == pixel)[0]
        depth[int(points[same[0], 1]), int(points[same[0], 0])] = points[same, 2].min()
    depth[depth < 0] = 0
    return depth


def pil_loader(path: Path) -> Image.Image:
    with open(path, "rb") as handle, Image.open(handle) as image:
        return image.convert("RGB")


class ReferenceKITTIRaw(torch.utils.data.Dataset):
    """The reference's KITTIRAWDataset: samples as dicts keyed by ("color", frame, scale), ("K", scale) ..."""

    def __init__(self, data_path: Path, filenames: list[str], height: int, width: int, frame_idxs, num_scales: int,
                 is_train: bool, img_ext: str = ".jpg") -> None:
        self.data_path, self.filenames, self.img_ext = Path(data_path), filenames, img_ext
        self.height, self.width, self.num_scales = height, width, num_scales
        self.frame_idxs, self.is_train = list(frame_idxs), is_train
        self.to_tensor = transforms.ToTensor()
        # ANTIALIAS in the reference's Pillow; it was always LANCZOS.
        self.resize = {i: transforms.Resize((height // 2**i, width // 2**i),
                                            interpolation=transforms.InterpolationMode.LANCZOS)
                       for i in range(num_scales)}
        folder, frame, side = filenames[0].split()
        self.load_depth = self._velodyne(folder, int(frame)).is_file()

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int) -> dict:
        inputs = {}
        do_color_aug = self.is_train and random.random() > 0.5
        do_flip = self.is_train and random.random() > 0.5
        folder, frame, side = self.filenames[index].split()
        frame = int(frame)
        for i in self.frame_idxs:
            inputs[("color", i, -1)] = self.get_color(folder, frame + i, side, do_flip)
        for scale in range(self.num_scales):
            K = KITTI_K.copy()
            K[0, :] *= self.width // (2 ** scale)
            K[1, :] *= self.height // (2 ** scale)
            inputs[("K", scale)] = torch.from_numpy(K)
            inputs[("inv_K", scale)] = torch.from_numpy(np.linalg.pinv(K))
        color_aug = self._jitter() if do_color_aug else (lambda x: x)
        self.preprocess(inputs, color_aug)
        for i in self.frame_idxs:
            del inputs[("color", i, -1)]
            del inputs[("color_aug", i, -1)]
        if self.load_depth:
            depth = generate_depth_map(self.data_path / folder.split("/")[0], self._velodyne(folder, frame),
                                       SIDE_MAP[side])
            depth = nearest_resize(depth, FULL_RES_SHAPE[1], FULL_RES_SHAPE[0], flip=do_flip)
            inputs["depth_gt"] = torch.from_numpy(np.expand_dims(depth, 0).astype(np.float32))
        return inputs

    def _jitter(self):
        """One jitter per sample, its four operations in a random order (the old ColorJitter.get_params)."""
        order, *factors = transforms.ColorJitter.get_params(*(list(v) for v in JITTER.values()))

        def apply(image: Image.Image) -> Image.Image:
            for operation in order:
                image = _ADJUST[operation](image, factors[operation])
            return image
        return apply

    def preprocess(self, inputs: dict, color_aug) -> None:
        for key in list(inputs):
            if key[0] == "color":
                name, frame, _ = key
                for i in range(self.num_scales):
                    inputs[(name, frame, i)] = self.resize[i](inputs[(name, frame, i - 1)])
        for key in list(inputs):
            if key[0] == "color":
                name, frame, i = key
                image = inputs[key]
                inputs[key] = self.to_tensor(image)
                inputs[(name + "_aug", frame, i)] = self.to_tensor(color_aug(image))

    def get_color(self, folder: str, frame: int, side: str, do_flip: bool) -> Image.Image:
        path = self.data_path / folder / f"image_0{SIDE_MAP[side]}" / "data" / f"{frame:010d}{self.img_ext}"
        color = pil_loader(path)
        return color.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if do_flip else color

    def _velodyne(self, folder: str, frame: int) -> Path:
        return self.data_path / folder / "velodyne_points" / "data" / f"{frame:010d}.bin"


class ReferenceResnetEncoder(nn.Module):
    """torchvision's ResNet-18 (conv1 taking 3N channels for N stacked images) returning its five feature maps."""

    def __init__(self, num_input_images: int = 1) -> None:
        super().__init__()
        self.num_ch_enc = np.array([64, 64, 128, 256, 512])
        self.encoder = models.resnet18(weights=None)
        if num_input_images > 1:
            self.encoder.conv1 = nn.Conv2d(3 * num_input_images, 64, 7, 2, 3, bias=False)
            nn.init.kaiming_normal_(self.encoder.conv1.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, input_image: torch.Tensor) -> list[torch.Tensor]:
        e = self.encoder
        features = [e.relu(e.bn1(e.conv1((input_image - 0.45) / 0.225)))]
        features.append(e.layer1(e.maxpool(features[-1])))
        for layer in (e.layer2, e.layer3, e.layer4):
            features.append(layer(features[-1]))
        return features


def disp_to_depth(disp, min_depth, max_depth):
    min_disp, max_disp = 1 / max_depth, 1 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1 / scaled_disp


def rot_from_axisangle(vec: torch.Tensor) -> torch.Tensor:
    """(B, 1, 3) axis-angle -> (B, 4, 4), Rodrigues' formula entry by entry."""
    angle = torch.norm(vec, 2, 2, True)
    axis = vec / (angle + 1e-7)
    ca, sa = torch.cos(angle), torch.sin(angle)
    C = 1 - ca
    x, y, z = axis[..., 0].unsqueeze(1), axis[..., 1].unsqueeze(1), axis[..., 2].unsqueeze(1)
    xs, ys, zs, xC, yC, zC = x * sa, y * sa, z * sa, x * C, y * C, z * C
    xyC, yzC, zxC = x * yC, y * zC, z * xC
    rot = torch.zeros((vec.shape[0], 4, 4), device=vec.device)
    entries = {(0, 0): x * xC + ca, (0, 1): xyC - zs, (0, 2): zxC + ys, (1, 0): xyC + zs, (1, 1): y * yC + ca,
               (1, 2): yzC - xs, (2, 0): zxC - ys, (2, 1): yzC + xs, (2, 2): z * zC + ca}
    for (row, col), value in entries.items():
        rot[:, row, col] = torch.squeeze(value)
    rot[:, 3, 3] = 1
    return rot


def transformation_from_parameters(axisangle, translation, invert=False):
    R = rot_from_axisangle(axisangle)
    t = translation.clone()
    if invert:
        R = R.transpose(1, 2)
        t *= -1
    T = torch.zeros(t.shape[0], 4, 4, device=t.device)
    T[:, 0, 0] = T[:, 1, 1] = T[:, 2, 2] = T[:, 3, 3] = 1
    T[:, :3, 3, None] = t.contiguous().view(-1, 3, 1)
    return torch.matmul(R, T) if invert else torch.matmul(T, R)


class BackprojectDepth(nn.Module):
    def __init__(self, batch_size: int, height: int, width: int) -> None:
        super().__init__()
        self.batch_size, self.height, self.width = batch_size, height, width
        xs, ys = np.meshgrid(range(width), range(height), indexing="xy")
        coords = torch.from_numpy(np.stack([xs, ys], 0).astype(np.float32))
        self.ones = nn.Parameter(torch.ones(batch_size, 1, height * width), requires_grad=False)
        pix = torch.unsqueeze(torch.stack([coords[0].view(-1), coords[1].view(-1)], 0), 0)
        self.pix_coords = nn.Parameter(torch.cat([pix.repeat(batch_size, 1, 1), self.ones], 1), requires_grad=False)

    def forward(self, depth, inv_K):
        cam_points = torch.matmul(inv_K[:, :3, :3], self.pix_coords)
        cam_points = depth.view(self.batch_size, 1, -1) * cam_points
        return torch.cat([cam_points, self.ones], 1)


class Project3D(nn.Module):
    def __init__(self, batch_size: int, height: int, width: int, eps: float = 1e-7) -> None:
        super().__init__()
        self.batch_size, self.height, self.width, self.eps = batch_size, height, width, eps

    def forward(self, points, K, T):
        P = torch.matmul(K, T)[:, :3, :]
        cam_points = torch.matmul(P, points)
        pix_coords = cam_points[:, :2, :] / (cam_points[:, 2, :].unsqueeze(1) + self.eps)
        pix_coords = pix_coords.view(self.batch_size, 2, self.height, self.width).permute(0, 2, 3, 1)
        pix_coords[..., 0] /= self.width - 1
        pix_coords[..., 1] /= self.height - 1
        return (pix_coords - 0.5) * 2


class SSIM(nn.Module):
    """Per-pixel SSIM dissimilarity from 3x3 average pooling of reflection-padded images (autograd backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.mu_x_pool, self.mu_y_pool = nn.AvgPool2d(3, 1), nn.AvgPool2d(3, 1)
        self.sig_x_pool, self.sig_y_pool, self.sig_xy_pool = nn.AvgPool2d(3, 1), nn.AvgPool2d(3, 1), nn.AvgPool2d(3, 1)
        self.refl = nn.ReflectionPad2d(1)
        self.C1, self.C2 = 0.01 ** 2, 0.03 ** 2

    def forward(self, x, y):
        x, y = self.refl(x), self.refl(y)
        mu_x, mu_y = self.mu_x_pool(x), self.mu_y_pool(y)
        sigma_x = self.sig_x_pool(x ** 2) - mu_x ** 2
        sigma_y = self.sig_y_pool(y ** 2) - mu_y ** 2
        sigma_xy = self.sig_xy_pool(x * y) - mu_x * mu_y
        n = (2 * mu_x * mu_y + self.C1) * (2 * sigma_xy + self.C2)
        d = (mu_x ** 2 + mu_y ** 2 + self.C1) * (sigma_x + sigma_y + self.C2)
        return torch.clamp((1 - n / d) / 2, 0, 1)


def get_smooth_loss(disp, img):
    grad_disp_x = torch.abs(disp[:, :, :, :-1] - disp[:, :, :, 1:])
    grad_disp_y = torch.abs(disp[:, :, :-1, :] - disp[:, :, 1:, :])
    grad_img_x = torch.mean(torch.abs(img[:, :, :, :-1] - img[:, :, :, 1:]), 1, keepdim=True)
    grad_img_y = torch.mean(torch.abs(img[:, :, :-1, :] - img[:, :, 1:, :]), 1, keepdim=True)
    grad_disp_x *= torch.exp(-grad_img_x)
    grad_disp_y *= torch.exp(-grad_img_y)
    return grad_disp_x.mean() + grad_disp_y.mean()


def compute_depth_errors(gt, pred) -> list[torch.Tensor]:
    thresh = torch.max((gt / pred), (pred / gt))
    a1, a2, a3 = ((thresh < 1.25 ** k).float().mean() for k in (1, 2, 3))
    rmse = torch.sqrt(((gt - pred) ** 2).mean())
    rmse_log = torch.sqrt(((torch.log(gt) - torch.log(pred)) ** 2).mean())
    abs_rel = torch.mean(torch.abs(gt - pred) / gt)
    sq_rel = torch.mean((gt - pred) ** 2 / gt)
    return [abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3]


def normalize_image(x: torch.Tensor) -> torch.Tensor:
    """Rescale to [0, 1] by its own min and max (the reference's disparity image)."""
    ma, mi = float(x.max().cpu().data), float(x.min().cpu().data)
    d = ma - mi if ma != mi else 1e5
    return (x - mi) / d
