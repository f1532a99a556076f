"""CIFAR-10 split reproducibly into the images a trial uses (its options: :class:`DataOptions`).

The batches are found and read by :mod:`trainables.cifar_files`. The validation split comes out
of the 50,000 training images with a permutation fixed by ``split_seed``; the test set is kept
for the final evaluation only. Subsets take the first ``k`` images of the (seeded) train and
validation permutations, and the first ``k`` images of the test set in its stored order (so a
test subset is the same for every ``split_seed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainables.cifar_files import CifarArrays, DataError, load_cifar10, resolve_data_dir

if TYPE_CHECKING:
    from trainables.config import DataOptions

# -- splits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSplits:
    """Train / validation / test images (uint8 [n, 3, 32, 32]) and labels (int64 [n])."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
                raise DataError(
                    f"DataSplits.{split}: images {tuple(x.shape)} and labels {tuple(y.shape)} "
                    "do not match: expected [n, C, H, W] and [n]"
                )

    def to(self, device: torch.device | str) -> DataSplits:
        """A new DataSplits with every tensor on ``device`` (no copy for those already there)."""
        return DataSplits(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def nbytes(self) -> int:
        """Total bytes of all six tensors."""
        return sum(t.numel() * t.element_size() for t in self._tensors())

    def _tensors(self) -> Iterator[torch.Tensor]:
        for f in fields(self):
            yield getattr(self, f.name)


def _check_subset(name: str, value: int | None, available: int, where: str) -> int:
    if value is None:
        return available
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value > available:
        raise DataError(
            f"{name}={value!r} is not possible: the {where} has {available} images, so it must "
            f"be an integer in 1..{available} (max {available}); lower it or pass None for all"
        )
    return value


def make_splits(
    arrays: CifarArrays,
    *,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    train_subset: int | None = None,
    val_subset: int | None = None,
    test_subset: int | None = None,
) -> DataSplits:
    """Split the training set into train/validation with a permutation fixed by ``split_seed``.

    ``round(n_train * val_fraction)`` images go to validation (the first ones of the
    permutation), the rest to training. ``train_subset``/``val_subset`` keep the first ``k`` of
    each (so a subset is a seeded random sample, nested in larger subsets with the same seed);
    ``test_subset`` keeps the first ``k`` test images in stored order.
    """
    if not isinstance(val_fraction, int | float) or not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction={val_fraction!r} is not possible: it must be in [0, 1)")
    n = len(arrays.train_y)
    n_val = round(n * val_fraction)
    gen = torch.Generator().manual_seed(int(split_seed))
    perm = torch.randperm(n, generator=gen)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if len(train_idx) == 0:
        raise DataError(
            f"val_fraction={val_fraction!r} leaves no training images out of {n}: lower it"
        )
    k_train = _check_subset("train_subset", train_subset, len(train_idx), "training split")
    k_val = _check_subset("val_subset", val_subset, len(val_idx), "validation split")
    k_test = _check_subset("test_subset", test_subset, len(arrays.test_y), "test set")
    train_idx, val_idx = train_idx[:k_train], val_idx[:k_val]
    return DataSplits(
        train_x=arrays.train_x[train_idx],
        train_y=arrays.train_y[train_idx],
        val_x=arrays.train_x[val_idx],
        val_y=arrays.train_y[val_idx],
        test_x=arrays.test_x[:k_test].clone(),
        test_y=arrays.test_y[:k_test].clone(),
    )


def load_splits(
    data_dir: str | Path | None = None,
    *,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    train_subset: int | None = None,
    val_subset: int | None = None,
    test_subset: int | None = None,
    download: bool = True,
) -> DataSplits:
    """:func:`resolve_data_dir`, :func:`load_cifar10` and :func:`make_splits` in one call."""
    root = resolve_data_dir(data_dir, download=download)
    return make_splits(
        load_cifar10(root),
        val_fraction=val_fraction,
        split_seed=split_seed,
        train_subset=train_subset,
        val_subset=val_subset,
        test_subset=test_subset,
    )


def load_options(options: DataOptions, *, download: bool = False) -> DataSplits:
    """:func:`load_splits` with a trial's or a spec's data options."""
    return load_splits(
        options.dir,
        val_fraction=options.val_fraction,
        split_seed=options.split_seed,
        train_subset=options.train_subset,
        val_subset=options.val_subset,
        test_subset=options.test_subset,
        download=download,
    )
