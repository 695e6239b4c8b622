"""The ``md2 evaluate-depth`` job: the reference's evaluate_depth.py procedure from settings to results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from md2.core.evaluation.depth import (
    DepthScores,
    load_external_disparities,
    predict_disparities,
    save_disparities,
    score_disparities,
    write_benchmark_pngs,
)
from md2.core.inference import STEREO_SCALE_FACTOR
from md2.errors import DataError, UsageError
from md2.validate import require_finite

EVAL_SPLITS = ("eigen", "eigen_benchmark", "benchmark")
"""The official evaluation splits; any other name is a custom split folder (test_files.txt, gt_depths.npz)."""

Progress = Callable[[str, int], Callable[[int], None]]
"""``progress(stage, total)`` -> ``advance(n)``: how the job reports its stages to a user interface."""


@dataclass(frozen=True)
class DepthEvalSettings:
    """Every option of a depth evaluation (the reference's names). Exactly one of eval_mono / eval_stereo."""

    eval_mono: bool = False
    eval_stereo: bool = False
    eval_split: str = "eigen"
    data_path: Path = Path("kitti_data")
    splits_dir: Path | None = None
    load_weights_folder: Path | None = None
    ext_disp_to_eval: Path | None = None
    disable_median_scaling: bool = False
    pred_depth_scale_factor: float = 1.0
    post_process: bool = False
    eval_eigen_to_benchmark: bool = False
    save_pred_disps: bool = False
    no_eval: bool = False
    eval_out_dir: Path | None = None
    png: bool = False
    num_layers: int | None = None
    min_depth: float = 0.1
    max_depth: float = 100.0
    batch_size: int = 16
    num_workers: int = 0
    device: str = "auto"
    gt_dir: Path | None = None
    gt_scale: float = 256.0
    eigen_crop: bool = False
    engine: str = "auto"

    @property
    def median_scaling(self) -> bool:
        """Mono models are scale-free: median scaling, unless disabled. Stereo models never (as the reference)."""
        return not (self.eval_stereo or self.disable_median_scaling)

    @property
    def scale_factor(self) -> float:
        """Depth multiplier: 5.4 for stereo models (0.1 learnt baseline vs KITTI's 0.54 m), else the option."""
        return STEREO_SCALE_FACTOR if self.eval_stereo else self.pred_depth_scale_factor

    @property
    def out_dir(self) -> Path:
        """Where saved disparities and benchmark PNGs go: --eval-out-dir, else the weights folder, else '.'."""
        if self.eval_out_dir is not None:
            return Path(self.eval_out_dir).expanduser()
        if self.load_weights_folder is not None and self.ext_disp_to_eval is None:
            return Path(self.load_weights_folder).expanduser()
        return Path(".")

    def as_dict(self) -> dict:
        """Every setting, plus the effective median scaling, scale factor and output folder."""
        return {**asdict(self), "median_scaling": self.median_scaling, "scale_factor": self.scale_factor,
                "out_dir": self.out_dir}


@dataclass
class DepthEvaluation:
    """What a run produced. ``scores`` is None with --no-eval and for the benchmark split."""

    settings: DepthEvalSettings
    num_predictions: int = 0
    scores: DepthScores | None = None
    saved_disps: Path | None = None
    benchmark_dir: Path | None = None
    model: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def check_settings(settings: DepthEvalSettings) -> None:
    """Usage errors found before any work: mono xor stereo, a source of predictions, sane numbers."""
    if settings.eval_mono == settings.eval_stereo:
        raise UsageError("choose mono or stereo evaluation: give exactly one of --eval-mono and --eval-stereo")
    if settings.ext_disp_to_eval is None and settings.load_weights_folder is None:
        raise UsageError("give a model (--load-weights-folder DIR or --model NAME) or --ext-disp-to-eval FILE.npy")
    if settings.eval_eigen_to_benchmark and settings.ext_disp_to_eval is None:
        raise UsageError("--eval-eigen-to-benchmark re-indexes --ext-disp-to-eval disparities; give that file too")
    if not 0 < settings.min_depth < settings.max_depth:
        raise UsageError(f"need 0 < --min-depth < --max-depth, got {settings.min_depth} and {settings.max_depth}")
    require_finite(settings.pred_depth_scale_factor, "--pred-depth-scale-factor")
    require_finite(settings.min_depth, "--min-depth")
    require_finite(settings.max_depth, "--max-depth")
    from md2.core.engine import ENGINES

    if settings.engine not in ENGINES:
        raise UsageError(f"--engine {settings.engine!r} is not one of {', '.join(ENGINES)}")
    if settings.pred_depth_scale_factor <= 0:
        raise UsageError(f"--pred-depth-scale-factor must be positive, got {settings.pred_depth_scale_factor}")
    if settings.gt_dir is None and (settings.eigen_crop or settings.gt_scale != 256.0):
        raise UsageError("--eigen-crop and --gt-scale are for --gt-dir (a split's crop follows its name)")
    if settings.gt_dir is not None and settings.eval_eigen_to_benchmark:
        raise UsageError("--eval-eigen-to-benchmark re-indexes a KITTI split; it does not apply to --gt-dir")
    if not settings.gt_scale > 0 or not np.isfinite(settings.gt_scale):
        raise UsageError(f"--gt-scale must be a positive number, got {settings.gt_scale}")


def run_depth_evaluation(settings: DepthEvalSettings, progress: Progress | None = None) -> DepthEvaluation:
    """Predict (or load) disparities, optionally save them, then score them or write benchmark PNGs."""
    from md2.data.splits import resolve_split_dir

    check_settings(settings)
    result = DepthEvaluation(settings)
    if settings.gt_dir is not None:
        return _evaluate_gt_dir(settings, result, progress)
    if settings.ext_disp_to_eval is not None:
        disps = _external_disparities(settings)
    else:
        split_dir = resolve_split_dir(settings.eval_split, settings.splits_dir)
        disps = _model_disparities(settings, split_dir, result, progress)
    result.num_predictions = len(disps)

    if settings.save_pred_disps:
        result.saved_disps = save_disparities(disps, settings.out_dir, settings.eval_split)
    if settings.no_eval:
        return result
    if settings.eval_split == "benchmark":
        folder = settings.out_dir / "benchmark_predictions"
        result.benchmark_dir = folder
        write_benchmark_pngs(disps, folder, on_image=_stage(progress, "benchmark PNGs", len(disps)))
        return result

    split_dir = resolve_split_dir(settings.eval_split, settings.splits_dir)
    gt_depths = load_split_ground_truth(split_dir, settings)
    if len(disps) != len(gt_depths):
        source = settings.ext_disp_to_eval or "the model"
        raise DataError(f"{len(disps)} disparities from {source} but split {settings.eval_split!r} has "
                        f"{len(gt_depths)} ground-truth depth maps ({split_dir / 'gt_depths.npz'})")
    result.scores = score_disparities(disps, gt_depths, eigen_crop=settings.eval_split == "eigen",
                                      median_scaling=settings.median_scaling, scale_factor=settings.scale_factor,
                                      on_image=_stage(progress, "evaluate", len(disps)),
                                      names=_split_lines(split_dir, len(gt_depths)))
    return result


def _evaluate_gt_dir(settings: DepthEvalSettings, result: DepthEvaluation,
                     progress: Progress | None) -> DepthEvaluation:
    """--gt-dir: the folder's images (or --ext-disp-to-eval, in their sorted order) against their depth PNGs,
    scored as a split: the same metrics, median scaling, and Garg's crop with --eigen-crop."""
    from md2.core.evaluation.gt_folder import find_pairs, read_gt_depth

    pairs = find_pairs(settings.gt_dir)
    if settings.ext_disp_to_eval is not None:
        disps = _external_disparities(settings)
    else:
        disps = _model_disparities(settings, None, result, progress, pairs=pairs)
    result.num_predictions = len(disps)
    if settings.save_pred_disps:
        result.saved_disps = save_disparities(disps, settings.out_dir, Path(settings.gt_dir).name)
    if settings.no_eval:
        return result
    if len(disps) != len(pairs):
        raise DataError(f"{len(disps)} disparities from {settings.ext_disp_to_eval} but --gt-dir "
                        f"{settings.gt_dir} holds {len(pairs)} images with ground truth")
    gt_depths = [read_gt_depth(pair.depth, settings.gt_scale) for pair in pairs]
    result.scores = score_disparities(disps, gt_depths, eigen_crop=settings.eigen_crop,
                                      median_scaling=settings.median_scaling, scale_factor=settings.scale_factor,
                                      on_image=_stage(progress, "evaluate", len(disps)))
    return result
def _split_lines(split_dir: Path, count: int) -> list[str] | None:
    """The split's test_files.txt lines (to name an image in errors) when there is one line per map."""
    try:
        lines = [line.strip() for line in (split_dir / "test_files.txt").read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return None
    return lines if len(lines) == count else None


def load_split_ground_truth(split_dir: Path, settings: DepthEvalSettings) -> list[np.ndarray]:
    """The split's ``gt_depths.npz`` as float32 maps; when it is missing, the error says which ``md2 export-gt``
    makes it. The reference's ground truth is always float32 (it casts the lidar maps), and its metrics'
    arithmetic follows that dtype, so any other stored dtype is cast to it."""
    from md2.data.groundtruth import load_gt_depths

    path = split_dir / "gt_depths.npz"
    if not path.is_file():
        command = f"md2 export-gt --data-path {settings.data_path} --split {settings.eval_split}"
        if settings.splits_dir is not None:
            command += f" --splits-dir {settings.splits_dir}"
        raise DataError(f"no ground truth at {path}: make it with `{command}`")
    return [np.asarray(depth, dtype=np.float32) for depth in load_gt_depths(path)]


def _external_disparities(settings: DepthEvalSettings) -> np.ndarray:
    ids = None
    if settings.eval_eigen_to_benchmark:
        from md2.data.splits import resolve_split_dir

        ids_path = resolve_split_dir("benchmark", settings.splits_dir) / "eigen_to_benchmark_ids.npy"
        try:
            ids = np.load(ids_path, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"missing {ids_path} (needed by --eval-eigen-to-benchmark)") from None
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read {ids_path}: {error}") from None
    return load_external_disparities(settings.ext_disp_to_eval, ids)


def _model_disparities(settings: DepthEvalSettings, split_dir: Path | None, result: DepthEvaluation,
                       progress: Progress | None, pairs: list | None = None) -> np.ndarray:
    from md2.core.checkpoint import read_model_meta
    from md2.core.inference import DepthPredictor
    from md2.core.evaluation.datasets import depth_test_dataset
    from md2.data.sample import collate_samples

    folder = Path(settings.load_weights_folder).expanduser()
    meta = read_model_meta(folder)
    height, width, use_stereo = meta.height, meta.width, meta.use_stereo
    if pairs is not None:  # --gt-dir
        from md2.core.evaluation.gt_folder import FolderImages

        dataset = FolderImages(pairs, height, width)
    else:
        dataset = depth_test_dataset(settings.eval_split, split_dir, settings.data_path, height, width, settings.png)
    # --num-layers is torch's loader's check against the checkpoint (the export reads the checkpoint's own depth)
    same_depth = settings.num_layers in (None, meta.num_layers)
    predictor = _onnx_predictor(settings, folder, result.warnings) if same_depth else None
    if predictor is None:  # torch, the reference's fp32 path
        predictor = DepthPredictor.from_folder(folder, device=settings.device, num_layers=settings.num_layers)
    predictor.min_depth, predictor.max_depth = settings.min_depth, settings.max_depth
    result.model = {"weights_folder": folder, "height": height, "width": width, "use_stereo": bool(use_stereo),
                    "device": str(predictor.device), "engine": getattr(predictor, "engine", "torch")}
    if use_stereo and settings.eval_mono:
        result.warnings.append("this model was trained with stereo pairs; the reference evaluates such models "
                               "with --eval-stereo")
    return predict_disparities(predictor, dataset, settings.batch_size, settings.num_workers,
                               settings.post_process, collate_fn=collate_samples,
                               on_batch=_stage(progress, "predict", len(dataset)))


def _onnx_predictor(settings: DepthEvalSettings, folder: Path, notes: list[str]):
    """The network on onnxruntime when ``settings.engine`` picks it (md2.core.engine.choose_engine), else None;
    ``auto`` falls back to torch with a note where onnxruntime cannot run it."""
    from md2.core.engine import EngineUnavailable, choose_engine
    from md2.core.exported import onnx_predictor

    if choose_engine(settings.engine, settings.device, "auto", notes.append) != "onnxruntime":
        return None
    try:
        return onnx_predictor(folder, "cpu" if settings.engine == "auto" else settings.device)
    except EngineUnavailable as error:
        if settings.engine != "auto":
            raise
        if error.noted:
            notes.append(f"{error}; the network runs on torch")
        return None


def _stage(progress: Progress | None, name: str, total: int) -> Callable[[int], None] | None:
    return None if progress is None else progress(name, total)
