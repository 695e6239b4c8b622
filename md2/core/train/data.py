"""Training and validation data for a run: split files -> datasets -> loaders with resumable, sharded order."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from md2.core.train.config import TrainConfig
from md2.data.kitti import DATASETS
from md2.data.sample import collate_samples
from md2.data.splits import read_split_file, split_file
from md2.errors import DataError


class EpochSampler(Sampler):
    """Shuffled (epoch, index) keys, the same order for a given seed and epoch, sharded over processes.

    Like DistributedSampler (padding to a multiple of the world size), plus ``start``: the number of this
    process's samples already consumed, so a resumed epoch continues with exactly the remaining batches.
    """

    def __init__(self, size: int, seed: int, epoch: int, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 start: int = 0) -> None:
        self.size, self.seed, self.epoch, self.shuffle = size, seed, epoch, shuffle
        self.rank, self.world_size, self.start = rank, world_size, start
        self.per_rank = -(-size // world_size)

    def _order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        padded = order + order[: self.per_rank * self.world_size - self.size]
        return padded[self.rank::self.world_size][self.start:]

    def __iter__(self):
        return iter([(self.epoch, index) for index in self._order()])

    def __len__(self) -> int:
        return max(self.per_rank - self.start, 0)


def build_dataset(config: TrainConfig, which: str, is_train: bool):
    """The reader for split file ``which`` (train or val) of the configured split and dataset."""
    data = config.data
    path = split_file(data.split, which, data.splits_dir)
    lines = read_split_file(path)
    if not lines:
        raise DataError(f"{path} lists no samples")
    if not (config.data_root.is_dir()):
        raise DataError(f"data folder not found: {config.data_root}")
    reader = DATASETS[data.dataset]
    return reader(config.data_root, lines, data.height, data.width, data.frame_ids,
                  num_scales=len(config.model.scales), is_train=is_train,
                  img_ext=".png" if data.png else ".jpg", use_stereo=data.use_stereo, seed=config.run.seed)


def make_loader(dataset, config: TrainConfig, epoch: int, shuffle: bool, rank: int = 0, world_size: int = 1,
                start_batch: int = 0, pin_memory: bool = False) -> DataLoader:
    """A loader over ``dataset`` for one epoch (drop_last as the reference), skipping ``start_batch`` batches."""
    batch = config.optim.batch_size
    sampler = EpochSampler(len(dataset), config.run.seed, epoch, shuffle, rank, world_size, start_batch * batch)
    workers = config.data.num_workers
    # Its own generator: creating an iterator must not consume the global random state (exact resume).
    generator = torch.Generator().manual_seed(config.run.seed * 100_003 + epoch + 7919 * rank)
    # Workers start from a fresh interpreter (forkserver), not a fork of a process whose threads (OpenCV,
    # BLAS, TensorBoard) may hold locks that a forked child would wait on forever.
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True,
                      collate_fn=collate_samples, pin_memory=pin_memory, generator=generator,
                      prefetch_factor=2 if workers else None, persistent_workers=False,
                      multiprocessing_context="forkserver" if workers else None)
