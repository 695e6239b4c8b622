"""KITTI depth evaluation, step for step as the reference's evaluate_depth.py (its numbers, md2's errors).

Disparities (N, h, w) come from a model (:func:`predict_disparities`) or a .npy file
(:func:`load_external_disparities`); :func:`score_disparities` compares them with the split's ground truth;
:func:`write_benchmark_pngs` encodes them for the KITTI server. :mod:`md2.core.evaluation.depth_job` strings
the steps together for ``md2 evaluate-depth``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from md2.core.inference import STEREO_SCALE_FACTOR, DepthPredictor
from md2.core.evaluation.datasets import evaluation_loader, worker_batches
from md2.core.evaluation.report import DEPTH_METRICS
from md2.core.metrics import (
    MAX_EVAL_DEPTH,
    MIN_EVAL_DEPTH,
    compute_depth_errors,
    eigen_crop_mask,
    median_scale,
    post_process_disparity,
)
from md2.errors import DataError
from md2.files import atomic_path, make_folder

BENCHMARK_SIZE = (1216, 352)
"""(width, height) of the KITTI depth benchmark's test images."""


@dataclass(frozen=True)
class DepthScores:
    """The result of scoring N disparities against N ground-truth maps.

    metrics: the seven metrics (``abs_rel`` ... ``a3``), each the mean over images.
    per_image: (N, 7) float64, one row of metrics per image, in :data:`DEPTH_METRICS` order.
    ratios: (N,) median-scaling ratios gt/pred (mono), or None when median scaling was off.
    """

    metrics: dict[str, float]
    per_image: np.ndarray
    ratios: np.ndarray | None

    @property
    def num_images(self) -> int:
        return int(self.per_image.shape[0])

    @property
    def ratio_median(self) -> float | None:
        return None if self.ratios is None else float(np.median(self.ratios))

    @property
    def ratio_std(self) -> float | None:
        """std(ratios / median): the spread the reference prints beside the median."""
        if self.ratios is None:
            return None
        return float(np.std(self.ratios / np.median(self.ratios)))


