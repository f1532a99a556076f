"""CIFAR-10's python batches: found (a named folder, the environment, or the cache with a
download), read safely and fast, checked.

The data is the standard ``cifar-10-batches-py`` folder (``data_batch_1`` .. ``data_batch_5``,
``test_batch``, ``batches.meta``: pickled dicts, ``data`` uint8 (n, 3072) channel-major and
``labels`` a list of ints in 0..9). The batches are read here, never through torchvision's
``CIFAR10`` (which insists on the official per-file md5s that a losslessly rebuilt copy fails),
with a restricted unpickler that can only rebuild numpy arrays: a pickle that asks for any other
global is refused before anything in it runs.

Every data problem raises :class:`DataError` with one line that names the file or folder, the
problem and what to do about it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

DATA_DIR_ENV = "PLATEAU_SWEEP_DATA_DIR"
CIFAR_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
BATCH_FILES = (*TRAIN_FILES, TEST_FILE)
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # the archive's md5 (not the files')
DOWNLOAD_TIMEOUT_S = 10.0
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
ROW_SIZE = 3 * 32 * 32
LABEL_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_HOW_TO_PROVIDE = (
    f"pass --data-dir DIR (a folder with data_batch_1..5 and test_batch) or set {DATA_DIR_ENV}"
)


class DataError(ValueError):
    """A data problem: the message is one line naming the file/folder, the problem and the fix."""


# -- where the data is -------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/plateau-sweep`` (or ``~/.cache/plateau-sweep``): where downloads go."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "plateau-sweep"


def _batches_in(directory: Path) -> Path | None:
    """The CIFAR-10 batch folder at or directly under ``directory``, or None.

    A folder holding any of the batch files counts (a missing one is reported by the loader,
    which can name it); otherwise its ``cifar-10-batches-py`` child, if that is a folder.
    """
    if not directory.is_dir():
        return None
    if any((directory / name).is_file() for name in BATCH_FILES):
        return directory
    child = directory / CIFAR_FOLDER
    if child.is_dir():
        return child
    return None


def _given_dir(path: Path, what: str) -> Path:
    """The batch folder of a folder the user named; a DataError (no download) when it has none.

    ``what`` names where the folder came from, e.g. ``"data folder /x"``.
    """
    if not path.exists():
        raise DataError(f"CIFAR-10 not found: {what} does not exist: {_HOW_TO_PROVIDE}")
    if not path.is_dir():
        raise DataError(f"CIFAR-10 not found: {what} is not a folder: {_HOW_TO_PROVIDE}")
    found = _batches_in(path)
    if found is None:
        raise DataError(
            f"CIFAR-10 not found: no data_batch_*/test_batch in {what} nor in "
            f"{path / CIFAR_FOLDER}: {_HOW_TO_PROVIDE}"
        )
    return found


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _download(cache: Path) -> None:
    """Download and unpack the official archive into ``cache`` (any failure propagates)."""
    from torchvision.datasets.utils import download_and_extract_archive

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        download_and_extract_archive(
            CIFAR_URL,
            download_root=str(cache),
            filename=CIFAR_ARCHIVE,
            md5=CIFAR_ARCHIVE_MD5,
            remove_finished=True,
        )
    finally:
        socket.setdefaulttimeout(previous)


def resolve_data_dir(explicit: str | Path | None, *, download: bool = True) -> Path:
    """The ``cifar-10-batches-py`` folder to load.

    Looks, in order, at ``explicit`` (a DataError at once if it has no batches: the user asked
    for that folder), at ``$PLATEAU_SWEEP_DATA_DIR`` (the same rule), then at
    :func:`default_cache_dir`. Each may be the batch folder itself or its parent. When nothing
    is found and ``download`` is true, the official archive is downloaded into the cache (with a
    short socket timeout); any failure raises a DataError at once.
    """
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        return _given_dir(path, f"data folder {path}")
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        return _given_dir(path, f"{DATA_DIR_ENV}={path}")
    cache = default_cache_dir()
    found = _batches_in(cache)
    if found is not None:
        return found
    looked = f"{cache} and {cache / CIFAR_FOLDER}"
    if not download:
        raise DataError(
            f"CIFAR-10 not found in {looked}: {_HOW_TO_PROVIDE}; automatic download is off"
        )
    try:
        _download(cache)
    except Exception as exc:
        raise DataError(
            f"CIFAR-10 not found in {looked}: {_HOW_TO_PROVIDE}; automatic download failed "
            f"(offline?): {_one_line(exc)}"
        ) from None
    found = _batches_in(cache)
    if found is None:
        raise DataError(
            f"CIFAR-10 download into {cache} did not produce {cache / CIFAR_FOLDER}: "
            f"{_HOW_TO_PROVIDE}"
        )
    return found


# -- reading the batches -----------------------------------------------------------------------


def _numpy_attr(module: str, name: str) -> Any:
    """``module.name`` with ``numpy.core`` read as ``numpy._core`` where numpy has it."""
    if module.startswith("numpy.core"):
        with contextlib.suppress(ImportError):
            return getattr(importlib.import_module("numpy._core" + module[10:]), name)
    return getattr(importlib.import_module(module), name)


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 writes bytes in protocol 2: latin-1 text to bytes only."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1", errors="strict")


# Everything a CIFAR-10 batch pickle may name: numpy array (and scalar) reconstruction, written
# as numpy.core.* by numpy 1.x and numpy._core.* by numpy 2.x. Python 3 also writes ``bytes`` in
# protocol 2 as _codecs.encode(text, "latin1"): allowed only through a wrapper that does just that.
_NUMPY_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

    def __init__(self, file: IO[bytes], path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return _numpy_attr(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise DataError(
            f"refusing to load {module}.{name} from {self._path}: not a CIFAR-10 pickle "
            "(only numpy arrays are allowed); replace it with the original batch file"
        )


def _unpickle(path: Path) -> Any:
    """Read one pickle with :class:`_CifarUnpickler`; every failure is a DataError."""
    if not path.is_file():
        raise DataError(
            f"missing CIFAR-10 file {path}: the folder must hold data_batch_1..5, test_batch "
            f"and batches.meta; re-extract the archive or {_HOW_TO_PROVIDE}"
        )
    try:
        with path.open("rb") as fh:
            return _CifarUnpickler(fh, path).load()
    except DataError:
        raise
    except OSError as exc:
        raise DataError(
            f"cannot read CIFAR-10 file {path} ({_one_line(exc)}): check its permissions"
        ) from None
    except Exception as exc:  # EOFError, UnpicklingError, numpy's ValueError, ...: all corruption
        raise DataError(
            f"corrupt or truncated CIFAR-10 file {path} ({_one_line(exc)}): replace it with "
            "the original batch (re-extract the archive)"
        ) from None


def _get(d: dict[Any, Any], key: str) -> Any:
    """``d[key]`` for str keys (encoding="latin1") or bytes keys (pickles written from bytes)."""
    if key in d:
        return d[key]
    return d.get(key.encode("ascii"))


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (data uint8 (n, 3072), labels int64 (n,)), checked."""
    obj = _unpickle(path)
    fix = "replace it with the original batch (re-extract the archive)"
    if not isinstance(obj, dict):
        raise DataError(
            f"CIFAR-10 file {path} holds a {type(obj).__name__}, not a dict with 'data' and "
            f"'labels': {fix}"
        )
    data, labels = _get(obj, "data"), _get(obj, "labels")
    missing = [k for k, v in (("data", data), ("labels", labels)) if v is None]
    if missing:
        raise DataError(f"CIFAR-10 file {path} has no {' and '.join(map(repr, missing))}: {fix}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"CIFAR-10 file {path}: 'data' is {kind}, expected uint8: {fix}")
    if data.ndim != 2 or data.shape[1] != ROW_SIZE:
        raise DataError(
            f"CIFAR-10 file {path}: 'data' has shape {tuple(data.shape)}, expected (n, {ROW_SIZE}) "
            f"(3x32x32 channel-major rows): {fix}"
        )
    try:
        label_arr = np.asarray(labels)
    except Exception:  # a ragged or otherwise odd 'labels'
        label_arr = np.asarray([], dtype=object)
    if label_arr.ndim != 1 or not np.issubdtype(label_arr.dtype, np.integer):
        raise DataError(
            f"CIFAR-10 file {path}: 'labels' is not a list of integers "
            f"({type(labels).__name__}): {fix}"
        )
    if len(label_arr) != len(data):
        raise DataError(
            f"CIFAR-10 file {path}: {len(label_arr)} labels for {len(data)} images: {fix}"
        )
    if len(label_arr) and (label_arr.min() < 0 or label_arr.max() >= NUM_CLASSES):
        bad = label_arr[(label_arr < 0) | (label_arr >= NUM_CLASSES)]
        raise DataError(
            f"CIFAR-10 file {path}: label {int(bad[0])} out of range 0..{NUM_CLASSES - 1} "
            f"({len(bad)} such labels): {fix}"
        )
    return data, label_arr.astype(np.int64, copy=False)


def _read_label_names(root: Path) -> tuple[str, ...]:
    """The class names from ``batches.meta`` (the standard names if the file is absent)."""
    path = root / META_FILE
    if not path.exists():
        return LABEL_NAMES
    meta = _unpickle(path)
    names = _get(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise DataError(
            f"CIFAR-10 file {path} has no list of {NUM_CLASSES} 'label_names': replace it with "
            "the original batches.meta (or delete it to use the standard names)"
        )
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


@dataclass(frozen=True)
class CifarArrays:
    """The whole data set as tensors: images uint8 [n, 3, 32, 32], labels int64 [n]."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    label_names: tuple[str, ...]


def _stack(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_read_batch(p) for p in paths]
    data = parts[0][0] if len(parts) == 1 else np.concatenate([d for d, _ in parts])
    labels = parts[0][1] if len(parts) == 1 else np.concatenate([lab for _, lab in parts])
    x = torch.from_numpy(np.ascontiguousarray(data)).reshape(-1, *IMAGE_SHAPE)
    return x, torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))


def load_cifar10(root: Path) -> CifarArrays:
    """Load every batch of the ``cifar-10-batches-py`` folder ``root`` (or its parent), each
    file checked."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"CIFAR-10 folder {root} does not exist: {_HOW_TO_PROVIDE}")
    root = _batches_in(root) or root
    missing = [name for name in BATCH_FILES if not (root / name).is_file()]
    if missing:
        raise DataError(
            f"missing CIFAR-10 file {root / missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f": the folder must hold data_batch_1..5 and test_batch; re-extract the archive "
            f"or {_HOW_TO_PROVIDE}"
        )
    train_x, train_y = _stack([root / name for name in TRAIN_FILES])
    test_x, test_y = _stack([root / TEST_FILE])
    return CifarArrays(train_x, train_y, test_x, test_y, _read_label_names(root))
