"""Batch sources for the trainer: generated tasks (fresh batches every epoch) and fixed evaluation sets.

Every source is seeded per epoch, so a resumed run sees exactly the batches an uninterrupted run sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from ..data.batch import Batch
from ..data.registry import DATASETS, list_datasets, load_splits
from ..data.static_images import StaticImageSet
from ..data.xor import XOR_TASKS

__all__ = ["GeneratedSource", "FixedSource", "LoaderSource", "TensorSource", "DataSources", "build_sources", "DATA_NAMES"]


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + stream * 104_729) % (2**63 - 1)


class GeneratedSource:
    """``batches_per_epoch`` fresh batches per epoch from ``task(batch, generator=..., **options)``."""

    def __init__(self, task: Callable, batch_size: int, batches_per_epoch: int, seed: int, options: dict) -> None:
        self.task, self.batch_size, self.count, self.seed, self.options = task, batch_size, batches_per_epoch, seed, options

    def batches(self, epoch: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch, 0))
        for _ in range(self.count):
            data = self.task(self.batch_size, generator=generator, **self.options)
            yield Batch(data.x, data.labels, None, data.scored)


class FixedSource:
    """A fixed list of batches (the same every epoch)."""

    def __init__(self, batches: list[Batch]) -> None:
        self._batches = batches

    def batches(self, epoch: int) -> list[Batch]:
        return self._batches

    def __len__(self) -> int:
        return sum(b.size for b in self._batches)


class LoaderSource:
    """Batches of a map-style dataset of ``(x [T, C], label)`` samples, padded by :func:`collate`.

    Training order is shuffled with a generator seeded by (seed, epoch), so a resumed run sees the same
    batches; evaluation sources keep the dataset order.
    """

    def __init__(self, dataset, batch_size: int, *, shuffle: bool, seed: int, num_workers: int = 0) -> None:
        self.dataset, self.batch_size, self.shuffle, self.seed, self.num_workers = dataset, batch_size, shuffle, seed, num_workers

    def batches(self, epoch: int):
        from torch.utils.data import DataLoader

        from ..data.batch import collate

        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch, 3))
        return iter(DataLoader(self.dataset, batch_size=self.batch_size, shuffle=self.shuffle, generator=generator,
                               num_workers=self.num_workers, collate_fn=collate))

    def __len__(self) -> int:
        return len(self.dataset)


class TensorSource:
    """Batches sliced from whole-split tensors ``images [N, C]``, ``labels [N]`` (static inputs, e.g. TTFS).

    Training order is a permutation seeded by (seed, epoch); evaluation keeps the stored order.
    """

    def __init__(self, images, labels, batch_size: int, *, shuffle: bool, seed: int) -> None:
        self.images, self.labels, self.batch_size, self.shuffle, self.seed = images, labels, batch_size, shuffle, seed

    def batches(self, epoch: int):
        count = self.labels.shape[0]
        if self.shuffle:
            order = torch.randperm(count, generator=torch.Generator().manual_seed(_epoch_seed(self.seed, epoch, 4)))
        else:
            order = torch.arange(count)
        for start in range(0, count, self.batch_size):
            index = order[start:start + self.batch_size]
            yield Batch(self.images[index], self.labels[index])

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass
class DataSources:
    train: object
    valid: Optional[object]
    test: object
    in_features: int
    classes: int
    description: str
    dt_ms: float = 1.0


def _generated(recipe: dict, task: Callable) -> DataSources:
    data = recipe["data"]
    seed = recipe["seed"]
    options = dict(data["options"])
    try:
        probe = task(1, generator=torch.Generator().manual_seed(0), **options)
    except TypeError as err:
        raise ValueError(f"data.options: {err}") from None
    eval_batch = data["eval_batch_size"] or data["batch_size"]

    def fixed(stream: int) -> FixedSource:
        generator = torch.Generator().manual_seed(_epoch_seed(seed, 0, stream))
        batches, left = [], data["eval_samples"]
        while left > 0:
            size = min(eval_batch, left)
            sample = task(size, generator=generator, **options)
            batches.append(Batch(sample.x, sample.labels, None, sample.scored))
            left -= size
        return FixedSource(batches)

    train = GeneratedSource(task, data["batch_size"], data["batches_per_epoch"], seed, options)
    description = f"{data['name']} (fresh batches of {data['batch_size']} × {data['batches_per_epoch']} per epoch; fixed valid/test sets of {data['eval_samples']})"
    return DataSources(train, fixed(1), fixed(2), probe.x.shape[-1], 2, description)


STATIC_IMAGES = {"fmnist": "Fashion-MNIST images as static vectors in [0, 1] (TTFS)"}
DATA_NAMES = sorted(XOR_TASKS) + sorted(DATASETS) + sorted(STATIC_IMAGES)


def _static(recipe: dict) -> DataSources:
    """Fashion-MNIST (or MNIST files given as ``data.path``) as flat pixel vectors with a validation split."""
    data = recipe["data"]
    options = dict(data["options"])
    unknown = sorted(set(options) - {"seed"})
    if unknown:
        raise ValueError(f"data.options: unknown option(s) {unknown} for {data['name']!r}; allowed: ['seed']")
    split = {"root": data["path"], "valid_fraction": data["valid_fraction"], "seed": options.get("seed", 0)}
    parts = {name: StaticImageSet(name, **split) for name in ("train", "valid", "test")}
    eval_batch = data["eval_batch_size"] or data["batch_size"]
    seed = recipe["seed"]

    def source(name: str, batch_size: int, shuffle: bool) -> TensorSource:
        return TensorSource(parts[name].images, parts[name].labels, batch_size, shuffle=shuffle, seed=seed)

    description = (f"{STATIC_IMAGES[data['name']]}: {len(parts['train'])} train / {len(parts['valid'])} valid "
                   f"(seeded stratified split) / {len(parts['test'])} official test")
    return DataSources(source("train", data["batch_size"], True), source("valid", eval_batch, False),
                       source("test", eval_batch, False), parts["train"].features, 10, description)


def _registered(recipe: dict) -> DataSources:
    """Sources over a dataset of :mod:`spikescale.data.registry` (``data.options`` are its options).

    ``data.path`` is passed as the dataset's ``path`` (a file) or ``root`` (a folder) option.
    ``data.valid_fraction`` applies to datasets that carve their validation split from the training data;
    the split itself is seeded by the dataset's own ``seed`` option (default 0), so runs that differ only
    by the recipe seed share the same validation samples.
    """
    data = recipe["data"]
    options = dict(data["options"])
    accepted = list_datasets()[data["name"]]
    if "valid_fraction" in accepted and "valid_fraction" not in options:
        options["valid_fraction"] = data["valid_fraction"]
    if data["path"] is not None:  # data.path: the file (arrays) or folder (everything else) holding the data
        options["path" if "path" in accepted else "root"] = data["path"]
    splits = load_splits(data["name"], **options)
    eval_batch = data["eval_batch_size"] or data["batch_size"]
    seed = recipe["seed"]

    def loader(dataset, batch_size: int, shuffle: bool):
        return None if dataset is None else LoaderSource(dataset, batch_size, shuffle=shuffle, seed=seed, num_workers=data["num_workers"])

    return DataSources(
        loader(splits.train, data["batch_size"], True), loader(splits.valid, eval_batch, False), loader(splits.test, eval_batch, False),
        splits.channels, splits.classes, splits.description, splits.dt_ms or 1.0,
    )


def build_sources(recipe: dict) -> DataSources:
    """Training, validation and test sources for a validated recipe."""
    name = recipe["data"]["name"]
    if name in XOR_TASKS:
        return _generated(recipe, XOR_TASKS[name])
    if name in DATASETS:
        return _registered(recipe)
    if name in STATIC_IMAGES:
        return _static(recipe)
    raise ValueError(f"data.name: unknown dataset {name!r}; available: {DATA_NAMES}")
