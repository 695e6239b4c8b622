"""Training and validation data of a run: split files -> datasets -> loaders with a resumable, sharded order.

The order of every epoch is a function of (seed, epoch) only and each sample's augmentation a function of
(seed, epoch, index) (``md2.data.augment.draw_augmentation``), so an interrupted epoch resumes with exactly
its remaining batches, whatever the number of loader workers.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from md2.core.train.config import TrainConfig
from md2.data.kitti import DATASETS
from md2.data.preflight import check_first_and_last
from md2.data.resize_cache import ResizeCache
from md2.data.sample import Batch, collate_samples
from md2.data.splits import read_split_file, split_file
from md2.data.video import VideoFolderDataset, frame_size, hold_out, list_frames, video_folders, video_samples
from md2.errors import DataError, MD2Error, worker_message

VAL_WORKERS = 2
"""Loader workers for validation: one batch is needed per log, so more would only hold prefetched batches."""
VAL_EVERY = 20
"""--dataset video: one sample in VAL_EVERY is held out for validation."""


class EpochSampler(DistributedSampler):
    """torch's DistributedSampler (shuffled with seed + epoch, padded to a multiple of the world size, every
    world_size-th index for this rank), yielding ``(epoch, index)`` keys so that persistent workers draw the
    right epoch's augmentation, and able to start ``start`` samples into this rank's share of the epoch."""

    def __init__(self, size: int, *, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(range(size), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """The epoch to iterate next and how many of this rank's samples of it are already done."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self.start:]
        return iter([(self.epoch, index) for index in indices])

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)


class LoadedBatch(NamedTuple):
    """What a :class:`SkipBadSamples` loader yields: the batch and one message per sample it replaced."""

    batch: Batch
    skipped: tuple[str, ...]


