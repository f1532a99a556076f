"""trainables.data: finding, safely loading, checking and splitting CIFAR-10."""

from __future__ import annotations

import os
import pickle
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trainables import cifar_files as D
from trainables.cifar_files import (
    DATA_DIR_ENV,
    CifarArrays,
    DataError,
    default_cache_dir,
    load_cifar10,
    resolve_data_dir,
)
from trainables.data import DataSplits, load_splits, make_splits

BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def read_pickle(path: Path) -> Any:
    with path.open("rb") as fh:
        return pickle.load(fh, encoding="latin1")


def write_pickle(path: Path, obj: Any) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=2)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No data-dir env var, and an empty cache dir under tmp_path (returned)."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "plateau-sweep"


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Replace torchvision's downloader with one that records its call and fails as offline."""
    import torchvision.datasets.utils as tv_utils

    calls: list[tuple[Any, ...]] = []

    def offline(url: str, download_root: str, **kwargs: Any) -> None:
        calls.append((url, download_root, kwargs, socket.getdefaulttimeout()))
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    return calls


# -- loading the tiny fixture ------------------------------------------------------------------


def test_tiny_fixture_loads_with_the_right_shapes_dtypes_and_labels(tiny_cifar_dir: Path) -> None:
    arrays = load_cifar10(tiny_cifar_dir)
    assert arrays.train_x.shape == (100, 3, 32, 32) and arrays.train_x.dtype == torch.uint8
    assert arrays.train_y.shape == (100,) and arrays.train_y.dtype == torch.int64
    assert arrays.test_x.shape == (20, 3, 32, 32) and arrays.test_y.shape == (20,)
    assert arrays.label_names[0] == "airplane" and len(arrays.label_names) == 10
    raw = [read_pickle(tiny_cifar_dir / name) for name in BATCHES]
    expected_train = np.concatenate([b["labels"] for b in raw[:5]])
    assert arrays.train_y.tolist() == expected_train.tolist()
    assert arrays.test_y.tolist() == raw[5]["labels"]
    assert int(arrays.train_y.min()) >= 0 and int(arrays.train_y.max()) <= 9
    # Every pixel, in batch order.
    flat = torch.from_numpy(np.concatenate([b["data"] for b in raw[:5]]))
    assert torch.equal(arrays.train_x.reshape(100, 3072), flat)


def test_a_known_pixel_lands_at_image_channel_row_col(tiny_cifar_dir: Path) -> None:
    path = tiny_cifar_dir / "data_batch_2"
    batch = read_pickle(path)
    batch["data"][:] = 0
    i, c, row, col = 3, 1, 5, 7
    batch["data"][i, c * 1024 + row * 32 + col] = 251  # channel-major, each row-major
    write_pickle(path, batch)
    x = load_cifar10(tiny_cifar_dir).train_x
    assert int(x[20 + i, c, row, col]) == 251
    assert int(x[20:40].sum()) == 251  # nothing else in that batch, so no other position


def test_parent_folder_is_accepted(tiny_cifar_dir: Path) -> None:
    assert len(load_cifar10(tiny_cifar_dir.parent).train_y) == 100


def test_bytes_keys_are_accepted(tiny_cifar_dir: Path) -> None:
    path = tiny_cifar_dir / "test_batch"
    batch = read_pickle(path)
    write_pickle(path, {k.encode(): v for k, v in batch.items()})
    assert load_cifar10(tiny_cifar_dir).test_y.tolist() == batch["labels"]


# -- loading errors ----------------------------------------------------------------------------


def _hostile(marker: Path) -> object:
    class Hostile:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    return Hostile()


def _hostile_builtin(marker: Path) -> object:
    class Hostile:
        def __reduce__(self) -> tuple[Any, ...]:
            return (eval, (f"open({str(marker)!r}, 'w').write('pwned')",))

    return Hostile()


