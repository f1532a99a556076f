"""Shared fixtures: the real CIFAR-10 (skipped when absent) and a tiny one in the same format."""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainables.data import LABEL_NAMES as CIFAR_LABEL_NAMES

REAL_CIFAR_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/cifar-10-batches-py"
TINY_PER_BATCH = 20
TINY_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
LABEL_NAMES = list(CIFAR_LABEL_NAMES)  # a list, as in the real batches.meta


def write_pickle(path: Path, obj: Any) -> None:
    """Pickle ``obj`` in protocol 2, as the CIFAR-10 batches are."""
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def tiny_batch(name: str, rng: np.random.Generator, n: int = TINY_PER_BATCH) -> dict[str, Any]:
    """One batch dict in the standard format: uint8 (n, 3072) channel-major data, int labels."""
    labels = [int(v) for v in rng.integers(0, 10, n)]
    return {
        "batch_label": f"{name} of tiny fixture",
        "labels": labels,
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"{name}_{i}_{LABEL_NAMES[lab]}.png" for i, lab in enumerate(labels)],
    }


@pytest.fixture(scope="session")
def real_cifar_dir() -> Path:
    """The real CIFAR-10 at ``<repo>/../shared/data/cifar-10-batches-py`` (read-only)."""
    if not (REAL_CIFAR_DIR / "data_batch_1").is_file():
        pytest.skip(
            f"real CIFAR-10 not found at {REAL_CIFAR_DIR} (expected the standard "
            "cifar-10-batches-py folder there)"
        )
    return REAL_CIFAR_DIR


@pytest.fixture(scope="session")
def real_cifar_arrays(real_cifar_dir: Path) -> Any:
    """The real CIFAR-10, loaded once per test session (a ``trainables.data.CifarArrays``)."""
    from trainables.data import load_cifar10

    return load_cifar10(real_cifar_dir)


@pytest.fixture
def tiny_cifar_dir(tmp_path: Path) -> Path:
    """A tiny ``cifar-10-batches-py`` folder: 5 data batches + test batch of 20 seeded images
    each, and batches.meta, written exactly as the real files (pickle protocol 2 dicts)."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(1234)
    for name in TINY_BATCHES:
        write_pickle(root / name, tiny_batch(name, rng))
    meta = {"num_cases_per_batch": TINY_PER_BATCH, "label_names": LABEL_NAMES, "num_vis": 3072}
    write_pickle(root / "batches.meta", meta)
    return root


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short RAY_TMPDIR (Ray's socket paths have a length limit), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="rf", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
