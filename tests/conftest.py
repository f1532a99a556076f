"""Shared fixtures: the real CIFAR-10 (skipped when absent) and a tiny one in the same format."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import CIFAR as REAL_CIFAR_DIR
from helpers import (
    LABEL_NAMES,
    SMOKE_ARGS,
    SMOKE_ENV,
    TINY_BATCHES,
    TINY_PER_BATCH,
    SmokeSweep,
    cli,
    tiny_batch,
    write_pickle,
)


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
    """The real CIFAR-10, loaded once per test session (``trainables.cifar_files.CifarArrays``)."""
    from trainables.cifar_files import load_cifar10

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


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store as MLflow creates it, made once per test session; tests take
    copies (``helpers.new_store``, the ``uri`` fixtures). The tests that are about creating a
    store (the CLI's, the store checks, the faults) still let MLflow create theirs."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture(scope="session")
def smoke_sweep(real_cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SmokeSweep:
    """One real smoke sweep per test session, shared by the tests that read a finished one (the
    CLI's end-to-end test and the MLflow UI's browser test): it takes about 30 s on two cores.
    Its readers add to the store (a comparison, the UI's saved view) but never a run."""
    folder = tmp_path_factory.mktemp("smoke-sweep")
    proc = cli(folder, *SMOKE_ARGS, timeout=600, env=SMOKE_ENV)
    return SmokeSweep(folder, proc)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that takes the real CIFAR-10 through a fixture is a ``realdata`` test."""
    for item in items:
        if {"real_cifar_dir", "real_cifar_arrays"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realdata)