def _set(key: str, value: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    def mutate(batch: dict[str, Any]) -> Any:
        batch[key] = value(batch)
        return batch

    return mutate


def _drop(key: str) -> Callable[[dict[str, Any]], Any]:
    def mutate(batch: dict[str, Any]) -> Any:
        del batch[key]
        return batch

    return mutate


def _labels_out_of_range(batch: dict[str, Any]) -> Any:
    batch["labels"][4] = 10
    return batch


# (case, file to break, mutation of its dict, words the message must contain)
CORRUPTIONS: list[tuple[str, str, Callable[[dict[str, Any]], Any], tuple[str, ...]]] = [
    ("not a dict", "data_batch_3", lambda b: [b["data"], b["labels"]], ("list", "not a dict")),
    ("no labels", "data_batch_2", _drop("labels"), ("no 'labels'",)),
    ("no data", "test_batch", _drop("data"), ("no 'data'",)),
    (
        "wrong shape",
        "data_batch_5",
        _set("data", lambda b: b["data"][:, :3000].copy()),
        ("shape (20, 3000)", "3072"),
    ),
    (
        "wrong dtype",
        "data_batch_1",
        _set("data", lambda b: b["data"].astype(np.float32)),
        ("float32", "uint8"),
    ),
    ("labels out of range", "data_batch_4", _labels_out_of_range, ("label 10", "0..9")),
    ("labels count", "test_batch", _set("labels", lambda b: b["labels"][:-1]), ("19 labels",)),
    ("labels not ints", "data_batch_1", _set("labels", lambda b: ["cat"] * 20), ("integers",)),
]


@pytest.mark.parametrize(
    ("file", "mutate", "words"),
    [c[1:] for c in CORRUPTIONS],
    ids=[c[0] for c in CORRUPTIONS],
)
def test_each_bad_batch_is_a_data_error_naming_the_file(
    tiny_cifar_dir: Path,
    file: str,
    mutate: Callable[[dict[str, Any]], Any],
    words: tuple[str, ...],
) -> None:
    path = tiny_cifar_dir / file
    write_pickle(path, mutate(read_pickle(path)))
    with pytest.raises(DataError) as info:
        load_cifar10(tiny_cifar_dir)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    for word in words:
        assert word in msg


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope.*does not exist"):
        load_cifar10(tmp_path / "nope")


def test_missing_batch_file(tiny_cifar_dir: Path) -> None:
    (tiny_cifar_dir / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"missing CIFAR-10 file .*data_batch_3.*re-extract"):
        load_cifar10(tiny_cifar_dir)


def test_truncated_batch(tiny_cifar_dir: Path) -> None:
    path = tiny_cifar_dir / "data_batch_4"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError) as info:
        load_cifar10(tiny_cifar_dir)
    assert str(path) in str(info.value) and "truncated" in str(info.value)


def test_garbage_batch(tiny_cifar_dir: Path) -> None:
    path = tiny_cifar_dir / "test_batch"
    path.write_bytes(b"this is not a pickle at all")
    with pytest.raises(DataError, match=r"corrupt or truncated .*test_batch"):
        load_cifar10(tiny_cifar_dir)


@pytest.mark.parametrize("make", [_hostile, _hostile_builtin], ids=["os.system", "builtins.eval"])
@pytest.mark.parametrize("where", ["whole file", "inside labels"])
def test_hostile_pickle_is_refused_before_it_runs(
    tiny_cifar_dir: Path, tmp_path: Path, make: Callable[[Path], object], where: str
) -> None:
    marker = tmp_path / "pwned"
    payload = make(marker)
    path = tiny_cifar_dir / "data_batch_1"
    if where == "whole file":
        write_pickle(path, payload)
    else:
        batch = read_pickle(path)
        batch["labels"] = payload
        write_pickle(path, batch)
    # The payload is live: a plain pickle.load would run it.
    control = tmp_path / "control"
    write_pickle(control, make(tmp_path / "control_marker"))
    read_pickle(control)
    assert (tmp_path / "control_marker").exists()

    with pytest.raises(DataError) as info:
        load_cifar10(tiny_cifar_dir)
    msg = str(info.value)
    assert "refusing to load" in msg and str(path) in msg and "not a CIFAR-10 pickle" in msg
    assert ("system" in msg) if make is _hostile else ("eval" in msg)
    assert not marker.exists()


def test_bad_meta_is_reported_and_missing_meta_is_fine(tiny_cifar_dir: Path) -> None:
    meta = tiny_cifar_dir / "batches.meta"
    write_pickle(meta, {"label_names": ["a", "b"]})
    with pytest.raises(DataError, match=r"batches\.meta"):
        load_cifar10(tiny_cifar_dir)
    meta.unlink()
    assert load_cifar10(tiny_cifar_dir).label_names[-1] == "truck"


# -- finding the folder ------------------------------------------------------------------------


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "plateau-sweep"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "plateau-sweep"


