"""The evaluations' test images: frame 0 (and frame 1 for poses) at the model's size, no augmentation.

Every image is checked to exist before the first batch, so a missing file is one clear error instead of a
DataLoader worker's traceback.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

from md2.data.datasets.base import CAMERAS, FrameDataset
from md2.data.datasets.refs import FrameRef
from md2.data.kitti import KITTI_K, KITTIOdomDataset, KITTIRawDataset
from md2.data.sample import collate_samples
from md2.errors import DataError, worker_message


class BenchmarkTestImages(FrameDataset):
    """The KITTI depth benchmark's test images, ``DATA/image/0000000000.png`` ... (split lines "image N").

    ``DATA`` is ``depth_selection/test_depth_prediction_anonymous`` of the benchmark's download.
    """

    def __init__(self, data_path: Path | str, lines: Sequence, height: int, width: int,
                 img_ext: str = ".png") -> None:
        self.data_path = Path(data_path).expanduser()
        self.img_ext = img_ext
        super().__init__(lines, height, width, (0,), KITTI_K, num_scales=1, is_train=False, load_depth=False)

    def image_path(self, ref: FrameRef, frame: int, camera: int | None) -> Path:
        return self.data_path / ref.folder / f"{frame:010d}{self.img_ext}"


def read_test_lines(split_file: Path) -> list:
    """The lines of a split's test file (:class:`md2.data.splits.SplitLine`), at least one."""
    from md2.data.splits import read_split_file

    lines = read_split_file(split_file)
    if not lines:
        raise DataError(f"{split_file} lists no test images")
    return lines


def depth_test_dataset(split: str, split_dir: Path, data_path: Path, height: int, width: int,
                       png: bool = False) -> FrameDataset:
    """Frame 0 of every line of ``split_dir/test_files.txt`` at height x width (LANCZOS, as the reference)."""
    lines = read_test_lines(split_dir / "test_files.txt")
    ext = ".png" if png else ".jpg"
    if split == "benchmark":
        dataset: FrameDataset = BenchmarkTestImages(data_path, lines, height, width, img_ext=ext)
    else:
        dataset = KITTIRawDataset(data_path, lines, height, width, (0,), num_scales=1, is_train=False,
                                  img_ext=ext, load_depth=False)
    require_images(dataset, (0,))
    return dataset


def pose_test_dataset(split_file: Path, data_path: Path, height: int, width: int,
                      png: bool = False) -> KITTIOdomDataset:
    """Frames 0 and 1 of every line of an odometry test file ("9 0 l") at height x width."""
    lines = read_test_lines(split_file)
    dataset = KITTIOdomDataset(data_path, lines, height, width, (0, 1), num_scales=1, is_train=False,
                               img_ext=".png" if png else ".jpg", load_depth=False)
    require_images(dataset, (0, 1))
    return dataset


def require_images(dataset: FrameDataset, offsets: Sequence[int]) -> None:
    """DataError naming the first missing image (and how many are missing) unless every frame exists."""
    missing: list[Path] = []
    total = 0
    for ref in dataset.refs:
        camera = CAMERAS.get(ref.side) if ref.side is not None else None
        for offset in offsets:
            total += 1
            path = dataset.image_path(ref, ref.frame + offset, camera)
            if not path.is_file():
                missing.append(path)
    if not missing:
        return
    data_path = getattr(dataset, "data_path", "")
    hint = ""
    other = missing[0].with_suffix(".jpg" if missing[0].suffix == ".png" else ".png")
    if other.is_file():
        hint = " (the images are " + other.suffix + ": " + ("drop --png" if other.suffix == ".jpg" else "add --png") + ")"
    raise DataError(f"{len(missing)} of {total} test images are missing under {data_path}, "
                    f"first {missing[0]}{hint}")


def evaluation_loader(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool = False,
                collate_fn: Callable | None = None) -> DataLoader:
    """The dataset in order, in batches (the last one may be smaller), as the reference's evaluation loaders.

    Workers start from a fresh interpreter (forkserver where available), not as a fork of this process: by
    now it has run the network, and a fork of a process whose thread pools (OpenMP, OpenCV) hold locks can
    wait forever in its first tensor operation.
    """
    context = None
    if num_workers > 0:
        context = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=False, collate_fn=collate_fn or collate_samples,
                      multiprocessing_context=context)


def worker_batches(loader: Iterable) -> Iterator:
    """The batches of a DataLoader. A DataError raised in a worker process (a corrupt image) comes back from
    torch wrapped with the worker's traceback; it is re-raised with only its own message, one line."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except DataError as error:
            raise DataError(worker_message(str(error))) from None
        yield batch