# -- predictions -------------------------------------------------------------------------------------------
def predict_disparities(predictor: DepthPredictor, dataset: Dataset, batch_size: int = 16, num_workers: int = 0,
                        post_process: bool = False, collate_fn: Callable | None = None,
                        on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Scaled disparities (disp_to_depth's, 1 / depth in network units) of every sample's frame 0.

    ``dataset`` yields samples whose ``color[0][0]`` is (3, H, W) at the predictor's size; ``collate_fn``
    (default :func:`md2.data.sample.collate_samples`) stacks them into batches with ``color[0][0]``
    (B, 3, H, W). With ``post_process`` each batch and its
    mirror image go through the network in one pass (as the reference) and are combined by
    :func:`post_process_disparity`; the result is then float64, as the reference's numpy masks make it.

    Returns:
        (N, H, W) float32 (float64 with ``post_process``), in the dataset's order.
    """
    on_cuda = str(predictor.device).startswith("cuda")  # a torch.device, or onnxruntime's "cpu" / "cuda:N"
    loader = evaluation_loader(dataset, batch_size, num_workers, on_cuda, collate_fn)
    chunks = []
    for batch in worker_batches(loader):
        images = batch.color[0][0]
        if post_process:
            images = torch.cat((images, torch.flip(images, [3])), 0)
        disp = predictor.scaled_disparity(predictor.disparity(images))[:, 0].float().cpu().numpy()
        if post_process:
            half = disp.shape[0] // 2
            disp = post_process_disparity(disp[:half], disp[half:, :, ::-1])
        chunks.append(disp)
        if on_batch is not None:
            on_batch(images.shape[0] // (2 if post_process else 1))
    if not chunks:
        raise DataError("the split lists no images to predict")
    return np.concatenate(chunks)


def load_external_disparities(path: Path, reindex: np.ndarray | None = None) -> np.ndarray:
    """Disparities (N, h, w) from a .npy file, optionally re-indexed (``disps[reindex]``).

    (N, 1, h, w) is accepted and squeezed. The dtype is kept (float16 becomes float32 for OpenCV).
    """
    path = Path(path).expanduser()
    try:
        disps = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"no such disparity file: {path}") from None
    except (OSError, ValueError, EOFError) as error:  # EOFError: an empty or truncated file
        raise DataError(f"cannot read disparities from {path}: {error or 'the file is empty'}") from None
    if disps.ndim == 4 and disps.shape[1] == 1:
        disps = disps[:, 0]
    if disps.ndim != 3 or not np.issubdtype(disps.dtype, np.floating):
        raise DataError(f"{path} must hold float disparities of shape (N, h, w), got {disps.dtype} {disps.shape}")
    if disps.dtype == np.float16:
        disps = disps.astype(np.float32)
    if reindex is not None:
        if reindex.size and (reindex.max() >= len(disps) or reindex.min() < -len(disps)):
            raise DataError(f"{path} holds {len(disps)} disparities but the eigen-to-benchmark ids reach "
                            f"index {int(reindex.max())} (it must hold the {_needed(reindex)} eigen test images)")
        disps = disps[reindex]
    return disps


def _needed(ids: np.ndarray) -> str:
    return "697" if int(ids.max()) < 697 else f"{int(ids.max()) + 1}+"


def save_disparities(disps: np.ndarray, out_dir: Path, split: str) -> Path:
    """Write ``disps_<split>_split.npy`` into ``out_dir`` (created if needed) and return its path."""
    out_dir = _make_dir(out_dir)
    path = out_dir / f"disps_{split}_split.npy"
    with atomic_path(path) as temporary:
        np.save(temporary, disps)
    return path


def write_benchmark_pngs(disps: np.ndarray, out_dir: Path,
                         on_image: Callable[[int], None] | None = None) -> list[Path]:
    """Encode disparities for the KITTI depth-prediction server: ``0000000000.png`` ... in ``out_dir``.

    Each disparity is resized (OpenCV bilinear) to 1216 x 352, depth = 5.4 / disparity clipped to [0, 80] m,
    stored as uint16 of depth x 256 (truncated, as the reference's ``np.uint16``).
    """
    out_dir = _make_dir(out_dir)
    written = []
    for index, disp in enumerate(disps):
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.clip(STEREO_SCALE_FACTOR / cv2.resize(disp, BENCHMARK_SIZE), 0, MAX_EVAL_DEPTH)
        encoded = (depth * 256).astype(np.uint16)
        path = out_dir / f"{index:010d}.png"
        with atomic_path(path) as temporary:
            if not cv2.imwrite(str(temporary), encoded):
                raise DataError(f"cannot write {path}")
        written.append(path)
        if on_image is not None:
            on_image(1)
    return written


def _make_dir(folder: Path) -> Path:
    folder = Path(folder).expanduser()
    try:
        make_folder(folder)
    except OSError as error:
        raise DataError(f"cannot create folder {folder}: {error.strerror or error}") from None
    return folder


# -- scoring -----------------------------------------------------------------------------------------------
def score_disparities(disps: np.ndarray | Sequence[np.ndarray], gt_depths: Sequence[np.ndarray],
                      eigen_crop: bool, median_scaling: bool, scale_factor: float = 1.0,
                      on_image: Callable[[int], None] | None = None,
                      names: Sequence[str] | None = None) -> DepthScores:
    """Score disparities against ground truth as the reference does, image by image.

    Args:
        disps: N disparities (h, w) at any size (float32 from a model; other float dtypes are kept).
        gt_depths: N ground-truth depth maps (H_i, W_i) float32 metres, 0 where unknown.
        eigen_crop: the eigen split's evaluation: gt in (1e-3, 80) m inside Garg's crop; else gt > 0.
        median_scaling: multiply each image's depths by median(gt) / median(pred) (mono models).
        scale_factor: multiply depths first (5.4 for stereo models, whose baseline was 0.1).
        names: what to call each image in errors (its split line), else its index.
    Returns:
        :class:`DepthScores`; metrics are means over images of per-image metrics, not over pixels.
    Raises:
        DataError naming the image whose metrics are not finite (a ground-truth map without a valid pixel,
        disparities that are all zero or NaN): the reference would print NaN means as if they were results.
    """
    if len(disps) != len(gt_depths):
        raise DataError(f"{len(disps)} predictions for {len(gt_depths)} ground-truth depth maps")
    rows, ratios = [], []
    masks: dict[tuple[int, int], np.ndarray] = {}  # the crop depends only on the size: one per KITTI size
    for index, (disp, gt) in enumerate(zip(disps, gt_depths)):
        with np.errstate(invalid="ignore", over="ignore"), warnings.catch_warnings():
            # An image without a valid pixel, or with zero disparities, makes numpy warn ("Mean of empty
            # slice", "invalid value") on its way to NaN: the NaN is refused below with one line instead.
            warnings.simplefilter("ignore", RuntimeWarning)
            row, ratio = score_image(disp, gt, eigen_crop, median_scaling, scale_factor, masks)
        if not np.isfinite(row).all():
            raise DataError(_why_not_finite(index, names, len(disps), disp, gt, eigen_crop, masks))
        rows.append(row)
        ratios.append(ratio)
        if on_image is not None:
            on_image(1)
    # As the reference: a (N, 7) array of the per-image tuples (float64), averaged over axis 0.
    per_image = np.array(rows, dtype=np.float64).reshape(len(rows), len(DEPTH_METRICS))
    means = per_image.mean(0)
    metrics = {name: float(value) for name, value in zip(DEPTH_METRICS, means)}
    return DepthScores(metrics, per_image, np.array(ratios) if median_scaling else None)


def _why_not_finite(index: int, names: Sequence[str] | None, count: int, disp: np.ndarray, gt: np.ndarray,
                    eigen_crop: bool, masks: dict | None) -> str:
    """The one line saying which image has no finite metrics, and why."""
    where = f"image {index} of {count}" + (f" ({names[index]})" if names is not None and index < len(names) else "")
    if not _valid_mask(np.asarray(gt), eigen_crop, masks).any():
        inside = " inside the Eigen crop, between 1 mm and 80 m" if eigen_crop else ""
        return f"{where}: its ground-truth depth map has no valid pixel{inside} (all zero or NaN); nothing to score"
    with np.errstate(invalid="ignore"):
        finite = np.asarray(disp)[np.isfinite(disp)]
    shown = ("none finite" if not finite.size else f"all {finite.min():.3g}" if finite.min() == finite.max()
             else f"between {finite.min():.3g} and {finite.max():.3g}")
    return (f"{where}: its metrics are not finite: the predicted disparities are zero, negative or not finite "
            f"({shown}); no result is reported")


def score_image(disp: np.ndarray, gt: np.ndarray, eigen_crop: bool, median_scaling: bool,
                scale_factor: float = 1.0, masks: dict | None = None) -> tuple[tuple[float, ...], object]:
    """One image's seven metrics and its median-scaling ratio (None without median scaling).

    Dtypes follow the reference on purpose: OpenCV resizes the disparity in its own dtype, depth = 1 / disp
    stays in it, ratios and clamps are applied in place, so float32 predictions give the reference's float32
    arithmetic bit for bit.
    """
    gt = np.asarray(gt)
    gt_height, gt_width = gt.shape[:2]
    resized = cv2.resize(np.ascontiguousarray(disp), (gt_width, gt_height))
    with np.errstate(divide="ignore", invalid="ignore"):
        pred_depth = 1 / resized
    mask = _valid_mask(gt, eigen_crop, masks)
    pred = pred_depth[mask]
    truth = gt[mask]
    pred *= scale_factor
    ratio = None
    if median_scaling:
        pred, ratio = median_scale(truth, pred)
        # Kept in the dtype the reference's ratio had (float32 for float32 predictions), so the ratios'
        # median and std are computed as the reference computed them.
        ratio = np.result_type(truth, pred).type(ratio)
    pred[pred < MIN_EVAL_DEPTH] = MIN_EVAL_DEPTH
    pred[pred > MAX_EVAL_DEPTH] = MAX_EVAL_DEPTH
    return tuple(compute_depth_errors(truth, pred)), ratio


def _valid_mask(gt: np.ndarray, eigen_crop: bool, masks: dict | None) -> np.ndarray:
    if not eigen_crop:
        return gt > 0
    shape = gt.shape[:2]
    crop = masks.get(shape) if masks is not None else None
    if crop is None:
        crop = eigen_crop_mask(*shape)
        if masks is not None:
            masks[shape] = crop
    return np.logical_and(np.logical_and(gt > MIN_EVAL_DEPTH, gt < MAX_EVAL_DEPTH), crop)