def test_explicit_dir_may_be_the_folder_or_its_parent(
    tiny_cifar_dir: Path, no_env: Path, no_download: list[Any]
) -> None:
    assert resolve_data_dir(tiny_cifar_dir) == tiny_cifar_dir
    assert resolve_data_dir(str(tiny_cifar_dir.parent)) == tiny_cifar_dir
    assert not no_download


def test_missing_explicit_dir_fails_without_download(
    tmp_path: Path, no_env: Path, no_download: list[Any]
) -> None:
    with pytest.raises(DataError, match=r"data folder .*nope does not exist.*--data-dir"):
        resolve_data_dir(tmp_path / "nope", download=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no data_batch_\*/test_batch in data folder .*empty"):
        resolve_data_dir(tmp_path / "empty", download=True)
    assert not no_download, "a folder the user named must never trigger a download"


def test_env_var_is_used_and_checked(
    tiny_cifar_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_download: list[Any]
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tiny_cifar_dir.parent))
    assert resolve_data_dir(None) == tiny_cifar_dir
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "gone"))
    with pytest.raises(DataError, match=rf"{DATA_DIR_ENV}=.*gone does not exist"):
        resolve_data_dir(None)
    assert not no_download


def test_cache_dir_is_found(tiny_cifar_dir: Path, no_env: Path, no_download: list[Any]) -> None:
    no_env.mkdir(parents=True)
    shutil.copytree(tiny_cifar_dir, no_env / "cifar-10-batches-py")
    assert resolve_data_dir(None) == no_env / "cifar-10-batches-py"
    assert not no_download


def test_nothing_found_without_download(no_env: Path, no_download: list[Any]) -> None:
    with pytest.raises(DataError, match=r"not found in .*plateau-sweep.*download is off"):
        resolve_data_dir(None, download=False)
    assert not no_download


def test_offline_download_fails_fast_with_one_line(no_env: Path, no_download: list[Any]) -> None:
    before = socket.getdefaulttimeout()
    with pytest.raises(DataError) as info:
        resolve_data_dir(None, download=True)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(no_env) in msg and "--data-dir" in msg and DATA_DIR_ENV in msg
    assert "download failed" in msg and "name resolution" in msg
    (url, root, kwargs, timeout) = no_download[0]
    assert url == D.CIFAR_URL and Path(root) == no_env
    assert kwargs["md5"] == "c58f30108f718f92721af3b95e74349a"
    assert timeout is not None and timeout <= 30, "the download must use a short socket timeout"
    assert socket.getdefaulttimeout() == before


def test_download_success_is_used(
    tiny_cifar_dir: Path, no_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.utils as tv_utils

    def fake(url: str, download_root: str, **kwargs: Any) -> None:
        shutil.copytree(tiny_cifar_dir, Path(download_root) / "cifar-10-batches-py")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake)
    assert resolve_data_dir(None) == no_env / "cifar-10-batches-py"


# -- splits ------------------------------------------------------------------------------------


def numbered_arrays(n_train: int = 1000, n_test: int = 300) -> CifarArrays:
    """Images whose first two pixels encode their index (so splits can be traced back)."""

    def images(n: int) -> torch.Tensor:
        x = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
        idx = torch.arange(n)
        x[:, 0, 0, 0] = (idx % 256).to(torch.uint8)
        x[:, 0, 0, 1] = (idx // 256).to(torch.uint8)
        return x

    return CifarArrays(
        train_x=images(n_train),
        train_y=torch.arange(n_train) % 10,
        test_x=images(n_test),
        test_y=torch.arange(n_test) % 10,
        label_names=D.LABEL_NAMES,
    )


def ids(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()).tolist()


def test_split_sizes_disjoint_and_complete() -> None:
    arrays = numbered_arrays()
    s = make_splits(arrays, val_fraction=0.2, split_seed=0)
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (800, 200, 300)
    train, val = ids(s.train_x), ids(s.val_x)
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(1000))
    assert ids(s.test_x) == list(range(300))
    # Labels travel with their images.
    assert s.train_y.tolist() == [i % 10 for i in train]
    assert s.val_y.tolist() == [i % 10 for i in val]
    assert s.train_x.dtype == torch.uint8 and s.train_y.dtype == torch.int64