class SkipBadSamples(Dataset):
    """``--skip-bad-samples``: a reader whose unreadable samples (a missing, truncated or corrupt image: a
    DataError or OSError) are replaced by the next readable sample of the split, with that sample's own
    augmentation for the same epoch. The replacement depends only on which files are bad, never on the
    worker or the timing, so runs stay repeatable; a batch without bad samples is loaded exactly as without
    this wrapper. Batches come as :class:`LoadedBatch`; :func:`batches` unpacks them and adds the messages
    to ``skipped`` (in the training process)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.bad: dict[int, str] = {}  # index -> why it cannot be read (per process: a cache only)
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, keys: list) -> LoadedBatch:
        if not any(self._index(key) in self.bad for key in keys):
            try:
                return LoadedBatch(self.dataset.__getitems__(keys), ())
            except (DataError, OSError):
                pass  # find which samples are bad, one by one
        messages: list[str] = []
        readable = [self._readable(key, messages) for key in keys]
        return LoadedBatch(self.dataset.__getitems__(readable), tuple(messages))

    def take_skipped(self) -> list[str]:
        """The messages of the samples skipped since the last call."""
        taken, self.skipped = self.skipped, []
        return taken

    @staticmethod
    def _index(key) -> int:
        return key[1] if isinstance(key, tuple) else key

    def _readable(self, key, messages: list[str]):
        """``key`` if its sample loads, else the key of the next readable index (the same epoch)."""
        epoch, index = key if isinstance(key, tuple) else (None, key)
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            if candidate not in self.bad:
                probe = candidate if epoch is None else (epoch, candidate)
                try:
                    self.dataset[probe]
                    return probe
                except (DataError, OSError) as error:
                    self.bad[candidate] = str(error)
            if offset == 0:
                messages.append(self.bad[candidate])
        raise DataError(f"no readable sample left: every one of the {len(self)} samples failed "
                        f"(first: {next(iter(self.bad.values()))})")


def augments_on_device(config: TrainConfig, device: torch.device) -> bool:
    """``--augment-on``: whether the training batches are finished on ``device`` (``auto``: on CUDA)."""
    choice = config.data.augment_on
    return choice == "device" or (choice == "auto" and device.type == "cuda")


def build_dataset(config: TrainConfig, which: str, is_train: bool, uint8_images: bool = False):
    """The reader (``--dataset``) over split file ``which`` (train or val) of ``--split``, wrapped in
    :class:`SkipBadSamples` with ``--skip-bad-samples``. ``uint8_images``: batches to finish on the training
    device (:func:`md2.data.device_augment.finish_batch`)."""
    data = config.data
    if not config.data_root.is_dir():
        raise DataError(f"data folder not found: {config.data_root} (set --data-path)")
    if data.dataset == "video":
        dataset = _video_dataset(config, which, is_train, uint8_images)
    else:
        path = split_file(data.split, which, data.splits_dir)
        lines = read_split_file(path)
        if not lines:
            raise DataError(f"no {which} samples: {path} is empty")
        reader = DATASETS[data.dataset]
        dataset = reader(config.data_root, lines, data.height, data.width, data.frame_ids,
                         num_scales=len(config.model.scales), is_train=is_train,
                         img_ext=".png" if data.png else ".jpg", use_stereo=data.use_stereo, seed=config.run.seed,
                         uint8_images=uint8_images)
        # Before the run folder is created: a forgotten --png or a missing image_03 in one line, not at the
        # first batch.
        check_first_and_last(dataset, which, tolerate_some=data.skip_bad_samples)
    if data.resize_cache is not None:
        dataset.resize_cache = ResizeCache(data.resize_cache, data.width, data.height, len(config.model.scales))
    return SkipBadSamples(dataset) if data.skip_bad_samples else dataset


def _video_dataset(config: TrainConfig, which: str, is_train: bool, uint8_images: bool):
    """``--dataset video``: the frames under ``--data-path``, every ``VAL_EVERY``-th sample (fewer apart when
    that would give less than a batch) held out for validation."""
    data = config.data
    videos = video_folders(config.data_root)
    counts = {video: len(list_frames(video)) for video in videos}
    refs = [ref for video, count in counts.items() for ref in video_samples(str(video), count, data.frame_ids)]
    every = max(2, min(VAL_EVERY, len(refs) // config.optim.batch_size))
    train, val = hold_out(refs, every)
    fx, fy, cx, cy = data.intrinsics
    K = [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]
    # Values above 10 cannot be normalised ones (cx would be about 0.5): pixels of the frames, then.
    image_size = frame_size(list_frames(videos[0])[0]) if max(data.intrinsics) > 10 else None
    return VideoFolderDataset(videos, K, data.height, data.width, data.frame_ids,
                              num_scales=len(config.model.scales), is_train=is_train, image_size=image_size,
                              seed=config.run.seed, uint8_images=uint8_images,
                              refs=train if which == "train" else val)


def make_loader(dataset, config: TrainConfig, *, rank: int = 0, world_size: int = 1, workers: int | None = None,
                pin_memory: bool = False, label: str = "train") -> DataLoader:
    """A loader over ``dataset`` in shuffled batches (the last partial one dropped, as the reference).

    Its :class:`EpochSampler` (``loader.sampler``) chooses the epoch and the starting point before each pass.
    Workers persist across epochs and start from a fresh interpreter (forkserver), not as forks of a process
    whose thread pools (OpenMP, OpenCV, TensorBoard) may hold locks a forked child would wait on forever.
    torch seeds Python, NumPy and torch in each worker from the loader's own generator (seeded here), so
    workers are repeatable too, though md2's augmentation does not draw from them.
    """
    batch = config.optim.batch_size
    if len(dataset) < batch * world_size:
        raise DataError(f"{len(dataset)} {label} samples are fewer than one batch of {batch} "
                        f"x {world_size} process(es): lower --batch-size or use a larger split")
    workers = config.data.num_workers if workers is None else workers
    sampler = EpochSampler(len(dataset), seed=config.run.seed, shuffle=True, rank=rank, world_size=world_size)
    context = None
    if workers > 0:
        context = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    # Its own generator (worker base seeds): starting the workers must not draw from the global random
    # state, which the resumed run restores exactly.
    generator = torch.Generator().manual_seed(config.run.seed + 7919 * rank)
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True,
                      collate_fn=_pass_loaded if isinstance(dataset, SkipBadSamples) else collate_samples,
                      pin_memory=pin_memory, generator=generator,
                      persistent_workers=workers > 0, multiprocessing_context=context,
                      prefetch_factor=2 if workers > 0 else None)


def batches(loader: DataLoader, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
    """The batches of ``epoch`` from batch ``start_batch`` on. Errors of a loader worker (a missing or
    corrupt image) come back as one line instead of the worker's traceback."""
    loader.sampler.set_position(epoch, start_batch * loader.batch_size)
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except MD2Error as error:
            raise type(error)(worker_message(str(error))) from None
        except RuntimeError as error:
            if "DataLoader worker" not in str(error):
                raise
            raise DataError(f"a data loader worker stopped: {' '.join(str(error).split())}") from None
        if isinstance(batch, LoadedBatch):
            loader.dataset.skipped.extend(batch.skipped)
            batch = batch.batch
        yield batch


def _pass_loaded(loaded: LoadedBatch) -> LoadedBatch:
    """The collate function of a :class:`SkipBadSamples` loader: its batches are whole already."""
    return loaded


class ValidationBatches:
    """One validation batch per log, cycling through the shuffled val split epoch after epoch; ``position``
    (batches taken so far) is part of the training state, so a resumed run validates on the same batches."""

    def __init__(self, loader: DataLoader, position: int = 0) -> None:
        self.loader, self.position = loader, position
        self._iterator: Iterator[Batch] | None = None

    def next(self) -> Batch:
        per_epoch = self.loader.sampler.num_samples // self.loader.batch_size
        if self._iterator is None:
            epoch, done = divmod(self.position, per_epoch)
            self._iterator = batches(self.loader, epoch, done)
        batch = next(self._iterator, None)
        if batch is None:  # the val split is used up: its next epoch
            self._iterator = batches(self.loader, self.position // per_epoch)
            batch = next(self._iterator)
        self.position += 1
        return batch