def test_split_is_fixed_by_the_seed() -> None:
    arrays = numbered_arrays()
    a = make_splits(arrays, split_seed=3)
    b = make_splits(arrays, split_seed=3)
    c = make_splits(arrays, split_seed=4)
    assert ids(a.val_x) == ids(b.val_x) and ids(a.train_x) == ids(b.train_x)
    assert set(ids(a.val_x)) != set(ids(c.val_x))
    assert ids(a.val_x) != sorted(ids(a.val_x)), "the split must be shuffled"


def test_subsets_are_prefixes_of_the_seeded_split() -> None:
    arrays = numbered_arrays()
    full = make_splits(arrays, split_seed=1)
    sub = make_splits(arrays, split_seed=1, train_subset=50, val_subset=30, test_subset=20)
    assert (len(sub.train_y), len(sub.val_y), len(sub.test_y)) == (50, 30, 20)
    assert ids(sub.train_x) == ids(full.train_x)[:50]
    assert ids(sub.val_x) == ids(full.val_x)[:30]
    assert ids(sub.test_x) == list(range(20))
    assert not set(ids(sub.train_x)) & set(ids(sub.val_x))


def test_zero_val_fraction() -> None:
    s = make_splits(numbered_arrays(), val_fraction=0.0)
    assert len(s.val_y) == 0 and len(s.train_y) == 1000


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"val_fraction": 1.0}, r"val_fraction=1\.0"),
        ({"val_fraction": -0.1}, r"val_fraction=-0\.1"),
        ({"train_subset": 0}, r"train_subset=0 .*max 800"),
        ({"train_subset": 801}, r"train_subset=801 .*max 800"),
        ({"val_subset": 201}, r"val_subset=201 .*max 200"),
        ({"test_subset": 301}, r"test_subset=301 .*max 300"),
        ({"val_fraction": 0.0, "val_subset": 1}, r"val_subset=1 .*max 0"),
    ],
)
def test_split_arguments_are_validated(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        make_splits(numbered_arrays(), **kwargs)


def test_splits_to_device_and_nbytes() -> None:
    s = make_splits(numbered_arrays(), train_subset=10, val_subset=5, test_subset=4)
    moved = s.to("cpu")
    assert isinstance(moved, DataSplits) and moved is not s
    assert torch.equal(moved.train_x, s.train_x) and moved.val_y.device.type == "cpu"
    assert s.nbytes == (10 + 5 + 4) * 3072 + (10 + 5 + 4) * 8
    with pytest.raises(DataError):
        DataSplits(s.train_x, s.val_y, s.val_x, s.val_y, s.test_x, s.test_y)


def test_test_subset_does_not_hold_the_whole_test_set() -> None:
    s = make_splits(numbered_arrays(), test_subset=10)
    assert s.test_x.untyped_storage().nbytes() == 10 * 3072


def test_load_splits_on_the_tiny_fixture(tiny_cifar_dir: Path, no_env: Path) -> None:
    s = load_splits(tiny_cifar_dir, val_fraction=0.25, split_seed=5, download=False)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (75, 25, 20)
    again = load_splits(tiny_cifar_dir.parent, val_fraction=0.25, split_seed=5, download=False)
    assert torch.equal(s.val_x, again.val_x) and torch.equal(s.train_y, again.train_y)


# -- the real data -----------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_cifar10(real_cifar_arrays: CifarArrays) -> None:
    a = real_cifar_arrays
    assert a.train_x.shape == (50000, 3, 32, 32) and a.test_x.shape == (10000, 3, 32, 32)
    assert a.train_x.dtype == torch.uint8 and a.train_y.dtype == torch.int64
    assert torch.bincount(a.train_y, minlength=10).tolist() == [5000] * 10
    assert torch.bincount(a.test_y, minlength=10).tolist() == [1000] * 10
    assert a.train_y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    mean = a.train_x.sum(dim=(0, 2, 3), dtype=torch.float64) / (50000 * 1024 * 255)
    assert torch.allclose(
        mean, torch.tensor([0.4914, 0.4822, 0.4465], dtype=torch.double), atol=1e-3
    )
    assert a.label_names == D.LABEL_NAMES


@pytest.mark.realdata
def test_real_cifar10_default_split(real_cifar_arrays: CifarArrays) -> None:
    s = make_splits(real_cifar_arrays, split_seed=0, test_subset=1000)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (40000, 10000, 1000)
    counts = torch.bincount(s.val_y, minlength=10)
    assert int(counts.min()) > 900 and int(counts.max()) < 1100  # a random, not sorted, split
